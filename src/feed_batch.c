/*
 * feed_batch.c: reading the changes feed for devices (feed_batch.h).
 */
#include "ofs.h"
#include "feed_batch.h"
#include "plan_cache.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

/* The first change of a row in a read, by a digest of "tbl:pk". */
typedef struct FirstEntry
{
	char		key[64];
	int			idx;
} FirstEntry;

char *
OfsFeedDigest(const char *full, char out[64])
{
	uint64		h = hash_bytes_extended((const unsigned char *) full, strlen(full), 0);

	memset(out, 0, 64);
	snprintf(out, 64, "%016llx:%zu", (unsigned long long) h, strlen(full));
	return out;
}

void
OfsReadFeed(OfsFeedRead *fd, int room, int max_batches, MemoryContext outer)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	int			cap = room;
	char	   *cur = fd->f;
	int			n = 0;
	MemoryContext old;

	fd->c = MemoryContextAllocZero(outer, sizeof(OfsFeedChange) * Max(cap, 1));
	fd->got = 0;
	for (int k = 0; k < max_batches; k++)
	{
		Datum		args[2] = {CStringGetTextDatum(cur), Int32GetDatum(room - fd->got)};

		OfsPlanExec(OfsFixedPlan("feed read",
								 "SELECT c.cursor, c.table_name::regclass::oid, c.table_name, c.pk, c.op = 'delete',"
								 "       c.device, c.as_sent IS TRUE FROM ofs.changes($1, $2) c",
								 2, types, true), args, NULL, true, 0);
		n = (int) SPI_processed;
		if (n == 0)
			break;
		old = MemoryContextSwitchTo(outer);	/* what the round keeps outlives SPI */
		for (int i = 0; i < n; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			OfsFeedChange *c = &fd->c[fd->got + i];
			bool		isnull;

			c->cursor = SPI_getvalue(t, d, 1);
			c->tbl = DatumGetObjectId(SPI_getbinval(t, d, 2, &isnull));
			c->tname = SPI_getvalue(t, d, 3);
			c->pk = DatumGetJsonbPCopy(SPI_getbinval(t, d, 4, &isnull));
			c->pktext = JsonbToCString(NULL, &c->pk->root, VARSIZE(c->pk));
			c->is_delete = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
			c->site = SPI_getvalue(t, d, 6);
			c->as_sent = DatumGetBool(SPI_getbinval(t, d, 7, &isnull));
		}
		MemoryContextSwitchTo(old);
		fd->got += n;
		cur = fd->c[fd->got - 1].cursor;
		if (fd->got >= room)
			break;
	}
	/* Twenty batches read and the page not full: say there is more. */
	fd->n = (fd->got > 0 && fd->got < room && n > 0) ? room : fd->got;
	fd->last_cursor = cur;

	/* One row change per batch: the first mention carries the row as it is now. */
	{
		HASHCTL		ctl;
		HTAB	   *firsts;

		ctl.keysize = 64;
		ctl.entrysize = sizeof(FirstEntry);
		ctl.hcxt = CurrentMemoryContext;
		firsts = hash_create("ofs live firsts", Max(fd->got, 16), &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		for (int i = 0; i < fd->got; i++)
		{
			OfsFeedChange *c = &fd->c[i];
			char		digest[64];
			bool		found;
			FirstEntry *e = hash_search(firsts, OfsFeedDigest(psprintf("%u:%s", c->tbl, c->pktext), digest),
										HASH_ENTER, &found);
			OfsFeedChange *first;

			if (!found)
			{
				e->idx = i;
				c->first = true;
				c->own = (c->as_sent && c->site) ? c->site : NULL;
				c->last_delete = c->is_delete;
				continue;
			}
			first = &fd->c[e->idx];
			if (first->tbl != c->tbl || strcmp(first->pktext, c->pktext) != 0)
				elog(ERROR, "ofs: two keys of a feed read share a digest");
			if (!(c->as_sent && c->site && first->own && strcmp(c->site, first->own) == 0))
				first->own = NULL;
			first->last_delete = c->is_delete;
		}
	}
}



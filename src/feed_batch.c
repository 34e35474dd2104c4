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
#include "utils/json.h"
#include "utils/memutils.h"

/* The first change of a row in a read, by "tbl:pk". */
typedef struct FirstEntry
{
	char	   *key;
	int			idx;
} FirstEntry;

static uint32
StringKeyHash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
StringKeyMatch(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

HTAB *
OfsStringHash(const char *name, long nelem, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = StringKeyHash;
	ctl.match = StringKeyMatch;
	ctl.hcxt = cxt;
	return hash_create(name, Max(nelem, 16), &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
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
		HTAB	   *firsts = OfsStringHash("ofs feed firsts", fd->got, sizeof(FirstEntry), CurrentMemoryContext);
		for (int i = 0; i < fd->got; i++)
		{
			OfsFeedChange *c = &fd->c[i];
			char	   *key = psprintf("%u:%s", c->tbl, c->pktext);
			bool		found;
			FirstEntry *e = hash_search(firsts, &key, HASH_ENTER, &found);
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
			if (!(c->as_sent && c->site && first->own && strcmp(c->site, first->own) == 0))
				first->own = NULL;
			first->last_delete = c->is_delete;
		}
	}
}



/* PutKeyValue adds a key and its value to an object being built. */
static void
PutKeyValue(JsonbParseState **st, const char *key, JsonbValue *value)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
	pushJsonbValue(st, WJB_VALUE, value);
}

static JsonbValue *
StringValue(const char *s)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = strlen(s);
	return v;
}

JsonbValue *
OfsJsonbBinary(Jsonb *j)
{
	JsonbValue *v = palloc(sizeof(JsonbValue));

	v->type = jbvBinary;
	v->val.binary.data = &j->root;
	v->val.binary.len = VARSIZE(j) - VARHDRSZ;
	return v;
}

/* OfsChangeJsonb is {"table": ..., "op": ..., "pk": ..., ["row": ...]}. */
Jsonb *
OfsChangeJsonb(const char *tname, const char *op, Jsonb *pk, Jsonb *row)
{
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PutKeyValue(&st, "table", StringValue(tname));
	PutKeyValue(&st, "op", StringValue(op));
	PutKeyValue(&st, "pk", OfsJsonbBinary(pk));
	if (row)
		PutKeyValue(&st, "row", OfsJsonbBinary(row));
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

void
OfsChangeAdd(OfsChangeList *l, const char *tname, const char *op, const char *pk, const char *row)
{
	if (l->json.data == NULL)
		initStringInfo(&l->json);
	appendStringInfoString(&l->json, l->n++ ? ", {\"table\": " : "{\"table\": ");
	escape_json(&l->json, tname);
	appendStringInfo(&l->json, ", \"op\": \"%s\", \"pk\": %s", op, pk);
	if (row)
		appendStringInfo(&l->json, ", \"row\": %s", row);
	appendStringInfoChar(&l->json, '}');
}

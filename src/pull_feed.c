/*
 * pull_feed.c: the feed part of a device's pull (OfsPullFeed, for pull.c).
 *
 * After its snapshots, a pull reads the changes feed from the device's
 * position and turns each changed row into what the device must get: the
 * row as its role sees it now (an upsert) when it is in scope, its removal
 * when the device holds it and it is not, nothing otherwise, and nothing
 * either for a row whose every change in the batch is the device's own,
 * left as it sent it (no echo; the row is held).  Changes are read a batch
 * at a time (feed_batch.c, shared with the live round); the rows of each batch are read once per table
 * as the device's role (ofs_internal.scope_rows) and the held ones looked up once
 * per table; the held-row bookkeeping of a batch is four statements at its
 * end.  The decisions are made in memory, apart from the writes, which is
 * what a pull served by a hot standby will need (docs/DESIGN.md, "What a
 * pull writes").
 */
#include "ofs.h"
#include "feed_batch.h"
#include "pull.h"
#include "plan_cache.h"
#include "send_rule.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

/* At most this many batches of the feed per call (as the page may stay short). */
#define MAX_ROUNDS 20

/* What a batch says of one row (first change, own, last op, scope, held). */
typedef struct RowState
{
	char	   *key;			/* "tbl:pk" */
	bool		listed;			/* its key is in the batch's list for its table */
	bool		visible;
	bool		held;
	Jsonb	   *row;
} RowState;

/* A list of (table, key) pairs for one bookkeeping statement. */
typedef struct KeyList
{
	int			n;
	int			cap;
	Datum	   *tbls;
	Datum	   *pks;
} KeyList;

static void
KeyListAdd(KeyList *l, Oid tbl, Jsonb *pk)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 64;
		l->tbls = l->tbls ? repalloc(l->tbls, sizeof(Datum) * l->cap) : palloc(sizeof(Datum) * l->cap);
		l->pks = l->pks ? repalloc(l->pks, sizeof(Datum) * l->cap) : palloc(sizeof(Datum) * l->cap);
	}
	l->tbls[l->n] = ObjectIdGetDatum(tbl);
	l->pks[l->n] = JsonbPGetDatum(pk);
	l->n++;
}

/* Lookup finds a row of the batch by "tbl:pk" (a string that outlives the table). */
static RowState *
Lookup(HTAB *rows, char *key, bool create)
{
	bool		found;
	RowState   *r = hash_search(rows, &key, create ? HASH_ENTER : HASH_FIND, &found);

	if (r != NULL && create && !found)
		memset(((char *) r) + sizeof(r->key), 0, sizeof(RowState) - sizeof(r->key));
	return r;
}


/*
 * ScopeTable reads, for one table of a batch, the rows in the device's
 * scope (as its role, through its shapes) and the ones it holds.
 */
static void
ScopeTable(HTAB *rows, const char *device, Oid role, Oid tbl, OfsFeedChange *c, char **keys, int n)
{
	Oid			stypes[2] = {TEXTOID, OIDOID};
	Datum		sargs[2] = {CStringGetTextDatum(device), ObjectIdGetDatum(tbl)};
	JsonbParseState *st = NULL;
	Jsonb	   *pks;
	bool		isnull;
	Datum		cond;
	uint64		i;

	OfsPlanExec(OfsFixedPlan("feed shape",
							 "SELECT ofs_internal.shape_condition(s.filters) FROM ofs.device_shape s"
							 " WHERE s.device = $1 AND s.tbl = $2 AND cardinality(s.filters) > 0"
							 "   AND EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = s.tbl)",
							 2, stypes, false), sargs, NULL, true, 1);
	if (SPI_processed == 0)
		return;					/* not subscribed: nothing of it is sent */
	cond = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	cond = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(cond));

	/* The table's keys of the batch, once each. */
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int k = 0; k < n; k++)
	{
		RowState   *r;

		if (c[k].tbl != tbl)
			continue;
		r = Lookup(rows, keys[k], false);
		if (r->listed)
			continue;
		r->listed = true;
		pushJsonbValue(&st, WJB_ELEM, OfsJsonbBinary(c[k].pk));
	}
	pks = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));

	{
		Oid			types[4] = {OIDOID, OIDOID, TEXTOID, JSONBOID};
		Datum		args[4] = {ObjectIdGetDatum(role), ObjectIdGetDatum(tbl), cond, JsonbPGetDatum(pks)};
		char		nulls[4] = {' ', ' ', cond ? ' ' : 'n', ' '};

		OfsPlanExec(OfsFixedPlan("feed scope", "SELECT s.pk, s.\"row\" FROM ofs_internal.scope_rows($1, $2, $3, $4) s",
								 4, types, false), args, nulls, true, 0);
		for (i = 0; i < SPI_processed; i++)
		{
			Jsonb	   *pk = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			char	   *key = psprintf("%u:%s", tbl, JsonbToCString(NULL, &pk->root, VARSIZE(pk)));
			RowState   *r = Lookup(rows, key, false);

			if (r == NULL)
				continue;		/* a key the batch does not name */
			r->visible = true;
			r->row = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	{
		Oid			types[3] = {TEXTOID, OIDOID, JSONBOID};
		Datum		args[3] = {CStringGetTextDatum(device), ObjectIdGetDatum(tbl), JsonbPGetDatum(pks)};

		/* One index lookup per changed key, whatever the statistics say. */
		OfsPlanExec(OfsFixedPlan("feed held",
								 "SELECT k.pk FROM pg_catalog.jsonb_array_elements($3) k(pk)"
								 " WHERE EXISTS (SELECT 1 FROM ofs.device_row d WHERE d.device = $1 AND d.tbl = $2"
								 "                  AND d.pk = k.pk AND d.gone_page IS NULL)",
								 3, types, true), args, NULL, true, 0);
		for (i = 0; i < SPI_processed; i++)
		{
			Jsonb	   *pk = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			char	   *key = psprintf("%u:%s", tbl, JsonbToCString(NULL, &pk->root, VARSIZE(pk)));
			RowState   *r = Lookup(rows, key, false);

			if (r != NULL)
				r->held = true;
		}
	}
}

/*
 * Bookkeep runs one statement over a list of (table, key) pairs: $1 the
 * device, $2 and $3 the tables and keys, $4 the generation, $5 the page
 * (NULL when page_null).
 */
static void
Bookkeep(const char *name, const char *sql, const char *device, KeyList *l, int64 gen,
		 int64 page, bool page_null)
{
	Oid			types[5] = {TEXTOID, OIDARRAYOID, JSONBARRAYOID, INT8OID, INT8OID};
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', page_null ? 'n' : ' '};

	if (l->n == 0)
		return;
	args[0] = CStringGetTextDatum(device);
	args[1] = PointerGetDatum(construct_array(l->tbls, l->n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(l->pks, l->n, JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = Int64GetDatum(gen);
	args[4] = Int64GetDatum(page);
	OfsPlanExec(OfsFixedPlan(name, sql, 5, types, false), args, nulls, false, 0);
	l->n = 0;
}

/*
 * OfsPullFeed reads the feed after the feed cursor *feedc for a device
 * acting as role, until room changes are found or the feed has nothing
 * more: adds the changes to out, moves *feedc after them, and says whether
 * the feed may have more (the page filled, or MAX_ROUNDS batches were
 * read).  Rows sent are held with generation gen and page; removals are
 * marked in page.
 */
bool
OfsPullFeed(const char *device, Oid role, char **feedcp, int room, int64 gen, int64 page,
			OfsChangeList *out)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *feedc = *feedcp;
	int			nout = 0;
	bool		feed_more = true;
	KeyList		sent = {0}, own_held = {0}, gone = {0}, own_gone = {0};

	SPI_connect();
	for (int round = 0; round < MAX_ROUNDS && nout < room; round++)
	{
		MemoryContext batchcxt = AllocSetContextCreate(caller, "ofs pull_feed batch", ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(batchcxt);
		OfsFeedRead fr = {0};
		OfsFeedChange *c;
		char	  **keys;
		int			n;
		HTAB	   *rows;
		Oid		   *tables;
		int			ntables = 0;

		fr.f = feedc;
		OfsReadFeed(&fr, room - nout, 1, batchcxt);
		c = fr.c;
		n = fr.got;
		if (n == 0)
		{
			feed_more = false;
			MemoryContextSwitchTo(old);
			MemoryContextDelete(batchcxt);
			break;
		}
		rows = OfsStringHash("ofs pull_feed rows", n, sizeof(RowState), batchcxt);
		tables = palloc(sizeof(Oid) * n);
		keys = palloc(sizeof(char *) * n);
		for (int k = 0; k < n; k++)
		{
			bool		known = false;

			keys[k] = psprintf("%u:%s", c[k].tbl, c[k].pktext);
			(void) Lookup(rows, keys[k], true);
			for (int j = 0; j < ntables && !known; j++)
				known = tables[j] == c[k].tbl;
			if (!known)
				tables[ntables++] = c[k].tbl;
		}
		for (int j = 0; j < ntables; j++)
			ScopeTable(rows, device, role, tables[j], c, keys, n);

		/* Each row once, at its first change in the batch, as it is now. */
		for (int k = 0; k < n; k++)
		{
			RowState   *r = Lookup(rows, keys[k], false);

			if (!c[k].first)
				continue;		/* the first change of a row carries it as it is now */
			{
				OfsRowFacts facts = {r->visible, r->held,
					c[k].own != NULL && strcmp(c[k].own, device) == 0, c[k].last_delete};

				switch (OfsDecideSend(&facts))
				{
					case OFS_SEND_HOLD_OWN:
						if (!r->held)
							KeyListAdd(&own_held, c[k].tbl, c[k].pk);
						break;
					case OFS_SEND_FORGET_OWN:
						KeyListAdd(&own_gone, c[k].tbl, c[k].pk);
						break;
					case OFS_SEND_UPSERT:
						OfsChangeAdd(out, c[k].tname, "upsert", c[k].pktext,
									 JsonbToCString(NULL, &r->row->root, VARSIZE(r->row)));
						nout++;
						if (!r->held)
							KeyListAdd(&sent, c[k].tbl, c[k].pk);
						break;
					case OFS_SEND_REMOVAL:
						OfsChangeAdd(out, c[k].tname, "delete", c[k].pktext, NULL);
						nout++;
						KeyListAdd(&gone, c[k].tbl, c[k].pk);
						break;
					case OFS_SEND_NOTHING:
						break;
				}
			}
		}
		Bookkeep("feed sent",
				 "INSERT INTO ofs.device_row AS d (device, tbl, pk, gen, sent_page)"
				 " SELECT $1, x.t, x.p, $4, $5 FROM unnest($2::oid[], $3::jsonb[]) x(t, p)"
				 " ON CONFLICT ON CONSTRAINT device_row_pkey DO UPDATE SET gone_page = NULL",
				 device, &sent, gen, page, false);
		/* A device's own rows are held without a page: it has them whatever arrives. */
		Bookkeep("feed own held",
				 "INSERT INTO ofs.device_row AS d (device, tbl, pk, gen, sent_page)"
				 " SELECT $1, x.t, x.p, $4, $5 FROM unnest($2::oid[], $3::jsonb[]) x(t, p)"
				 " ON CONFLICT ON CONSTRAINT device_row_pkey DO UPDATE SET gone_page = NULL",
				 device, &own_held, gen, 0, true);
		Bookkeep("feed gone",
				 "UPDATE ofs.device_row d SET gone_page = $5"
				 "  FROM unnest($2::oid[], $3::jsonb[]) x(t, p)"
				 " WHERE d.device = $1 AND d.tbl = x.t AND d.pk = x.p AND $4 IS NOT NULL",
				 device, &gone, gen, page, false);
		Bookkeep("feed own gone",
				 "DELETE FROM ofs.device_row d USING unnest($2::oid[], $3::jsonb[]) x(t, p)"
				 " WHERE d.device = $1 AND d.tbl = x.t AND d.pk = x.p AND $4 IS NOT NULL AND $5 IS NULL",
				 device, &own_gone, gen, 0, true);

		/* A short read may end a batch, not the feed: go on to the next one. */
		MemoryContextSwitchTo(caller);
		feedc = pstrdup(c[n - 1].cursor);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(batchcxt);
		sent = (KeyList) {0};
		own_held = (KeyList) {0};
		gone = (KeyList) {0};
		own_gone = (KeyList) {0};
	}
	SPI_finish();
	*feedcp = feedc;
	return feed_more;
}

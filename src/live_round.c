/*
 * live_round.c: the live round of many devices (ofs_internal.pull_live).
 *
 * ofs_internal.pull_live locks the devices and tells which of them are on the
 * fast path: a cursor on the feed with no snapshot, no changed shape and
 * nothing owed.  For those, this file does the round at once: the feed is
 * read once per distinct cursor (live devices share the feed's head), rows
 * are read once per (role, table, shape) as the role (ofs_internal.scope_rows, with
 * saved plans), which rows each device holds is one statement, each
 * device's share is decided in memory by the rule every pull uses
 * (send_rule.h), and the held-row bookkeeping and the devices' cursors are
 * a few statements with arrays.  A cursor the feed no longer serves, or a
 * role that can no longer read a table, sends its devices the slow way:
 * the pull engine (pull.c) for each, one by one.
 */
#include "ofs.h"
#include "feed_batch.h"
#include "pull.h"
#include "plan_cache.h"
#include "send_rule.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "catalog/pg_collation.h"
#include "utils/fmgrprotos.h"

PG_FUNCTION_INFO_V1(ofs_pull_live);

#define MAX_ROUNDS 20

typedef struct Dev
{
	int			ord;
	char	   *device;
	Oid			role;
	char	   *f;
	int64		v;
	int64		p;
	int64		conf;
	int64		new_page;
	int64		rejections;		/* the version of its rejections */
	int64		confirmed;		/* the newest page it confirmed, as recorded */
	bool		fast;
	int			feed;			/* index into feeds, or -1 */
	int			shape0;			/* its shapes: shapes[shape0 .. shape0 + nshape) */
	int			nshape;
	int			nout;
	StringInfoData out;			/* its changes, as JSON array elements */
} Dev;

/* A row in the scope of a (role, table, filter): the key text and the row. */
typedef struct VisEntry
{
	char	   *key;			/* role/tbl/filter/pk */
	Jsonb	   *row;
} VisEntry;

static char *
VisKey(Oid role, Oid tbl, const char *cond, const char *pktext)
{
	return psprintf("%u/%u/%s/%s", role, tbl, cond ? cond : "\x01", pktext);
}

/*
 * Attempt runs fn(arg) in a subtransaction and says whether it succeeded;
 * an error the feed or a role's reading raises (OF010, 22023, a privilege)
 * is the device's to meet the slow way, not the round's.
 */
static bool
Attempt(void (*fn) (void *), void *arg)
{
	ErrorData  *e = OfsTrySubtransaction(fn, arg);

	/* What says nothing of one device is the round's: it fails. */
	if (e != NULL && OfsErrorIsTransient(e->sqlerrcode))
		ReThrowError(e);
	return e == NULL;
}

typedef struct FeedArg
{
	OfsFeedRead *fd;
	int			room;
} FeedArg;

static void
ReadFeedStep(void *arg)
{
	FeedArg    *a = arg;
	MemoryContext outer = CurrentMemoryContext;

	SPI_connect();
	OfsReadFeed(a->fd, a->room, MAX_ROUNDS, outer);
	SPI_finish();
}

typedef struct ScopeArg
{
	Oid			role;
	Oid			tbl;
	char	   *cond;
	Jsonb	   *pks;
	HTAB	   *vis;
	MemoryContext cxt;			/* where the rows read are kept */
} ScopeArg;

static void
ScopeStep(void *arg)
{
	ScopeArg   *a = arg;
	Oid			types[4] = {OIDOID, OIDOID, TEXTOID, JSONBOID};
	Datum		args[4] = {ObjectIdGetDatum(a->role), ObjectIdGetDatum(a->tbl),
	a->cond ? CStringGetTextDatum(a->cond) : (Datum) 0, JsonbPGetDatum(a->pks)};
	char		nulls[4] = {' ', ' ', a->cond ? ' ' : 'n', ' '};

	SPI_connect();
	OfsPlanExec(OfsFixedPlan("live scope", "SELECT s.pk, s.\"row\" FROM ofs_internal.scope_rows($1, $2, $3, $4) s",
							 4, types, false), args, nulls, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Jsonb	   *pk = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(a->cxt);	/* the key lives as long as the table */
		char	   *key = VisKey(a->role, a->tbl, a->cond, JsonbToCString(NULL, &pk->root, VARSIZE(pk)));
		VisEntry   *e = hash_search(a->vis, &key, HASH_ENTER, NULL);

		e->row = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

static Jsonb *
VisRow(HTAB *vis, Oid role, Oid tbl, const char *cond, const char *pktext)
{
	char	   *key = VisKey(role, tbl, cond, pktext);
	VisEntry   *e = hash_search(vis, &key, HASH_FIND, NULL);

	return e ? e->row : NULL;
}

/* An index by name: a device, a feed cursor, a (role, table, filter). */
typedef struct IndexEntry
{
	char	   *key;
	int			idx;
} IndexEntry;

/* A device's shape on a table: its condition (NULL: the whole table). */
typedef struct Shape
{
	int			dev;
	Oid			tbl;
	char	   *cond;
} Shape;

/* Arrays of (device, table, key, page) for one bookkeeping statement. */
typedef struct Rows
{
	int			n, cap;
	Datum	   *dev, *tbl, *pk, *page, *gen;
	bool	   *page_null;
} Rows;

#define GROW(p, T) ((p) = (p) ? repalloc((p), sizeof(T) * r->cap) : palloc(sizeof(T) * r->cap))

static void
RowsAdd(Rows *r, const char *dev, Oid tbl, Jsonb *pk, int64 gen, int64 page, bool page_null)
{
	if (r->n == r->cap)
	{
		r->cap = r->cap ? r->cap * 2 : 64;
		GROW(r->dev, Datum);
		GROW(r->tbl, Datum);
		GROW(r->pk, Datum);
		GROW(r->page, Datum);
		GROW(r->gen, Datum);
		GROW(r->page_null, bool);
	}
	r->dev[r->n] = CStringGetTextDatum(dev);
	r->tbl[r->n] = ObjectIdGetDatum(tbl);
	r->pk[r->n] = JsonbPGetDatum(pk);
	r->gen[r->n] = Int64GetDatum(gen);
	r->page[r->n] = Int64GetDatum(page);
	r->page_null[r->n] = page_null;
	r->n++;
}

static Datum
TextArray(Datum *v, int n)
{
	return PointerGetDatum(construct_array(v, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* RowsRun runs a statement over rows: $1 devices, $2 tables, $3 keys, $4 pages, $5 generations. */
static void
RowsRun(const char *name, const char *sql, Rows *r)
{
	Oid			types[5] = {TEXTARRAYOID, OIDARRAYOID, JSONBARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[5];
	int			dims[1] = {r->n};
	int			lbs[1] = {1};

	if (r->n == 0)
		return;
	args[0] = TextArray(r->dev, r->n);
	args[1] = PointerGetDatum(construct_array(r->tbl, r->n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(r->pk, r->n, JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_md_array(r->page, r->page_null, 1, dims, lbs, INT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(r->gen, r->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	OfsPlanExec(OfsFixedPlan(name, sql, 5, types, false), args, NULL, false, 0);
}

static void
AppendChange(StringInfo out, int *nout, const char *tname, const char *op, Jsonb *pk, Jsonb *row)
{
	Jsonb	   *obj = OfsChangeJsonb(tname, op, pk, row);

	if ((*nout)++ > 0)
		appendStringInfoString(out, ", ");
	(void) JsonbToCString(out, &obj->root, VARSIZE(obj));
}


/*
 * DeviceConfirmations lists the fast devices and the pages they confirmed
 * (only those whose confirmation moved past what is recorded, if moved).
 */
static int
DeviceConfirmations(Dev *devs, int ndevs, bool moved, Datum *names, Datum *pages)
{
	int			n = 0;

	for (int i = 0; i < ndevs; i++)
		if (devs[i].fast && (!moved || devs[i].conf > devs[i].confirmed))
		{
			names[n] = CStringGetTextDatum(devs[i].device);
			pages[n] = Int64GetDatum(devs[i].conf);
			n++;
		}
	return n;
}

/* RunPerDevice runs a statement over (device, page) pairs: $1 text[], $2 bigint[]. */
static void
RunPerDevice(const char *name, const char *sql, Datum *names, Datum *pages, int n)
{
	Oid			types[2] = {TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[2];

	if (n == 0)
		return;
	args[0] = TextArray(names, n);
	args[1] = PointerGetDatum(construct_array(pages, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	OfsPlanExec(OfsFixedPlan(name, sql, 2, types, false), args, NULL, false, 0);
}
/*
 * LiveRound makes the round of the fast devices of devs: emits the
 * answer of those whose feed had something new, and marks as not fast
 * those that must be pulled for one by one.
 */
static void
LiveRound(Dev *devs, int ndevs, int room, OfsLiveEmit emit, void *emit_arg)
{
	OfsFeedRead *feeds;
	int			nfeeds = 0;
	Shape	   *shapes = NULL;
	int			nshapes = 0;
	HTAB	   *vis;
	HTAB	   *byname;
	Rows		sent = {0}, gone = {0}, own_gone = {0};
	MemoryContext cxt = CurrentMemoryContext;

	/* The feed, once per distinct cursor. */
	feeds = palloc0(sizeof(OfsFeedRead) * Max(ndevs, 1));
	byname = OfsStringHash("ofs live cursors", ndevs, sizeof(IndexEntry), cxt);
	for (int i = 0; i < ndevs; i++)
	{
		bool		found;
		IndexEntry *e = hash_search(byname, &devs[i].f, HASH_ENTER, &found);
		int			j;

		if (!found)
		{
			FeedArg		a = {&feeds[nfeeds], room};

			e->idx = nfeeds;
			feeds[nfeeds].f = devs[i].f;
			feeds[nfeeds].ok = Attempt(ReadFeedStep, &a);
			nfeeds++;
		}
		j = e->idx;
		devs[i].feed = j;
		if (!feeds[j].ok)
			devs[i].fast = false;	/* a cursor the feed no longer serves */
	}

	SPI_connect();
	/* The shapes of the devices whose feed had something. */
	{
		Datum	   *names = palloc(sizeof(Datum) * Max(ndevs, 1));
		int			n = 0;
		Oid			types[1] = {TEXTARRAYOID};
		Datum		args[1];

		for (int i = 0; i < ndevs; i++)
			if (devs[i].fast && feeds[devs[i].feed].got > 0)
				names[n++] = CStringGetTextDatum(devs[i].device);
		args[0] = TextArray(names, n);
		if (n > 0)
		{
			HTAB	   *devices = OfsStringHash("ofs live devices", n, sizeof(IndexEntry), CurrentMemoryContext);

			for (int i = 0; i < ndevs; i++)
			{
				IndexEntry *e = hash_search(devices, &devs[i].device, HASH_ENTER, NULL);

				e->idx = i;
			}
			/* In device order: each device's shapes are together. */
			OfsPlanExec(OfsFixedPlan("live shapes",
									 "SELECT s.device, s.tbl, ofs_internal.shape_condition(s.filters) FROM ofs.device_shape s"
									 " WHERE s.device = ANY ($1) AND cardinality(s.filters) > 0"
									 "   AND EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = s.tbl)"
									 " ORDER BY s.device",
									 1, types, false), args, NULL, true, 0);
			shapes = MemoryContextAlloc(cxt, sizeof(Shape) * Max(SPI_processed, 1));
			for (uint64 k = 0; k < SPI_processed; k++)
			{
				HeapTuple	t = SPI_tuptable->vals[k];
				TupleDesc	d = SPI_tuptable->tupdesc;
				bool		isnull;
				char	   *dev = SPI_getvalue(t, d, 1);
				char	   *cond = SPI_getvalue(t, d, 3);
				IndexEntry *e = hash_search(devices, &dev, HASH_FIND, NULL);
				Dev		   *owner;

				if (e == NULL)
					continue;
				owner = &devs[e->idx];
				if (owner->nshape == 0)
					owner->shape0 = nshapes;
				owner->nshape++;
				shapes[nshapes].dev = e->idx;
				shapes[nshapes].tbl = DatumGetObjectId(SPI_getbinval(t, d, 2, &isnull));
				shapes[nshapes].cond = cond ? MemoryContextStrdup(cxt, cond) : NULL;
				nshapes++;
			}
		}
	}
	SPI_finish();

	/*
	 * Rows as each role and shape sees them, once per (role, table, shape):
	 * the keys of the table in the feeds that the role's fast devices read.
	 */
	vis = OfsStringHash("ofs live rows", 256, sizeof(VisEntry), cxt);
	{
		HTAB	   *groups = OfsStringHash("ofs live shapes", nshapes, sizeof(IndexEntry), cxt);
		List	  **role_feeds = palloc0(sizeof(List *) * Max(ndevs, 1));	/* by a device of the role */
		HTAB	   *roles = OfsStringHash("ofs live roles", ndevs, sizeof(IndexEntry), cxt);

		/* Which feeds each role's fast devices read (indexed by the role's first device). */
		for (int i = 0; i < ndevs; i++)
		{
			char	   *key = psprintf("%u", devs[i].role);
			bool		found;
			IndexEntry *e;

			if (!devs[i].fast)
				continue;
			e = hash_search(roles, &key, HASH_ENTER, &found);
			if (!found)
				e->idx = i;
			role_feeds[e->idx] = list_append_unique_int(role_feeds[e->idx], devs[i].feed);
		}
		for (int s = 0; s < nshapes; s++)
		{
			Dev		   *d = &devs[shapes[s].dev];
			char	   *gkey;
			char	   *rkey;
			bool		found;
			JsonbParseState *st = NULL;
			int			npk = 0;
			HTAB	   *listed;
			IndexEntry *re;
			ListCell   *lc;
			ScopeArg	a;

			if (!d->fast)
				continue;
			gkey = psprintf("%u/%u/%s", d->role, shapes[s].tbl, shapes[s].cond ? shapes[s].cond : "\x01");
			hash_search(groups, &gkey, HASH_ENTER, &found);
			if (found)
				continue;
			rkey = psprintf("%u", d->role);
			re = hash_search(roles, &rkey, HASH_FIND, NULL);
			listed = OfsStringHash("ofs live keys", 64, sizeof(char *), CurrentMemoryContext);
			pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
			foreach(lc, re ? role_feeds[re->idx] : NIL)
			{
				OfsFeedRead *fd = &feeds[lfirst_int(lc)];

				for (int k = 0; k < fd->got; k++)
				{
					OfsFeedChange *c = &fd->c[k];
					JsonbValue	v;

					if (!c->first || c->tbl != shapes[s].tbl)
						continue;
					hash_search(listed, &c->pktext, HASH_ENTER, &found);
					if (found)
						continue;
					v.type = jbvBinary;
					v.val.binary.data = &c->pk->root;
					v.val.binary.len = VARSIZE(c->pk) - VARHDRSZ;
					pushJsonbValue(&st, WJB_ELEM, &v);
					npk++;
				}
			}
			a.pks = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));
			if (npk == 0)
				continue;
			a.role = d->role;
			a.tbl = shapes[s].tbl;
			a.cond = shapes[s].cond;
			a.vis = vis;
			a.cxt = cxt;
			if (!Attempt(ScopeStep, &a))
			{
				/* The role may no longer read the table (say): ofs.pull sorts it out. */
				for (int i = 0; i < ndevs; i++)
					if (devs[i].role == d->role)
						devs[i].fast = false;
			}
		}
	}

	SPI_connect();
	/*
	 * The candidates: for each fast device, in feed order, the first change
	 * of each row of a table it has a shape on.  Which of them it holds is
	 * one statement.
	 */
	{
		Rows		cand = {0};
		int		   *cdev;
		int		   *cchg;
		int		   *cshape;
		int			ncap = 64;
		bool	   *held;

		cdev = palloc(sizeof(int) * ncap);
		cchg = palloc(sizeof(int) * ncap);
		cshape = palloc(sizeof(int) * ncap);
		for (int i = 0; i < ndevs; i++)
		{
			Dev		   *d = &devs[i];
			OfsFeedRead *fd = &feeds[d->feed];

			if (!d->fast)
				continue;
			for (int k = 0; k < fd->got; k++)
			{
				int			sh = -1;

				if (!fd->c[k].first)
					continue;
				for (int s = d->shape0; s < d->shape0 + d->nshape && sh < 0; s++)
					if (shapes[s].tbl == fd->c[k].tbl)
						sh = s;
				if (sh < 0)
					continue;
				if (cand.n == ncap)
				{
					ncap *= 2;
					cdev = repalloc(cdev, sizeof(int) * ncap);
					cchg = repalloc(cchg, sizeof(int) * ncap);
					cshape = repalloc(cshape, sizeof(int) * ncap);
				}
				cdev[cand.n] = i;
				cchg[cand.n] = k;
				cshape[cand.n] = sh;
				RowsAdd(&cand, d->device, fd->c[k].tbl, fd->c[k].pk, 0, 0, false);
			}
		}
		held = palloc0(sizeof(bool) * Max(cand.n, 1));
		if (cand.n > 0)
		{
			Oid			types[3] = {TEXTARRAYOID, OIDARRAYOID, JSONBARRAYOID};
			Datum		args[3] = {TextArray(cand.dev, cand.n),
				PointerGetDatum(construct_array(cand.tbl, cand.n, OIDOID, sizeof(Oid), true, TYPALIGN_INT)),
			PointerGetDatum(construct_array(cand.pk, cand.n, JSONBOID, -1, false, TYPALIGN_INT))};

			OfsPlanExec(OfsFixedPlan("live held",
									 "SELECT x.i FROM unnest($1::text[], $2::oid[], $3::jsonb[]) WITH ORDINALITY x(d, t, p, i)"
									 " WHERE EXISTS (SELECT 1 FROM ofs.device_row h WHERE h.device = x.d AND h.tbl = x.t"
									 "                  AND h.pk = x.p AND h.gone_page IS NULL)",
									 3, types, false), args, NULL, true, 0);
			for (uint64 k = 0; k < SPI_processed; k++)
			{
				bool		isnull;
				int64		i = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1, &isnull));

				held[i - 1] = true;
			}
		}

		/* What each device gets, by the rule every pull uses. */
		for (int x = 0; x < cand.n; x++)
		{
			Dev		   *d = &devs[cdev[x]];
			OfsFeedChange *c = &feeds[d->feed].c[cchg[x]];
			Jsonb	   *row = VisRow(vis, d->role, c->tbl, shapes[cshape[x]].cond, c->pktext);
			OfsRowFacts facts;

			if (!d->fast)
				continue;
			facts.visible = row != NULL;
			facts.held = held[x];
			facts.own_all = c->own != NULL && strcmp(c->own, d->device) == 0;
			facts.last_delete = c->last_delete;
			switch (OfsDecideSend(&facts))
			{
				case OFS_SEND_UPSERT:
					AppendChange(&d->out, &d->nout, c->tname, "upsert", c->pk, row);
					if (!held[x])
						RowsAdd(&sent, d->device, c->tbl, c->pk, d->v, d->new_page, false);
					break;
				case OFS_SEND_REMOVAL:
					AppendChange(&d->out, &d->nout, c->tname, "delete", c->pk, NULL);
					RowsAdd(&gone, d->device, c->tbl, c->pk, d->v, d->new_page, false);
					break;
				case OFS_SEND_HOLD_OWN:
					/* Its own rows are held without a page: they are its own. */
					if (!held[x])
						RowsAdd(&sent, d->device, c->tbl, c->pk, d->v, 0, true);
					break;
				case OFS_SEND_FORGET_OWN:
					RowsAdd(&own_gone, d->device, c->tbl, c->pk, d->v, 0, true);
					break;
				case OFS_SEND_NOTHING:
					break;
			}
		}
	}

	RowsRun("live sent",
			"INSERT INTO ofs.device_row AS h (device, tbl, pk, gen, sent_page)"
			" SELECT x.d, x.t, x.p, x.g, x.pg"
			"   FROM unnest($1::text[], $2::oid[], $3::jsonb[], $4::bigint[], $5::bigint[]) x(d, t, p, pg, g)"
			" ON CONFLICT ON CONSTRAINT device_row_pkey DO UPDATE SET gone_page = NULL", &sent);
	RowsRun("live gone",
			"UPDATE ofs.device_row h SET gone_page = x.pg"
			"  FROM unnest($1::text[], $2::oid[], $3::jsonb[], $4::bigint[], $5::bigint[]) x(d, t, p, pg, g)"
			" WHERE h.device = x.d AND h.tbl = x.t AND h.pk = x.p", &gone);
	RowsRun("live own gone",
			"DELETE FROM ofs.device_row h"
			" USING unnest($1::text[], $2::oid[], $3::jsonb[], $4::bigint[], $5::bigint[]) x(d, t, p, pg, g)"
			" WHERE h.device = x.d AND h.tbl = x.t AND h.pk = x.p", &own_gone);

	/*
	 * Removals the devices confirmed are forgotten; then each fast
	 * device whose feed had something gets its page and its cursor.
	 */
	{
		Datum	   *names = palloc(sizeof(Datum) * Max(ndevs, 1));
		Datum	   *confs = palloc(sizeof(Datum) * Max(ndevs, 1));
		Datum	   *pages = palloc(sizeof(Datum) * Max(ndevs, 1));
		bool	   *pages_null = palloc(sizeof(bool) * Max(ndevs, 1));
		Datum	   *cursors = palloc(sizeof(Datum) * Max(ndevs, 1));
		Datum	   *caught = palloc(sizeof(Datum) * Max(ndevs, 1));
		int			nfast = 0;
		int			nupd = 0;
		int			dims[1];
		int			lbs[1] = {1};

		nfast = DeviceConfirmations(devs, ndevs, false, names, confs);
		RunPerDevice("live forget",
					 "DELETE FROM ofs.device_row h USING unnest($1::text[], $2::bigint[]) x(d, c)"
					 " WHERE h.device = x.d AND h.gone_page <= x.c", names, confs, nfast);
		for (int i = 0; i < ndevs; i++)
		{
			Dev		   *d = &devs[i];
			OfsFeedRead *fd = &feeds[d->feed];
			JsonbParseState *st = NULL;
			JsonbValue	k, v;
			Jsonb	   *cursor;

			if (!d->fast || fd->got == 0)
				continue;
			pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
			k.type = jbvString;
			k.val.string.val = "f";
			k.val.string.len = 1;
			pushJsonbValue(&st, WJB_KEY, &k);
			v.type = jbvString;
			v.val.string.val = fd->last_cursor;
			v.val.string.len = strlen(fd->last_cursor);
			pushJsonbValue(&st, WJB_VALUE, &v);
			k.val.string.val = "v";
			pushJsonbValue(&st, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric(d->v);
			pushJsonbValue(&st, WJB_VALUE, &v);
			k.val.string.val = "p";
			pushJsonbValue(&st, WJB_KEY, &k);
			v.val.numeric = int64_to_numeric(d->nout > 0 ? d->new_page : d->p);
			pushJsonbValue(&st, WJB_VALUE, &v);
			k.val.string.val = "s";
			pushJsonbValue(&st, WJB_KEY, &k);
			pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
			pushJsonbValue(&st, WJB_END_ARRAY, NULL);
			cursor = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));

			names[nupd] = CStringGetTextDatum(d->device);
			pages[nupd] = Int64GetDatum(d->new_page);
			pages_null[nupd] = d->nout == 0;
			cursors[nupd] = CStringGetTextDatum(JsonbToCString(NULL, &cursor->root, VARSIZE(cursor)));
			caught[nupd] = BoolGetDatum(fd->n < room);
			confs[nupd] = Int64GetDatum(Max(d->conf, d->confirmed));
			d->confirmed = Max(d->conf, d->confirmed);
			nupd++;

			/* The answer: {more, changes[, rejections]}, and the cursor. */
			emit(emit_arg, d->ord,
				 psprintf(d->rejections > 0 ? "{\"more\": %s, \"changes\": [%s], \"rejections\": " INT64_FORMAT "}"
						  : "{\"more\": %s, \"changes\": [%s]}",
						  fd->n >= room ? "true" : "false", d->out.data, d->rejections),
				 TextDatumGetCString(cursors[nupd - 1]), d->nout, fd->n >= room, NULL, NULL);
		}
		if (nupd > 0)
		{
			Oid			types[5] = {TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID, BOOLARRAYOID, INT8ARRAYOID};
			Datum		args[5];

			dims[0] = nupd;
			args[0] = TextArray(names, nupd);
			args[1] = PointerGetDatum(construct_md_array(pages, pages_null, 1, dims, lbs, INT8OID, 8,
														 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			args[2] = TextArray(cursors, nupd);
			args[3] = PointerGetDatum(construct_array(caught, nupd, BOOLOID, 1, true, TYPALIGN_CHAR));
			args[4] = PointerGetDatum(construct_array(confs, nupd, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			OfsPlanExec(OfsFixedPlan("live devices",
									 "UPDATE ofs.device dv SET page_seq = coalesce(x.ps, dv.page_seq), last_contact = now(),"
									 "       last_cursor = x.c, caught_up_at = CASE WHEN x.up THEN now() ELSE dv.caught_up_at END,"
									 "       confirmed_page = x.cp"
									 "  FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[], $5::bigint[])"
									 "       x(d, ps, c, up, cp)"
									 " WHERE dv.device = x.d", 5, types, false),
						args, NULL, false, 0);
		}

		/*
		 * What a device confirmed is kept (it may not go back behind it,
		 * pull.c); the devices without a page this round are written only
		 * when their confirmation moved.
		 */
		nupd = DeviceConfirmations(devs, ndevs, true, names, confs);
		RunPerDevice("live confirmed",
					 "UPDATE ofs.device dv SET confirmed_page = greatest(dv.confirmed_page, x.c)"
					 "  FROM unnest($1::text[], $2::bigint[]) x(d, c) WHERE dv.device = x.d", names, confs, nupd);
	}
	SPI_finish();
}

static int
CompareText(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * The devices' last pages and their fast-path test, for all devices at
 * once; their cursors are read in C (pull.c), $2 NULL for one that is not
 * a pull cursor (it goes the slow way, which says what is wrong).
 */
#define TRIAGE_SQL \
	"SELECT a.i::int, a.device, ro.oid, a.f, a.v, a.p, a.conf, dv.page_seq + 1," \
	"       NOT a.snaps" \
	"       AND a.v >= coalesce((SELECT max(s.version) FROM ofs.device_shape s WHERE s.device = a.device), 0)" \
	"       AND NOT EXISTS (SELECT 1 FROM ofs.device_row h WHERE h.device = a.device AND h.gone_page > a.p)" \
	"       AND NOT EXISTS (SELECT 1 FROM ofs.device_row h WHERE h.device = a.device AND h.sent_page > a.p)," \
	"       dv.rejections_version, dv.confirmed_page" \
	"  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::boolean[])" \
	"       WITH ORDINALITY AS a(device, f, v, p, conf, snaps, i)" \
	"  JOIN ofs.device dv ON dv.device = a.device" \
	"                    AND dv.revoked_at IS NULL AND coalesce(dv.expires_at > now(), true)" \
	"  JOIN pg_catalog.pg_roles ro ON ro.rolname = dv.role" \
	" WHERE a.f IS NOT NULL"

typedef struct SlowArg
{
	const char *device;
	const char *since;
	const char *confirmed;
	int			room;
	OfsPullAnswer ans;
} SlowArg;

static void
SlowStep(void *arg)
{
	SlowArg    *a = arg;

	OfsPull(a->device, a->since, a->room, a->confirmed, &a->ans);
}

/* SlowPull is the pull of one device of a live round, in a subtransaction of its own. */
static void
SlowPull(int ord, const char *device, const char *since, const char *confirmed, int room,
		 OfsLiveEmit emit, void *emit_arg)
{
	SlowArg		a = {device, since, confirmed, room};
	ErrorData  *e = OfsTrySubtransaction(SlowStep, &a);

	if (e == NULL)
	{
		emit(emit_arg, ord, OfsPullAnswerJson(&a.ans, false), a.ans.cursor, a.ans.changes.n, a.ans.more,
			 NULL, NULL);
		return;
	}
	/* A cancel or a timeout is the round's, not the device's. */
	if (e->sqlerrcode == ERRCODE_QUERY_CANCELED || e->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		ReThrowError(e);
	emit(emit_arg, ord, NULL, NULL, 0, false, e->message ? e->message : "unknown error",
		 unpack_sql_state(e->sqlerrcode));
}

static Datum
TextArrayOf(char **v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = v[i] == NULL;
		d[i] = v[i] ? CStringGetTextDatum(v[i]) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * OfsPullLive pulls for many live devices at once (pull.h): the devices
 * on the fast path (a cursor on the feed with no snapshot under way, no
 * changed shape and nothing owed) make one round together; the others are
 * pulled for one by one, as ofs.pull would.
 */
void
OfsPullLive(int n, char **devices, char **cursors, char **confirmed, int room, OfsLiveEmit emit,
			void *emit_arg)
{
	Dev		   *devs;
	int			ndevs = 0;
	bool	   *fast = palloc0(sizeof(bool) * Max(n, 1));
	MemoryContext cxt = CurrentMemoryContext;

	room = Min(Max(room, 1), MAX_PAGE_ROWS);

	/* The pulls of one device happen one at a time (in name order: no deadlock). */
	{
		char	  **sorted = palloc(sizeof(char *) * Max(n, 1));
		int			ns = 0;

		for (int i = 0; i < n; i++)
			if (devices[i] != NULL)
				sorted[ns++] = devices[i];
		qsort(sorted, ns, sizeof(char *), CompareText);
		for (int i = 0; i < ns; i++)
			if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
				DirectFunctionCall2(pg_advisory_xact_lock_int4,
									DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum("ofs.pull")),
									DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum(sorted[i])));
	}
	/* What follows sees what the pulls it waited for wrote. */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	SPI_connect();
	{
		Oid			types[6] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID};
		char	  **fs = palloc(sizeof(char *) * Max(n, 1));
		Datum	   *vs = palloc(sizeof(Datum) * Max(n, 1));
		Datum	   *ps = palloc(sizeof(Datum) * Max(n, 1));
		Datum	   *confs = palloc(sizeof(Datum) * Max(n, 1));
		Datum	   *snaps = palloc(sizeof(Datum) * Max(n, 1));
		Datum		args[6];

		for (int i = 0; i < n; i++)
		{
			int64		v = 0, p = 0;
			bool		snapshots = false;

			if (!OfsPullCursorPosition(cursors[i], &fs[i], &v, &p, &snapshots))
				fs[i] = NULL;
			vs[i] = Int64GetDatum(v);
			ps[i] = Int64GetDatum(p);
			confs[i] = Int64GetDatum(confirmed[i] ? OfsConfirmedPage(confirmed[i], p) : p);
			snaps[i] = BoolGetDatum(snapshots);
		}
		args[0] = TextArrayOf(devices, n);
		args[1] = TextArrayOf(fs, n);
		args[2] = PointerGetDatum(construct_array(vs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[3] = PointerGetDatum(construct_array(ps, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = PointerGetDatum(construct_array(confs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[5] = PointerGetDatum(construct_array(snaps, n, BOOLOID, 1, true, TYPALIGN_CHAR));
		OfsPlanExec(OfsFixedPlan("live triage", TRIAGE_SQL, 6, types, false), args, NULL, true, 0);
		devs = MemoryContextAllocZero(cxt, sizeof(Dev) * Max(SPI_processed, 1));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	t = SPI_tuptable->vals[r];
			TupleDesc	d = SPI_tuptable->tupdesc;
			bool		isnull;
			MemoryContext old;
			Dev		   *dv = &devs[ndevs];

			if (!DatumGetBool(SPI_getbinval(t, d, 9, &isnull)) || isnull)
				continue;
			old = MemoryContextSwitchTo(cxt);
			dv->ord = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
			dv->device = SPI_getvalue(t, d, 2);
			dv->role = DatumGetObjectId(SPI_getbinval(t, d, 3, &isnull));
			dv->f = SPI_getvalue(t, d, 4);
			dv->v = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
			dv->p = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
			dv->conf = DatumGetInt64(SPI_getbinval(t, d, 7, &isnull));
			dv->new_page = DatumGetInt64(SPI_getbinval(t, d, 8, &isnull));
			dv->rejections = DatumGetInt64(SPI_getbinval(t, d, 10, &isnull));
			dv->confirmed = DatumGetInt64(SPI_getbinval(t, d, 11, &isnull));
			dv->fast = true;
			dv->feed = -1;
			initStringInfo(&dv->out);
			MemoryContextSwitchTo(old);
			ndevs++;
		}
	}
	SPI_finish();

	LiveRound(devs, ndevs, room, emit, emit_arg);
	for (int i = 0; i < ndevs; i++)
		if (devs[i].fast && devs[i].ord >= 1 && devs[i].ord <= n)
			fast[devs[i].ord - 1] = true;
	PopActiveSnapshot();

	/* The rest, one by one. */
	for (int i = 0; i < n; i++)
		if (!fast[i])
			SlowPull(i + 1, devices[i], cursors[i], confirmed[i], room, emit, emit_arg);
}

typedef struct SqlEmit
{
	ReturnSetInfo *rsinfo;
} SqlEmit;

/* SqlEmitResult puts a device's answer as (ord, result jsonb) in the SQL function's result. */
static void
SqlEmitResult(void *arg, int ord, const char *body, const char *cursor, int nchanges, bool more,
			  const char *error, const char *sqlstate)
{
	SqlEmit    *e = arg;
	StringInfoData b;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	initStringInfo(&b);
	if (error)
	{
		appendStringInfoString(&b, "{\"error\": ");
		escape_json(&b, error);
		appendStringInfo(&b, ", \"sqlstate\": \"%s\"}", sqlstate);
	}
	else
	{
		/* body is {"more": .., ...}: the cursor goes first. */
		appendStringInfoString(&b, "{\"cursor\": ");
		escape_json(&b, cursor);
		appendStringInfo(&b, ", %s", body + 1);
	}
	values[0] = Int32GetDatum(ord);
	values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(b.data));
	tuplestore_putvalues(e->rsinfo->setResult, e->rsinfo->setDesc, values, nulls);
}

/*
 * pull_live(devices, cursors, confirmed, max_rows) pulls for many live
 * devices at once: returns (ord, result) per device, result a "changes"
 * answer, or {error, sqlstate} for a device that cannot pull; a device
 * whose feed had nothing new gets no row.
 */
Datum
ofs_pull_live(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *arrays[3];
	bool	   *nulls[3];
	int			counts[3];
	char	  **texts[3];
	SqlEmit		e = {rsinfo};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ofs_internal.pull_live needs devices, cursors and confirmed cursors")));
	for (int k = 0; k < 3; k++)
	{
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(k), TEXTOID, -1, false, TYPALIGN_INT,
						  &arrays[k], &nulls[k], &counts[k]);
		texts[k] = palloc(sizeof(char *) * Max(counts[k], 1));
		for (int i = 0; i < counts[k]; i++)
			texts[k][i] = nulls[k][i] ? NULL : TextDatumGetCString(arrays[k][i]);
	}
	if (counts[1] != counts[0] || counts[2] != counts[0])
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ofs_internal.pull_live needs as many cursors and confirmed cursors as devices")));
	InitMaterializedSRF(fcinfo, 0);
	OfsPullLive(counts[0], texts[0], texts[1], texts[2], PG_ARGISNULL(3) ? MAX_PAGE_ROWS : PG_GETARG_INT32(3),
				SqlEmitResult, &e);
	return (Datum) 0;
}

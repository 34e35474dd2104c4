/*
 * pull.c: a device's pull (ofs.pull), the engine's front.
 *
 * A pull answers with the next changes for a device after its cursor, as
 * its role sees them: first removals it is owed, then its snapshots (each
 * table's rows in scope in key order, then the removal of rows of older
 * generations not sent again), then the feed (pull_feed.c).  The cursor is
 * JSON: {"f": feed cursor, "v": last shape version seen, "p": last page,
 * "s": [snapshots under way: {"t": table, "g": generation, "n": total,
 * "d": done, "a": last key sent, "stale": rows all sent}]}.  Pages are
 * numbered per device; the held-row bookkeeping (ofs.device_row) is keyed
 * by them so that a page that never arrived is sent again and its rows are
 * not taken as held (docs/DESIGN.md, "What a pull writes").
 *
 * Rows are encoded once, as JSON text, and the answer is built as text:
 * the worker sends it as it is, and ofs.pull reads it into jsonb once.
 */
#include "ofs.h"
#include "feed_cursor.h"
#include "plan_cache.h"
#include "pull.h"
#include "scope.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(ofs_pull);

/* A removal owed and not yet carried by a page. */
#define GONE_OWED PG_INT64_MAX

typedef struct SnapEntry
{
	Oid			t;
	int64		g;
	bool		counted;		/* n and d are known */
	int64		n;
	int64		d;
	Jsonb	   *a;				/* after this key; NULL from the start */
	bool		stale;			/* its rows are all sent: removals remain */
	bool		fresh;			/* the device held no row of the table when it began */
} SnapEntry;

typedef struct PullCursor
{
	char	   *f;
	int64		v;
	int64		p;
	int			nsnaps;
	int			cap;
	SnapEntry  *snaps;
} PullCursor;

static void
BadCursor(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid pull cursor"),
			 errdetail("A cursor is the opaque text of a \"changes\" answer."),
			 errhint("Send the cursor of the last changes the device applied, or none to start afresh.")));
}

/* ParseJson reads JSON text into jsonb, or NULL when it is not JSON. */
static Jsonb *
ParseJson(const char *text)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen((char *) text, strlen(text), GetDatabaseEncoding(), true);

	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

static bool
Get(JsonbContainer *in, const char *key, JsonbValue *v)
{
	return getKeyJsonValueFromContainer(in, key, strlen(key), v) != NULL;
}

/* Int64Of reads a whole number, as JSON number or string, optionally non-negative only. */
static bool
Int64Of(JsonbValue *v, bool unsigned_only, int64 *out)
{
	char	   *s;
	char	   *end;

	if (v->type == jbvNumeric)
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	else if (v->type == jbvString)
		s = pnstrdup(v->val.string.val, v->val.string.len);
	else
		return false;
	if (*s == '\0' || (unsigned_only && *s == '-') || !(isdigit((unsigned char) *s) || *s == '-'))
		return false;
	errno = 0;
	*out = strtoi64(s, &end, 10);
	return errno == 0 && *end == '\0' && end != s && isdigit((unsigned char) end[-1]);
}

static SnapEntry *
AddSnap(PullCursor *c)
{
	if (c->nsnaps == c->cap)
	{
		c->cap = c->cap ? c->cap * 2 : 8;
		c->snaps = c->snaps ? repalloc(c->snaps, sizeof(SnapEntry) * c->cap)
			: palloc(sizeof(SnapEntry) * c->cap);
	}
	memset(&c->snaps[c->nsnaps], 0, sizeof(SnapEntry));
	return &c->snaps[c->nsnaps++];
}

static void
DropSnap(PullCursor *c, int i)
{
	memmove(&c->snaps[i], &c->snaps[i + 1], sizeof(SnapEntry) * (c->nsnaps - i - 1));
	c->nsnaps--;
}

/* ReadCursor reads a pull cursor into c; false when it is not one. */
static bool
ReadCursor(const char *since, PullCursor *c)
{
	Jsonb	   *j = ParseJson(since);
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	e;

	memset(c, 0, sizeof(*c));
	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return false;
	if (!Get(&j->root, "f", &v) || v.type != jbvString)
		return false;
	c->f = pnstrdup(v.val.string.val, v.val.string.len);
	if (!Get(&j->root, "v", &v) || !Int64Of(&v, false, &c->v) ||
		!Get(&j->root, "p", &v) || !Int64Of(&v, false, &c->p) ||
		!Get(&j->root, "s", &v) || v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
		return false;
	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		SnapEntry  *sn;
		JsonbValue	x;
		int64		t;

		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvBinary || !JsonContainerIsObject(e.val.binary.data))
			return false;
		sn = AddSnap(c);
		if (!Get(e.val.binary.data, "t", &x) || !Int64Of(&x, true, &t) || t > PG_UINT32_MAX ||
			!Get(e.val.binary.data, "g", &x) || !Int64Of(&x, true, &sn->g))
			return false;
		sn->t = (Oid) t;
		if (Get(e.val.binary.data, "n", &x))
		{
			if (!Int64Of(&x, false, &sn->n))
				return false;
			sn->counted = true;
			if (Get(e.val.binary.data, "d", &x) && !Int64Of(&x, false, &sn->d))
				return false;
		}
		if (Get(e.val.binary.data, "a", &x) && x.type != jbvNull)
			sn->a = JsonbValueToJsonb(&x);
		if (Get(e.val.binary.data, "stale", &x))
		{
			if (x.type != jbvBool)
				return false;
			sn->stale = x.val.boolean;
		}
		if (Get(e.val.binary.data, "fresh", &x))
		{
			if (x.type != jbvBool)
				return false;
			sn->fresh = x.val.boolean;
		}
	}
	return true;
}

static void
ParseCursor(const char *since, PullCursor *c)
{
	if (!ReadCursor(since, c))
		BadCursor();
}

bool
OfsPullCursorPosition(const char *cursor, char **f, int64 *v, int64 *p, bool *snapshots)
{
	PullCursor	c;

	if (cursor == NULL || !ReadCursor(cursor, &c) || c.v < 0 || c.p < 0)
		return false;
	*f = c.f;
	*v = c.v;
	*p = c.p;
	*snapshots = c.nsnaps > 0;
	return true;
}

static char *
CursorText(const PullCursor *c)
{
	StringInfoData b;

	initStringInfo(&b);
	appendStringInfoString(&b, "{\"f\": ");
	escape_json(&b, c->f);
	appendStringInfo(&b, ", \"p\": " INT64_FORMAT ", \"s\": [", c->p);
	for (int i = 0; i < c->nsnaps; i++)
	{
		const SnapEntry *sn = &c->snaps[i];

		appendStringInfoString(&b, i ? ", {" : "{");
		if (sn->a)
			appendStringInfo(&b, "\"a\": %s, ", JsonbToCString(NULL, &sn->a->root, VARSIZE(sn->a)));
		if (sn->counted)
			appendStringInfo(&b, "\"d\": " INT64_FORMAT ", ", sn->d);
		appendStringInfo(&b, "\"g\": " INT64_FORMAT ", ", sn->g);
		if (sn->counted)
			appendStringInfo(&b, "\"n\": " INT64_FORMAT ", ", sn->n);
		appendStringInfo(&b, "\"t\": %u%s%s}", sn->t, sn->fresh ? ", \"fresh\": true" : "",
						 sn->stale ? ", \"stale\": true" : "");
	}
	appendStringInfo(&b, "], \"v\": " INT64_FORMAT "}", c->v);
	return b.data;
}

/* TableName: schema-qualified and quoted, or the OID of a table gone. */
static char *
TableName(Oid relid)
{
	char	   *rel = get_rel_name(relid);

	if (rel == NULL)
		return psprintf("%u", relid);
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), rel);
}

/*
 * Fresh starts what follows as PL/pgSQL starts a statement: it sees what
 * this pull wrote so far and, at READ COMMITTED, what others committed.
 * Read-only steps (scoped reads, the feed's) run in this snapshot.
 */
static void
Fresh(bool *pushed)
{
	if (*pushed)
		PopActiveSnapshot();
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	*pushed = true;
}

/* Run runs a saved statement (each with a snapshot of its own, as in PL/pgSQL). */
static void
Run(const char *name, const char *sql, int nargs, Oid *types, Datum *args, const char *nulls)
{
	OfsPlanExec(OfsFixedPlan(name, sql, nargs, types, false), args, nulls, false, 0);
}

/* MarkGone marks the removal of rows (tables, keys) of a device as carried by page. */
static void
MarkGone(const char *device, Datum *tbls, Datum *pks, int n, int64 page)
{
	Oid			types[4] = {TEXTOID, OIDARRAYOID, JSONBARRAYOID, INT8OID};
	Datum		args[4];

	if (n == 0)
		return;
	args[0] = CStringGetTextDatum(device);
	args[1] = PointerGetDatum(construct_array(tbls, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(pks, n, JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = Int64GetDatum(page);
	Run("pull gone",
		"UPDATE ofs.device_row d SET gone_page = $4 FROM unnest($2::oid[], $3::jsonb[]) x(t, p)"
		" WHERE d.device = $1 AND d.tbl = x.t AND d.pk = x.p", 4, types, args, NULL);
}

/*
 * Removals: rows of the device chosen by sql ($1 device, $2 table, $3 a
 * number, $4 how many to read; each row (tbl, pk)) become deletes carried
 * by page, at most most of them.  Returns how many rows it read, asking
 * for one more than most: more than most says some remain.
 */
static int
SendRemovals(const char *name, const char *sql, const char *device, Oid tbl, int64 num, int most,
			 int64 page, OfsChangeList *out)
{
	Oid			types[4] = {TEXTOID, OIDOID, INT8OID, INT4OID};
	Datum		args[4] = {CStringGetTextDatum(device), ObjectIdGetDatum(tbl), Int64GetDatum(num), Int32GetDatum(most + 1)};
	Datum	   *tbls;
	Datum	   *pks;
	int			n;
	int			read;
	Oid			last_tbl = InvalidOid;
	char	   *tname = NULL;

	OfsPlanExec(OfsFixedPlan(name, sql, 4, types, false), args, NULL, false, 0);
	n = (int) Min(SPI_processed, (uint64) most);
	tbls = palloc(sizeof(Datum) * Max(n, 1));
	pks = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		Oid			t = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		Jsonb	   *pk = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		if (tname == NULL || t != last_tbl)
			tname = TableName(t);
		last_tbl = t;
		tbls[i] = ObjectIdGetDatum(t);
		pks[i] = JsonbPGetDatum(pk);
		OfsChangeAdd(out, tname, "delete", JsonbToCString(NULL, &pk->root, VARSIZE(pk)), NULL);
	}
	read = (int) SPI_processed;
	MarkGone(device, tbls, pks, n, page);
	return read;
}

/* ShapeCondition: the condition of a device's shapes of a table ("FALSE": none, NULL: all rows). */
static char *
ShapeCondition(const char *device, Oid tbl)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		args[2] = {CStringGetTextDatum(device), ObjectIdGetDatum(tbl)};
	bool		isnull;
	Datum		d;

	Run("pull shape",
		"SELECT ofs_internal.shape_condition(coalesce((SELECT s.filters FROM ofs.device_shape s"
		"  WHERE s.device = $1 AND s.tbl = $2"
		"    AND EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = $2)), '{}'))",
		2, types, args, NULL);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

#define HOLD_UPSERT \
	"INSERT INTO ofs.device_row AS d (device, tbl, pk, gen, sent_page)" \
	" SELECT $1, $2, x::jsonb, $3, $4 FROM unnest($5::text[]) x"

/*
 * HoldRows records that the device holds the rows (keys as JSON texts) of
 * a snapshot page: one statement.  While a snapshot runs, nothing else
 * records rows of its table for the device (the feed waits until the
 * snapshots are done), and its pages go in key order; a page that did not
 * arrive is forgotten before it is sent again.  So the rows of a snapshot
 * of a table the device held nothing of are new: a plain insert, which
 * costs half an upsert.  Should a key be there all the same, the page is
 * recorded again as an upsert.
 */
typedef struct HoldArg
{
	Oid		   *types;
	Datum	   *args;
} HoldArg;

static void
HoldNew(void *arg)
{
	HoldArg    *h = arg;

	Run("pull hold new", HOLD_UPSERT, 5, h->types, h->args, NULL);
}

static void
HoldRows(const char *device, SnapEntry *sn, int64 page, Datum *pks, int n)
{
	Oid			types[5] = {TEXTOID, OIDOID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		args[5] = {CStringGetTextDatum(device), ObjectIdGetDatum(sn->t), Int64GetDatum(sn->g),
		Int64GetDatum(page), PointerGetDatum(construct_array(pks, n, TEXTOID, -1, false, TYPALIGN_INT))};

	if (sn->fresh)
	{
		HoldArg		h = {types, args};
		ErrorData  *e = OfsTrySubtransaction(HoldNew, &h);

		if (e == NULL)
			return;
		if (e->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(e);
		sn->fresh = false;
	}
	Run("pull hold", HOLD_UPSERT
		" ON CONFLICT ON CONSTRAINT device_row_pkey DO UPDATE SET gen = EXCLUDED.gen, gone_page = NULL",
		5, types, args, NULL);
}

/*
 * SnapshotPage sends the next rows of a snapshot in scope, holding them
 * for the device (generation g, page), and moves the snapshot on.
 */
static void
SnapshotPage(const char *device, Oid role, SnapEntry *sn, const char *cond, const char *tname, int want,
			 int64 page, OfsChangeList *out)
{
	OfsScopedRow *rows;
	int			n = OfsScopePage(role, sn->t, cond, sn->a, want, &rows);
	Datum	   *pks = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		OfsChangeAdd(out, tname, "upsert", rows[i].pk, rows[i].row);
		pks[i] = CStringGetTextDatum(rows[i].pk);
	}
	if (n > 0)
		HoldRows(device, sn, page, pks, n);
	sn->d += n;
	if (n < want)
	{
		sn->stale = true;
		sn->a = NULL;
	}
	else
		sn->a = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(rows[n - 1].pk)));
}

/* HoldsAny: whether the device holds (or is to be told to remove) any row of a table. */
static bool
HoldsAny(const char *device, Oid tbl)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		args[2] = {CStringGetTextDatum(device), ObjectIdGetDatum(tbl)};
	bool		isnull;

	Run("pull holds any",
		"SELECT EXISTS (SELECT 1 FROM ofs.device_row d WHERE d.device = $1 AND d.tbl = $2)",
		2, types, args, NULL);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

int64
OfsConfirmedPage(const char *confirmed, int64 since_page)
{
	Jsonb	   *j = ParseJson(confirmed);
	JsonbValue	v;
	int64		p;

	if (j == NULL)
		return 0;
	if (!JB_ROOT_IS_OBJECT(j) || !Get(&j->root, "p", &v) || v.type == jbvNull)
		return since_page;
	if (!Int64Of(&v, false, &p))
		return 0;
	return Min(p, since_page);
}

void
OfsPull(const char *device, const char *since, int max_rows, const char *confirmed, OfsPullAnswer *ans)
{
	MemoryContext caller = CurrentMemoryContext;
	int			room;
	Oid			role = InvalidOid;
	int64		page_seq;
	int64		new_page;
	int64		since_page = 0;
	int64		conf_page;
	int64		confirmed_page = 0;
	bool		resnap = false;
	bool		more = false;
	PullCursor	cur;
	OfsChangeList *out = &ans->changes;
	char	   *progress = NULL;
	char	   *cursor;
	bool		isnull;
	bool		pushed = false;

	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1")));
	room = Min(max_rows, MAX_PAGE_ROWS);
	memset(ans, 0, sizeof(*ans));
	initStringInfo(&out->json);

	SPI_connect();
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {device ? CStringGetTextDatum(device) : (Datum) 0};
		char		nulls[1] = {device ? ' ' : 'n'};

		/* The device may pull (raises otherwise). */
		Run("pull check", "SELECT d.device FROM ofs_internal.device_check($1) d", 1, types, args, nulls);
		device = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		/* The pulls of one device happen one at a time. */
		DirectFunctionCall2(pg_advisory_xact_lock_int4,
							DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum("ofs.pull")),
							DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum(device)));
		args[0] = CStringGetTextDatum(device);
		Run("pull device",
			"SELECT d.page_seq, r.oid, d.confirmed_page, d.rejections_version"
			"  FROM ofs.device d LEFT JOIN pg_catalog.pg_roles r ON r.rolname = d.role"
			" WHERE d.device = $1", 1, types, args, NULL);
		page_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		role = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (isnull)
			role = InvalidOid;
		confirmed_page = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		ans->rejections = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	}
	new_page = page_seq + 1;
	{
		Oid			types[2] = {TEXTOID, OIDOID};
		Datum		args[2] = {CStringGetTextDatum(device), ObjectIdGetDatum(role)};
		char		nulls[2] = {' ', OidIsValid(role) ? ' ' : 'n'};

		/*
		 * Tables the device may no longer read (unsynced, dropped, SELECT
		 * revoked) lose their shapes: the snapshot below removes their rows.
		 */
		Run("pull lost shapes",
			"UPDATE ofs.device_shape s SET filters = '{}', version = nextval('ofs.shape_version')"
			" WHERE s.device = $1 AND cardinality(s.filters) > 0"
			"   AND (NOT EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = s.tbl)"
			"        OR coalesce(NOT has_table_privilege($2, s.tbl, 'SELECT'), true))",
			2, types, args, nulls);
	}

	/* An ack confirmed its cursor as a pull would (PROTOCOL.md, "live and ack"). */
	if (confirmed)
	{
		int64		acked = OfsConfirmedPage(confirmed, PG_INT64_MAX);

		if (acked < PG_INT64_MAX)
			confirmed_page = Max(confirmed_page, acked);
	}
	if (since == NULL)
	{
		/*
		 * Afresh: the cursor made goes on from what the device confirmed,
		 * so that it is not behind it even when this page is empty.
		 */
		resnap = true;
		since_page = confirmed_page;
	}
	else
	{
		OfsFeedCursor fc;

		ParseCursor(since, &cur);
		since_page = cur.p;

		/* A cursor the feed no longer serves (restored, too old): afresh. */
		resnap = OfsFeedCursorRead(cur.f, &fc, false) != OFS_FEED_CURSOR_OK;
		/*
		 * Removals before the pages the device confirmed (by a pull, or by
		 * an ack) are forgotten: a device that goes back behind them would
		 * never learn of them.
		 */
		if (since_page < confirmed_page)
			ereport(ERROR,
					(errcode(ERRCODE_OFS_CURSOR_BEHIND),
					 errmsg("the cursor of device \"%s\" is older than one it already confirmed", device),
					 errdetail("The cursor is at page %lld; the device confirmed page %lld, and the removals before it are forgotten.",
							   (long long) since_page, (long long) confirmed_page),
					 errhint("Start afresh: remove the device's synced rows, keep its unsent intents, and pull with no cursor.")));
	}

	if (resnap)
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(device)};

		/* Everything afresh: every table of the device, from the feed's present. */
		memset(&cur, 0, sizeof(cur));
		cur.p = since_page;
		cur.f = OfsFeedCursorNow();
		Run("pull version", "SELECT nextval('ofs.shape_version')", 0, NULL, NULL, NULL);
		cur.v = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		Run("pull tables", "SELECT s.tbl FROM ofs.device_shape s WHERE s.device = $1 ORDER BY s.tbl",
			1, types, args, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			SnapEntry  *sn = AddSnap(&cur);

			sn->t = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			sn->g = cur.v;
		}
	}
	else
	{
		Oid			types[2] = {TEXTOID, INT8OID};
		Datum		args[2] = {CStringGetTextDatum(device), Int64GetDatum(cur.v)};

		/* Tables whose shapes changed since the cursor are snapshot anew. */
		Run("pull changed shapes",
			"SELECT s.tbl, s.version FROM ofs.device_shape s WHERE s.device = $1 AND s.version > $2"
			" ORDER BY s.version", 2, types, args, NULL);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			Oid			t = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			int64		version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
			SnapEntry  *sn;

			for (int k = cur.nsnaps - 1; k >= 0; k--)
				if (cur.snaps[k].t == t)
					DropSnap(&cur, k);
			sn = AddSnap(&cur);
			sn->t = t;
			sn->g = version;
			cur.v = Max(cur.v, version);
		}
	}

	/*
	 * Removals the device confirmed are forgotten; removals sent after its
	 * cursor may have been lost with the connection, and are sent again.
	 * Rows first sent in a page after the cursor never reached the device:
	 * it does not hold them.
	 */
	conf_page = confirmed ? OfsConfirmedPage(confirmed, since_page) : since_page;
	{
		Oid			types[2] = {TEXTOID, INT8OID};
		Datum		args[2] = {CStringGetTextDatum(device), Int64GetDatum(conf_page)};

		Run("pull forget", "DELETE FROM ofs.device_row d WHERE d.device = $1 AND d.gone_page <= $2",
			2, types, args, NULL);
		args[1] = Int64GetDatum(since_page);
		if (since != NULL && !resnap)
			Run("pull unsent", "DELETE FROM ofs.device_row d WHERE d.device = $1 AND d.sent_page > $2",
				2, types, args, NULL);
		/* Removals owed are marked with the largest page number until a page carries them. */
		Run("pull owed",
			"UPDATE ofs.device_row d SET gone_page = 9223372036854775807"
			" WHERE d.device = $1 AND d.gone_page > $2 AND d.gone_page < 9223372036854775807",
			2, types, args, NULL);
	}
	/* One more than fits stays owed, and says there is more. */
	more = SendRemovals("pull send owed",
						"SELECT d.tbl, d.pk FROM ofs.device_row d"
						" WHERE d.device = $1 AND d.gone_page = $3"
						" ORDER BY d.tbl, d.pk LIMIT $4",
						device, InvalidOid, GONE_OWED, room, new_page, out) > room;

	/*
	 * Snapshots first: each table's rows in scope in key order, then the
	 * removal of the rows of older generations not sent again.
	 */
	while (out->n < room && cur.nsnaps > 0)
	{
		SnapEntry  *sn = &cur.snaps[0];
		char	   *cond = ShapeCondition(device, sn->t);
		char	   *tname = TableName(sn->t);

		Fresh(&pushed);
		if (!sn->stale)
		{
			if (cond != NULL && strcmp(cond, "FALSE") == 0)
				sn->stale = true;
			else
			{
				if (!sn->counted)
				{
					sn->n = OfsScopeCount(role, sn->t, cond);
					sn->d = 0;
					sn->counted = true;
					sn->fresh = !HoldsAny(device, sn->t);
				}
				SnapshotPage(device, role, sn, cond, tname, room - out->n, new_page, out);
				{
					StringInfoData b;

					initStringInfo(&b);
					escape_json(&b, tname);
					progress = psprintf("{\"table\": %s, \"rows_done\": " INT64_FORMAT ", \"rows_total\": " INT64_FORMAT "}",
										b.data, sn->d, Max(sn->n, sn->d));
				}
			}
		}
		if (sn->stale && out->n < room)
		{
			int			want = room - out->n;

			if (SendRemovals("pull old generation",
							 "SELECT d.tbl, d.pk FROM ofs.device_row d"
							 " WHERE d.device = $1 AND d.tbl = $2 AND d.gen < $3 AND d.gone_page IS NULL"
							 " ORDER BY d.pk LIMIT $4",
							 device, sn->t, sn->g, want, new_page, out) <= want)
			{
				DropSnap(&cur, 0);
				continue;
			}
		}
	}
	more = more || cur.nsnaps > 0;

	/*
	 * Then the feed: each change of a subscribed table becomes the row as
	 * the role sees it now (an upsert), the removal of a row the device
	 * holds, or nothing (its own row, left as it sent it).
	 */
	if (!more && out->n < room)
	{
		Fresh(&pushed);
		more = OfsPullFeed(device, role, &cur.f, room - out->n, cur.v, new_page, out);
	}
	else
		more = true;

	if (pushed)
		PopActiveSnapshot();
	if (out->n > 0)
		since_page = new_page;
	cur.p = since_page;
	cursor = CursorText(&cur);
	{
		Oid			types[5] = {TEXTOID, INT8OID, TEXTOID, BOOLOID, INT8OID};
		Datum		args[5] = {CStringGetTextDatum(device), Int64GetDatum(since_page), CStringGetTextDatum(cursor),
			BoolGetDatum(more), Int64GetDatum(conf_page)};

		Run("pull done",
			"UPDATE ofs.device d SET page_seq = greatest(d.page_seq, $2), last_contact = now(), last_cursor = $3,"
			"       caught_up_at = CASE WHEN $4 THEN d.caught_up_at ELSE now() END,"
			"       confirmed_page = greatest(d.confirmed_page, $5)"
			" WHERE d.device = $1", 5, types, args, NULL);
	}
	MemoryContextSwitchTo(caller);
	ans->cursor = pstrdup(cursor);
	ans->progress = progress ? pstrdup(progress) : NULL;
	ans->more = more;
	SPI_finish();
}

char *
OfsPullAnswerJson(const OfsPullAnswer *ans, bool with_cursor)
{
	StringInfoData b;

	initStringInfo(&b);
	appendStringInfoString(&b, "{\"changes\": [");
	if (ans->changes.n > 0)
		appendBinaryStringInfo(&b, ans->changes.json.data, ans->changes.json.len);
	appendStringInfo(&b, "], \"more\": %s", ans->more ? "true" : "false");
	if (ans->rejections > 0)
		appendStringInfo(&b, ", \"rejections\": " INT64_FORMAT, ans->rejections);
	if (ans->progress)
		appendStringInfo(&b, ", \"snapshot\": %s", ans->progress);
	if (with_cursor)
	{
		appendStringInfoString(&b, ", \"cursor\": ");
		escape_json(&b, ans->cursor);
	}
	appendStringInfoChar(&b, '}');
	return b.data;
}

/*
 * pull(device, since, max_rows, confirmed) returns the next changes for a
 * device after its cursor: {cursor, changes, more[, snapshot]}.
 */
Datum
ofs_pull(PG_FUNCTION_ARGS)
{
	OfsPullAnswer ans;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1")));
	OfsPull(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)),
			PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
			PG_GETARG_INT32(2),
			PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
			&ans);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(OfsPullAnswerJson(&ans, true))));
}

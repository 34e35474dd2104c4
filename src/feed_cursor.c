/*
 * feed_cursor.c: the changes feed's cursors (feed_cursor.h), and their SQL
 * faces ofs_internal.cursor_parse, ofs_internal.snapshot_text and ofs.feed_cursor.
 *
 * Every pull and every live round reads a cursor and makes new ones, so
 * this is C: parsing is the type input functions of pg_snapshot and
 * bigint, and the checks against ofs.feed_state are one saved plan.
 */
#include "ofs.h"
#include "feed_cursor.h"
#include "internal_tables.h"
#include "plan_cache.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(ofs_cursor_parse);
PG_FUNCTION_INFO_V1(ofs_snapshot_text);
PG_FUNCTION_INFO_V1(ofs_feed_cursor);

/* A pg_snapshot's parts, read from its canonical text. */
typedef struct Snap
{
	uint64		xmin;
	uint64		xmax;
	int			nxip;
	uint64	   *xip;
} Snap;

static void
SnapParts(Datum snap, Snap *out)
{
	char	   *text = DatumGetCString(DirectFunctionCall1(pg_snapshot_out, snap));
	char	   *p = text;
	int			cap = 0;

	out->xmin = strtou64(p, &p, 10);
	out->xmax = strtou64(p + 1, &p, 10);
	out->nxip = 0;
	out->xip = NULL;
	for (const char *q = p + 1; *q; q++)
		cap += *q == ',';
	if (p[1] != '\0')
		out->xip = palloc(sizeof(uint64) * (cap + 1));
	p++;
	while (*p)
	{
		out->xip[out->nxip++] = strtou64(p, &p, 10);
		if (*p == ',')
			p++;
	}
}

typedef struct FeedState
{
	char	   *epoch;
	uint64		horizon;
	char	   *compacted_at;
} FeedState;

static void
ReadFeedState(FeedState *st)
{
	Oid			save_uid;
	int			save_sec;
	bool		isnull;

	OfsRunAsOwner(&save_uid, &save_sec);
	OfsPlanExec(OfsFixedPlan("feed state",
							 "SELECT epoch, horizon::text, compacted_at::text FROM ofs.feed_state",
							 0, NULL, false), NULL, NULL, true, 1);
	OfsRestoreUser(save_uid, save_sec);
	if (SPI_processed != 1)
		elog(ERROR, "ofs.feed_state must have one row");
	st->epoch = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	st->horizon = strtou64(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), NULL, 10);
	st->compacted_at = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (isnull)
		st->compacted_at = "(never)";
}

char *
OfsFeedEpoch(void)
{
	FeedState	st;

	ReadFeedState(&st);
	return st.epoch;
}

static void
Malformed(const char *cursor)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid changes cursor \"%s\"", cursor),
			 errdetail("A cursor is the opaque text returned by ofs.changes or ofs.feed_cursor."),
			 errhint("Pass a cursor returned by ofs.changes, or NULL to read from the beginning.")));
}

OfsFeedCursorVerdict
OfsFeedCursorRead(const char *cursor, OfsFeedCursor *out, bool raise)
{
	char	   *parts[6];
	int			nparts = 0;
	char	   *copy = pstrdup(cursor);
	char	   *p = copy;
	FeedState	st;
	MemoryContext cxt = CurrentMemoryContext;
	Snap		c;

	/* Split at '/' keeping empty parts, as string_to_array does. */
	for (;;)
	{
		char	   *slash = strchr(p, '/');

		if (nparts == lengthof(parts))
			Malformed(cursor);
		parts[nparts++] = p;
		if (slash == NULL)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	if (strcmp(parts[0], "ofs1") != 0 || (nparts != 3 && nparts != 5))
		Malformed(cursor);
	ReadFeedState(&st);
	if (strcmp(parts[1], st.epoch) != 0)
	{
		if (!raise)
			return OFS_FEED_CURSOR_FOREIGN;
		ereport(ERROR,
				(errcode(ERRCODE_OFS_CURSOR_TOO_OLD),
				 errmsg("changes cursor belongs to another feed"),
				 errdetail("The cursor is of feed %s; this database's feed is %s (it was created anew, e.g. by a restore).",
						   parts[1], st.epoch),
				 errhint("Re-snapshot: read the tables afresh and continue from ofs.feed_cursor().")));
	}

	/* The type input functions decide what is well formed. */
	PG_TRY();
	{
		out->c = DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(parts[2]));
		out->has_s = nparts == 5;
		out->s = (Datum) 0;
		out->last_seq = 0;
		if (out->has_s)
		{
			out->s = DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(parts[3]));
			out->last_seq = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(parts[4])));
		}
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (e->sqlerrcode != ERRCODE_INVALID_TEXT_REPRESENTATION &&
			e->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
			PG_RE_THROW();
		FlushErrorState();
		Malformed(cursor);
	}
	PG_END_TRY();

	/* Tombstones below the horizon were purged: the cursor must have seen them all. */
	SnapParts(out->c, &c);
	{
		bool		too_old = st.horizon > c.xmax;

		for (int i = 0; i < c.nxip && !too_old; i++)
			too_old = c.xip[i] < st.horizon;
		if (too_old)
		{
			if (!raise)
				return OFS_FEED_CURSOR_TOO_OLD;
			ereport(ERROR,
					(errcode(ERRCODE_OFS_CURSOR_TOO_OLD),
					 errmsg("changes cursor is older than the feed retains"),
					 errdetail("Deleted rows of transactions before " UINT64_FORMAT " were purged from the feed at %s.",
							   st.horizon, st.compacted_at),
					 errhint("Re-snapshot: read the tables afresh and continue from ofs.feed_cursor().")));
		}
	}
	return OFS_FEED_CURSOR_OK;
}

static int
CompareXid(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

char *
OfsSnapshotText(Datum snap)
{
	FullTransactionId own_fx = GetTopFullTransactionIdIfAny();
	uint64		own = U64FromFullTransactionId(own_fx);
	uint64	   *xip;
	Snap		s;
	StringInfoData buf;
	int			n;

	SnapParts(snap, &s);
	if (!FullTransactionIdIsValid(own_fx) || own >= s.xmax)
		return DatumGetCString(DirectFunctionCall1(pg_snapshot_out, snap));
	/* The in-progress list with the own xid, sorted, once each. */
	xip = palloc(sizeof(uint64) * (s.nxip + 1));
	memcpy(xip, s.xip, sizeof(uint64) * s.nxip);
	xip[s.nxip] = own;
	qsort(xip, s.nxip + 1, sizeof(uint64), CompareXid);
	initStringInfo(&buf);
	appendStringInfo(&buf, UINT64_FORMAT ":" UINT64_FORMAT ":", Min(s.xmin, own), s.xmax);
	n = 0;
	for (int i = 0; i <= s.nxip; i++)
		if (i == 0 || xip[i] != xip[i - 1])
			appendStringInfo(&buf, "%s" UINT64_FORMAT, n++ ? "," : "", xip[i]);
	return buf.data;
}

char *
OfsFeedCursorNow(void)
{
	return psprintf("ofs1/%s/%s", OfsFeedEpoch(),
					OfsSnapshotText(DirectFunctionCall1(pg_current_snapshot, (Datum) 0)));
}

/* ofs_internal.cursor_parse(cursor, OUT c, OUT s, OUT last_seq): a cursor's parts, checked. */
Datum
ofs_cursor_parse(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	OfsFeedCursor fc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	MemoryContext cxt = CurrentMemoryContext;
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ofs_internal.cursor_parse must return a record");
	if (PG_ARGISNULL(0))
		Malformed("<NULL>");
	SPI_connect();
	(void) OfsFeedCursorRead(text_to_cstring(PG_GETARG_TEXT_PP(0)), &fc, true);
	MemoryContextSwitchTo(cxt);
	values[0] = datumCopy(fc.c, false, -1);
	values[1] = fc.has_s ? datumCopy(fc.s, false, -1) : (Datum) 0;
	SPI_finish();
	nulls[1] = !fc.has_s;
	values[2] = Int64GetDatum(fc.last_seq);
	nulls[2] = !fc.has_s;
	tuple = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/* ofs_internal.snapshot_text(snap): a snapshot as a cursor writes it. */
Datum
ofs_snapshot_text(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(OfsSnapshotText(PG_GETARG_DATUM(0))));
}

/* ofs.feed_cursor(): the cursor of the current snapshot. */
Datum
ofs_feed_cursor(PG_FUNCTION_ARGS)
{
	char	   *cursor;
	MemoryContext cxt = CurrentMemoryContext;

	SPI_connect();
	cursor = OfsFeedCursorNow();
	MemoryContextSwitchTo(cxt);
	cursor = pstrdup(cursor);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(cursor));
}

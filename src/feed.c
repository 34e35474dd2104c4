/*
 * feed.c: reading the changes feed, ofs.changes.
 *
 * The cursor design (docs/DESIGN.md) is PgQ's: a batch is the set of changes
 * whose writing transaction is visible in snapshot S but not in the
 * cursor's snapshot C.  Every committed transaction is visible in some
 * later snapshot, and a transaction still running when S is taken is not
 * visible in S, so following cursors never misses a committed change and
 * never returns an uncommitted one, however transactions interleave.  Within
 * a batch, changes come in seq order, which for one row is commit order
 * (writers of a row wait for each other).  A page that stops inside a batch
 * carries C, S and the seq of its last change.
 *
 * Cursors are made and checked (epoch, retention horizon) by
 * feed_cursor.c; this file does the reading.
 */
#include "ofs.h"
#include "feed_cursor.h"
#include "internal_tables.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ofs_changes);

/* Columns of ofs.changes: 9 as 1.0 declares it, 10 from 1.1 (as_sent). */
#define CHANGES_NATTS 10

/* The page query, for ofs.change_log without and with as_sent (1.0, 1.1). */
static SPIPlanPtr plan_page[2] = {NULL, NULL};

/* A small per-call cache of table names by OID. */
typedef struct TableName
{
	Oid			oid;
	char	   *name;
} TableName;

static char *
TableNameOf(TableName *cache, int *ncache, Oid oid)
{
	int			i;
	char	   *rel;

	for (i = 0; i < *ncache; i++)
		if (cache[i].oid == oid)
			return cache[i].name;
	rel = get_rel_name(oid);
	if (*ncache < 64)
	{
		cache[*ncache].oid = oid;
		cache[*ncache].name = rel
			? quote_qualified_identifier(get_namespace_name(get_rel_namespace(oid)), rel)
			: psprintf("%u", oid);
		return cache[(*ncache)++].name;
	}
	return rel ? quote_qualified_identifier(get_namespace_name(get_rel_namespace(oid)), rel)
		: psprintf("%u", oid);
}

/*
 * changes(since text, max_rows int) returns the committed changes after a
 * cursor, at most max_rows, each with the cursor that resumes after it.
 */
Datum
ofs_changes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		max_rows;
	Datum		cur_c;
	Datum		cur_s;
	int64		cur_last = 0;
	bool		have_c = false;
	bool		have_s = false;
	char	   *epoch;
	char	   *partial;
	char	   *complete;
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	Oid			save_uid;
	int			save_sec;
	Datum		args[6];
	int			rc;
	uint64		n;
	uint64		i;
	TableName	names[64];
	int			nnames = 0;
	SPITupleTable *page;
	MemoryContext rowcxt;
	int			layout;

	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be at least 1, not %s",
						PG_ARGISNULL(1) ? "NULL" : psprintf("%d", PG_GETARG_INT32(1)))));
	max_rows = PG_GETARG_INT32(1);
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	epoch = OfsFeedEpoch();

	if (!PG_ARGISNULL(0))
	{
		OfsFeedCursor fc;

		(void) OfsFeedCursorRead(text_to_cstring(PG_GETARG_TEXT_PP(0)), &fc, true);
		cur_c = fc.c;
		have_c = true;
		cur_s = fc.s;
		have_s = fc.has_s;
		cur_last = fc.last_seq;
	}
	if (!have_c)
		cur_c = DirectFunctionCall1(pg_snapshot_in, CStringGetDatum("1:1:"));
	if (!have_s)
		cur_s = DirectFunctionCall1(pg_current_snapshot, (Datum) 0);
	partial = psprintf("ofs1/%s/%s/%s/", epoch,
					   DatumGetCString(DirectFunctionCall1(pg_snapshot_out, cur_c)),
					   OfsSnapshotText(cur_s));
	complete = psprintf("ofs1/%s/%s", epoch, OfsSnapshotText(cur_s));

	{
		Relation	log = OfsOpenOwnTable(OFS_CHANGE_LOG, AccessShareLock);

		layout = OfsOwnTableNatts(log) >= Anum_change_log_as_sent ? 1 : 0;
		table_close(log, AccessShareLock);
	}
	if (plan_page[layout] == NULL)
	{
		Oid			types[6] = {INT8OID, PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, BOOLOID};

		/* Planned per execution: the log grows, and a kept generic plan would not follow. */
		plan_page[layout] = SPI_prepare_cursor(psprintf(
			"SELECT seq, tbl, pk, op, data, site, operation_id, hlc, changed, %s"
			"  FROM ofs.change_log"
			" WHERE seq > $1"
			"   AND xid >= pg_catalog.pg_snapshot_xmin($2)"
			"   AND NOT pg_catalog.pg_visible_in_snapshot(xid, $2)"
			"   AND pg_catalog.pg_visible_in_snapshot(xid, $3)"
			"   AND ($6 OR xid <> $4)"
			" ORDER BY seq LIMIT $5", layout ? "as_sent" : "NULL::boolean"),
			6, types, CURSOR_OPT_CUSTOM_PLAN);
		if (plan_page[layout] == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan_page[layout]);
	}
	args[0] = Int64GetDatum(cur_last);
	args[1] = cur_c;
	args[2] = cur_s;
	args[3] = FullTransactionIdGetDatum(own);
	args[4] = Int64GetDatum((int64) max_rows + 1);
	args[5] = BoolGetDatum(!FullTransactionIdIsValid(own));
	rc = SPI_execute_plan(plan_page[layout], args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading ofs.change_log failed: %s", SPI_result_code_string(rc));

	/*
	 * A cursor that stopped inside a batch finds the rest of it gone when
	 * compaction dropped those entries for newer ones: the batch is over,
	 * and the next one starts at its snapshot.
	 */
	if (SPI_processed == 0 && have_s)
	{
		cur_c = cur_s;
		cur_s = DirectFunctionCall1(pg_current_snapshot, (Datum) 0);
		cur_last = 0;
		partial = psprintf("ofs1/%s/%s/%s/", epoch,
						   DatumGetCString(DirectFunctionCall1(pg_snapshot_out, cur_c)),
						   OfsSnapshotText(cur_s));
		complete = psprintf("ofs1/%s/%s", epoch, OfsSnapshotText(cur_s));
		args[0] = Int64GetDatum(cur_last);
		args[1] = cur_c;
		args[2] = cur_s;
		rc = SPI_execute_plan(plan_page[layout], args, NULL, true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "reading ofs.change_log failed: %s", SPI_result_code_string(rc));
	}
	OfsRestoreUser(save_uid, save_sec);

	page = SPI_tuptable;
	n = SPI_processed;
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "ofs changes row", ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < n && i < (uint64) max_rows; i++)
	{
		HeapTuple	t = page->vals[i];
		TupleDesc	d = page->tupdesc;
		Datum		values[CHANGES_NATTS];
		bool		nulls[CHANGES_NATTS];
		bool		isnull;
		int64		seq = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		Oid			tbl = DatumGetObjectId(SPI_getbinval(t, d, 2, &isnull));
		char		op = DatumGetChar(SPI_getbinval(t, d, 4, &isnull));
		char	   *site;
		/* the name cache lives as long as the call, not in rowcxt */
		char	   *tname = TableNameOf(names, &nnames, tbl);
		MemoryContext old = MemoryContextSwitchTo(rowcxt);

		site = SPI_getvalue(t, d, 6);

		memset(nulls, false, sizeof(nulls));
		values[0] = CStringGetTextDatum(i == n - 1 ? complete : psprintf("%s" INT64_FORMAT, partial, seq));
		values[1] = CStringGetTextDatum(tname);
		values[2] = SPI_getbinval(t, d, 3, &isnull);
		values[3] = CStringGetTextDatum(op == 'I' ? "insert" : op == 'U' ? "update" : "delete");
		values[4] = SPI_getbinval(t, d, 5, &nulls[4]);
		nulls[5] = strcmp(site, "origin") == 0;
		values[5] = nulls[5] ? (Datum) 0 : CStringGetTextDatum(site);
		values[6] = SPI_getbinval(t, d, 7, &nulls[6]);
		values[7] = SPI_getbinval(t, d, 8, &nulls[7]);
		values[8] = SPI_getbinval(t, d, 9, &nulls[8]);
		values[9] = SPI_getbinval(t, d, 10, &nulls[9]);	/* left out by 1.0's declaration */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	SPI_finish();
	return (Datum) 0;
}

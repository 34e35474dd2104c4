/*
 * apply.c: the C parts of the write path (the rest is ofs.apply_batch, in
 * SQL, in ofs--1.0.sql).
 *
 * ofs.encode_row renders a row in the feed's JSON encoding, for the
 * compensation hint of a rejected mutation.  ofs.max_clock_skew bounds how
 * far ahead of the origin's clock a device's HLC may be.
 */
#include "ofs.h"
#include "hlc.h"
#include "rowjson.h"
#include "writer.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(ofs_encode_row);
PG_FUNCTION_INFO_V1(ofs_clamp_hlc);

int			ofs_max_clock_skew_ms = 1000;

/* The most a device's clock ran past the bound in this batch (ms; 0: never). */
int64		ofs_clock_ahead_ms = 0;

/* ApplyInit defines ofs.max_clock_skew and sets up the writer (writer.c). */
void
ApplyInit(void)
{
	DefineCustomIntVariable("ofs.max_clock_skew",
							"How far ahead of the origin's wall clock a device's HLC may be.",
							"A mutation whose HLC is further ahead is stamped with the origin's clock instead, so one device moves the origin's clock by at most this bound.",
							&ofs_max_clock_skew_ms,
							1000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	OfsWriterInit();
}

/*
 * ClampHlc bounds a device's HLC: one further ahead of the wall clock than
 * ofs.max_clock_skew is replaced by a fresh HLC of the origin, which orders
 * after everything the origin has seen (so a fast clock neither wins every
 * conflict nor drags the origin's clock, and every write of every other
 * device, along with it).  How far ahead it was is kept in
 * ofs_clock_ahead_ms for the batch to record.  Devices need not run ahead
 * to order after what they saw: every message of the origin carries its
 * clock, which they move to.
 */
int64
ClampHlc(int64 hlc)
{
	int64		wall = WallHlc();
	int64		bound = wall + ((int64) ofs_max_clock_skew_ms << 16);

	if (hlc <= bound)
		return hlc;
	ofs_clock_ahead_ms = Max(ofs_clock_ahead_ms, (hlc - wall) >> 16);
	return HlcNow();
}

Datum
ofs_clamp_hlc(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ClampHlc(PG_GETARG_INT64(0)));
}

/* encode_row(record) renders a row in the feed's JSON encoding (rowjson.c). */
Datum
ofs_encode_row(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec;
	TupleDesc	desc;
	HeapTupleData tuple;
	char	   *json;

	if (!type_is_rowtype(get_fn_expr_argtype(fcinfo->flinfo, 0)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("ofs.encode_row needs a row")));
	rec = PG_GETARG_HEAPTUPLEHEADER(0);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec), HeapTupleHeaderGetTypMod(rec));

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	json = RowJsonObject(&tuple, desc, 0, NULL);
	ReleaseTupleDesc(desc);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

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

int			ofs_max_clock_skew_ms = 300000;

/* ApplyInit defines ofs.max_clock_skew and sets up the writer (writer.c). */
void
ApplyInit(void)
{
	DefineCustomIntVariable("ofs.max_clock_skew",
							"How far ahead of the origin's clock a device's HLC may be.",
							"A mutation whose HLC is further ahead is clamped to the origin's clock plus this bound.",
							&ofs_max_clock_skew_ms,
							300000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	OfsWriterInit();
}

/*
 * clamp_hlc(hlc) returns a device's HLC, or the origin's clock plus
 * ofs.max_clock_skew when the device's is further ahead, so that a device
 * with a wrong clock cannot win every conflict forever.
 */
/*
 * ClampHlc bounds a device's HLC by the wall clock plus the allowed skew
 * (not by the origin's HLC, which clamped HLCs themselves move forward).
 */
int64
ClampHlc(int64 hlc)
{
	int64		bound = WallHlc() + ((int64) ofs_max_clock_skew_ms << 16);

	return hlc > bound ? bound : hlc;
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

/*
 * rowjson.c: rows as JSON objects, the form in which changes travel.
 *
 * Values must round-trip exactly through JSON clients in any language, so
 * the encoding is chosen per type rather than left to to_json:
 *   - boolean: true/false; smallint, integer, bigint, oid: JSON numbers;
 *   - real, double precision: JSON numbers when finite, else the strings
 *     "NaN", "Infinity", "-Infinity" (PostgreSQL prints the shortest text
 *     that reads back to the same value);
 *   - numeric: a string of exact decimal text, so no client parses it into a
 *     binary floating-point number;
 *   - date, time, timestamp, timestamptz, timetz: ISO 8601 strings, in UTC
 *     for timestamptz, whatever the session's DateStyle and TimeZone;
 *   - bytea: the string "\x" followed by hex digits, whatever bytea_output;
 *   - everything else (text, uuid, json, jsonb, arrays, ...): the type's
 *     text output as a string (json too: a JSON null and an SQL NULL stay
 *     apart).
 * docs/PROTOCOL.md repeats this table for client writers.
 */
#include "ofs.h"
#include "rowjson.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/fmgroids.h"

/* RowJsonValue appends one value as JSON. */
void
RowJsonValue(StringInfo buf, Datum value, bool isnull, Oid typid)
{
	Oid			out;
	bool		varlena;
	char	   *s;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	switch (typid)
	{
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case INT2OID:
			appendStringInfo(buf, "%d", (int) DatumGetInt16(value));
			return;
		case INT4OID:
			appendStringInfo(buf, "%d", DatumGetInt32(value));
			return;
		case INT8OID:
			appendStringInfo(buf, INT64_FORMAT, DatumGetInt64(value));
			return;
		case OIDOID:
			appendStringInfo(buf, "%u", DatumGetObjectId(value));
			return;
		case FLOAT4OID:
		case FLOAT8OID:
			{
				double		d = typid == FLOAT4OID ? DatumGetFloat4(value) : DatumGetFloat8(value);

				s = OidOutputFunctionCall(typid == FLOAT4OID ? F_FLOAT4OUT : F_FLOAT8OUT, value);
				/*
				 * Beyond 2^63 a float would be printed as an integer (JSON
				 * numbers pass through jsonb's numeric) that no client with
				 * 64-bit integers can read: it travels as a string, as NaN.
				 */
				if (isnan(d) || isinf(d) || fabs(d) >= 9223372036854775808.0)
					escape_json(buf, s);
				else
					appendStringInfoString(buf, s);
				return;
			}
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			{
				char		dt[MAXDATELEN + 1];
				int			utc = 0;

				JsonEncodeDateTime(dt, value, typid, &utc);
				escape_json(buf, dt);
				return;
			}
		case BYTEAOID:
			{
				bytea	   *b = DatumGetByteaPP(value);
				const char *data = VARDATA_ANY(b);
				int			len = VARSIZE_ANY_EXHDR(b);
				static const char hex[] = "0123456789abcdef";
				int			i;

				appendStringInfoString(buf, "\"\\\\x");
				for (i = 0; i < len; i++)
				{
					appendStringInfoChar(buf, hex[(unsigned char) data[i] >> 4]);
					appendStringInfoChar(buf, hex[(unsigned char) data[i] & 0xF]);
				}
				appendStringInfoChar(buf, '"');
				return;
			}
		default:
			getTypeOutputInfo(typid, &out, &varlena);
			escape_json(buf, OidOutputFunctionCall(out, value));
			return;
	}
}

/*
 * RowJsonObject renders the given attributes of a tuple (all live columns
 * when atts is NULL) as a JSON object keyed by column name.
 */
char *
RowJsonObject(HeapTuple tuple, TupleDesc desc, int natts, const AttrNumber *atts)
{
	StringInfoData buf;
	int			n = atts ? natts : desc->natts;
	int			i;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < n; i++)
	{
		AttrNumber	att = atts ? atts[i] : i + 1;
		Form_pg_attribute a = TupleDescAttr(desc, att - 1);
		bool		isnull;
		Datum		v;

		if (a->attisdropped)
			continue;
		v = heap_getattr(tuple, att, desc, &isnull);
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		escape_json(&buf, NameStr(a->attname));
		appendStringInfoString(&buf, ": ");
		RowJsonValue(&buf, v, isnull, a->atttypid);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

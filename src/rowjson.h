/*
 * rowjson.h: rows and values in the feed's JSON encoding (rowjson.c),
 * docs/PROTOCOL.md's table of value forms.
 */
#ifndef OFS_ROWJSON_H
#define OFS_ROWJSON_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

extern void RowJsonValue(StringInfo buf, Datum value, bool isnull, Oid typid);
extern char *RowJsonObject(HeapTuple tuple, TupleDesc desc, int natts, const AttrNumber *atts);

#endif							/* OFS_ROWJSON_H */

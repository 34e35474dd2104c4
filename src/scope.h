/*
 * scope.h: reading rows as a device's role, for the engine (scope.c).
 * The caller is connected to SPI; the filter is a shape condition already
 * rewritten by ofs.shape_filter (NULL: every row the role may read).
 */
#ifndef OFS_SCOPE_H
#define OFS_SCOPE_H

#include "postgres.h"

#include "utils/jsonb.h"

/* A row in scope: its key and the row, as JSON texts of the feed's forms. */
typedef struct OfsScopedRow
{
	char	   *pk;
	char	   *row;
} OfsScopedRow;

/* OfsScopePage reads up to max rows in key order after the key after (NULL: from the start). */
extern int	OfsScopePage(Oid role, Oid relid, const char *filter, Jsonb *after, int max, OfsScopedRow **rows);

/* OfsScopeCount counts the rows in scope (a snapshot's total, for progress). */
extern int64 OfsScopeCount(Oid role, Oid relid, const char *filter);

#endif							/* OFS_SCOPE_H */

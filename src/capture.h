/*
 * capture.h: what capture.c offers the rest of the extension.
 */
#ifndef OFS_CAPTURE_H
#define OFS_CAPTURE_H

#include "postgres.h"

#include "access/attnum.h"
#include "utils/relcache.h"

/* PrimaryKeyAtts: a table's primary key columns, in attnum order. */
extern AttrNumber *PrimaryKeyAtts(Relation rel, int *npk);

#endif							/* OFS_CAPTURE_H */

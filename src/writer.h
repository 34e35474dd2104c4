/*
 * writer.h: who is writing the current change.
 *
 * A write made by the sync write path is a device's intent: the capture
 * trigger records its device, operation id, HLC and the columns it writes in
 * the changes feed, and the transition log records its device and operation
 * id.  Any other write is the origin's own.  This one object says which, for
 * the statement running now.
 */
#ifndef OFS_WRITER_H
#define OFS_WRITER_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef struct OfsWriter
{
	char	   *device;			/* the device whose intent is applied */
	char	   *operation;		/* its operation id */
	int64		hlc;			/* its HLC (already clamped) */
	List	   *columns;		/* the columns it writes (C strings), or NIL */
	Jsonb	   *values;			/* the values the device sent for its columns, or NULL */
} OfsWriter;

/* OfsWriterInit registers the callbacks that end a writer with its transaction. */
extern void OfsWriterInit(void);

/*
 * OfsWriterBegin makes a device's intent the writer of what follows, until
 * OfsWriterEnd, the end of the subtransaction it began in or the end of the
 * transaction, whichever comes first.  The strings are copied.
 */
extern void OfsWriterBegin(const char *device, const char *operation, int64 hlc);
/* OfsWriterSetColumns says which columns the intent writes (copied). */
extern void OfsWriterSetColumns(List *columns);

/*
 * OfsWriterSetValues gives the values the device sent (an insert's whole
 * row, an update's columns; copied): capture compares the row it records
 * with them, to tell whether the device already holds that row.
 */
extern void OfsWriterSetValues(Jsonb *values);
extern void OfsWriterEnd(void);

/* OfsCurrentWriter is the device's intent being applied, or NULL for the origin. */
extern const OfsWriter *OfsCurrentWriter(void);

#endif							/* OFS_WRITER_H */

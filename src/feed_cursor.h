/*
 * feed_cursor.h: the changes feed's cursors, made and read in C.
 *
 * A cursor is "ofs1/<epoch>/<C>" (after a whole batch) or
 * "ofs1/<epoch>/<C>/<S>/<last seq>" (inside the batch S, after a change),
 * where C and S are pg_snapshot texts (docs/DESIGN.md, "The feed").  The
 * epoch names the feed: a restored or re-created database has another one.
 * Cursors older than the feed's retention horizon are refused: deletions
 * they had not seen may have been purged.
 */
#ifndef OFS_FEED_CURSOR_H
#define OFS_FEED_CURSOR_H

#include "postgres.h"

typedef enum OfsFeedCursorVerdict
{
	OFS_FEED_CURSOR_OK,
	OFS_FEED_CURSOR_FOREIGN,	/* of another feed (epoch) */
	OFS_FEED_CURSOR_TOO_OLD		/* older than the feed retains */
} OfsFeedCursorVerdict;

typedef struct OfsFeedCursor
{
	Datum		c;				/* pg_snapshot: the batches before were read */
	bool		has_s;			/* inside a batch: */
	Datum		s;				/* pg_snapshot of that batch */
	int64		last_seq;		/* and the seq of its last change read */
} OfsFeedCursor;

/*
 * OfsFeedCursorRead parses cursor (in SPI, connected) and checks it
 * against the feed.  A malformed cursor is an error; a foreign or too old
 * one is an error (OF010) when raise, and else the verdict.
 */
extern OfsFeedCursorVerdict OfsFeedCursorRead(const char *cursor, OfsFeedCursor *out, bool raise);

/* OfsFeedEpoch: the feed's epoch (in SPI, connected). */
extern char *OfsFeedEpoch(void);

/*
 * OfsSnapshotText renders a pg_snapshot for a cursor, counting the reading
 * transaction's own xid, if it has one, as not yet visible: its changes
 * are read after it commits.
 */
extern char *OfsSnapshotText(Datum snap);

/* OfsFeedCursorNow: the cursor of the current snapshot (ofs.feed_cursor). */
extern char *OfsFeedCursorNow(void);

#endif							/* OFS_FEED_CURSOR_H */

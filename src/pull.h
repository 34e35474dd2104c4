/*
 * pull.h: the pull engine (pull.c, pull_feed.c): what a device gets after
 * its cursor, scoped to its role and shapes, and the cursor after it.
 * Called inside a transaction with SPI connected; ofs.pull is its SQL face
 * and the sync worker calls it directly.
 */
#ifndef OFS_PULL_H
#define OFS_PULL_H

#include "postgres.h"

#include "feed_batch.h"

/* The most changes in one page. */
#define MAX_PAGE_ROWS 1000

typedef struct OfsPullAnswer
{
	OfsChangeList changes;
	char	   *cursor;			/* the pull cursor after these changes */
	bool		more;			/* more waits: pull again */
	char	   *progress;		/* a snapshot's progress as JSON text, or NULL */
} OfsPullAnswer;

/*
 * OfsPull answers a pull: device (checked), since (a pull cursor, or NULL
 * for everything afresh), at most max_rows changes (1,000 at most), and
 * confirmed (the cursor the device last confirmed holding, or NULL).
 */
extern void OfsPull(const char *device, const char *since, int max_rows, const char *confirmed,
					OfsPullAnswer *ans);

/* OfsPullAnswerJson: {"changes": [...], "more": ..[, "snapshot": ..][, "cursor": ..]}. */
extern char *OfsPullAnswerJson(const OfsPullAnswer *ans, bool with_cursor);

/* The feed part of a pull (pull_feed.c). */
extern bool OfsPullFeed(const char *device, Oid role, char **feedc, int room, int64 gen, int64 page,
						OfsChangeList *out);

#endif							/* OFS_PULL_H */

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
	int64		rejections;		/* the version of the device's rejections */
} OfsPullAnswer;

/*
 * OfsPull answers a pull: device (checked), since (a pull cursor, or NULL
 * for everything afresh), at most max_rows changes (1,000 at most), and
 * confirmed (the cursor the device last confirmed holding, or NULL).
 */
extern void OfsPull(const char *device, const char *since, int max_rows, const char *confirmed,
					OfsPullAnswer *ans);

/*
 * OfsPullCursorPosition reads a pull cursor's feed cursor, shape version,
 * page and whether snapshots are under way; false when it is not a pull
 * cursor.  OfsConfirmedPage is the page of the cursor a device confirmed,
 * at most since_page (since_page when it names none, 0 when unreadable).
 */
extern bool OfsPullCursorPosition(const char *cursor, char **f, int64 *v, int64 *p, bool *snapshots);
extern int64 OfsConfirmedPage(const char *confirmed, int64 since_page);

/* OfsPullAnswerJson: {"changes": [...], "more": ..[, "snapshot": ..][, "cursor": ..]}. */
extern char *OfsPullAnswerJson(const OfsPullAnswer *ans, bool with_cursor);

/*
 * OfsLiveEmit receives a device's answer in a live round: body is
 * {"more": .., "changes": [..]} and cursor the cursor after it, or error
 * and sqlstate say why the device could not pull.  ord is the device's
 * place in the arrays, from 1.
 */
typedef void (*OfsLiveEmit) (void *arg, int ord, const char *body, const char *cursor, int nchanges,
							 bool more, const char *error, const char *sqlstate);

/*
 * OfsPullLive pulls for n live devices at once (live_round.c), each from
 * its cursor with what it confirmed (NULLs allowed), at most room changes
 * each, and emits an answer for each device that has one.
 */
extern void OfsPullLive(int n, char **devices, char **cursors, char **confirmed, int room,
						OfsLiveEmit emit, void *emit_arg);

/* The feed part of a pull (pull_feed.c). */
extern bool OfsPullFeed(const char *device, Oid role, char **feedc, int room, int64 gen, int64 page,
						OfsChangeList *out);

#endif							/* OFS_PULL_H */

/*
 * feed_batch.h: reading the changes feed for devices and building the
 * changes they get, shared by the pull's feed part (pull_feed.c) and the
 * live round (live_round.c).
 *
 * A read follows a feed cursor for up to a number of changes (and of
 * ofs.changes batches) and marks, for each row, its first change in what
 * was read (which carries the row as it is now), whose own it is (the
 * device whose own changes, as it sent them, are all of the row's: it is
 * not sent them back) and whether its last change deleted it.
 */
#ifndef OFS_FEED_BATCH_H
#define OFS_FEED_BATCH_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

typedef struct OfsFeedChange
{
	char	   *cursor;			/* resumes after this change */
	Oid			tbl;
	char	   *tname;			/* schema-qualified */
	Jsonb	   *pk;
	char	   *pktext;			/* the key as jsonb text */
	char	   *site;			/* the device whose intent it was, or NULL */
	bool		as_sent;
	bool		is_delete;
	/* set on a row's first change in what was read: */
	bool		first;
	char	   *own;			/* the device whose own changes, as sent, are all of the row's */
	bool		last_delete;
} OfsFeedChange;

typedef struct OfsFeedRead
{
	char	   *f;				/* the cursor read from */
	bool		ok;				/* read (false: the feed refused the cursor) */
	OfsFeedChange *c;
	int			got;			/* changes read */
	int			n;				/* got, or the page size when batches remain */
	char	   *last_cursor;	/* the cursor after them (f when none) */
} OfsFeedRead;

/*
 * OfsReadFeed reads, in SPI (connected), up to room changes after fd->f in
 * at most max_batches batches of ofs.changes; what it keeps is allocated in
 * outer.  fd->n says "more" (room) when max_batches ran out first.
 */
extern void OfsReadFeed(OfsFeedRead *fd, int room, int max_batches, MemoryContext outer);

/*
 * OfsStringHash: a hash table keyed by text of any length (a row's key can
 * be a kilobyte), compared in full.  Entries begin with the key, a char *
 * that must live as long as the table (it is not copied).
 */
extern HTAB *OfsStringHash(const char *name, long nelem, Size entrysize, MemoryContext cxt);

/* OfsChangeJsonb: a change as devices get it, {table, op, pk[, row]}. */
extern Jsonb *OfsChangeJsonb(const char *tname, const char *op, Jsonb *pk, Jsonb *row);
/* OfsJsonbBinary: a jsonb value as a JsonbValue to push into another. */
extern JsonbValue *OfsJsonbBinary(Jsonb *j);

/*
 * OfsChangeList: changes as devices get them, as the JSON text of the
 * elements of an array ("{...}, {...}"), each row encoded once.
 */
typedef struct OfsChangeList
{
	StringInfoData json;		/* data NULL until the first change */
	int			n;
} OfsChangeList;

/* OfsChangeAdd adds {table, op, pk[, row]} (pk and row are JSON texts). */
extern void OfsChangeAdd(OfsChangeList *l, const char *tname, const char *op, const char *pk, const char *row);

#endif							/* OFS_FEED_BATCH_H */

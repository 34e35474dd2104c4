/*
 * libofs.h: the ofs device library.
 *
 * A device keeps a local SQLite database that the application reads and
 * writes with plain SQL, offline or not.  Writes to synced tables are
 * captured, in the same SQLite transaction, as intents in a durable outbox;
 * ofs_sync() pushes them to the origin (a PostgreSQL server with the ofs
 * extension and its sync worker) and pulls the origin's changes, so that
 * afterwards the local tables equal the origin's rows in the device's scope
 * with the still-pending intents replayed on top.  docs/PROTOCOL.md is the
 * wire protocol; this header is the whole C interface.
 *
 * Ownership: every pointer the library returns is owned by the library and
 * valid until the next call on the same ofs_db (or until ofs_close), unless
 * said otherwise.  Strings passed in are copied when kept.  An ofs_db is
 * not thread-safe: use one per thread, or serialize calls.
 */
#ifndef LIBOFS_H
#define LIBOFS_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIBOFS_VERSION "1.0.0"

/* Result codes.  OFS_OK is 0; every failure sets ofs_errmsg(). */
typedef enum ofs_rc
{
	OFS_OK = 0,
	OFS_ERROR = 1,				/* a local failure (SQLite, memory) */
	OFS_MISUSE = 2,				/* a bad argument or a call out of order */
	OFS_UNREACHABLE = 3,		/* the origin could not be reached or went away */
	OFS_UNAUTHORIZED = 4,		/* the token was refused (unknown, expired, revoked) */
	OFS_PROTOCOL = 5,			/* the origin sent something this library cannot use */
	OFS_REFUSED = 6,			/* the origin refused a request (see ofs_errmsg) */
	OFS_NOT_CONFIGURED = 7		/* ofs_configure was never called on this database */
} ofs_rc;

typedef struct ofs_db ofs_db;

/*
 * ofs_open opens (creating if needed) the device database at path and
 * prepares it: ofs's own tables (prefixed _ofs_), and the SQL functions the
 * capture triggers use.  *out is set even on failure when memory allowed,
 * so that ofs_errmsg can say why; ofs_close it in every case.
 */
ofs_rc		ofs_open(const char *path, ofs_db **out);
void		ofs_close(ofs_db *db);

/*
 * ofs_sqlite is the connection the application uses for its own SQL on the
 * device database.  Writes through it to synced tables are captured; a
 * forbidden transition is refused at once (SQLITE_CONSTRAINT, with the
 * allowed next states in the message).  Other connections to the file
 * (without ofs_open) cannot write synced tables: the capture triggers need
 * ofs's SQL functions.
 *
 * The writes of one transaction (BEGIN ... COMMIT, or one statement in
 * autocommit) reach the origin as one atomic group: all applied or none.
 * ofs tells transactions apart with this connection's commit and rollback
 * hooks: do not set your own (sqlite3_commit_hook, sqlite3_rollback_hook)
 * on it, or the writes of later transactions would join one group.  A
 * transaction of more writes than the origin's max_batch (1000 by default)
 * cannot be pushed: ofs_sync fails with OFS_REFUSED and it, and the writes
 * after it, stay in the outbox.
 */
sqlite3    *ofs_sqlite(ofs_db *db);

/* The last failure's message (owned by db), "" when none. */
const char *ofs_errmsg(ofs_db *db);

/* ofs_configure keeps the origin's URL (ws:// or wss://) and the token. */
ofs_rc		ofs_configure(ofs_db *db, const char *url, const char *token);

/*
 * ofs_subscribe adds a shape: a table of the origin and a filter in the
 * grammar of docs/PROTOCOL.md (NULL: the whole table).  It takes effect at
 * the next sync, which creates the local table from the origin's schema.
 * ofs_unsubscribe removes it (its rows go at the next sync).
 */
ofs_rc		ofs_subscribe(ofs_db *db, const char *table, const char *filter);
ofs_rc		ofs_unsubscribe(ofs_db *db, const char *table, const char *filter);

/* What a sync did. */
typedef struct ofs_sync_stats
{
	int64_t		pushed;			/* intents sent */
	int64_t		applied;		/* ... applied by the origin (or duplicates of applied ones) */
	int64_t		rejected;		/* ... rejected: rolled back locally, see ofs_rejected */
	int64_t		conflicts;		/* ... kept by the origin as conflicts */
	int64_t		pulled;			/* changes received and applied */
	int64_t		pending;		/* intents still in the outbox afterwards */
} ofs_sync_stats;

/*
 * ofs_sync runs one cycle: connect, hello, schema, push every pending
 * intent, pull until the origin has nothing more, disconnect.  Returns
 * OFS_UNREACHABLE when the origin could not be reached (nothing is lost:
 * intents stay in the outbox).  stats may be NULL.
 */
ofs_rc		ofs_sync(ofs_db *db, ofs_sync_stats *stats);

/*
 * ofs_live syncs and then stays connected for `seconds` (0: until
 * ofs_stop), pushing local writes as they commit and applying the origin's
 * changes as they arrive; it reconnects with jittered exponential backoff
 * (ofs_backoff_ms) when the connection drops.
 */
ofs_rc		ofs_live(ofs_db *db, double seconds);
/* ofs_stop asks ofs_live to return; safe to call from another thread or a signal handler. */
void		ofs_stop(ofs_db *db);

/* Callbacks, all optional; user is passed back.  They run inside the call that caused them. */
typedef struct ofs_callbacks
{
	/* A row changed by the origin: op is "upsert" or "delete"; row is NULL for a delete. JSON texts. */
	void		(*row_changed) (void *user, const char *table, const char *op, const char *pk_json,
								const char *row_json);
	/* An intent was rejected by the origin and rolled back locally; hint_json is the compensation hint. */
	void		(*rejected) (void *user, const char *op_id, const char *table, const char *sqlstate,
							 const char *message, const char *hint_json);
	/* An intent met a concurrent change of a manual column; the origin kept its value. */
	void		(*conflict) (void *user, const char *op_id, const char *table, const char *pk_json);
	/* The connection state: "connecting", "connected", "live", "disconnected". */
	void		(*connection) (void *user, const char *state);
	/* Initial-sync progress of a table: rows done of rows total. */
	void		(*progress) (void *user, const char *table, int64_t done, int64_t total);
} ofs_callbacks;

void		ofs_set_callbacks(ofs_db *db, const ofs_callbacks *callbacks, void *user);

/*
 * ofs_status returns a JSON object text: pending intents, cursor, device,
 * last sync time, rejected count, subscriptions, and:
 *   up_to_date          the last page of changes applied left the device
 *                       with everything the origin had committed before it
 *   synced              up_to_date and nothing pending: the honest "synced"
 *   synced_hlc          the origin's clock at that page (null if unknown)
 *   hlc                 the device's clock as stored
 *   rejections_version  the version of the origin's list the device holds
 *   dead_letters, origin_conflicts   how many of that list are open
 */
const char *ofs_status(ofs_db *db);

/*
 * ofs_rejected returns the rejected intents as a JSON array text, each with
 * op_id, table, op, pk, data, sqlstate, message, hint, group (the atomic
 * group it was sent in, or null) and origin: the origin's dead letter of
 * it (as in ofs_origin_rejections) once the device has fetched the list,
 * else null.
 */
const char *ofs_rejected(ofs_db *db);

/*
 * ofs_origin_rejections returns the origin's view of the device's
 * rejections as the device last fetched it (a sync fetches it when the
 * origin says it changed), without connecting: a JSON object text
 * {"version", "fetched_at" (Unix seconds), "dead_letters": [...],
 * "conflicts": [...]}, each entry as docs/PROTOCOL.md "rejections" shows
 * it (id, operation_id, table, pk, status, ...).
 */
const char *ofs_origin_rejections(ofs_db *db);

/*
 * ofs_clear_rejections connects and asks the origin to clear the dead
 * letters and conflicts with these ids (entries of ofs_origin_rejections):
 * a closed entry is no longer listed, an open dead letter is discarded; an
 * open conflict stays (a person resolves it).  The list the origin answers
 * replaces the device's.  With no ids, it only fetches the list.
 */
ofs_rc		ofs_clear_rejections(ofs_db *db, const int64_t *dead_letters, size_t n_dead_letters,
								 const int64_t *conflicts, size_t n_conflicts);

/*
 * ofs_available_tables connects and asks the origin for every table the
 * device's role may subscribe to (docs/PROTOCOL.md, "schema" with "all"):
 * a JSON array text of {name, columns, primary_key, subscribed, merge,
 * transitions}, owned by db until the next call or ofs_close; NULL on
 * failure (ofs_errmsg).  Nothing local changes: subscribe to use a table.
 */
const char *ofs_available_tables(ofs_db *db);

/* Helpers the library uses, public for tests and tools. */

/* ofs_backoff_ms: the wait before reconnection attempt n (0-based): exponential from 100 ms to 30 s, jittered by r in [0, 1). */
int64_t		ofs_backoff_ms(int attempt, double r);

/* ofs_hlc_next: the next hybrid logical clock value after last at wall time now_ms. */
int64_t		ofs_hlc_next(int64_t last, int64_t now_ms);

#ifdef __cplusplus
}
#endif

#endif							/* LIBOFS_H */

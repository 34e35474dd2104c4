/*
 * internal.h: what the files of libofs share.
 *
 * db.c: errors, SQL and settings, below every other file; store.c: the
 * device database (ofs's tables, SQL functions, local tables and their
 * triggers from the origin's schema); rows.c: local copies of synced rows
 * and the caches that write them; capture.c: writes captured as intents,
 * and the view _ofs_outbox that reads them as JSON; outbox.c: intents to push and what the
 * origin answered; reconcile.c: applying the origin's changes and
 * replaying pending intents on top; rejections.c: the origin's list of
 * the device's dead letters and conflicts, kept on the device;
 * transport.c: the WebSocket connection; sync.c: the sync cycle and live
 * mode; hlc.c: the clock and backoff.
 */
#ifndef OFS_INTERNAL_H
#define OFS_INTERNAL_H

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "libofs.h"

struct ofs_db
{
	sqlite3    *sql;
	char		err[1024];
	ofs_callbacks cb;
	void	   *user;
	int			capturing;		/* 0 while origin changes are applied */
	int64_t		hlc_last;
	int64_t		hlc_saved;		/* the clock this connection last stored (the stored one is at least it) */
	sqlite3_stmt *hlc_save;	/* prepared once: it runs with every message of the origin */
	int64_t		txn;			/* the open transaction's number for its intents, 0: none yet */
	int64_t		seq_last;		/* the open transaction's last intent's place (capture.c) */
	sqlite3_stmt *floor;		/* the largest stored seq and clock (capture.c) */
	int			floor_schema;	/* the schema version floor was made for */
	sqlite3_stmt *schema_version;
	int			max_batch;		/* welcome.limits.max_batch of the current session, 0: unknown */
	int			max_messages_per_second;	/* welcome.limits, 0: unknown; the device keeps below it */
	int			rejections_wanted;	/* a page named a rejections version the device has not fetched */
	volatile sig_atomic_t stop;
	char	   *status_text;	/* returned by ofs_status */
	char	   *rejected_text;	/* returned by ofs_rejected */
	char	   *origin_text;	/* returned by ofs_origin_rejections */
	char	   *tables_text;	/* returned by ofs_available_tables */
	/* Statements that write local rows, by their SQL (owned by rows.c). */
	struct
	{
		char	   *sql;
		sqlite3_stmt *st;
	}			stmts[32];
	int			nstmts;
	/* The last upsert's table, row keys (which of them are columns) and statement (rows.c). */
	struct
	{
		char	   *local;
		json_t	   *keys;
		char	   *bound;
		sqlite3_stmt *st;
	}			upsert;
	/* The synced tables' names, columns and keys (owned by rows.c). */
	struct
	{
		char	   *origin;
		char	   *local;
		json_t	   *cols;		/* array of column names */
		json_t	   *pk;			/* array of key column names */
	}			tables[32];
	int			ntables;
};

/* db.c (below every other file) */
ofs_rc		ofs_fail(ofs_db *db, ofs_rc rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
ofs_rc		ofs_sqlfail(ofs_db *db, const char *what);
ofs_rc		ofs_exec(ofs_db *db, const char *sql);
ofs_rc		ofs_rollback(ofs_db *db, const char *sql, ofs_rc rc);
/* The text of sql's first value with ?1 bound to arg (malloc'd), or NULL. */
char	   *ofs_select_text(ofs_db *db, const char *sql, const char *arg);
char	   *ofs_meta_get(ofs_db *db, const char *key);
int			ofs_has_column(ofs_db *db, const char *tbl, const char *col);	/* malloc'd, NULL if absent */
ofs_rc		ofs_meta_set(ofs_db *db, const char *key, const char *value);

/* rows.c: local copies of synced rows, written with capture off */
ofs_rc		ofs_upsert_row(ofs_db *db, const char *local, json_t *row);
ofs_rc		ofs_delete_row(ofs_db *db, const char *local, json_t *pk);
ofs_rc		ofs_update_row(ofs_db *db, const char *local, json_t *pk, json_t *data);
/* The local name of an origin table, cached (malloc'd; NULL if the device has none). */
char	   *ofs_rows_local_name(ofs_db *db, const char *origin);
void		ofs_rows_forget(ofs_db *db);	/* drops the caches below */

/* capture.c: intents written by triggers, read through the view _ofs_outbox */
ofs_rc		ofs_capture_register(ofs_db *db);	/* ofs_seq, ofs_txn, ofs_hlc, ofs_capturing */
void		ofs_capture_forget(ofs_db *db);
/* Appends the table of intents of a synced table and its capture triggers to ddl; their layout, -1: failed. */
int64_t		ofs_capture_ddl(ofs_db *db, sqlite3_str *ddl, const char *origin, const char *local, json_t *cols, json_t *pk);
ofs_rc		ofs_capture_view(ofs_db *db);	/* _ofs_outbox, made again over every synced table */
/* Moves the intents of a pre-1.1 outbox table into the tables of intents; *moved counts them. */
ofs_rc		ofs_capture_forward(ofs_db *db, int has_txn, int64_t *moved);

/* store.c */
ofs_rc		ofs_install_schema(ofs_db *db, json_t *schema);
/* Runs the query's single value into *buf (replacing it): a JSON text, or NULL on failure. */
const char *ofs_query_text(ofs_db *db, const char *sql, char **buf);
/* The local name of an origin table, or NULL if the device has no such table (malloc'd). */
char	   *ofs_local_table(ofs_db *db, const char *origin);

/* outbox.c */
/*
 * ofs_outbox_groups: the oldest intents as protocol mutations (a JSON
 * array), whole transactions only: as many as fit in target, but the first
 * transaction alone may take up to limit.  NULL with *rc set when it cannot
 * be read, or when the oldest transaction is larger than limit (OFS_REFUSED).
 */
json_t	   *ofs_outbox_groups(ofs_db *db, int target, int limit, ofs_rc *rc);
json_t	   *ofs_outbox_batch(ofs_db *db, int max);	/* ofs_outbox_groups(db, max, max) */
ofs_rc		ofs_outbox_results(ofs_db *db, json_t *batch, json_t *results, ofs_sync_stats *stats);
int64_t		ofs_outbox_count(ofs_db *db);

/* reconcile.c */
ofs_rc		ofs_apply_changes(ofs_db *db, json_t *changes, const char *cursor);
/*
 * ofs_apply_message applies a "changes" message (checked first): its rows,
 * cursor, the origin's clock and whether the device is now up to date, in
 * one transaction.  live: an unsolicited message (up to date when it says
 * nothing).  Sets db->rejections_wanted when it names a rejections version
 * the device has not fetched.
 */
ofs_rc		ofs_apply_message(ofs_db *db, json_t *m, int live);
/* ofs_restart: the device starts afresh (cursor_too_old): synced rows and cursor gone, intents kept and replayed. */
ofs_rc		ofs_restart(ofs_db *db);
ofs_rc		ofs_replay_pending(ofs_db *db, json_t *touched);

/* transport.c */
typedef struct ofs_conn ofs_conn;
ofs_rc		ofs_conn_open(ofs_db *db, const char *url, int timeout_ms, ofs_conn **out);
/* Sends msg (stolen) with a fresh id and waits for its answer (*answer owned by the caller). */
ofs_rc		ofs_conn_request(ofs_conn *c, json_t *msg, json_t **answer, int timeout_ms);
/* The two halves of ofs_conn_request: send msg (stolen) with a fresh id (*id), and wait for its answer. */
ofs_rc		ofs_conn_ask(ofs_conn *c, json_t *msg, int64_t *id);
ofs_rc		ofs_conn_answer(ofs_conn *c, int64_t id, json_t **answer, int timeout_ms);
ofs_rc		ofs_conn_send(ofs_conn *c, json_t *msg);	/* msg stolen; no answer expected */
/* Waits up to timeout_ms for a message the origin sent on its own; *msg NULL on timeout. */
ofs_rc		ofs_conn_next(ofs_conn *c, int timeout_ms, json_t **msg);
/* The next message the origin sent on its own that is already received, or NULL (no I/O). */
json_t	   *ofs_conn_queued(ofs_conn *c);
int			ofs_conn_closed(ofs_conn *c, int *code);
void		ofs_conn_close(ofs_conn *c);

/* A live connection woken by commits to its device file in this process (transport.c). */
void		ofs_wake_register(ofs_conn *c, const char *path);
void		ofs_wake_file(const char *path);

/* rejections.c */
/* ofs_rejections_valid: is v (a welcome's or a page's "rejections") absent, null or a version? */
int			ofs_rejections_valid(json_t *v);
/* ofs_rejections_differ: does version v differ from the one last fetched (or was none fetched)? */
int			ofs_rejections_differ(ofs_db *db, json_t *v);
/* ofs_rejections_store keeps a "rejections" answer (checked first), replacing the list before it. */
ofs_rc		ofs_rejections_store(ofs_db *db, json_t *answer);

/* hlc.c */
/* The largest clock the origin may send: room left for 2^32 local stamps after it. */
#define OFS_HLC_MAX (INT64_MAX - ((int64_t) 1 << 32))
int64_t		ofs_now_ms(void);
/* ofs_hlc_valid: is v a clock value (a JSON integer in [0, OFS_HLC_MAX])? */
int			ofs_hlc_valid(json_t *v);
/* ofs_hlc_observe: clock = max(clock, received), kept in _ofs_meta in the caller's transaction (if any). */
ofs_rc		ofs_hlc_observe(ofs_db *db, int64_t received);
/* ofs_hlc_save: the clock into _ofs_meta, never lowering what another connection stored. */
ofs_rc		ofs_hlc_save(ofs_db *db);

#endif							/* OFS_INTERNAL_H */

/*
 * internal.h: what the files of libofs share.
 *
 * db.c: errors, SQL and settings, below every other file; store.c: the
 * device database (ofs's tables, SQL functions, local tables and their
 * triggers from the origin's schema); rows.c: local copies of synced rows
 * and the caches that write them; outbox.c: intents to push and what the
 * origin answered; reconcile.c: applying the origin's changes and
 * replaying pending intents on top; transport.c: the WebSocket
 * connection; sync.c: the sync cycle and live mode; hlc.c: the clock, ids
 * and backoff.
 */
#ifndef OFS_INTERNAL_H
#define OFS_INTERNAL_H

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>

#include "libofs.h"

struct ofs_db
{
	sqlite3    *sql;
	char		err[1024];
	ofs_callbacks cb;
	void	   *user;
	int			capturing;		/* 0 while origin changes are applied */
	int64_t		hlc_last;
	volatile sig_atomic_t stop;
	char	   *status_text;	/* returned by ofs_status */
	char	   *rejected_text;	/* returned by ofs_rejected */
	/* Statements that write local rows, by their SQL (owned by rows.c). */
	struct
	{
		char	   *sql;
		sqlite3_stmt *st;
	}			stmts[32];
	int			nstmts;
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
char	   *ofs_meta_get(ofs_db *db, const char *key);	/* malloc'd, NULL if absent */
ofs_rc		ofs_meta_set(ofs_db *db, const char *key, const char *value);

/* rows.c: local copies of synced rows, written with capture off */
ofs_rc		ofs_upsert_row(ofs_db *db, const char *local, json_t *row);
ofs_rc		ofs_delete_row(ofs_db *db, const char *local, json_t *pk);
ofs_rc		ofs_update_row(ofs_db *db, const char *local, json_t *pk, json_t *data);
/* The local name of an origin table, cached (malloc'd; NULL if the device has none). */
char	   *ofs_rows_local_name(ofs_db *db, const char *origin);
void		ofs_rows_forget(ofs_db *db);	/* drops the caches below */

/* store.c */
ofs_rc		ofs_install_schema(ofs_db *db, json_t *schema);
/* The local name of an origin table, or NULL if the device has no such table (malloc'd). */
char	   *ofs_local_table(ofs_db *db, const char *origin);

/* outbox.c */
json_t	   *ofs_outbox_batch(ofs_db *db, int max);
ofs_rc		ofs_outbox_results(ofs_db *db, json_t *batch, json_t *results, ofs_sync_stats *stats);
int64_t		ofs_outbox_count(ofs_db *db);

/* reconcile.c */
ofs_rc		ofs_apply_changes(ofs_db *db, json_t *changes, const char *cursor);
ofs_rc		ofs_replay_pending(ofs_db *db, json_t *touched);

/* transport.c */
typedef struct ofs_conn ofs_conn;
ofs_rc		ofs_conn_open(ofs_db *db, const char *url, int timeout_ms, ofs_conn **out);
/* Sends msg (stolen) with a fresh id and waits for its answer (*answer owned by the caller). */
ofs_rc		ofs_conn_request(ofs_conn *c, json_t *msg, json_t **answer, int timeout_ms);
ofs_rc		ofs_conn_send(ofs_conn *c, json_t *msg);	/* msg stolen; no answer expected */
/* Waits up to timeout_ms for a message the origin sent on its own; *msg NULL on timeout. */
ofs_rc		ofs_conn_next(ofs_conn *c, int timeout_ms, json_t **msg);
/* The next message the origin sent on its own that is already received, or NULL (no I/O). */
json_t	   *ofs_conn_queued(ofs_conn *c);
int			ofs_conn_closed(ofs_conn *c, int *code);
void		ofs_conn_close(ofs_conn *c);

/* hlc.c */
int64_t		ofs_now_ms(void);
void		ofs_op_id(char out[33]);

#endif							/* OFS_INTERNAL_H */

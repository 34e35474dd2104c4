/*
 * db.c: what every file of libofs does with the device database: report a
 * failure in the handle's message, run SQL, end a failed transaction, and
 * read and write ofs's own settings (_ofs_meta).  It is below store.c,
 * rows.c, reconcile.c and outbox.c, and calls none of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

ofs_rc
ofs_fail(ofs_db *db, ofs_rc rc, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
	return rc;
}

ofs_rc
ofs_sqlfail(ofs_db *db, const char *what)
{
	return ofs_fail(db, OFS_ERROR, "%s: %s", what, sqlite3_errmsg(db->sql));
}

ofs_rc
ofs_exec(ofs_db *db, const char *sql)
{
	char	   *msg = NULL;

	if (sqlite3_exec(db->sql, sql, NULL, NULL, &msg) != SQLITE_OK)
	{
		ofs_fail(db, OFS_ERROR, "%s", msg ? msg : sqlite3_errmsg(db->sql));
		sqlite3_free(msg);
		return OFS_ERROR;
	}
	return OFS_OK;
}

/*
 * ofs_rollback ends a failed transaction with sql ("ROLLBACK", or a
 * savepoint's), keeping the message of the failure rather than the
 * rollback's.
 */
ofs_rc
ofs_rollback(ofs_db *db, const char *sql, ofs_rc rc)
{
	char		save[sizeof(db->err)];

	memcpy(save, db->err, sizeof(save));
	ofs_exec(db, sql);
	memcpy(db->err, save, sizeof(save));
	return rc;
}

/* ofs_select_text: the text of sql's first value with ?1 bound to arg (malloc'd), or NULL. */
char *
ofs_select_text(ofs_db *db, const char *sql, const char *arg)
{
	sqlite3_stmt *st;
	char	   *v = NULL;

	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v;
}

/* ofs_has_column: does table tbl have column col (named in any case, as SQLite compares them)? */
int
ofs_has_column(ofs_db *db, const char *tbl, const char *col)
{
	sqlite3_stmt *st;
	int			yes;

	if (sqlite3_prepare_v2(db->sql, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE",
						   -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
	yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

char *
ofs_meta_get(ofs_db *db, const char *key)
{
	return ofs_select_text(db, "SELECT value FROM _ofs_meta WHERE key = ?1", key);
}

ofs_rc
ofs_meta_set(ofs_db *db, const char *key, const char *value)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->sql, "INSERT INTO _ofs_meta (key, value) VALUES (?1, ?2)"
						   " ON CONFLICT (key) DO UPDATE SET value = excluded.value", -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "meta");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (value)
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OFS_OK : ofs_sqlfail(db, "meta");
}

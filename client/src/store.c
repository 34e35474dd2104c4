/*
 * store.c: the device database.
 *
 * ofs keeps its own state in tables prefixed _ofs_ in the application's
 * SQLite file: meta (url, token, cursor, clock, roles), the shapes, the
 * synced tables and their origin schema, the outbox of intents, rejected
 * intents, conflicts, the transition rules received from the origin, and
 * the origin's list of the device's dead letters and conflicts.
 * Local tables are created from the origin's schema; triggers on them
 * capture every write as an intent in the same transaction, and refuse a
 * forbidden transition at once.  The triggers call SQL functions that only
 * a connection opened by ofs_open has, so that no other connection can
 * write a synced table without its intent.
 *
 * Each intent carries the number of the local transaction that made it
 * (txn, capture.c): the intents of one transaction reach the origin as
 * one atomic group.  The number is drawn at the transaction's first
 * captured write and forgotten by the commit and rollback hooks, so an
 * autocommit statement is a transaction of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const ofs_tables_sql =
	"PRAGMA journal_mode = WAL;"
	"PRAGMA synchronous = NORMAL;"
	/* so that INSERT OR REPLACE of a synced row is captured as the delete and the insert it is */
	"PRAGMA recursive_triggers = ON;"
	"CREATE TABLE IF NOT EXISTS _ofs_meta (key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE IF NOT EXISTS _ofs_shapes (tbl TEXT NOT NULL, filter TEXT NOT NULL DEFAULT '',"
	"  PRIMARY KEY (tbl, filter));"
	/* layout: the _ofs_layouts row its writes are captured with now */
	"CREATE TABLE IF NOT EXISTS _ofs_tables (origin TEXT PRIMARY KEY, local TEXT NOT NULL UNIQUE,"
	"  pk TEXT NOT NULL, columns TEXT NOT NULL, layout INTEGER);"
	/* the columns and key a synced table had when intents were captured (capture.c) */
	"CREATE TABLE IF NOT EXISTS _ofs_layouts (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, columns TEXT NOT NULL,"
	"  pk TEXT NOT NULL, UNIQUE (tbl, columns, pk));"
	/* the outbox: tables of intents per synced table and the view _ofs_outbox over them (capture.c) */
	"CREATE TABLE IF NOT EXISTS _ofs_rejected (op_id TEXT PRIMARY KEY, tbl TEXT, op TEXT, pk TEXT,"
	"  data TEXT, sqlstate TEXT, message TEXT, hint TEXT, at INTEGER, grp TEXT);"
	"CREATE TABLE IF NOT EXISTS _ofs_conflicts (op_id TEXT PRIMARY KEY, tbl TEXT, pk TEXT, data TEXT, at INTEGER);"
	"CREATE TABLE IF NOT EXISTS _ofs_rules (tbl TEXT NOT NULL, col TEXT NOT NULL, from_state TEXT,"
	"  to_state TEXT NOT NULL, role TEXT);"
	/* The origin's view of the device's rejections (answer to "rejections"), each entry as sent. */
	"CREATE TABLE IF NOT EXISTS _ofs_dead_letters (id INTEGER PRIMARY KEY, op_id TEXT, tbl TEXT, pk TEXT,"
	"  status TEXT, entry TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS _ofs_origin_conflicts (id INTEGER PRIMARY KEY, op_id TEXT, tbl TEXT, pk TEXT,"
	"  status TEXT, entry TEXT NOT NULL);"
	/* ofs_rejected finds each intent's dead letter by its operation id */
	"CREATE INDEX IF NOT EXISTS _ofs_dead_letters_op ON _ofs_dead_letters (op_id);";


/*
 * WalHook runs after each commit (the file is in WAL mode): it wakes the
 * live connection of this process that serves the file, so that a local
 * write is pushed at once rather than at the live loop's next poll.  It
 * takes the place of SQLite's own hook, so it checkpoints as that one does
 * (at 1,000 pages of log).
 */
static int
WalHook(void *arg, sqlite3 *sql, const char *name, int pages)
{
	(void) arg;
	if (pages >= 1000)
		sqlite3_wal_checkpoint_v2(sql, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (strcmp(name, "main") == 0)
		ofs_wake_file(sqlite3_db_filename(sql, name));
	return SQLITE_OK;
}

/*
 * CommitHook and RollbackHook end the transaction's number.  The commit
 * hook runs before the commit; a commit that then fails rolls back (the
 * rollback hook runs too) or, busy, leaves the transaction open: its later
 * writes would start a group of their own, which is why ofs uses WAL,
 * where a commit does not wait for readers.
 */
static int
CommitHook(void *arg)
{
	((ofs_db *) arg)->txn = 0;
	return 0;
}

static void
RollbackHook(void *arg)
{
	ofs_db	   *db = arg;

	db->txn = 0;
	db->hlc_saved = 0;			/* a clock stored in the transaction is gone with it */
}

/* HasRole: is role among the device role's memberships (as the origin said)? */
static int
HasRole(ofs_db *db, const char *role)
{
	sqlite3_stmt *st;
	int			yes = 0;

	if (sqlite3_prepare_v2(db->sql, "SELECT 1 FROM _ofs_meta m, json_each(m.value) r"
						   " WHERE m.key = 'roles' AND json_valid(m.value) AND r.value = ?1", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
	yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

/* AllowedStates lists the states reachable from `from` (for messages). */
static char *
AllowedStates(ofs_db *db, const char *tbl, const char *col, const char *from)
{
	sqlite3_stmt *st;
	char	   *list = NULL;

	if (sqlite3_prepare_v2(db->sql, "SELECT group_concat(to_state || CASE WHEN role IS NULL THEN ''"
						   " ELSE ' (by ' || role || ')' END, ', ') FROM _ofs_rules"
						   " WHERE tbl = ?1 AND col = ?2 AND from_state IS ?3", -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
	if (from)
		sqlite3_bind_text(st, 3, from, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		list = strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return list;
}

/*
 * SQL function ofs_check_transition(tbl, col, old, new): raises the
 * origin's kind of error when the rules received from the origin do not
 * allow old -> new (or new as an initial state when old is NULL and the
 * row is inserted), or when the edge needs a role the device lacks.
 */
static void
FnCheckTransition(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	ofs_db	   *db = sqlite3_user_data(ctx);
	const char *tbl = (const char *) sqlite3_value_text(argv[0]);
	const char *col = (const char *) sqlite3_value_text(argv[1]);
	const char *from = sqlite3_value_type(argv[2]) == SQLITE_NULL ? NULL : (const char *) sqlite3_value_text(argv[2]);
	const char *to = sqlite3_value_type(argv[3]) == SQLITE_NULL ? NULL : (const char *) sqlite3_value_text(argv[3]);
	int			inserting = argc > 4 && sqlite3_value_int(argv[4]);
	sqlite3_stmt *st;
	int			edges = 0;
	int			found = 0;
	char	   *role = NULL;
	char	   *allowed;
	char	   *msg;

	if (!tbl || !col)
		return;
	if (sqlite3_prepare_v2(db->sql, "SELECT count(*), max(from_state IS ?3 AND to_state IS ?4),"
						   " max(CASE WHEN from_state IS ?3 AND to_state IS ?4 THEN coalesce(role, '') END)"
						   " FROM _ofs_rules WHERE tbl = ?1 AND col = ?2 AND (from_state IS NULL) = ?5",
						   -1, &st, NULL) != SQLITE_OK)
	{
		sqlite3_result_error(ctx, sqlite3_errmsg(db->sql), -1);
		return;
	}
	sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
	if (from && !inserting)
		sqlite3_bind_text(st, 3, from, -1, SQLITE_STATIC);
	if (to)
		sqlite3_bind_text(st, 4, to, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, inserting);
	if (sqlite3_step(st) == SQLITE_ROW)
	{
		edges = sqlite3_column_int(st, 0);
		found = sqlite3_column_int(st, 1);
		if (sqlite3_column_type(st, 2) != SQLITE_NULL)
			role = strdup((const char *) sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (edges == 0)
	{
		/* No rules (or no initial states) for this column: anything goes. */
		free(role);
		sqlite3_result_int(ctx, 1);
		return;
	}
	if (found && (role == NULL || role[0] == '\0' || HasRole(db, role)))
	{
		free(role);
		sqlite3_result_int(ctx, 1);
		return;
	}
	allowed = AllowedStates(db, tbl, col, inserting ? NULL : from);
	if (found)
		msg = sqlite3_mprintf("transition of %s.%s from \"%s\" to \"%s\" requires role %s (ofs OF002); allowed next states: %s",
							  tbl, col, from ? from : "NULL", to ? to : "NULL", role, allowed ? allowed : "none");
	else if (inserting)
		msg = sqlite3_mprintf("\"%s\" is not an initial state of %s.%s (ofs OF004); allowed: %s",
							  to ? to : "NULL", tbl, col, allowed ? allowed : "none");
	else
		msg = sqlite3_mprintf("transition of %s.%s from \"%s\" to \"%s\" is not allowed (ofs OF001); allowed next states: %s",
							  tbl, col, from ? from : "NULL", to ? to : "NULL", allowed ? allowed : "none");
	sqlite3_result_error(ctx, msg ? msg : "transition not allowed", -1);
	sqlite3_result_error_code(ctx, SQLITE_CONSTRAINT);
	sqlite3_free(msg);
	free(allowed);
	free(role);
}

static ofs_rc InstallTable(ofs_db *db, json_t *t);

/*
 * StoredTable rebuilds the origin's schema of one synced table from what
 * the device kept of it (_ofs_tables and _ofs_rules), in the shape of the
 * "schema" answer, so that its triggers can be made again offline.
 */
static json_t *
StoredTable(ofs_db *db, const char *origin, const char *pk, const char *cols)
{
	json_t	   *t = json_object();
	json_t	   *tr = json_array();
	sqlite3_stmt *st;

	json_object_set_new(t, "name", json_string(origin));
	json_object_set_new(t, "columns", json_loads(cols, 0, NULL));
	json_object_set_new(t, "primary_key", json_loads(pk, 0, NULL));
	if (sqlite3_prepare_v2(db->sql, "SELECT col,"
						   " (SELECT json_group_array(to_state) FROM _ofs_rules r WHERE r.tbl = ?1 AND r.col = c.col"
						   "  AND from_state IS NULL),"
						   " (SELECT json_group_array(json_object('from', from_state, 'to', to_state, 'role', role))"
						   "  FROM _ofs_rules r WHERE r.tbl = ?1 AND r.col = c.col AND from_state IS NOT NULL)"
						   " FROM (SELECT DISTINCT col FROM _ofs_rules WHERE tbl = ?1) c", -1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(tr, json_pack("{s:s, s:o?, s:o?}", "column", sqlite3_column_text(st, 0),
												"initial", json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL),
												"edges", json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL)));
		sqlite3_finalize(st);
	}
	json_object_set_new(t, "transitions", tr);
	return t;
}

/* Kind: the type of the schema object name ("table", "view"...), or NULL (malloc'd). */
static char *
Kind(ofs_db *db, const char *name)
{
	return ofs_select_text(db, "SELECT type FROM sqlite_schema WHERE name = ?1", name);
}

/*
 * Migrate brings a device file made by an older libofs to this layout, in
 * one transaction that takes the write lock first, so that two processes
 * opening the same old file migrate it once: _ofs_rejected gains grp, and
 * an outbox that is a table of JSON intents becomes the tables of intents
 * and their view (capture.c), every intent kept with its order, operation
 * id, transaction and clock, the capture triggers of every synced table
 * made again.  A file that cannot be moved whole is left as it was.
 */
static ofs_rc
Migrate(ofs_db *db)
{
	sqlite3_stmt *st;
	ofs_rc		rc = OFS_OK;
	char	   *kind = Kind(db, "_ofs_outbox");
	int			legacy = kind && strcmp(kind, "table") == 0;
	int			missing = kind == NULL;

	free(kind);
	if (!legacy && !missing && ofs_has_column(db, "_ofs_rejected", "grp") && ofs_has_column(db, "_ofs_tables", "layout"))
		return OFS_OK;
	if (ofs_exec(db, "BEGIN IMMEDIATE") != OFS_OK)
		return OFS_ERROR;
	/* Another process may have migrated the file meanwhile. */
	kind = Kind(db, "_ofs_outbox");
	legacy = kind && strcmp(kind, "table") == 0;
	missing = kind == NULL;
	free(kind);
	if (!ofs_has_column(db, "_ofs_rejected", "grp"))
		rc = ofs_exec(db, "ALTER TABLE _ofs_rejected ADD COLUMN grp TEXT");
	if (rc == OFS_OK && !ofs_has_column(db, "_ofs_tables", "layout"))
		rc = ofs_exec(db, "ALTER TABLE _ofs_tables ADD COLUMN layout INTEGER");
	if (rc == OFS_OK && legacy)
	{
		int			has_txn = ofs_has_column(db, "_ofs_outbox", "txn");
		char	   *before = ofs_select_text(db, "SELECT count(*) FROM _ofs_outbox", NULL);
		int64_t		moved = 0;

		if (sqlite3_prepare_v2(db->sql, "SELECT origin, pk, columns FROM _ofs_tables ORDER BY origin",
							   -1, &st, NULL) != SQLITE_OK)
			rc = ofs_sqlfail(db, "reading the synced tables");
		else
		{
			while (rc == OFS_OK && sqlite3_step(st) == SQLITE_ROW)
			{
				json_t	   *t = StoredTable(db, (const char *) sqlite3_column_text(st, 0),
											(const char *) sqlite3_column_text(st, 1),
											(const char *) sqlite3_column_text(st, 2));

				rc = InstallTable(db, t);
				json_decref(t);
			}
			sqlite3_finalize(st);
		}
		if (rc == OFS_OK)
			rc = ofs_capture_forward(db, has_txn, &moved);
		if (rc == OFS_OK && (before == NULL || moved != strtoll(before, NULL, 10)))
			rc = ofs_fail(db, OFS_ERROR, "the outbox of this file cannot be moved to this version of libofs:"
						  " %lld of its %s intents name no synced table or are not valid JSON; the file is"
						  " left as it was", (long long) (before ? strtoll(before, NULL, 10) - moved : 0),
						  before ? before : "?");
		free(before);
		if (rc == OFS_OK)
			rc = ofs_exec(db, "DROP TABLE _ofs_outbox");
	}
	if (rc == OFS_OK && (legacy || missing))
		rc = ofs_capture_view(db);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	return ofs_exec(db, "COMMIT");
}

ofs_rc
ofs_open(const char *path, ofs_db **out)
{
	ofs_db	   *db = calloc(1, sizeof(ofs_db));
	char	   *last;

	*out = db;
	if (db == NULL)
		return OFS_ERROR;
	db->capturing = 1;
	if (path == NULL)
		return ofs_fail(db, OFS_MISUSE, "no database path");
	if (sqlite3_open_v2(path, &db->sql, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "cannot open the device database");
	sqlite3_busy_timeout(db->sql, 5000);
	if (ofs_capture_register(db) != OFS_OK)
		return OFS_ERROR;
	if (sqlite3_create_function(db->sql, "ofs_check_transition", 5, SQLITE_UTF8, db, FnCheckTransition, NULL, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "cannot register ofs's SQL functions");
	sqlite3_commit_hook(db->sql, CommitHook, db);
	sqlite3_rollback_hook(db->sql, RollbackHook, db);
	sqlite3_wal_hook(db->sql, WalHook, db);
	if (ofs_exec(db, ofs_tables_sql) != OFS_OK)
		return OFS_ERROR;
	if (Migrate(db) != OFS_OK)
		return OFS_ERROR;
	/* The clock resumes after the last value it handed out. */
	last = ofs_meta_get(db, "hlc");
	if (last)
		db->hlc_last = strtoll(last, NULL, 10);
	free(last);
	return OFS_OK;
}

void
ofs_close(ofs_db *db)
{
	if (db == NULL)
		return;
	if (db->sql)
	{
		ofs_capture_forget(db);
		ofs_hlc_save(db);
		sqlite3_finalize(db->hlc_save);
		db->hlc_save = NULL;
		ofs_rows_forget(db);
		sqlite3_close_v2(db->sql);
	}
	free(db->status_text);
	free(db->rejected_text);
	free(db->origin_text);
	free(db->tables_text);
	free(db);
}

sqlite3 *
ofs_sqlite(ofs_db *db)
{
	return db ? db->sql : NULL;
}

const char *
ofs_errmsg(ofs_db *db)
{
	return db ? db->err : "out of memory";
}

void
ofs_set_callbacks(ofs_db *db, const ofs_callbacks *callbacks, void *user)
{
	if (callbacks)
		db->cb = *callbacks;
	else
		memset(&db->cb, 0, sizeof(db->cb));
	db->user = user;
}

ofs_rc
ofs_configure(ofs_db *db, const char *url, const char *token)
{
	if (url == NULL || token == NULL ||
		(strncmp(url, "ws://", 5) != 0 && strncmp(url, "wss://", 6) != 0))
		return ofs_fail(db, OFS_MISUSE, "a URL (ws:// or wss://) and a token are needed");
	if (ofs_meta_set(db, "url", url) != OFS_OK || ofs_meta_set(db, "token", token) != OFS_OK)
		return OFS_ERROR;
	return OFS_OK;
}

static ofs_rc
ShapeChange(ofs_db *db, const char *table, const char *filter, int add)
{
	sqlite3_stmt *st;
	int			rc;

	if (table == NULL || table[0] == '\0')
		return ofs_fail(db, OFS_MISUSE, "a table name is needed");
	if (sqlite3_prepare_v2(db->sql, add ? "INSERT OR IGNORE INTO _ofs_shapes (tbl, filter) VALUES (?1, ?2)"
						   : "DELETE FROM _ofs_shapes WHERE tbl = ?1 AND filter = ?2", -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "shapes");
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, filter ? filter : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return ofs_sqlfail(db, "shapes");
	if (!add && sqlite3_changes(db->sql) == 0)
		return ofs_fail(db, OFS_MISUSE, "not subscribed to that shape of %s", table);
	/* The device lacks the new shape's rows (or holds the old one's) until it syncs. */
	if (sqlite3_changes(db->sql) > 0)
		return ofs_meta_set(db, "up_to_date", "0");
	return OFS_OK;
}

ofs_rc
ofs_subscribe(ofs_db *db, const char *table, const char *filter)
{
	return ShapeChange(db, table, filter, 1);
}

ofs_rc
ofs_unsubscribe(ofs_db *db, const char *table, const char *filter)
{
	return ShapeChange(db, table, filter, 0);
}

char *
ofs_local_table(ofs_db *db, const char *origin)
{
	return ofs_select_text(db, "SELECT local FROM _ofs_tables WHERE origin = ?1", origin);
}

/* LocalName: "public.todos" is "todos" on the device; other schemas keep theirs ("sales.x"). */
static char *
LocalName(const char *origin)
{
	const char *dot = strchr(origin, '.');
	char	   *s;
	char	   *w;

	if (strncmp(origin, "public.", 7) == 0)
		origin += 7;
	else if (dot == NULL)
		return strdup(origin);
	/* The origin quotes names that need it: the device uses them bare. */
	s = malloc(strlen(origin) + 1);
	if (s == NULL)
		return NULL;
	for (w = s; *origin; origin++)
		if (*origin != '"')
			*w++ = *origin;
	*w = '\0';
	return s;
}

/* SqliteType maps a PostgreSQL type to the column type on the device. */
static const char *
SqliteType(const char *pgtype)
{
	if (strcmp(pgtype, "integer") == 0 || strcmp(pgtype, "bigint") == 0 || strcmp(pgtype, "smallint") == 0 ||
		strcmp(pgtype, "boolean") == 0 || strcmp(pgtype, "oid") == 0)
		return "INTEGER";
	if (strcmp(pgtype, "real") == 0 || strcmp(pgtype, "double precision") == 0)
		return "REAL";
	/* numeric stays exact decimal text; dates, uuids, json... their text form */
	return "TEXT";
}

/* InstallTable creates the local table and its capture triggers. */
static ofs_rc
InstallTable(ofs_db *db, json_t *t)
{
	const char *origin = json_string_value(json_object_get(t, "name"));
	json_t	   *cols = json_object_get(t, "columns");
	json_t	   *pk = json_object_get(t, "primary_key");
	json_t	   *tr = json_object_get(t, "transitions");
	char	   *local;
	sqlite3_str *ddl;
	char	   *sql;
	size_t		i;
	size_t		j;
	json_t	   *c;
	json_t	   *k;
	ofs_rc		rc = OFS_OK;
	sqlite3_stmt *st;
	char	   *coltext;
	char	   *pktext;
	int64_t		layout;

	if (!origin || !json_is_array(cols) || !json_is_array(pk) || json_array_size(pk) == 0)
		return ofs_fail(db, OFS_PROTOCOL, "the origin's schema of a table lacks a name, columns or a primary key");
	local = LocalName(origin);
	if (local == NULL)
		return ofs_fail(db, OFS_ERROR, "out of memory");
	/* ofs's own tables are not the origin's to take. */
	if (sqlite3_strnicmp(local, "_ofs_", 5) == 0)
	{
		ofs_fail(db, OFS_PROTOCOL, "the origin's table %s would take the device's own table %s", origin, local);
		free(local);
		return OFS_PROTOCOL;
	}

	ddl = sqlite3_str_new(db->sql);
	sqlite3_str_appendf(ddl, "CREATE TABLE IF NOT EXISTS \"%w\" (", local);
	json_array_foreach(cols, i, c)
	{
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *type = json_string_value(json_object_get(c, "type"));

		if (!name || !type)
		{
			sqlite3_free(sqlite3_str_finish(ddl));
			free(local);
			return ofs_fail(db, OFS_PROTOCOL, "a column of %s lacks a name or a type", origin);
		}
		sqlite3_str_appendf(ddl, "%s\"%w\" %s", i ? ", " : "", name, SqliteType(type));
	}
	sqlite3_str_appendall(ddl, ", PRIMARY KEY (");
	json_array_foreach(pk, i, k)
		sqlite3_str_appendf(ddl, "%s\"%w\"", i ? ", " : "", json_string_value(k) ? json_string_value(k) : "");
	sqlite3_str_appendall(ddl, "));\n");
	/* A table made from an older schema gets the columns the origin added since. */
	if (sqlite3_prepare_v2(db->sql, "SELECT (SELECT count(*) FROM pragma_table_info(?1)),"
						   " (SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE)",
						   -1, &st, NULL) == SQLITE_OK)
	{
		json_array_foreach(cols, i, c)
		{
			const char *name = json_string_value(json_object_get(c, "name"));

			sqlite3_reset(st);
			sqlite3_bind_text(st, 1, local, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0 && sqlite3_column_int(st, 1) == 0)
				sqlite3_str_appendf(ddl, "ALTER TABLE \"%w\" ADD COLUMN \"%w\" %s;\n", local, name,
									SqliteType(json_string_value(json_object_get(c, "type"))));
		}
		sqlite3_finalize(st);
	}

	/* Capture (capture.c). */
	layout = ofs_capture_ddl(db, ddl, origin, local, cols, pk);
	if (layout < 0)
	{
		sqlite3_free(sqlite3_str_finish(ddl));
		free(local);
		return OFS_ERROR;
	}

	/* Transition rules: checked before the write, offline too. */
	json_array_foreach(tr, i, c)
	{
		const char *col = json_string_value(json_object_get(c, "column"));

		if (!col)
			continue;
		sqlite3_str_appendf(ddl, "DROP TRIGGER IF EXISTS \"_ofs_t_%w_%w\"; DROP TRIGGER IF EXISTS \"_ofs_n_%w_%w\";\n",
							local, col, local, col);
		sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_t_%w_%w\" BEFORE UPDATE OF \"%w\" ON \"%w\""
							" WHEN ofs_capturing() AND OLD.\"%w\" IS NOT NEW.\"%w\" BEGIN"
							" SELECT ofs_check_transition('%q', '%q', OLD.\"%w\", NEW.\"%w\", 0); END;\n",
							local, col, col, local, col, col, origin, col, col, col);
		sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_n_%w_%w\" AFTER INSERT ON \"%w\" WHEN ofs_capturing() BEGIN"
							" SELECT ofs_check_transition('%q', '%q', NULL, NEW.\"%w\", 1); END;\n",
							local, col, local, origin, col, col);
	}
	sql = sqlite3_str_finish(ddl);
	if (sql == NULL)
	{
		free(local);
		return ofs_fail(db, OFS_ERROR, "out of memory");
	}
	rc = ofs_exec(db, sql);
	sqlite3_free(sql);
	if (rc != OFS_OK)
	{
		free(local);
		return rc;
	}

	/* The table's mapping and its rules. */
	coltext = json_dumps(cols, JSON_COMPACT);
	pktext = json_dumps(pk, JSON_COMPACT);
	if (sqlite3_prepare_v2(db->sql, "INSERT INTO _ofs_tables (origin, local, pk, columns, layout) VALUES (?1, ?2, ?3, ?4, ?5)"
						   " ON CONFLICT (origin) DO UPDATE SET local = excluded.local, pk = excluded.pk,"
						   " columns = excluded.columns, layout = excluded.layout", -1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_int64(st, 5, layout);
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, local, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, pktext, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, coltext, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = ofs_sqlfail(db, "recording a synced table");
		sqlite3_finalize(st);
	}
	else
		rc = ofs_sqlfail(db, "recording a synced table");
	free(coltext);
	free(pktext);
	if (rc == OFS_OK && sqlite3_prepare_v2(db->sql, "DELETE FROM _ofs_rules WHERE tbl = ?1", -1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	json_array_foreach(tr, i, c)
	{
		const char *col = json_string_value(json_object_get(c, "column"));
		json_t	   *edges = json_object_get(c, "edges");
		json_t	   *initial = json_object_get(c, "initial");
		json_t	   *e;

		if (rc != OFS_OK || !col)
			continue;
		if (sqlite3_prepare_v2(db->sql, "INSERT INTO _ofs_rules (tbl, col, from_state, to_state, role)"
							   " VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK)
		{
			rc = ofs_sqlfail(db, "recording transition rules");
			continue;
		}
		json_array_foreach(edges, j, e)
		{
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, json_string_value(json_object_get(e, "from")), -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, json_string_value(json_object_get(e, "to")), -1, SQLITE_STATIC);
			if (json_is_string(json_object_get(e, "role")))
				sqlite3_bind_text(st, 5, json_string_value(json_object_get(e, "role")), -1, SQLITE_STATIC);
			if (json_is_string(json_object_get(e, "from")) && json_is_string(json_object_get(e, "to")))
				sqlite3_step(st);
		}
		json_array_foreach(initial, j, e)
		{
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, col, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, json_string_value(e), -1, SQLITE_STATIC);
			if (json_is_string(e))
				sqlite3_step(st);
		}
		sqlite3_finalize(st);
	}
	free(local);
	return rc;
}

/* ofs_install_schema applies the origin's "schema" answer, in one transaction. */
ofs_rc
ofs_install_schema(ofs_db *db, json_t *schema)
{
	json_t	   *tables = json_object_get(schema, "tables");
	json_t	   *roles = json_object_get(schema, "roles");
	json_t	   *t;
	size_t		i;
	ofs_rc		rc = OFS_OK;
	char	   *rolestext;
	int			own;

	if (!json_is_array(tables))
		return ofs_fail(db, OFS_PROTOCOL, "the origin's schema has no list of tables");
	ofs_rows_forget(db);
	/* The write lock first: a deferred transaction that reads, then writes, fails when another connection wrote. */
	own = sqlite3_get_autocommit(db->sql);
	if (ofs_exec(db, own ? "BEGIN IMMEDIATE" : "SAVEPOINT ofs_schema") != OFS_OK)
		return OFS_ERROR;
	json_array_foreach(tables, i, t)
	{
		rc = InstallTable(db, t);
		if (rc != OFS_OK)
			break;
	}
	if (rc == OFS_OK)
		rc = ofs_capture_view(db);
	if (rc == OFS_OK && json_is_array(roles))
	{
		rolestext = json_dumps(roles, JSON_COMPACT);
		rc = ofs_meta_set(db, "roles", rolestext);
		free(rolestext);
	}
	if (rc != OFS_OK)
		return ofs_rollback(db, own ? "ROLLBACK" : "ROLLBACK TO ofs_schema; RELEASE ofs_schema", rc);
	return ofs_exec(db, own ? "COMMIT" : "RELEASE ofs_schema");
}

/* ofs_query_text: a JSON text of the query's single value, into *buf (replacing it). */
const char *
ofs_query_text(ofs_db *db, const char *sql, char **buf)
{
	sqlite3_stmt *st;

	free(*buf);
	*buf = NULL;
	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
	{
		ofs_sqlfail(db, "status");
		return NULL;
	}
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*buf = strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return *buf;
}

const char *
ofs_status(ofs_db *db)
{
	return ofs_query_text(db,
					 "SELECT json_object("
					 " 'device', (SELECT value FROM _ofs_meta WHERE key = 'device'),"
					 " 'url', (SELECT value FROM _ofs_meta WHERE key = 'url'),"
					 " 'pending', (SELECT count(*) FROM _ofs_outbox),"
					 " 'rejected', (SELECT count(*) FROM _ofs_rejected),"
					 " 'conflicts', (SELECT count(*) FROM _ofs_conflicts),"
					 " 'cursor', (SELECT value FROM _ofs_meta WHERE key = 'cursor'),"
					 " 'last_sync', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'last_sync'),"
					 /* synced: the last page applied was up to date and nothing waits to be pushed */
					 " 'up_to_date', json(CASE WHEN (SELECT value FROM _ofs_meta WHERE key = 'up_to_date') = '1'"
					 "                    THEN 'true' ELSE 'false' END),"
					 " 'synced', json(CASE WHEN (SELECT value FROM _ofs_meta WHERE key = 'up_to_date') = '1'"
					 "                AND NOT EXISTS (SELECT 1 FROM _ofs_outbox) THEN 'true' ELSE 'false' END),"
					 " 'synced_hlc', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'synced_hlc'),"
					 " 'hlc', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'hlc'),"
					 " 'rejections_version', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'rejections_version'),"
					 " 'dead_letters', (SELECT count(*) FROM _ofs_dead_letters WHERE status IS 'open'),"
					 " 'origin_conflicts', (SELECT count(*) FROM _ofs_origin_conflicts WHERE status IS 'open'),"
					 " 'subscriptions', (SELECT json_group_array(json_object('table', tbl, 'filter', nullif(filter, '')))"
					 "                   FROM _ofs_shapes),"
					 " 'tables', (SELECT json_group_array(local) FROM _ofs_tables))",
					 &db->status_text);
}

const char *
ofs_rejected(ofs_db *db)
{
	return ofs_query_text(db,
					 "SELECT json_group_array(json_object('op_id', op_id, 'table', tbl, 'op', op,"
					 " 'pk', json(pk), 'data', json(data), 'sqlstate', sqlstate, 'message', message,"
					 " 'hint', CASE WHEN json_valid(hint) THEN json(hint) ELSE json_quote(hint) END,"
					 " 'at', at, 'group', grp,"
					 /* the origin's dead letter of this intent, once the device has fetched the list */
					 " 'origin', (SELECT json(d.entry) FROM _ofs_dead_letters d WHERE d.op_id = r.op_id"
					 "            AND json_valid(d.entry) ORDER BY d.id DESC LIMIT 1)))"
					 " FROM (SELECT * FROM _ofs_rejected ORDER BY at, op_id) r",
					 &db->rejected_text);
}

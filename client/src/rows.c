/*
 * rows.c: the device's copies of synced rows, written as the origin says.
 *
 * Reconcile (applying a page, replaying pending intents) and the outbox
 * (rolling a rejected intent back to the origin's row) write local rows
 * through these functions, with capture off.  This file owns the two
 * caches they need: the prepared statements by their SQL, and each synced
 * table's columns and key read from _ofs_tables; store.c drops both
 * (ofs_rows_forget) when the schema changes or the database closes.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void
FreeStatements(ofs_db *db)
{
	for (int i = 0; i < db->nstmts; i++)
	{
		sqlite3_finalize(db->stmts[i].st);
		sqlite3_free(db->stmts[i].sql);
	}
	db->nstmts = 0;
}

/* Statement prepares sql once (the cache takes ownership of sql). */
static sqlite3_stmt *
Statement(ofs_db *db, char *sql)
{
	sqlite3_stmt *st;

	for (int i = 0; i < db->nstmts; i++)
		if (strcmp(db->stmts[i].sql, sql) == 0)
		{
			sqlite3_free(sql);
			sqlite3_reset(db->stmts[i].st);
			sqlite3_clear_bindings(db->stmts[i].st);
			return db->stmts[i].st;
		}
	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
	{
		ofs_sqlfail(db, "preparing a write of a synced row");
		sqlite3_free(sql);
		return NULL;
	}
	if (db->nstmts == (int) (sizeof(db->stmts) / sizeof(db->stmts[0])))
	{
		db->nstmts--;
		sqlite3_finalize(db->stmts[db->nstmts].st);
		sqlite3_free(db->stmts[db->nstmts].sql);
	}
	memmove(&db->stmts[1], &db->stmts[0], sizeof(db->stmts[0]) * db->nstmts);
	db->stmts[0].sql = sql;
	db->stmts[0].st = st;
	db->nstmts++;
	return st;
}

/* Bind binds a JSON value the way the device stores it. */
static void
Bind(sqlite3_stmt *st, int i, json_t *v)
{
	switch (json_typeof(v))
	{
		case JSON_STRING:
			sqlite3_bind_text(st, i, json_string_value(v), (int) json_string_length(v), SQLITE_TRANSIENT);
			break;
		case JSON_INTEGER:
			sqlite3_bind_int64(st, i, json_integer_value(v));
			break;
		case JSON_REAL:
			sqlite3_bind_double(st, i, json_real_value(v));
			break;
		case JSON_TRUE:
			sqlite3_bind_int(st, i, 1);
			break;
		case JSON_FALSE:
			sqlite3_bind_int(st, i, 0);
			break;
		case JSON_NULL:
			sqlite3_bind_null(st, i);
			break;
		default:
			{
				char	   *t = json_dumps(v, JSON_COMPACT);

				sqlite3_bind_text(st, i, t ? t : "", -1, SQLITE_TRANSIENT);
				free(t);
			}
	}
}

static void
ForgetTables(ofs_db *db)
{
	for (int i = 0; i < db->ntables; i++)
	{
		free(db->tables[i].origin);
		free(db->tables[i].local);
		json_decref(db->tables[i].cols);
		json_decref(db->tables[i].pk);
	}
	db->ntables = 0;
}

/*
 * TableInfo finds a synced table by its local name (or, with by_origin, by
 * the origin's name), reading _ofs_tables once per table: a page of
 * changes touches the same few tables thousands of times.
 */
static int
TableInfo(ofs_db *db, const char *name, int by_origin)
{
	sqlite3_stmt *st;
	int			i;

	for (i = 0; i < db->ntables; i++)
		if (strcmp(by_origin ? db->tables[i].origin : db->tables[i].local, name) == 0)
			return i;
	if (sqlite3_prepare_v2(db->sql, by_origin
						   ? "SELECT origin, local, columns, pk FROM _ofs_tables WHERE origin = ?1"
						   : "SELECT origin, local, columns, pk FROM _ofs_tables WHERE local = ?1",
						   -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	i = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
	{
		json_t	   *cols = json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL);
		json_t	   *names = json_array();
		size_t		k;
		json_t	   *c;

		json_array_foreach(cols, k, c)
			if (json_is_string(json_object_get(c, "name")))
			json_array_append(names, json_object_get(c, "name"));
		json_decref(cols);
		if (db->ntables == (int) (sizeof(db->tables) / sizeof(db->tables[0])))
			ForgetTables(db);
		i = db->ntables++;
		db->tables[i].origin = strdup((const char *) sqlite3_column_text(st, 0));
		db->tables[i].local = strdup((const char *) sqlite3_column_text(st, 1));
		db->tables[i].cols = names;
		db->tables[i].pk = json_loads((const char *) sqlite3_column_text(st, 3), 0, NULL);
		if (!db->tables[i].origin || !db->tables[i].local || !json_is_array(db->tables[i].pk))
		{
			ForgetTables(db);
			i = -1;
		}
	}
	sqlite3_finalize(st);
	return i;
}

/* Columns of a local table (a JSON array of names, a new reference) and its key. */
static json_t *
TableColumns(ofs_db *db, const char *local, json_t **pk)
{
	int			i = TableInfo(db, local, 0);

	*pk = NULL;
	if (i < 0)
		return NULL;
	*pk = json_incref(db->tables[i].pk);
	return json_incref(db->tables[i].cols);
}

static int
Contains(json_t *names, const char *name)
{
	size_t		i;
	json_t	   *n;

	json_array_foreach(names, i, n)
		if (strcmp(json_string_value(n), name) == 0)
		return 1;
	return 0;
}

static void
ForgetShape(ofs_db *db)
{
	sqlite3_finalize(db->upsert.st);
	free(db->upsert.local);
	json_decref(db->upsert.keys);
	free(db->upsert.bound);
	memset(&db->upsert, 0, sizeof(db->upsert));
}

/*
 * SameShape: does row have the keys, in the same order, of the last row
 * upserted into local?  Then its statement is the last one: the rows of a
 * page come from one table with the same columns, thousands in a row.
 */
static int
SameShape(ofs_db *db, const char *local, json_t *row)
{
	const char *key;
	json_t	   *v;
	size_t		i = 0;

	if (db->upsert.st == NULL || strcmp(db->upsert.local, local) != 0 ||
		json_object_size(row) != json_array_size(db->upsert.keys))
		return 0;
	json_object_foreach(row, key, v)
		if (strcmp(json_string_value(json_array_get(db->upsert.keys, i++)), key) != 0)
		return 0;
	return 1;
}

/* Remember: row's keys (and which of them are columns) with st, its statement. */
static void
Remember(ofs_db *db, const char *local, json_t *row, json_t *cols, sqlite3_stmt *st)
{
	const char *key;
	json_t	   *v;
	size_t		i = 0;

	ForgetShape(db);
	if (sqlite3_prepare_v3(db->sql, sqlite3_sql(st), -1, SQLITE_PREPARE_PERSISTENT, &db->upsert.st, NULL) != SQLITE_OK)
	{
		db->upsert.st = NULL;
		return;
	}
	db->upsert.local = strdup(local);
	db->upsert.keys = json_array();
	db->upsert.bound = calloc(json_object_size(row) + 1, 1);
	if (db->upsert.local == NULL || db->upsert.keys == NULL || db->upsert.bound == NULL)
	{
		ForgetShape(db);
		return;
	}
	json_object_foreach(row, key, v)
	{
		json_array_append_new(db->upsert.keys, json_string(key));
		db->upsert.bound[i++] = (char) Contains(cols, key);
	}
}

/* ofs_upsert_row writes the columns of row that the local table has. */
ofs_rc
ofs_upsert_row(ofs_db *db, const char *local, json_t *row)
{
	json_t	   *pk;
	json_t	   *cols = TableColumns(db, local, &pk);
	sqlite3_str *sql;
	sqlite3_stmt *st;
	const char *key;
	json_t	   *v;
	size_t		i;
	json_t	   *k;
	int			n = 0;
	int			rc;

	if (cols == NULL || !json_is_object(row))
	{
		json_decref(cols);
		json_decref(pk);
		return ofs_fail(db, OFS_PROTOCOL, "a row for %s is not an object, or the table is unknown", local);
	}
	if (SameShape(db, local, row))
	{
		size_t		j = 0;

		/* the key was checked present with the shape; its values may still be null */
		json_array_foreach(pk, i, k)
			if (json_is_null(json_object_get(row, json_string_value(k))))
			{
				json_decref(cols);
				json_decref(pk);
				return ofs_fail(db, OFS_PROTOCOL, "a row for %s lacks its key", local);
			}
		st = db->upsert.st;
		json_object_foreach(row, key, v)
			if (db->upsert.bound[j++])
			Bind(st, ++n, v);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		json_decref(cols);
		json_decref(pk);
		return rc == SQLITE_DONE ? OFS_OK : ofs_sqlfail(db, "writing a row from the origin");
	}
	/* A row without its whole key would land keyed by NULL, a row the origin does not have. */
	json_array_foreach(pk, i, k)
	{
		v = json_string_value(k) ? json_object_get(row, json_string_value(k)) : NULL;
		if (v == NULL || json_is_null(v))
		{
			json_decref(cols);
			json_decref(pk);
			return ofs_fail(db, OFS_PROTOCOL, "a row for %s lacks its key", local);
		}
	}
	sql = sqlite3_str_new(db->sql);
	sqlite3_str_appendf(sql, "INSERT INTO \"%w\" (", local);
	json_object_foreach(row, key, v)
		if (Contains(cols, key))
		sqlite3_str_appendf(sql, "%s\"%w\"", n++ ? ", " : "", key);
	sqlite3_str_appendall(sql, ") VALUES (");
	for (i = 0; i < (size_t) n; i++)
		sqlite3_str_appendf(sql, "%s?%d", i ? ", " : "", (int) i + 1);
	sqlite3_str_appendall(sql, ") ON CONFLICT (");
	json_array_foreach(pk, i, k)
		sqlite3_str_appendf(sql, "%s\"%w\"", i ? ", " : "", json_string_value(k));
	sqlite3_str_appendall(sql, ") DO UPDATE SET ");
	n = 0;
	json_object_foreach(row, key, v)
		if (Contains(cols, key))
		sqlite3_str_appendf(sql, "%s\"%w\" = excluded.\"%w\"", n++ ? ", " : "", key, key);
	if (n == 0)
	{
		sqlite3_free(sqlite3_str_finish(sql));
		json_decref(cols);
		json_decref(pk);
		return ofs_fail(db, OFS_PROTOCOL, "a row for %s has none of its columns", local);
	}
	st = Statement(db, sqlite3_str_finish(sql));
	if (st == NULL)
	{
		json_decref(cols);
		json_decref(pk);
		return OFS_ERROR;
	}
	n = 0;
	json_object_foreach(row, key, v)
		if (Contains(cols, key))
		Bind(st, ++n, v);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		Remember(db, local, row, cols, st);
	json_decref(cols);
	json_decref(pk);
	return rc == SQLITE_DONE ? OFS_OK : ofs_sqlfail(db, "writing a row from the origin");
}

/* KeyStatement: "verb table [SET ...] WHERE key columns", bound. */
static sqlite3_stmt *
KeyStatement(ofs_db *db, const char *verb, const char *local, json_t *key, json_t *set)
{
	sqlite3_str *sql = sqlite3_str_new(db->sql);
	sqlite3_stmt *st;
	const char *k;
	json_t	   *v;
	int			n = 0;
	int			first = 1;

	sqlite3_str_appendf(sql, "%s \"%w\"", verb, local);
	if (set)
		json_object_foreach(set, k, v)
		{
			sqlite3_str_appendf(sql, "%s\"%w\" = ?%d", first ? " SET " : ", ", k, ++n);
			first = 0;
		}
	first = 1;
	json_object_foreach(key, k, v)
	{
		sqlite3_str_appendf(sql, "%s\"%w\" IS ?%d", first ? " WHERE " : " AND ", k, ++n);
		first = 0;
	}
	st = Statement(db, sqlite3_str_finish(sql));
	if (st == NULL)
		return NULL;
	n = 0;
	if (set)
		json_object_foreach(set, k, v)
			Bind(st, ++n, v);
	json_object_foreach(key, k, v)
		Bind(st, ++n, v);
	return st;
}

/*
 * KeyIsPrimary: key names exactly the table's primary key columns.  (SQLite
 * takes a double-quoted name that is no column for a string literal, so an
 * unchecked {"x": "x"} would match every row.)
 */
static int
KeyIsPrimary(ofs_db *db, const char *local, json_t *key)
{
	json_t	   *pk;
	json_t	   *cols = TableColumns(db, local, &pk);
	size_t		i;
	json_t	   *k;
	int			yes = cols != NULL && json_is_array(pk) && json_object_size(key) == json_array_size(pk);

	json_array_foreach(pk, i, k)
		if (!json_is_string(k) || json_object_get(key, json_string_value(k)) == NULL)
		yes = 0;
	json_decref(cols);
	json_decref(pk);
	return yes;
}

ofs_rc
ofs_delete_row(ofs_db *db, const char *local, json_t *pk)
{
	sqlite3_stmt *st;
	int			rc;

	if (!json_is_object(pk) || json_object_size(pk) == 0 || !KeyIsPrimary(db, local, pk))
		return ofs_fail(db, OFS_PROTOCOL, "a key for %s is not an object of its primary key columns", local);
	st = KeyStatement(db, "DELETE FROM", local, pk, NULL);
	if (st == NULL)
		return OFS_ERROR;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? OFS_OK : ofs_sqlfail(db, "removing a row");
}

ofs_rc
ofs_update_row(ofs_db *db, const char *local, json_t *pk, json_t *data)
{
	json_t	   *kpk;
	json_t	   *cols = TableColumns(db, local, &kpk);
	json_t	   *set = json_object();
	const char *k;
	json_t	   *v;
	sqlite3_stmt *st;
	int			rc = SQLITE_DONE;

	json_object_foreach(data, k, v)
		if (cols && Contains(cols, k) && !json_object_get(pk, k))
		json_object_set(set, k, v);
	if (json_object_size(set) > 0)
	{
		st = KeyStatement(db, "UPDATE", local, pk, set);
		if (st == NULL)
			rc = SQLITE_ERROR;
		else
		{
			rc = sqlite3_step(st);
			sqlite3_reset(st);
		}
	}
	json_decref(set);
	json_decref(cols);
	json_decref(kpk);
	return rc == SQLITE_DONE ? OFS_OK : ofs_sqlfail(db, "replaying an update");
}

/*
 * ofs_rows_local_name: the local name of an origin table (malloc'd), or
 * NULL when the device has no such table; cached, unlike ofs_local_table.
 */
char *
ofs_rows_local_name(ofs_db *db, const char *origin)
{
	int			i = TableInfo(db, origin, 1);

	return i >= 0 ? strdup(db->tables[i].local) : NULL;
}

/* ofs_rows_forget drops the caches of statements and tables. */
void
ofs_rows_forget(ofs_db *db)
{
	FreeStatements(db);
	ForgetTables(db);
	ForgetShape(db);
}

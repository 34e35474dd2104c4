/*
 * reconcile.c: the origin's changes, applied on the device.
 *
 * A page of changes is applied in one SQLite transaction with capture off
 * (the origin's rows are not intents), together with the cursor that
 * follows it, so a crash leaves either the whole page and its cursor or
 * neither.  Then the intents still pending for the rows the page touched
 * are replayed on top, in the order they were made: local state is the
 * origin's state plus what the origin has not seen yet.  Replaying is
 * deterministic, so every device converges to the same rows.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void
ofs_free_statements(ofs_db *db)
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

void
ofs_forget_tables(ofs_db *db)
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
			ofs_forget_tables(db);
		i = db->ntables++;
		db->tables[i].origin = strdup((const char *) sqlite3_column_text(st, 0));
		db->tables[i].local = strdup((const char *) sqlite3_column_text(st, 1));
		db->tables[i].cols = names;
		db->tables[i].pk = json_loads((const char *) sqlite3_column_text(st, 3), 0, NULL);
		if (!db->tables[i].origin || !db->tables[i].local || !json_is_array(db->tables[i].pk))
		{
			ofs_forget_tables(db);
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

static ofs_rc
UpdateRow(ofs_db *db, const char *local, json_t *pk, json_t *data)
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

/* Canonical "table\x1fkey" text of a row, for matching intents to rows. */
static char *
RowKey(const char *table, json_t *pk)
{
	char	   *k = json_dumps(pk, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	char	   *s;

	if (k == NULL)
		return NULL;
	s = malloc(strlen(table) + strlen(k) + 2);
	if (s)
		sprintf(s, "%s\x1f%s", table, k);
	free(k);
	return s;
}

/*
 * ofs_replay_pending re-applies, in order, the pending intents of the rows
 * in touched (an array of {table, pk}); capture must be off.
 */
ofs_rc
ofs_replay_pending(ofs_db *db, json_t *touched)
{
	json_t	   *set = json_object();
	size_t		i;
	json_t	   *t;
	sqlite3_stmt *st;
	ofs_rc		rc = OFS_OK;

	json_array_foreach(touched, i, t)
	{
		char	   *k = RowKey(json_string_value(json_object_get(t, "table")), json_object_get(t, "pk"));

		if (k)
			json_object_set_new(set, k, json_true());
		free(k);
	}
	if (json_object_size(set) == 0)
	{
		json_decref(set);
		return OFS_OK;
	}
	if (sqlite3_prepare_v2(db->sql, "SELECT o.tbl, o.op, o.pk, o.data, t.local FROM _ofs_outbox o"
						   " JOIN _ofs_tables t ON t.origin = o.tbl ORDER BY o.seq", -1, &st, NULL) != SQLITE_OK)
	{
		json_decref(set);
		return ofs_sqlfail(db, "reading the outbox");
	}
	while (rc == OFS_OK && sqlite3_step(st) == SQLITE_ROW)
	{
		const char *tbl = (const char *) sqlite3_column_text(st, 0);
		const char *op = (const char *) sqlite3_column_text(st, 1);
		json_t	   *pk = json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL);
		json_t	   *data = sqlite3_column_type(st, 3) == SQLITE_NULL ? NULL
			: json_loads((const char *) sqlite3_column_text(st, 3), 0, NULL);
		char	   *local = strdup((const char *) sqlite3_column_text(st, 4));
		char	   *k = pk ? RowKey(tbl, pk) : NULL;

		if (k && local && json_object_get(set, k))
		{
			if (strcmp(op, "delete") == 0)
				rc = ofs_delete_row(db, local, pk);
			else if (strcmp(op, "update") == 0)
				rc = data ? UpdateRow(db, local, pk, data) : OFS_OK;
			else if (data)
			{
				json_t	   *row = json_deep_copy(data);

				json_object_update(row, pk);
				rc = ofs_upsert_row(db, local, row);
				json_decref(row);
			}
		}
		free(k);
		free(local);
		json_decref(pk);
		json_decref(data);
	}
	sqlite3_finalize(st);
	json_decref(set);
	return rc;
}

/*
 * ofs_apply_changes applies one page of the origin's changes and stores its
 * cursor, in one transaction.
 */
ofs_rc
ofs_apply_changes(ofs_db *db, json_t *changes, const char *cursor)
{
	size_t		i;
	json_t	   *c;
	json_t	   *touched = json_array();
	ofs_rc		rc = OFS_OK;

	if (!json_is_array(changes))
	{
		json_decref(touched);
		return ofs_fail(db, OFS_PROTOCOL, "changes is not an array");
	}
	if (ofs_exec(db, "BEGIN IMMEDIATE") != OFS_OK)
	{
		json_decref(touched);
		return OFS_ERROR;
	}
	db->capturing = 0;
	json_array_foreach(changes, i, c)
	{
		const char *table = json_string_value(json_object_get(c, "table"));
		const char *op = json_string_value(json_object_get(c, "op"));
		json_t	   *pk = json_object_get(c, "pk");
		char	   *local;

		if (!table || !op || !json_is_object(pk))
		{
			rc = ofs_fail(db, OFS_PROTOCOL, "a change lacks its table, op or key");
			break;
		}
		{
			int			ti = TableInfo(db, table, 1);

			local = ti >= 0 ? strdup(db->tables[ti].local) : NULL;
		}
		if (local == NULL)
			continue;			/* a table the device no longer has */
		if (strcmp(op, "upsert") == 0)
		{
			json_t	   *row = json_object_get(c, "row");

			rc = ofs_upsert_row(db, local, row);
		}
		else if (strcmp(op, "delete") == 0)
			rc = ofs_delete_row(db, local, pk);
		else
			rc = ofs_fail(db, OFS_PROTOCOL, "unknown change \"%s\"", op);
		free(local);
		if (rc != OFS_OK)
			break;
		json_array_append_new(touched, json_pack("{sssO}", "table", table, "pk", pk));
	}
	if (rc == OFS_OK)
		rc = ofs_replay_pending(db, touched);
	if (rc == OFS_OK && cursor)
		rc = ofs_meta_set(db, "cursor", cursor);
	db->capturing = 1;
	json_decref(touched);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	rc = ofs_exec(db, "COMMIT");
	if (rc == OFS_OK && db->cb.row_changed)
		json_array_foreach(changes, i, c)
		{
			char	   *pk = json_dumps(json_object_get(c, "pk"), JSON_COMPACT);
			char	   *row = json_object_get(c, "row") ? json_dumps(json_object_get(c, "row"), JSON_COMPACT) : NULL;

			db->cb.row_changed(db->user, json_string_value(json_object_get(c, "table")),
							   json_string_value(json_object_get(c, "op")), pk ? pk : "{}", row);
			free(pk);
			free(row);
		}
	return rc;
}

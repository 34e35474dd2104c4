/*
 * capture.c: every write to a synced table becomes an intent, cheaply.
 *
 * A write and its intent commit together or not at all, so the intent is
 * written by a trigger in the write's own transaction.  What the trigger
 * writes is kept as small as SQLite allows: the values themselves, copied
 * into a table of intents per synced table ("_ofs_intents_<local>", a
 * column n_<col> for each new value and o_<col> for each value replaced),
 * stamped with three numbers from C functions of the connection: the
 * intent's place in the device's order (seq), its transaction (txn) and
 * its clock (hlc).  No JSON is built, no index but the rowid is written.
 *
 * The JSON of an intent is built once, when it is read: the view
 * _ofs_outbox shows every pending intent in order with its operation id,
 * key, data and base as the protocol sends them, and is what the push,
 * the replay of pending intents and a person with the sqlite3 shell read.
 * It takes DELETE, and UPDATE of txn, for whoever has to repair an outbox
 * by hand (docs/client.md).
 *
 * The numbers: seq orders the intents of all tables as they were made
 * (the origin must receive an invoice before its lines); txn is drawn at
 * random at a transaction's first captured write; the operation id is
 * txn and seq in hex, unique on the device because no two transactions
 * share a txn, and the same each time the intent is sent again.  An
 * intent made before this layout keeps the operation id it was given.
 * At a transaction's first captured write, seq and the clock start above
 * every intent any connection has stored (the write lock is held from
 * then on, so none can add one), and above the clock in _ofs_meta.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * Compound appends the SELECTs of terms (texts) joined by UNION ALL, in
 * nested groups: SQLite takes at most 500 terms in one compound SELECT,
 * and a device may sync more tables, or hold intents of more layouts.
 */
#define COMPOUND_GROUP 200

static void
Compound(sqlite3_str *q, json_t *terms)
{
	size_t		n = json_array_size(terms);

	for (size_t g = 0; g < n; g += COMPOUND_GROUP)
	{
		if (n > COMPOUND_GROUP)
			sqlite3_str_appendall(q, g ? " UNION ALL SELECT * FROM (" : "SELECT * FROM (");
		for (size_t i = g; i < n && i < g + COMPOUND_GROUP; i++)
			sqlite3_str_appendf(q, "%s%s", i > g ? " UNION ALL " : "", json_string_value(json_array_get(terms, i)));
		if (n > COMPOUND_GROUP)
			sqlite3_str_appendall(q, ")");
	}
}

/*
 * Floor prepares, when the schema changed since it last did, the query of
 * the largest seq and clock among the stored intents and in _ofs_meta.
 */
static sqlite3_stmt *
Floor(ofs_db *db)
{
	sqlite3_stmt *st;
	sqlite3_str *q;
	char	   *sql;
	int			version = -1;
	json_t	   *terms;

	if (db->schema_version == NULL &&
		sqlite3_prepare_v3(db->sql, "PRAGMA schema_version", -1, SQLITE_PREPARE_PERSISTENT,
						   &db->schema_version, NULL) != SQLITE_OK)
		return NULL;
	if (sqlite3_step(db->schema_version) == SQLITE_ROW)
		version = sqlite3_column_int(db->schema_version, 0);
	sqlite3_reset(db->schema_version);
	if (db->floor && version == db->floor_schema)
		return db->floor;
	sqlite3_finalize(db->floor);
	db->floor = NULL;
	terms = json_array();
	json_array_append_new(terms, json_string("SELECT NULL AS s, CAST(value AS INTEGER) AS h FROM _ofs_meta WHERE key = 'hlc'"));
	if (sqlite3_prepare_v2(db->sql, "SELECT local FROM _ofs_tables ORDER BY local", -1, &st, NULL) != SQLITE_OK)
	{
		json_decref(terms);
		return NULL;
	}
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		char	   *t = sqlite3_mprintf("SELECT * FROM (SELECT seq, hlc FROM \"_ofs_intents_%w\" ORDER BY seq DESC LIMIT 1)",
										(const char *) sqlite3_column_text(st, 0));

		json_array_append_new(terms, json_string(t ? t : "SELECT NULL, NULL"));
		sqlite3_free(t);
	}
	sqlite3_finalize(st);
	q = sqlite3_str_new(db->sql);
	sqlite3_str_appendall(q, "SELECT max(s), max(h) FROM (");
	Compound(q, terms);
	json_decref(terms);
	sqlite3_str_appendall(q, ")");
	sql = sqlite3_str_finish(q);
	if (sql == NULL)
		return NULL;
	if (sqlite3_prepare_v3(db->sql, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->floor, NULL) != SQLITE_OK)
		db->floor = NULL;
	sqlite3_free(sql);
	db->floor_schema = version;
	return db->floor;
}

/* Begin starts the numbers of a transaction's intents (see the top of this file). */
static int
Begin(ofs_db *db, sqlite3_context *ctx)
{
	sqlite3_stmt *st;

	if (db->txn != 0)
		return 1;
	st = Floor(db);
	if (st == NULL)
	{
		sqlite3_result_error(ctx, "ofs cannot read the device's intents to number a new one", -1);
		return 0;
	}
	db->seq_last = 0;
	if (sqlite3_step(st) != SQLITE_ROW)
	{
		/* Numbering from 0 would give the intent a place before others: the write is refused. */
		sqlite3_reset(st);
		sqlite3_result_error(ctx, "ofs cannot read the device's intents to number a new one", -1);
		return 0;
	}
	{
		int64_t		hlc = sqlite3_column_int64(st, 1);

		db->seq_last = sqlite3_column_int64(st, 0);
		if (hlc > db->hlc_last && hlc <= OFS_HLC_MAX)
			db->hlc_last = hlc;
	}
	sqlite3_reset(st);
	while (db->txn == 0)
	{
		uint64_t	r;

		sqlite3_randomness(sizeof(r), &r);
		db->txn = (int64_t) (r >> 1);
	}
	return 1;
}

/* SQL function ofs_seq(): the next intent's place in the device's order. */
static void
FnSeq(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	ofs_db	   *db = sqlite3_user_data(ctx);

	(void) argc;
	(void) argv;
	if (Begin(db, ctx))
		sqlite3_result_int64(ctx, ++db->seq_last);
}

/* SQL function ofs_txn(): the number of the open transaction. */
static void
FnTxn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	ofs_db	   *db = sqlite3_user_data(ctx);

	(void) argc;
	(void) argv;
	if (Begin(db, ctx))
		sqlite3_result_int64(ctx, db->txn);
}

/* SQL function ofs_hlc(): the next value of the device's clock. */
static void
FnHlc(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	ofs_db	   *db = sqlite3_user_data(ctx);

	(void) argc;
	(void) argv;
	if (!Begin(db, ctx))
		return;
	db->hlc_last = ofs_hlc_next(db->hlc_last, ofs_now_ms());
	sqlite3_result_int64(ctx, db->hlc_last);
}

/* SQL function ofs_capturing(): 1 unless origin changes are being applied. */
static void
FnCapturing(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	ofs_db	   *db = sqlite3_user_data(ctx);

	(void) argc;
	(void) argv;
	sqlite3_result_int(ctx, db->capturing);
}

ofs_rc
ofs_capture_register(ofs_db *db)
{
	if (sqlite3_create_function(db->sql, "ofs_capturing", 0, SQLITE_UTF8, db, FnCapturing, NULL, NULL) != SQLITE_OK ||
		sqlite3_create_function(db->sql, "ofs_hlc", 0, SQLITE_UTF8, db, FnHlc, NULL, NULL) != SQLITE_OK ||
		sqlite3_create_function(db->sql, "ofs_seq", 0, SQLITE_UTF8, db, FnSeq, NULL, NULL) != SQLITE_OK ||
		sqlite3_create_function(db->sql, "ofs_txn", 0, SQLITE_UTF8, db, FnTxn, NULL, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "cannot register ofs's SQL functions");
	return OFS_OK;
}

void
ofs_capture_forget(ofs_db *db)
{
	sqlite3_finalize(db->floor);
	db->floor = NULL;
	sqlite3_finalize(db->schema_version);
	db->schema_version = NULL;
}

/*
 * NoBlob: op, unless a value the intent's JSON will carry is a BLOB, which
 * JSON cannot (the write is refused): the key, the values of an insert,
 * the new and replaced values of the columns an update changes.  A row may hold a BLOB from before its table was synced.
 */
static void
NoBlob(sqlite3_str *ddl, json_t *cols, json_t *pk, const char *op)
{
	size_t		i;
	json_t	   *c;

	sqlite3_str_appendall(ddl, "CASE WHEN 0");
	/* the key, in every intent (an insert's is among its values) */
	if (strcmp(op, "insert") != 0)
		json_array_foreach(pk, i, c)
			sqlite3_str_appendf(ddl, " OR typeof(%s.\"%w\") = 'blob'", strcmp(op, "delete") == 0 ? "OLD" : "NEW",
								json_string_value(c));
	if (strcmp(op, "insert") == 0)
		json_array_foreach(cols, i, c)
			sqlite3_str_appendf(ddl, " OR typeof(NEW.\"%w\") = 'blob'", json_string_value(json_object_get(c, "name")));
	else if (strcmp(op, "update") == 0)
		json_array_foreach(cols, i, c)
		{
			const char *name = json_string_value(json_object_get(c, "name"));

			/* an update carries the columns it changes, new and old */
			sqlite3_str_appendf(ddl, " OR ((typeof(NEW.\"%w\") = 'blob' OR typeof(OLD.\"%w\") = 'blob')"
								" AND OLD.\"%w\" IS NOT NEW.\"%w\")", name, name, name, name);
		}
	sqlite3_str_appendf(ddl, " THEN RAISE(ABORT, 'a synced row cannot hold a BLOB value (the origin receives"
						" JSON): store it as text') ELSE '%s' END", op);
}

/* Columns: ", ROW\"PREFIXcol\"" for each column: ROW "NEW." or "OLD." for values, PREFIX "n_" or "o_" for names. */
static void
Columns(sqlite3_str *ddl, json_t *cols, const char *row, const char *prefix)
{
	size_t		i;
	json_t	   *c;

	json_array_foreach(cols, i, c)
		sqlite3_str_appendf(ddl, ", %s\"%s%w\"", row, prefix, json_string_value(json_object_get(c, "name")));
}

/*
 * Layout: the id of the _ofs_layouts row of this table with these columns
 * and key, made when there is none; -1 on failure.
 */
static int64_t
Layout(ofs_db *db, const char *origin, json_t *cols, json_t *pk)
{
	json_t	   *names = json_array();
	size_t		i;
	json_t	   *c;
	char	   *ntext;
	char	   *ktext = json_dumps(pk, JSON_COMPACT);
	sqlite3_stmt *st;
	int64_t		id = -1;

	json_array_foreach(cols, i, c)
		json_array_append(names, json_object_get(c, "name"));
	ntext = json_dumps(names, JSON_COMPACT);
	json_decref(names);
	if (ntext && ktext &&
		sqlite3_prepare_v2(db->sql, "INSERT INTO _ofs_layouts (tbl, columns, pk) VALUES (?1, ?2, ?3)"
						   " ON CONFLICT (tbl, columns, pk) DO UPDATE SET tbl = excluded.tbl RETURNING id",
						   -1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ntext, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, ktext, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			id = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if (id < 0)
		ofs_sqlfail(db, "recording the layout of a synced table's intents");
	free(ntext);
	free(ktext);
	return id;
}

/*
 * ofs_capture_ddl appends to ddl the table of intents of a synced table
 * (with the columns the origin added since it was made) and the triggers
 * that fill it, and returns the layout they capture with (-1: failed).
 * An intent is read with the columns and key of its layout, so a change
 * of the origin's schema does not change the intents already made.
 * cols: the origin's columns ({name, type}), pk: its key.
 */
int64_t
ofs_capture_ddl(ofs_db *db, sqlite3_str *ddl, const char *origin, const char *local, json_t *cols, json_t *pk)
{
	char	   *intents = sqlite3_mprintf("_ofs_intents_%s", local);
	size_t		i;
	json_t	   *c;
	json_t	   *k;
	int64_t		layout = Layout(db, origin, cols, pk);

	if (layout < 0 || intents == NULL)
	{
		sqlite3_free(intents);
		return -1;
	}
	sqlite3_str_appendf(ddl, "CREATE TABLE IF NOT EXISTS \"%w\" (seq INTEGER PRIMARY KEY, txn INTEGER,"
						" hlc INTEGER NOT NULL, op TEXT NOT NULL, layout INTEGER NOT NULL, op_id TEXT", intents);
	Columns(ddl, cols, "", "n_");
	Columns(ddl, cols, "", "o_");
	sqlite3_str_appendall(ddl, ");\n");
	if (ofs_has_column(db, intents, "seq"))
		json_array_foreach(cols, i, c)
		{
			const char *name = json_string_value(json_object_get(c, "name"));
			char	   *n = sqlite3_mprintf("n_%s", name);

			if (n && !ofs_has_column(db, intents, n))
				sqlite3_str_appendf(ddl, "ALTER TABLE \"%w\" ADD COLUMN \"n_%w\"; ALTER TABLE \"%w\" ADD COLUMN \"o_%w\";\n",
									intents, name, intents, name);
			sqlite3_free(n);
		}

	sqlite3_str_appendf(ddl, "DROP TRIGGER IF EXISTS \"_ofs_i_%w\"; DROP TRIGGER IF EXISTS \"_ofs_u_%w\";"
						" DROP TRIGGER IF EXISTS \"_ofs_d_%w\"; DROP TRIGGER IF EXISTS \"_ofs_k_%w\";\n",
						local, local, local, local);
	/* Inserts: the new values. */
	sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_i_%w\" AFTER INSERT ON \"%w\" WHEN ofs_capturing() BEGIN"
						" INSERT INTO \"%w\" (seq, txn, hlc, layout, op", local, local, intents);
	Columns(ddl, cols, "", "n_");
	sqlite3_str_appendf(ddl, ") VALUES (ofs_seq(), ofs_txn(), ofs_hlc(), %lld, ", (long long) layout);
	NoBlob(ddl, cols, pk, "insert");
	Columns(ddl, cols, "NEW.", "");
	sqlite3_str_appendall(ddl, "); END;\n");

	/* Updates that change something: the new values and the ones they replace. */
	sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_u_%w\" AFTER UPDATE ON \"%w\" WHEN ofs_capturing() AND (0",
						local, local);
	json_array_foreach(cols, i, c)
	{
		const char *name = json_string_value(json_object_get(c, "name"));

		sqlite3_str_appendf(ddl, " OR OLD.\"%w\" IS NOT NEW.\"%w\"", name, name);
	}
	sqlite3_str_appendf(ddl, ") BEGIN INSERT INTO \"%w\" (seq, txn, hlc, layout, op", intents);
	Columns(ddl, cols, "", "n_");
	Columns(ddl, cols, "", "o_");
	sqlite3_str_appendf(ddl, ") VALUES (ofs_seq(), ofs_txn(), ofs_hlc(), %lld, ", (long long) layout);
	NoBlob(ddl, cols, pk, "update");
	Columns(ddl, cols, "NEW.", "");
	Columns(ddl, cols, "OLD.", "");
	sqlite3_str_appendall(ddl, "); END;\n");

	/* Deletes: the values the row had. */
	sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_d_%w\" AFTER DELETE ON \"%w\" WHEN ofs_capturing() BEGIN"
						" INSERT INTO \"%w\" (seq, txn, hlc, layout, op", local, local, intents);
	Columns(ddl, cols, "", "o_");
	sqlite3_str_appendf(ddl, ") VALUES (ofs_seq(), ofs_txn(), ofs_hlc(), %lld, ", (long long) layout);
	NoBlob(ddl, cols, pk, "delete");
	Columns(ddl, cols, "OLD.", "");
	sqlite3_str_appendall(ddl, "); END;\n");

	/* A key is the row's identity on both sides: it does not change. */
	sqlite3_str_appendf(ddl, "CREATE TRIGGER \"_ofs_k_%w\" BEFORE UPDATE ON \"%w\" WHEN ofs_capturing() AND (0",
						local, local);
	json_array_foreach(pk, i, k)
		sqlite3_str_appendf(ddl, " OR OLD.\"%w\" IS NOT NEW.\"%w\"", json_string_value(k), json_string_value(k));
	sqlite3_str_appendall(ddl, ") BEGIN SELECT RAISE(ABORT, 'the primary key of a synced row cannot change; delete it and insert a new one'); END;\n");
	sqlite3_free(intents);
	return layout;
}

/* Object: json_object('col', PREFIX"col", ...) over names. */
static void
Object(sqlite3_str *q, json_t *names, const char *prefix)
{
	size_t		i;
	json_t	   *c;

	sqlite3_str_appendall(q, "json_object(");
	json_array_foreach(names, i, c)
	{
		sqlite3_str_appendf(q, "%s'%q', \"%s%w\"", i ? ", " : "", json_string_value(c), prefix, json_string_value(c));
	}
	sqlite3_str_appendall(q, ")");
}

/* Changed: the object of the columns (names) an update changed, with their new (n_) or old (o_) values. */
static void
Changed(sqlite3_str *q, json_t *cols, const char *prefix)
{
	size_t		i;
	json_t	   *c;

	sqlite3_str_appendall(q, "(SELECT json_group_object(k, v) FROM (");
	json_array_foreach(cols, i, c)
	{
		const char *name = json_string_value(c);

		sqlite3_str_appendf(q, "%sSELECT '%q' AS k, \"%s%w\" AS v WHERE \"n_%w\" IS NOT \"o_%w\"",
							i ? " UNION ALL " : "", name, prefix, name, name, name);
	}
	sqlite3_str_appendall(q, "))");
}

/* Prune forgets the layouts no synced table captures with and no intent was captured with. */
static ofs_rc
Prune(ofs_db *db)
{
	sqlite3_stmt *st;
	ofs_rc		rc = OFS_OK;
	json_t	   *gone = json_array();
	size_t		i;
	json_t	   *id;

	if (sqlite3_prepare_v2(db->sql, "SELECT l.id, t.local FROM _ofs_layouts l LEFT JOIN _ofs_tables t ON t.origin = l.tbl"
						   " WHERE l.id IS NOT t.layout", -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "reading the layouts of intents");
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		int64_t		layout = sqlite3_column_int64(st, 0);
		int			used = 0;

		if (sqlite3_column_type(st, 1) != SQLITE_NULL)
		{
			char	   *sql = sqlite3_mprintf("SELECT EXISTS (SELECT 1 FROM \"_ofs_intents_%w\" WHERE layout = %lld)",
											  (const char *) sqlite3_column_text(st, 1), (long long) layout);
			char	   *yes = sql ? ofs_select_text(db, sql, NULL) : NULL;

			used = yes == NULL || strcmp(yes, "0") != 0;
			free(yes);
			sqlite3_free(sql);
		}
		if (!used)
			json_array_append_new(gone, json_integer(layout));
	}
	sqlite3_finalize(st);
	json_array_foreach(gone, i, id)
	{
		char	   *sql = sqlite3_mprintf("DELETE FROM _ofs_layouts WHERE id = %lld", (long long) json_integer_value(id));

		if (rc == OFS_OK)
			rc = sql ? ofs_exec(db, sql) : ofs_fail(db, OFS_ERROR, "out of memory");
		sqlite3_free(sql);
	}
	json_decref(gone);
	return rc;
}

/*
 * ofs_capture_view makes the view _ofs_outbox (and its triggers) again
 * over the intents of every synced table, as the origin describes them
 * in _ofs_tables.
 */
ofs_rc
ofs_capture_view(ofs_db *db)
{
	sqlite3_stmt *st;
	sqlite3_str *q = sqlite3_str_new(db->sql);
	sqlite3_str *del = sqlite3_str_new(db->sql);
	sqlite3_str *upd = sqlite3_str_new(db->sql);
	char	   *sql;
	char	   *dsql;
	char	   *usql;
	int			n = 0;
	ofs_rc		rc;
	json_t	   *terms = json_array();

	if (Prune(db) != OFS_OK)
	{
		json_decref(terms);
		sqlite3_free(sqlite3_str_finish(q));
		sqlite3_free(sqlite3_str_finish(del));
		sqlite3_free(sqlite3_str_finish(upd));
		return OFS_ERROR;
	}
	sqlite3_str_appendall(q, "DROP VIEW IF EXISTS _ofs_outbox; CREATE VIEW _ofs_outbox AS ");
	if (sqlite3_prepare_v2(db->sql, "SELECT t.origin, t.local, l.id, l.columns, l.pk FROM _ofs_tables t"
						   " JOIN _ofs_layouts l ON l.tbl = t.origin ORDER BY t.origin, l.id", -1, &st, NULL) != SQLITE_OK)
	{
		json_decref(terms);
		sqlite3_free(sqlite3_str_finish(q));
		sqlite3_free(sqlite3_str_finish(del));
		sqlite3_free(sqlite3_str_finish(upd));
		return ofs_sqlfail(db, "reading the synced tables");
	}
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		const char *origin = (const char *) sqlite3_column_text(st, 0);
		const char *local = (const char *) sqlite3_column_text(st, 1);
		int64_t		layout = sqlite3_column_int64(st, 2);
		json_t	   *cols = json_loads((const char *) sqlite3_column_text(st, 3), 0, NULL);
		json_t	   *pk = json_loads((const char *) sqlite3_column_text(st, 4), 0, NULL);

		if (json_is_array(cols) && json_is_array(pk))
		{
			sqlite3_str *b = sqlite3_str_new(db->sql);
			char	   *term;

			sqlite3_str_appendf(b, "SELECT seq, coalesce(op_id, printf('%%016x%%016x', txn, seq)) AS op_id,"
								" '%q' AS tbl, op, CASE op WHEN 'delete' THEN ", origin);
			Object(b, pk, "o_");
			sqlite3_str_appendall(b, " ELSE ");
			Object(b, pk, "n_");
			/* an insert names the columns given: NULL is the origin's default (json_patch drops nulls) */
			sqlite3_str_appendall(b, " END AS pk, CASE op WHEN 'insert' THEN json_patch('{}', ");
			Object(b, cols, "n_");
			sqlite3_str_appendall(b, ") WHEN 'update' THEN ");
			Changed(b, cols, "n_");
			sqlite3_str_appendall(b, " END AS data, CASE op WHEN 'update' THEN ");
			Changed(b, cols, "o_");
			sqlite3_str_appendf(b, " END AS base, hlc, (hlc >> 16) / 1000 AS created_at, txn FROM \"_ofs_intents_%w\""
								" WHERE layout = %lld", local, (long long) layout);
			term = sqlite3_str_finish(b);
			if (term)
				json_array_append_new(terms, json_string(term));
			sqlite3_free(term);
			n++;
		}
		json_decref(cols);
		json_decref(pk);
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db->sql, "SELECT origin, local FROM _ofs_tables ORDER BY origin", -1, &st, NULL) == SQLITE_OK)
	{
		while (sqlite3_step(st) == SQLITE_ROW)
		{
			const char *origin = (const char *) sqlite3_column_text(st, 0);
			const char *local = (const char *) sqlite3_column_text(st, 1);

			sqlite3_str_appendf(del, " DELETE FROM \"_ofs_intents_%w\" WHERE seq = OLD.seq AND OLD.tbl = '%q';",
								local, origin);
			/* the id is kept as it was: an intent sent before keeps its id, whatever its group becomes */
			sqlite3_str_appendf(upd, " UPDATE \"_ofs_intents_%w\" SET op_id = coalesce(op_id, printf('%%016x%%016x', txn, seq)),"
								" txn = NEW.txn WHERE seq = OLD.seq AND OLD.tbl = '%q';", local, origin);
		}
		sqlite3_finalize(st);
	}
	if (n == 0)
		sqlite3_str_appendall(q, "SELECT NULL AS seq, NULL AS op_id, NULL AS tbl, NULL AS op, NULL AS pk, NULL AS data,"
							  " NULL AS base, NULL AS hlc, NULL AS created_at, NULL AS txn WHERE 0");
	else
		Compound(q, terms);
	json_decref(terms);
	sqlite3_str_appendall(q, ";\n");
	dsql = sqlite3_str_finish(del);
	usql = sqlite3_str_finish(upd);
	if (n > 0 && dsql && usql)
		sqlite3_str_appendf(q, "CREATE TRIGGER _ofs_outbox_delete INSTEAD OF DELETE ON _ofs_outbox BEGIN%s END;\n"
							"CREATE TRIGGER _ofs_outbox_txn INSTEAD OF UPDATE OF txn ON _ofs_outbox BEGIN%s END;\n",
							dsql, usql);
	sqlite3_free(dsql);
	sqlite3_free(usql);
	sql = sqlite3_str_finish(q);
	if (sql == NULL)
		return ofs_fail(db, OFS_ERROR, "out of memory");
	rc = ofs_exec(db, sql);
	sqlite3_free(sql);
	return rc;
}

/*
 * ofs_capture_forward moves the intents of a file made before this layout
 * (the table _ofs_outbox, JSON) into the tables of intents, keeping their
 * order, operation ids, transactions and clocks; the caller drops the old
 * table and makes the view.  An old update carries only the columns it
 * changed: the others stay NULL on both sides, which reads as unchanged.
 */
ofs_rc
ofs_capture_forward(ofs_db *db, int has_txn, int64_t *moved)
{
	sqlite3_stmt *st;
	ofs_rc		rc = OFS_OK;

	if (sqlite3_prepare_v2(db->sql, "SELECT origin, local, columns, pk FROM _ofs_tables ORDER BY origin",
						   -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "reading the synced tables");
	while (rc == OFS_OK && sqlite3_step(st) == SQLITE_ROW)
	{
		const char *origin = (const char *) sqlite3_column_text(st, 0);
		const char *local = (const char *) sqlite3_column_text(st, 1);
		json_t	   *cols = json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL);
		json_t	   *pk = json_loads((const char *) sqlite3_column_text(st, 3), 0, NULL);
		sqlite3_str *q = sqlite3_str_new(db->sql);
		size_t		i;
		json_t	   *c;
		char	   *sql;

		sqlite3_str_appendf(q, "INSERT INTO \"_ofs_intents_%w\" (seq, txn, hlc, op, op_id, layout", local);
		Columns(q, cols, "", "n_");
		Columns(q, cols, "", "o_");
		sqlite3_str_appendf(q, ") SELECT seq, %s, hlc, op, op_id, (SELECT layout FROM _ofs_tables WHERE origin = '%q')",
							has_txn ? "txn" : "NULL", origin);
		for (int side = 0; side < 2; side++)
			json_array_foreach(cols, i, c)
			{
				const char *name = json_string_value(json_object_get(c, "name"));
				int			key = 0;
				size_t		j;
				json_t	   *k;

				json_array_foreach(pk, j, k)
					if (json_is_string(k) && strcmp(json_string_value(k), name) == 0)
					key = 1;
				/* the key from pk on both sides; other values from data (new) or base (old) */
				/* the member by its key, whatever characters the name has (a JSON path would parse them) */
				if (key)
					sqlite3_str_appendf(q, ", (SELECT value FROM json_each(pk) WHERE key = %Q)", name);
				else if (side == 0)
					sqlite3_str_appendf(q, ", CASE WHEN op <> 'delete' THEN (SELECT value FROM json_each(data) WHERE key = %Q) END",
										name);
				else
					sqlite3_str_appendf(q, ", CASE WHEN op = 'update' THEN (SELECT value FROM json_each(base) WHERE key = %Q) END",
										name);
			}
		sqlite3_str_appendf(q, " FROM _ofs_outbox WHERE tbl = '%q' AND json_valid(pk)"
							" AND (data IS NULL OR json_valid(data)) AND (base IS NULL OR json_valid(base))", origin);
		sql = sqlite3_str_finish(q);
		rc = sql && json_is_array(cols) && json_is_array(pk) ? ofs_exec(db, sql)
			: ofs_fail(db, OFS_ERROR, "the stored schema of %s cannot be read", origin);
		if (rc == OFS_OK)
			*moved += sqlite3_changes64(db->sql);
		sqlite3_free(sql);
		json_decref(cols);
		json_decref(pk);
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * test_hostile.c: a hostile or broken origin cannot crash the device or
 * corrupt its database.  ofs_install_schema, ofs_apply_changes and
 * ofs_outbox_results get wrong types everywhere, missing keys, unknown
 * tables, huge strings, deeply nested JSON and names made to break SQL;
 * each call must fail with a message or ignore what it cannot use, and the
 * outbox must stay as it was.  Then a seeded random-JSON fuzz loop over the
 * three (pages also as whole messages, through ofs_apply_message, with a
 * clock, flags and a rejections version of any type).
 */
#include <time.h>

#include "fixture.h"

static fixture F;
static char *intents0;			/* the outbox as it must stay */

static const char *const stable_schema =
	"{\"tables\":[{\"name\":\"public.stable\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"},"
	" {\"name\":\"v\",\"type\":\"text\"}],\"primary_key\":[\"id\"],\"merge\":{},\"transitions\":[]}],"
	" \"roles\":[\"rep\",\"rep_alice\"]}";

static const char *const injections[] = {
	"x\"; DROP TABLE _ofs_outbox; --",
	"public.x\"; DROP TABLE _ofs_outbox; --",
	"public.y'); DELETE FROM _ofs_outbox; --",
	"public.\"weird \"\"quoted\"\" name\"",
	"z' || (SELECT 1) || '",
	"]; DELETE FROM _ofs_outbox; [",
	"`tick`; DELETE FROM _ofs_outbox",
	"a\nb",
	"NEW.\"id\"",
	"%s%s%n%w%q",
};

static const char *const internal_names[] = {
	"public._ofs_outbox", "_ofs_outbox", "public._ofs_meta", "_ofs_tables", "public._ofs_rules",
	"_ofs_rejected", "public._ofs_shapes", "public._OFS_Outbox", "sqlite_master", "public.sqlite_sequence",
	"sqlite_temp_master", "SQLite_Master",
};

static int64_t
num(const char *sql)
{
	return sql_int(ofs_sqlite(F.db), sql);
}

/* The rows of the three tables as one text (long values by their length and head). */
static char *
rows_snapshot(void)
{
	return sql_strdup(ofs_sqlite(F.db),
					  "SELECT (SELECT coalesce(group_concat(id || ',' || quote(status) || ',' || quote(total) || ','"
					  " || quote(substr(note, 1, 64)) || '#' || length(note) || ',' || quote(qty), ';'), '')"
					  " FROM (SELECT * FROM invoices ORDER BY id))"
					  " || '/' || (SELECT coalesce(group_concat(quote(invoice) || ',' || quote(n) || ',' || quote(amount), ';'), '')"
					  " FROM (SELECT * FROM lines ORDER BY invoice, n))"
					  " || '/' || (SELECT coalesce(group_concat(quote(id) || ',' || quote(v), ';'), '')"
					  " FROM (SELECT * FROM stable ORDER BY id))");
}

static int
valid_rc(ofs_rc rc)
{
	return rc == OFS_OK || (rc > OFS_OK && rc <= OFS_NOT_CONFIGURED && ofs_errmsg(F.db)[0] != '\0');
}

/*
 * intact: the outbox is as it was, ofs's tables are all there, none of them
 * has a trigger or a mapping to an origin table, and the file is sound.
 */
static int
intact(int deep)
{
	char	   *now = outbox_snapshot(F.db);
	int			yes = strcmp(now, intents0) == 0;
	char		b[256];

	if (!yes)
		diag("the outbox changed:\n# was: %s\n# now: %s", intents0, now);
	free(now);
	if (num("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_ofs_meta', '_ofs_shapes',"
			" '_ofs_tables', '_ofs_rejected', '_ofs_conflicts', '_ofs_rules')") != 6 ||
		num("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = '_ofs_outbox'") != 1)
	{
		diag("an ofs table is missing");
		yes = 0;
	}
	/* ofs's own triggers on the view _ofs_outbox (capture.c) aside */
	if (num("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
			" AND (tbl_name LIKE '\\_ofs\\_%' ESCAPE '\\' OR tbl_name LIKE 'sqlite\\_%' ESCAPE '\\')"
			" AND NOT (tbl_name = '_ofs_outbox' AND name IN ('_ofs_outbox_delete', '_ofs_outbox_txn'))") != 0 ||
		num("SELECT count(*) FROM _ofs_tables WHERE local LIKE '\\_ofs\\_%' ESCAPE '\\'"
			" OR local LIKE 'sqlite\\_%' ESCAPE '\\'") != 0)
	{
		diag("an ofs table was taken for a synced table");
		yes = 0;
	}
	if (deep && strcmp(sql_text(ofs_sqlite(F.db), "PRAGMA integrity_check", b, sizeof(b)), "ok") != 0)
	{
		diag("integrity_check: %s", b);
		yes = 0;
	}
	return yes;
}

static json_t *
deep_nest(int depth, int objects)
{
	json_t	   *j = json_string("bottom");
	int			i;

	for (i = 0; i < depth; i++)
	{
		json_t	   *outer = objects && (i % 2) ? json_object() : json_array();

		if (json_is_object(outer))
			json_object_set_new(outer, "k", j);
		else
			json_array_append_new(outer, j);
		j = outer;
	}
	return j;
}

static json_t *
huge_string(size_t n, char c)
{
	char	   *s = malloc(n + 1);
	json_t	   *j;

	memset(s, c, n);
	s[n] = '\0';
	j = json_stringn(s, n);
	free(s);
	return j;
}

/* ---- ofs_install_schema ---- */

/* The state a transition rule of t lets a new row take in col, or NULL. */
static const char *
initial_state(json_t *t, const char *col)
{
	size_t		i;
	json_t	   *rule;

	json_array_foreach(json_object_get(t, "transitions"), i, rule)
	{
		const char *c = json_string_value(json_object_get(rule, "column"));

		if (c && strcmp(c, col) == 0)
			return json_string_value(json_array_get(json_object_get(rule, "initial"), 0));
	}
	return NULL;
}

/*
 * probe_tables: a row written to each table the schema installed must be
 * captured as one intent for that table, like any other (must_write: the
 * table is well formed, the write must work).
 */
static void
probe_tables(json_t *schema, int must_write)
{
	size_t		i;
	json_t	   *t;
	sqlite3    *s = ofs_sqlite(F.db);

	json_array_foreach(json_object_get(schema, "tables"), i, t)
	{
		const char *origin = json_string_value(json_object_get(t, "name"));
		char	   *local = origin ? ofs_local_table(F.db, origin) : NULL;
		json_t	   *cols = json_object_get(t, "columns");
		sqlite3_str *sql;
		char	   *text;
		sqlite3_stmt *st = NULL;
		int64_t		before = num("SELECT count(*) FROM _ofs_outbox");
		int			rc = SQLITE_ERROR;
		size_t		j;
		json_t	   *c;
		char	   *tbl;
		char		why[256];

		if (local == NULL)
			continue;
		sql = sqlite3_str_new(s);
		sqlite3_str_appendf(sql, "INSERT INTO \"%w\" (", local);
		json_array_foreach(cols, j, c)
			sqlite3_str_appendf(sql, "%s\"%w\"", j ? ", " : "", json_string_value(json_object_get(c, "name")));
		sqlite3_str_appendall(sql, ") VALUES (");
		json_array_foreach(cols, j, c)
			sqlite3_str_appendf(sql, "%s?", j ? ", " : "");
		sqlite3_str_appendall(sql, ")");
		text = sqlite3_str_finish(sql);
		sql_exec(s, "BEGIN", NULL);
		if (sqlite3_prepare_v2(s, text, -1, &st, NULL) == SQLITE_OK)
		{
			json_array_foreach(cols, j, c)
			{
				const char *state = initial_state(t, json_string_value(json_object_get(c, "name")));

				sqlite3_bind_text(st, (int) j + 1, state ? state : "probe", -1, SQLITE_STATIC);
			}
			rc = sqlite3_step(st);
		}
		snprintf(why, sizeof(why), "%s", rc == SQLITE_DONE ? "captured" : sqlite3_errmsg(s));
		sqlite3_finalize(st);
		tbl = sql_strdup(s, "SELECT tbl FROM _ofs_outbox ORDER BY seq DESC LIMIT 1");
		if (must_write)
			ok(rc == SQLITE_DONE && num("SELECT count(*) FROM _ofs_outbox") == before + 1 && strcmp(tbl, origin) == 0,
			   "  a write to the installed table %.60s is captured as one intent for it (%s)", origin, why);
		else
			ok(rc != SQLITE_DONE ? num("SELECT count(*) FROM _ofs_outbox") == before
			   : num("SELECT count(*) FROM _ofs_outbox") == before + 1 && strcmp(tbl, origin) == 0,
			   "  a write to the installed table %.60s is captured as one intent for it, or refused (%s)", origin, why);
		free(tbl);
		sql_exec(s, "ROLLBACK", NULL);
		sqlite3_free(text);
		free(local);
	}
}

static void
schema_case(const char *label, json_t *schema, int must_write)
{
	ofs_rc		rc = ofs_install_schema(F.db, schema);

	ok(valid_rc(rc) && intact(0), "install_schema %s: rc %d (%s), outbox intact", label, rc,
	   rc ? ofs_errmsg(F.db) : "accepted");
	if (rc == OFS_OK)
		probe_tables(schema, must_write);
}

static json_t *
table_with(const char *name, const char *col, const char *state)
{
	return json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:[s], s:{}, s:[{s:s, s:s, s:[s], s:[{s:s, s:s, s:s}]}]}",
					 "name", name,
					 "columns", "name", col, "type", "text", "name", "status", "type", "text",
					 "primary_key", col, "merge",
					 "transitions", "name", "t", "column", "status", "initial", state,
					 "edges", "from", state, "to", "done", "role", state);
}

static void
test_schema(void)
{
	static const char *const cases[] = {
		"\"tables\"", "42", "null", "[]", "{}", "{\"tables\":\"x\"}", "{\"tables\":null}", "{\"tables\":{}}",
		"{\"tables\":[null]}", "{\"tables\":[\"x\"]}", "{\"tables\":[42]}", "{\"tables\":[[]]}", "{\"tables\":[{}]}",
		"{\"tables\":[{\"name\":42,\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":\"id text\",\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[null],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[42],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":null,\"type\":\"text\"}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\"}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":42}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":\"id\"}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[42]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[null]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"nope\"]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[{\"a\":1}]}]}",
		"{\"tables\":[{\"name\":\"public.t1\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"},{\"name\":\"id\",\"type\":\"text\"}],"
		" \"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t2\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"],"
		" \"transitions\":\"x\",\"merge\":[1,2]}]}",
		"{\"tables\":[{\"name\":\"public.t2\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"],"
		" \"transitions\":[null, 42, \"x\", {\"column\":42}, {\"column\":null}]}]}",
		"{\"tables\":[{\"name\":\"public.t3\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"},{\"name\":\"s\",\"type\":\"text\"}],"
		" \"primary_key\":[\"id\"],\"transitions\":[{\"column\":\"s\",\"edges\":\"x\",\"initial\":{}}]}]}",
		"{\"tables\":[{\"name\":\"public.t3\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"},{\"name\":\"s\",\"type\":\"text\"}],"
		" \"primary_key\":[\"id\"],\"transitions\":[{\"column\":\"s\",\"edges\":[null,42,{\"from\":1,\"to\":2},{\"from\":\"a\"},"
		" {\"to\":\"b\"},{\"from\":\"a\",\"to\":\"b\",\"role\":42}],\"initial\":[null,1,{},\"a\"]}]}]}",
		"{\"tables\":[{\"name\":\"public.t4\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"],"
		" \"transitions\":[{\"column\":\"no_such_column\",\"initial\":[\"a\"],\"edges\":[{\"from\":\"a\",\"to\":\"b\"}]}]}]}",
		"{\"tables\":[],\"roles\":\"x\"}", "{\"tables\":[],\"roles\":{}}", "{\"tables\":[],\"roles\":[1,null,{},[]]}",
		"{\"tables\":[{\"name\":\"public.t5\",\"columns\":[{\"name\":\"id\",\"type\":\"integer\"}],\"primary_key\":[\"id\"]},"
		" {\"name\":\"public.t6\"}]}",
		"{\"tables\":[{\"name\":\"\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.\",\"columns\":[{\"name\":\"id\",\"type\":\"text\"}],\"primary_key\":[\"id\"]}]}",
		"{\"tables\":[{\"name\":\"public.t7\",\"columns\":[{\"name\":\"\",\"type\":\"\"}],\"primary_key\":[\"\"]}]}",
	};
	size_t		i;
	json_t	   *s;
	char		label[64];

	schema_case("NULL", NULL, 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		s = fixture_json(cases[i]);
		snprintf(label, sizeof(label), "case %zu", i);
		schema_case(label, s, 0);
		json_decref(s);
	}

	/* Deep nesting and huge strings in every slot. */
	s = json_pack("{s:[{s:s, s:[{s:s, s:o}], s:[s]}], s:o}", "tables", "name", "public.deep", "columns", "name", "id",
				  "type", deep_nest(2000, 1), "primary_key", "id", "roles", deep_nest(2000, 0));
	schema_case("with deeply nested type and roles", s, 1);
	json_decref(s);
	s = json_pack("{s:o}", "tables", deep_nest(2000, 0));
	schema_case("with deeply nested tables", s, 1);
	json_decref(s);
	s = json_pack("{s:[{s:o, s:[{s:s, s:s}], s:[s]}]}", "tables", "name", huge_string(200000, 'n'), "columns",
				  "name", "id", "type", "text", "primary_key", "id");
	schema_case("with a 200 kB table name", s, 1);
	json_decref(s);
	s = json_pack("{s:[{s:s, s:[{s:o, s:s}], s:[s]}]}", "tables", "name", "public.bigcol", "columns",
				  "name", huge_string(200000, 'c'), "type", "text", "primary_key", "id");
	schema_case("with a 200 kB column name", s, 1);
	json_decref(s);
	{
		json_t	   *cols = json_array();
		int			c;

		for (c = 0; c < 3000; c++)
		{
			char		name[16];

			snprintf(name, sizeof(name), "c%d", c);
			json_array_append_new(cols, json_pack("{s:s, s:s}", "name", name, "type", "text"));
		}
		s = json_pack("{s:[{s:s, s:o, s:[s]}]}", "tables", "name", "public.wide", "columns", cols, "primary_key", "c0");
		schema_case("with 3000 columns", s, 1);
		json_decref(s);
	}

	/* Names made to break SQL: tables, columns, keys, states and roles. */
	for (i = 0; i < sizeof(injections) / sizeof(injections[0]); i++)
	{
		s = json_pack("{s:[o], s:[s]}", "tables", table_with(injections[i], "id", "draft"), "roles", injections[i]);
		snprintf(label, sizeof(label), "table named '%.30s'", injections[i]);
		schema_case(label, s, 1);
		json_decref(s);
		snprintf(label, sizeof(label), "public.inj%zu", i);
		s = json_pack("{s:[o]}", "tables", table_with(label, injections[i], injections[i]));
		snprintf(label, sizeof(label), "column and states named '%.30s'", injections[i]);
		schema_case(label, s, 1);
		json_decref(s);
	}

	ok(intact(1), "after every hostile schema, the outbox and ofs's tables are intact");
}

/* ---- ofs_apply_changes ---- */

static void
changes_case(const char *label, json_t *changes, const char *cursor)
{
	char	   *rows = rows_snapshot();
	char	   *c0 = ofs_meta_get(F.db, "cursor");
	ofs_rc		rc = ofs_apply_changes(F.db, changes, cursor);
	char	   *rows2 = rows_snapshot();
	char	   *c1 = ofs_meta_get(F.db, "cursor");
	int			same = strcmp(rows, rows2) == 0 && ((!c0 && !c1) || (c0 && c1 && strcmp(c0, c1) == 0));

	ok(valid_rc(rc) && intact(0) && (rc == OFS_OK || same), "apply_changes %s: rc %d (%s), outbox intact%s", label, rc,
	   rc ? ofs_errmsg(F.db) : "accepted", rc ? ", rows and cursor unchanged" : "");
	if (rc != OFS_OK && !same)
		diag("rows were: %s\n# rows are: %s", rows, rows2);
	free(rows);
	free(rows2);
	free(c0);
	free(c1);
}

static void
test_changes(void)
{
	static const char *const cases[] = {
		"\"changes\"", "42", "null", "{}", "{\"changes\":[]}",
		"[null]", "[42]", "[\"x\"]", "[[]]", "[{}]",
		"[{\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":{\"id\":\"a\"}}]",
		"[{\"table\":42,\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":{\"id\":\"a\"}}]",
		"[{\"table\":\"public.invoices\",\"pk\":{\"id\":\"a\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":42,\"pk\":{\"id\":\"a\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\"}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":\"a\"}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":null}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":[\"a\"]}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"drop\",\"pk\":{\"id\":\"a\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":null}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":\"a\"}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":42}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":[\"a\"]}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":{}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":{\"unknown\":1}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":{\"nested\":[1,2,{}]}}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":null}}]",
		/* rows without their key */
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"keyless\"},\"row\":{\"status\":\"draft\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"keyless\"},\"row\":{\"id\":null,\"status\":\"draft\"}}]",
		"[{\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"a\",\"n\":9},\"row\":{\"invoice\":\"a\",\"amount\":\"1\"}}]",
		/* wrong types in a row */
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"w\"},"
		" \"row\":{\"id\":\"w\",\"status\":[1,2],\"total\":{\"x\":1},\"note\":true,\"qty\":\"many\"}}]",
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"w\"},"
		" \"row\":{\"id\":\"w\",\"qty\":1e308,\"total\":-9223372036854775808,\"note\":1.5e-300}}]",
		/* an unknown table among known ones */
		"[{\"table\":\"public.nope\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},\"row\":{\"id\":\"a\"}},"
		" {\"table\":\"public.nope\",\"op\":\"frobnicate\",\"pk\":{\"x\":1}}]",
	};
	size_t		i;
	json_t	   *c;
	char		label[96];

	changes_case("NULL", NULL, "cur");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		c = fixture_json(cases[i]);
		snprintf(label, sizeof(label), "case %zu %.40s", i, cases[i]);
		changes_case(label, c, NULL);
		json_decref(c);
	}
	is_int(num("SELECT count(*) FROM invoices WHERE id IS NULL") + num("SELECT count(*) FROM lines WHERE n IS NULL"), 0,
		   "no row without its key was made");

	/*
	 * Deletes keyed by something else than the primary key: a column that
	 * is no key, part of a composite key, a column the table lacks (SQLite
	 * reads a "name" that is no column as the string 'name', true for
	 * every row when the value is the name too).
	 */
	{
		static const char *const keys_not_pk[] = {
			"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"status\":\"draft\"}}]",
			"[{\"table\":\"public.lines\",\"op\":\"delete\",\"pk\":{\"invoice\":\"a\"}}]",
			"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"nope\":\"nope\"}}]",
		};

		for (i = 0; i < sizeof(keys_not_pk) / sizeof(keys_not_pk[0]); i++)
		{
			char	   *rows = rows_snapshot();
			char	   *rows2;

			c = fixture_json(keys_not_pk[i]);
			snprintf(label, sizeof(label), "a delete by a key that is not the primary key (%zu)", i);
			changes_case(label, c, NULL);
			json_decref(c);
			rows2 = rows_snapshot();
			is_str(rows2, rows, "  ... deletes no row");
			free(rows);
			free(rows2);
		}
	}
	is_int(num("SELECT count(*) FROM invoices WHERE id = 'a'"), 1, "the row 'a' is still there");

	/* Names made to break SQL, as tables, keys and columns. */
	for (i = 0; i < sizeof(injections) / sizeof(injections[0]); i++)
	{
		json_t	   *bad = json_object();

		json_object_set_new(bad, injections[i], json_string(injections[i]));
		c = json_pack("[{s:s, s:s, s:{s:s}, s:{s:s}}, {s:s, s:s, s:O}, {s:s, s:s, s:{s:s}, s:O}]",
					  "table", injections[i], "op", "upsert", "pk", "id", "a", "row", "id", "a",
					  "table", "public.invoices", "op", "delete", "pk", bad,
					  "table", "public.invoices", "op", "upsert", "pk", "id", "a", "row", bad);
		snprintf(label, sizeof(label), "names '%.30s'", injections[i]);
		changes_case(label, c, injections[i]);
		json_decref(c);
		json_decref(bad);
		c = json_pack("[{s:s, s:s, s:{s:s}, s:{s:s, s:s}}]", "table", "public.stable", "op", "upsert", "pk", "id",
					  injections[i], "row", "id", injections[i], "v", injections[i]);
		changes_case("a row whose values break SQL", c, injections[i]);
		json_decref(c);
		{
			char	   *q = sqlite3_mprintf("SELECT (SELECT count(*) FROM stable WHERE id = %Q AND v = %Q)"
											" + (SELECT count(*) FROM _ofs_meta WHERE key = 'cursor' AND value = %Q)",
											injections[i], injections[i], injections[i]);

			is_int(num(q), 2, "  ... is stored as plain values, and so is the cursor");
			sqlite3_free(q);
		}
	}

	/* Huge and deep values. */
	c = json_pack("[{s:s, s:s, s:{s:s}, s:{s:s, s:o, s:o}}]", "table", "public.invoices", "op", "upsert", "pk", "id", "big",
				  "row", "id", "big", "note", huge_string(4 * 1024 * 1024, 'x'), "total", deep_nest(2000, 1));
	changes_case("with a 4 MB string and a deeply nested value", c, NULL);
	json_decref(c);
	is_int(num("SELECT length(note) FROM invoices WHERE id = 'big'"), 4 * 1024 * 1024, "  ... the 4 MB string is stored whole");
	c = json_pack("[{s:s, s:s, s:{s:o}}]", "table", "public.invoices", "op", "delete", "pk", "id", deep_nest(2000, 0));
	changes_case("with a deeply nested key", c, NULL);
	json_decref(c);
	c = json_pack("[{s:o, s:s, s:{s:s}}]", "table", huge_string(1024 * 1024, 't'), "op", "delete", "pk", "id", "a");
	changes_case("with a 1 MB table name", c, NULL);
	json_decref(c);
	{
		json_t	   *big = huge_string(1 << 20, 'c');

		c = json_array();
		changes_case("with a 1 MB cursor", c, json_string_value(big));
		ok(num("SELECT length(value) FROM _ofs_meta WHERE key = 'cursor'") == 1 << 20, "  ... stored whole");
		json_decref(big);
		json_decref(c);
	}
	c = json_array();
	for (i = 0; i < 20000; i++)
		json_array_append_new(c, json_pack("{s:s, s:s, s:{s:s}}", "table", "public.invoices", "op", "delete", "pk",
										   "id", "never-there"));
	json_array_append_new(c, json_string("the last change is broken"));
	changes_case("of 20000 changes whose last is broken", c, "after-20000");
	json_decref(c);
	ok(intact(1), "after every hostile page, the outbox and ofs's tables are intact");
}

/* ---- ofs_outbox_results ---- */

static const char *const saved_tables[] = {"_ofs_intents_invoices", "_ofs_intents_lines", "_ofs_intents_stable",
"_ofs_rejected", "_ofs_conflicts", "invoices", "lines", "stable"};

/* save and restore: the outbox, what left it, and the rows, as they were before a case. */
static void
save_state(void)
{
	size_t		i;
	char		sql[256];

	for (i = 0; i < sizeof(saved_tables) / sizeof(saved_tables[0]); i++)
	{
		snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS temp.\"s_%s\"; CREATE TEMP TABLE \"s_%s\" AS SELECT * FROM main.\"%s\"",
				 saved_tables[i], saved_tables[i], saved_tables[i]);
		sql_exec(ofs_sqlite(F.db), sql, NULL);
	}
}

static void
restore_state(void)
{
	size_t		i;
	char		sql[256];

	F.db->capturing = 0;
	sql_exec(ofs_sqlite(F.db), "BEGIN", NULL);
	for (i = 0; i < sizeof(saved_tables) / sizeof(saved_tables[0]); i++)
	{
		snprintf(sql, sizeof(sql), "DELETE FROM main.\"%s\"; INSERT INTO main.\"%s\" SELECT * FROM temp.\"s_%s\"",
				 saved_tables[i], saved_tables[i], saved_tables[i]);
		sql_exec(ofs_sqlite(F.db), sql, NULL);
	}
	sql_exec(ofs_sqlite(F.db), "COMMIT", NULL);
	F.db->capturing = 1;
}

static void
results_case(const char *label, json_t *batch, json_t *results, int keep_row)
{
	char	   *rows = rows_snapshot();
	char	   *box = outbox_snapshot(F.db);
	int64_t		rejected = num("SELECT count(*) FROM _ofs_rejected");
	ofs_sync_stats stats = {0};
	ofs_rc		rc;
	char	   *rows2;
	char	   *box2;

	rc = ofs_outbox_results(F.db, batch, results, &stats);
	rows2 = rows_snapshot();
	box2 = outbox_snapshot(F.db);
	if (rc != OFS_OK)
		ok(valid_rc(rc) && strcmp(rows, rows2) == 0 && strcmp(box, box2) == 0 &&
		   num("SELECT count(*) FROM _ofs_rejected") == rejected,
		   "outbox_results %s: rc %d (%s), outbox, rows and rejected unchanged", label, rc, ofs_errmsg(F.db));
	else
		ok(valid_rc(rc) && (!keep_row || num("SELECT count(*) FROM invoices WHERE id = 'a'") == 1),
		   "outbox_results %s: accepted%s", label, keep_row ? ", the local row is kept" : "");
	/* Whatever an accepted answer did is undone: every case starts from the same outbox. */
	restore_state();
	free(rows);
	free(rows2);
	free(box);
	free(box2);
}

static void
test_results(void)
{
	json_t	   *batch = ofs_outbox_batch(F.db, 100);
	const char *op0 = json_string_value(json_object_get(json_array_get(batch, 0), "op_id"));
	static const char *const bad_results[] = {
		"\"results\"", "42", "null", "{}", "[null]", "[42]", "[\"x\"]", "[[]]", "[{}]",
		"[{\"operation_id\":42,\"status\":\"applied\"}]",
		"[{\"operation_id\":null,\"status\":\"applied\"}]",
		"[{\"operation_id\":\"someone-else\",\"status\":\"applied\"}]",
		"[{\"operation_id\":\"%s\"}]",
		"[{\"operation_id\":\"%s\",\"status\":42}]",
		"[{\"operation_id\":\"%s\",\"status\":null}]",
		"[{\"operation_id\":\"%s\",\"status\":\"exploded\"}]",
		"[{\"operation_id\":\"%s\",\"status\":\"applied\"},1,2,3,4,5,6,7,8,9,10,11,12]",
		"[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"hint\":{\"row\":{}}}]",
		"[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"hint\":{\"row\":{\"unknown\":1}}}]",
		"[{\"operation_id\":\"%s\",\"status\":\"applied\"},{\"operation_id\":\"%s\",\"status\":\"applied\"}]",
	};
	/* Rejections of the update of 'a' (the first intent) with broken or missing rows in their hints. */
	static const char *const odd_hints[] = {
		"", ",\"hint\":null", ",\"hint\":\"x\"", ",\"hint\":42", ",\"hint\":[]", ",\"hint\":{}",
		",\"hint\":{\"kind\":\"invalid_mutation\"}", ",\"hint\":{\"row\":\"x\"}", ",\"hint\":{\"row\":42}",
		",\"hint\":{\"row\":[]}", ",\"hint\":{\"row\":true}",
	};
	size_t		i;
	char		text[1024];
	json_t	   *r;

	save_state();
	ok(op0 != NULL && strcmp(json_string_value(json_object_get(json_array_get(batch, 0), "op")), "update") == 0,
	   "the first pending intent is an update of 'a'");
	results_case("NULL results", batch, NULL, 0);
	for (i = 0; i < sizeof(bad_results) / sizeof(bad_results[0]); i++)
	{
		snprintf(text, sizeof(text), bad_results[i], op0, op0);
		r = fixture_json(text);
		results_case(text, batch, r, 0);
		json_decref(r);
	}
	for (i = 0; i < sizeof(odd_hints) / sizeof(odd_hints[0]); i++)
	{
		snprintf(text, sizeof(text), "[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"XX000\","
				 "\"message\":\"no\"%s}]", op0, odd_hints[i]);
		r = fixture_json(text);
		snprintf(text, sizeof(text), "a rejection with hint '%s'", odd_hints[i]);
		results_case(text, batch, r, 1);
		json_decref(r);
	}
	snprintf(text, sizeof(text), "[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":{\"x\":1},"
			 "\"message\":[1],\"hint\":{\"row\":{\"id\":\"a\",\"status\":\"draft\",\"total\":{\"n\":1}}}}]", op0);
	r = fixture_json(text);
	results_case("a rejection with wrong types for sqlstate, message and values", batch, r, 1);
	json_decref(r);

	/* Batches that are not what ofs_outbox_batch makes. */
	r = fixture_json("[]");
	results_case("an empty answer to a NULL batch", NULL, r, 0);
	json_decref(r);
	r = fixture_json("[{\"operation_id\":\"x\",\"status\":\"applied\"}]");
	results_case("an answer to a NULL batch", NULL, r, 0);
	{
		json_t	   *odd = fixture_json("[42]");

		results_case("an answer to a batch of a number", odd, r, 0);
		json_decref(odd);
		odd = fixture_json("[{\"op_id\":\"x\",\"table\":42,\"pk\":\"k\"}]");
		json_decref(r);
		r = fixture_json("[{\"operation_id\":\"x\",\"status\":\"rejected\",\"hint\":{\"row\":null}}]");
		results_case("a rejection for a batch with a broken mutation", odd, r, 0);
		json_decref(r);
		r = fixture_json("[{\"operation_id\":\"x\",\"status\":\"conflict\"}]");
		results_case("a conflict for a batch with a broken mutation", odd, r, 0);
		json_decref(odd);
	}
	json_decref(r);

	/* Huge and deep hints, and what ofs_rejected makes of them. */
	{
		json_t	   *hint = json_pack("{s:s, s:o, s:o, s:{s:s, s:s, s:s}}", "kind", "x", "deep", deep_nest(2040, 1),
									 "big", huge_string(2 * 1024 * 1024, 'b'), "row", "id", "a", "status", "draft",
									 "note", "from the hint");

		r = json_pack("[{s:s, s:s, s:s, s:s, s:o}]", "operation_id", op0, "status", "rejected", "sqlstate", "XX000",
					  "message", "deep", "hint", hint);
		ok(valid_rc(ofs_outbox_results(F.db, batch, r, NULL)), "a rejection with a 2 MB and deeply nested hint: no crash");
		{
			const char *list = ofs_rejected(F.db);
			json_t	   *l = list ? json_loads(list, 0, NULL) : NULL;

			ok(json_is_array(l) && json_array_size(l) >= 1,
			   "ofs_rejected still lists the rejected intents after a deeply nested hint (%s)",
			   list ? "a JSON text" : "it returned NULL");
			json_decref(l);
		}
		restore_state();
		json_decref(r);
	}
	json_decref(batch);
	ok(intact(1), "after every hostile answer, the outbox and ofs's tables are intact");
}

/* ---- a seeded random-JSON fuzz loop ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int
chance(int percent)
{
	return (int) (rnd() % 100) < percent;
}

static const char *
pick(const char *const *list, size_t n)
{
	return list[rnd() % n];
}

#define PICK(list) pick(list, sizeof(list) / sizeof(list[0]))

static const char *const keys[] = {
	"tables", "name", "columns", "type", "primary_key", "merge", "transitions", "column", "edges", "from", "to",
	"role", "initial", "roles", "table", "op", "pk", "row", "operation_id", "status", "hint", "sqlstate", "message",
	"kind", "id", "note", "total", "qty", "invoice", "n", "amount", "v", "seq", "op_id", "", "\xc3\xa9t\xc3\xa9",
};
static const char *const strings[] = {
	"public.invoices", "public.lines", "public.fuzz", "public.fuzz2", "fuzz.other", "invoices", "upsert", "delete",
	"insert", "update", "applied", "duplicate", "rejected", "conflict", "draft", "submitted", "approved", "manager",
	"text", "integer", "numeric", "boolean", "double precision", "id", "note", "total", "12.50", "", "NaN", "null",
	"x\"; DROP TABLE _ofs_outbox; --", "y'); DELETE FROM _ofs_outbox; --", "public._ofs_outbox", "_ofs_meta",
	"sqlite_master", "\xe2\x82\xac\xf0\x9f\x98\x80", "a\nb\tc", "%s%n", "nope",
};
static const char *const tables_fuzzed[] = {"public.invoices", "public.lines", "public.fuzz", "public.fuzz2", "public.nope"};
static const char *const columns_fuzzed[] = {"id", "status", "total", "note", "qty", "invoice", "n", "amount", "nope", "x\"y"};
static const char *const types_fuzzed[] = {"text", "integer", "numeric", "boolean", "real", "uuid", "jsonb"};

static json_t *
random_json(int depth)
{
	switch (rnd() % (depth > 0 ? 9 : 6))
	{
		case 0:
			return json_null();
		case 1:
			return json_boolean(rnd() & 1);
		case 2:
			{
				static const json_int_t ints[] = {0, 1, -1, 42, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};

				return json_integer(chance(50) ? ints[rnd() % 8] : (json_int_t) rnd());
			}
		case 3:
			return json_real(chance(50) ? 1e308 : (double) (int64_t) rnd() / 1e6);
		case 4:
		case 5:
			if (chance(1))
				return huge_string(64 * 1024 + rnd() % 4096, 'f');
			return json_string(PICK(strings));
		case 6:
			if (chance(1))
				return deep_nest(100 + (int) (rnd() % 1900), rnd() & 1);
			/* fall through */
		case 7:
			{
				json_t	   *a = json_array();
				int			n = (int) (rnd() % 4);

				while (n-- > 0)
					json_array_append_new(a, random_json(depth - 1));
				return a;
			}
		default:
			{
				json_t	   *o = json_object();
				int			n = (int) (rnd() % 5);

				while (n-- > 0)
					json_object_set_new(o, PICK(keys), random_json(depth - 1));
				return o;
			}
	}
}

/* maybe: the value, or (sometimes) random JSON, or (sometimes) nothing. */
static void
maybe_set(json_t *o, const char *key, json_t *v)
{
	if (chance(8))
	{
		json_decref(v);
		return;
	}
	if (chance(12))
	{
		json_decref(v);
		v = random_json(2);
	}
	json_object_set_new(o, key, v);
}

static json_t *
fuzz_schema(void)
{
	json_t	   *s = json_object();
	json_t	   *tables = json_array();
	int			nt = (int) (rnd() % 3);

	while (nt-- > 0)
	{
		json_t	   *t = json_object();
		json_t	   *cols = json_array();
		json_t	   *tr = json_array();
		int			nc = 1 + (int) (rnd() % 4);
		const char *first = PICK(columns_fuzzed);

		maybe_set(t, "name", json_string(chance(90) ? PICK(tables_fuzzed) : PICK(strings)));
		json_array_append_new(cols, json_pack("{s:s, s:s}", "name", first, "type", PICK(types_fuzzed)));
		while (--nc > 0)
		{
			json_t	   *c = json_object();

			maybe_set(c, "name", json_string(PICK(columns_fuzzed)));
			maybe_set(c, "type", json_string(PICK(types_fuzzed)));
			json_array_append_new(cols, c);
		}
		maybe_set(t, "columns", cols);
		maybe_set(t, "primary_key", json_pack("[s]", chance(85) ? first : PICK(columns_fuzzed)));
		if (chance(40))
		{
			json_t	   *rule = json_object();

			maybe_set(rule, "column", json_string(PICK(columns_fuzzed)));
			maybe_set(rule, "initial", json_pack("[s]", PICK(strings)));
			maybe_set(rule, "edges", json_pack("[{s:s, s:s, s:s?}]", "from", PICK(strings), "to", PICK(strings),
											   "role", chance(50) ? PICK(strings) : NULL));
			json_array_append_new(tr, rule);
		}
		maybe_set(t, "transitions", tr);
		if (chance(95))
			json_array_append_new(tables, t);
		else
		{
			json_decref(t);
			json_array_append_new(tables, random_json(2));
		}
	}
	maybe_set(s, "tables", tables);
	maybe_set(s, "roles", json_pack("[s, s]", PICK(strings), PICK(strings)));
	return s;
}

static json_t *
fuzz_changes(void)
{
	json_t	   *a = json_array();
	int			n = (int) (rnd() % 6);

	while (n-- > 0)
	{
		json_t	   *c = json_object();
		json_t	   *pk = json_object();
		json_t	   *row = json_object();
		int			k = 1 + (int) (rnd() % 3);

		maybe_set(c, "table", json_string(PICK(tables_fuzzed)));
		maybe_set(c, "op", json_string(chance(60) ? "upsert" : chance(80) ? "delete" : PICK(strings)));
		json_object_set_new(pk, chance(80) ? "id" : PICK(columns_fuzzed),
							chance(70) ? json_string(PICK(strings)) : random_json(1));
		while (k-- > 0)
			json_object_set_new(row, PICK(columns_fuzzed), chance(70) ? json_string(PICK(strings)) : random_json(1));
		if (chance(80))
			json_object_set(row, "id", json_object_get(pk, "id") ? json_object_get(pk, "id") : json_null());
		maybe_set(c, "pk", pk);
		maybe_set(c, "row", row);
		if (chance(95))
			json_array_append_new(a, c);
		else
		{
			json_decref(c);
			json_array_append_new(a, random_json(2));
		}
	}
	return chance(95) ? a : (json_decref(a), random_json(3));
}

static json_t *
fuzz_results(json_t *batch)
{
	json_t	   *a = json_array();
	size_t		n = rnd() % (json_array_size(batch) + 2);
	size_t		i;

	for (i = 0; i < n; i++)
	{
		json_t	   *r = json_object();
		json_t	   *m = json_array_get(batch, chance(90) ? i : rnd() % (json_array_size(batch) + 1));
		static const char *const statuses[] = {"applied", "duplicate", "rejected", "conflict"};

		maybe_set(r, "operation_id", m ? json_incref(json_object_get(m, "op_id")) : json_string(PICK(strings)));
		maybe_set(r, "status", json_string(chance(90) ? PICK(statuses) : PICK(strings)));
		if (chance(50))
		{
			json_t	   *hint = json_object();
			json_t	   *row = json_object();

			json_object_set_new(row, "id", json_string(chance(80) ? "a" : PICK(strings)));
			json_object_set_new(row, PICK(columns_fuzzed), chance(70) ? json_string(PICK(strings)) : random_json(1));
			maybe_set(hint, "kind", json_string(PICK(strings)));
			maybe_set(hint, "row", chance(70) ? row : (json_decref(row), json_null()));
			maybe_set(r, "hint", hint);
		}
		maybe_set(r, "sqlstate", json_string("OF001"));
		if (chance(97))
			json_array_append_new(a, r);
		else
		{
			json_decref(r);
			json_array_append_new(a, random_json(2));
		}
	}
	return chance(97) ? a : (json_decref(a), random_json(3));
}

/* refill keeps a few intents in the outbox, on a table the fuzzed schemas leave alone. */
static void
refill(void)
{
	static int	k;
	char		sql[128];

	while (num("SELECT count(*) FROM _ofs_outbox") < 4)
	{
		snprintf(sql, sizeof(sql), "INSERT INTO stable (id, v) VALUES ('fz%d', 'v')", k++);
		if (sql_exec(ofs_sqlite(F.db), sql, NULL) != SQLITE_OK)
			break;
	}
}

static void
test_fuzz(void)
{
	const int	iterations = 3000;
	const double budget = 30.0;
	struct timespec t0;
	struct timespec t1;
	int			i;
	int			calls[3] = {0, 0, 0};
	int			accepted[3] = {0, 0, 0};
	int			bad_rc = 0;
	int			outbox_broken = 0;
	int			lost = 0;
	int			refill_failed = 0;
	double		elapsed = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < iterations && elapsed < budget; i++)
	{
		int			which = (int) (rnd() % 3);
		ofs_rc		rc;
		char	   *before;
		char	   *after;

		refill();
		if (num("SELECT count(*) FROM _ofs_outbox") < 4)
			refill_failed++;
		before = outbox_snapshot(F.db);
		calls[which]++;
		if (which == 0)
		{
			json_t	   *s = fuzz_schema();

			rc = ofs_install_schema(F.db, s);
			json_decref(s);
		}
		else if (which == 1)
		{
			json_t	   *c = fuzz_changes();
			char		cursor[32];

			snprintf(cursor, sizeof(cursor), "fuzz-%d", i);
			if (chance(50))
				rc = ofs_apply_changes(F.db, c, chance(50) ? cursor : NULL);
			else
			{
				/* The whole message: its clock, flags and rejections version, of any type. */
				json_t	   *m = json_pack("{s:s, s:s, s:O}", "type", "changes", "cursor", cursor, "changes", c);

				maybe_set(m, "hlc", json_integer(chance(50) ? (json_int_t) rnd() : (json_int_t) (ofs_now_ms() << 16)));
				maybe_set(m, "up_to_date", json_boolean(rnd() & 1));
				maybe_set(m, "more", json_boolean(rnd() & 1));
				maybe_set(m, "rejections", json_integer((json_int_t) (rnd() % 5)));
				rc = ofs_apply_message(F.db, m, (int) (rnd() & 1));
				json_decref(m);
			}
			json_decref(c);
		}
		else
		{
			json_t	   *batch = ofs_outbox_batch(F.db, 1 + (int) (rnd() % 6));
			json_t	   *r = fuzz_results(batch);
			ofs_sync_stats st = {0};
			int64_t		n0 = num("SELECT count(*) FROM _ofs_outbox");
			int64_t		kept0 = num("SELECT (SELECT count(*) FROM _ofs_rejected) + (SELECT count(*) FROM _ofs_conflicts)");

			rc = ofs_outbox_results(F.db, batch, r, &st);
			if (rc == OFS_OK)
			{
				int64_t		n1 = num("SELECT count(*) FROM _ofs_outbox");
				int64_t		kept1 = num("SELECT (SELECT count(*) FROM _ofs_rejected) + (SELECT count(*) FROM _ofs_conflicts)");

				/* Every intent that left is counted: applied, or kept as rejected or conflict. */
				if (n0 - n1 != st.applied + st.rejected + st.conflicts || kept1 - kept0 > st.rejected + st.conflicts)
					lost++;
			}
			json_decref(batch);
			json_decref(r);
		}
		if (!valid_rc(rc))
			bad_rc++;
		if (rc == OFS_OK)
			accepted[which]++;
		after = outbox_snapshot(F.db);
		/* Only answers to a push may take intents out of the outbox; nothing may add any. */
		if ((which != 2 || rc != OFS_OK) && strcmp(before, after) != 0)
		{
			if (outbox_broken++ < 3)
				diag("iteration %d (%s, rc %d) changed the outbox:\n# was: %s\n# now: %s", i,
					 which == 0 ? "schema" : which == 1 ? "changes" : "results", rc, before, after);
		}
		free(before);
		free(after);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		elapsed = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	diag("fuzz: %d iterations in %.1f s; schema %d (%d accepted), changes %d (%d accepted), results %d (%d accepted)",
		 i, elapsed, calls[0], accepted[0], calls[1], accepted[1], calls[2], accepted[2]);
	ok(i >= 100, "the fuzz loop ran (%d iterations)", i);
	is_int(bad_rc, 0, "fuzz: every call returned a result code, with a message when not OFS_OK");
	is_int(outbox_broken, 0, "fuzz: no schema, page or refused answer changed the outbox");
	is_int(lost, 0, "fuzz: every intent an accepted answer took out is accounted for");
	is_int(refill_failed, 0, "fuzz: the application could write a synced table all along");
	{
		char		b[256];

		is_str(sql_text(ofs_sqlite(F.db), "PRAGMA integrity_check", b, sizeof(b)), "ok", "fuzz: the database is sound");
	}
}

/* setup_device: a device with rows from the origin and four pending intents to protect. */
static void
setup_device(const char *name)
{
	json_t	   *s;

	fixture_open(&F, name, 0);
	s = fixture_json(stable_schema);
	if (ofs_install_schema(F.db, s) != OFS_OK)
		exit(2);
	json_decref(s);
	s = fixture_json("[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},"
					 "  \"row\":{\"id\":\"a\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"origin\",\"qty\":1}},"
					 " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"b\"},"
					 "  \"row\":{\"id\":\"b\",\"status\":\"draft\",\"total\":\"2.00\",\"note\":\"origin\",\"qty\":2}},"
					 " {\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"a\",\"n\":1},"
					 "  \"row\":{\"invoice\":\"a\",\"n\":1,\"amount\":\"0.50\"}}]");
	if (ofs_apply_changes(F.db, s, "c0") != OFS_OK)
		exit(2);
	json_decref(s);
	sql_exec(ofs_sqlite(F.db), "UPDATE invoices SET note = 'local' WHERE id = 'a';"
			 " INSERT INTO invoices (id, status, total) VALUES ('c', 'draft', '3.00');"
			 " DELETE FROM invoices WHERE id = 'b';"
			 " INSERT INTO stable (id, v) VALUES ('s1', 'one')", NULL);
	intents0 = outbox_snapshot(F.db);
}

/*
 * The origin names one of ofs's own tables (or SQLite's): each on a device
 * of its own, so that one taken table does not spoil the other cases.
 */
static void
test_internal_names(void)
{
	fixture		main_device = F;
	char	   *main_intents = intents0;
	size_t		i;

	for (i = 0; i < sizeof(internal_names) / sizeof(internal_names[0]); i++)
	{
		const char *name = internal_names[i];
		json_t	   *s;
		json_t	   *c;
		ofs_rc		rc1;
		ofs_rc		rc2;
		ofs_rc		rc3;
		char		op_id[64];
		char		b[64];
		int64_t		n;

		setup_device("hostile-internal");
		snprintf(op_id, sizeof(op_id), "%s", sql_text(ofs_sqlite(F.db), "SELECT op_id FROM _ofs_outbox ORDER BY seq LIMIT 1",
													   b, sizeof(b)));
		s = json_pack("{s:[{s:s, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}], s:[s]}]}", "tables", "name", name,
					  "columns", "name", "seq", "type", "integer", "name", "key", "type", "text", "name", "value", "type", "text",
					  "primary_key", "seq");
		rc1 = ofs_install_schema(F.db, s);
		json_decref(s);
		s = json_pack("{s:[{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:[s]}]}", "tables", "name", name,
					  "columns", "name", "op_id", "type", "text", "name", "tbl", "type", "text", "primary_key", "op_id");
		rc2 = ofs_install_schema(F.db, s);
		json_decref(s);
		c = json_pack("[{s:s, s:s, s:{s:i}}, {s:s, s:s, s:{s:s}}, {s:s, s:s, s:{s:s}},"
					  " {s:s, s:s, s:{s:i}, s:{s:i, s:s, s:s}}]",
					  "table", name, "op", "delete", "pk", "seq", 1,
					  "table", name, "op", "delete", "pk", "op_id", op_id,
					  "table", name, "op", "delete", "pk", "key", "cursor",
					  "table", name, "op", "upsert", "pk", "seq", 1, "row", "seq", 1, "key", "x", "value", "y");
		rc3 = ofs_apply_changes(F.db, c, NULL);
		json_decref(c);
		ok(valid_rc(rc1) && valid_rc(rc2) && valid_rc(rc3) && intact(1),
		   "a table of the origin named %s (schema rc %d, %d; changes rc %d): the outbox and ofs's tables are intact",
		   name, rc1, rc2, rc3);
		n = num("SELECT count(*) FROM _ofs_outbox");
		ok(sql_exec(ofs_sqlite(F.db), "UPDATE stable SET v = 'after' WHERE id = 's1'", NULL) == SQLITE_OK &&
		   num("SELECT count(*) FROM _ofs_outbox") == n + 1, "  ... and a write still makes exactly one intent");
		ok(num("SELECT count(*) FROM _ofs_meta WHERE key = 'cursor' AND value = 'c0'") == 1, "  ... and the cursor is kept");
		fixture_close(&F);
		free(intents0);
	}
	F = main_device;
	intents0 = main_intents;
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		rng = strtoull(argv[1], NULL, 0) | 1;
	setup_device("hostile");
	ok(num("SELECT count(*) FROM _ofs_outbox") == 4, "four pending intents to protect");

	test_schema();
	test_internal_names();
	test_changes();
	test_results();
	test_fuzz();

	free(intents0);
	fixture_close(&F);
	return done_testing();
}

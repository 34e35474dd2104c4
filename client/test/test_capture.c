/*
 * test_capture.c: writes to synced tables become intents in the outbox, in
 * the same SQLite transaction; keys do not change; other connections cannot
 * write synced tables; transition rules and role guards are enforced
 * locally; numeric values keep their exact text; the outbox and the clock
 * survive a close and a reopen.
 */
#include <sys/wait.h>

#include "fixture.h"

/* is_json: two JSON texts are equal as JSON values (key order aside). */
static int
is_json(const char *got, const char *want, const char *what)
{
	json_t	   *g = got ? json_loads(got, JSON_DECODE_ANY, NULL) : NULL;
	json_t	   *w = json_loads(want, JSON_DECODE_ANY, NULL);
	int			pass = g && w && json_equal(g, w);

	ok(pass, "%s", what);
	if (!pass)
	{
		diag("       got: %s", got ? got : "NULL");
		diag("  expected: %s", want);
	}
	json_decref(g);
	json_decref(w);
	return pass;
}

/* The newest intent's column. */
static const char *
last_intent(fixture *f, const char *col, char *buf, size_t size)
{
	char		q[200];

	snprintf(q, sizeof(q), "SELECT %s FROM _ofs_outbox ORDER BY seq DESC LIMIT 1", col);
	return sql_text(ofs_sqlite(f->db), q, buf, size);
}

static int64_t
pending(fixture *f)
{
	return sql_int(ofs_sqlite(f->db), "SELECT count(*) FROM _ofs_outbox");
}

/* The origin applies every pending intent. */
static ofs_rc
all_applied(ofs_db *db)
{
	json_t	   *batch = ofs_outbox_batch(db, 100000);
	json_t	   *results = json_array();
	size_t		i;
	json_t	   *m;
	ofs_rc		rc;

	json_array_foreach(batch, i, m)
		json_array_append_new(results, json_pack("{s:O, s:s}", "operation_id", json_object_get(m, "op_id"),
												 "status", "applied"));
	rc = ofs_outbox_results(db, batch, results, NULL);
	json_decref(batch);
	json_decref(results);
	return rc;
}

static int
contains(const char *s, const char *part)
{
	return s && strstr(s, part) != NULL;
}

static void
test_open_failures(void)
{
	ofs_db	   *db = NULL;
	ofs_rc		rc;

	is_int(ofs_open(NULL, &db), OFS_MISUSE, "ofs_open without a path is a misuse");
	ok(db != NULL && ofs_errmsg(db)[0] != '\0', "... with a message (%s)", db ? ofs_errmsg(db) : "");
	ok(ofs_sqlite(db) == NULL, "... and no connection");
	ofs_close(db);
	db = NULL;
	rc = ofs_open("/nonexistent-dir/x/device.db", &db);
	ok(rc == OFS_ERROR && db && ofs_errmsg(db)[0], "ofs_open in a missing directory fails with a message (%s)",
	   db ? ofs_errmsg(db) : "");
	ofs_close(db);
	ok(ofs_sqlite(NULL) == NULL, "ofs_sqlite(NULL) is NULL");
	ofs_close(NULL);
}

static void
test_schema_installed(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char		b[512];

	is_str(sql_text(s, "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('invoices') ORDER BY cid)",
					b, sizeof(b)), "id,status,total,note,qty", "invoices is created locally with the origin's columns");
	is_str(sql_text(s, "SELECT group_concat(type, ',') FROM (SELECT type FROM pragma_table_info('invoices') ORDER BY cid)",
					b, sizeof(b)), "TEXT,TEXT,TEXT,TEXT,INTEGER", "numeric is TEXT on the device, integer INTEGER");
	is_str(sql_text(s, "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('lines') WHERE pk > 0 ORDER BY pk)",
					b, sizeof(b)), "invoice,n", "lines has the composite primary key");
	is_str(sql_text(s, "SELECT local FROM _ofs_tables WHERE origin = 'public.invoices'", b, sizeof(b)), "invoices",
		   "public.invoices maps to the local table invoices");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_rules WHERE tbl = 'public.invoices' AND col = 'status'"), 4,
		   "three edges and one initial state are recorded");
	is_json(sql_text(s, "SELECT value FROM _ofs_meta WHERE key = 'roles'", b, sizeof(b)), "[\"rep\",\"rep_alice\"]",
			"the roles are recorded");
	is_int(pending(f), 0, "installing the schema makes no intent");
}

static void
test_insert(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char		b[512];
	int64_t		before = ofs_now_ms();
	int64_t		after;
	int64_t		hlc;

	is_int(sql_exec(s, "INSERT INTO invoices (id, status, total) VALUES ('inv-1', 'draft', '12.50')", NULL), SQLITE_OK,
		   "an insert through ofs_sqlite succeeds");
	after = ofs_now_ms();
	is_int(pending(f), 1, "it leaves one intent");
	is_str(last_intent(f, "tbl", b, sizeof(b)), "public.invoices", "the intent names the origin's table");
	is_str(last_intent(f, "op", b, sizeof(b)), "insert", "... op insert");
	is_json(last_intent(f, "pk", b, sizeof(b)), "{\"id\":\"inv-1\"}", "... the key");
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"id\":\"inv-1\",\"status\":\"draft\",\"total\":\"12.50\"}",
			"... the columns given (NULL columns left to the origin's defaults)");
	is_str(last_intent(f, "base", b, sizeof(b)), "(null)", "... and no base");
	is_int(sql_int(s, "SELECT length(op_id) = 32 AND op_id NOT GLOB '*[^0-9a-f]*' FROM _ofs_outbox"), 1,
		   "the operation id is 32 hex digits");
	hlc = sql_int(s, "SELECT hlc FROM _ofs_outbox");
	ok((hlc >> 16) >= before && (hlc >> 16) <= after, "the clock's milliseconds are the wall time of the write");
}

static void
test_same_transaction(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	sqlite3    *other = NULL;
	int64_t		n = pending(f);

	sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READONLY, NULL);
	sqlite3_busy_timeout(other, 5000);

	is_int(sql_exec(s, "BEGIN", NULL), SQLITE_OK, "BEGIN");
	is_int(sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('inv-2', 'draft')", NULL), SQLITE_OK,
		   "insert in an open transaction");
	is_int(pending(f), n + 1, "the intent is there inside the transaction");
	is_int(sql_int(other, "SELECT count(*) FROM _ofs_outbox"), n, "another connection sees neither the intent ...");
	is_int(sql_int(other, "SELECT count(*) FROM invoices WHERE id = 'inv-2'"), 0, "... nor the row before COMMIT");
	is_int(sql_exec(s, "COMMIT", NULL), SQLITE_OK, "COMMIT");
	is_int(sql_int(other, "SELECT count(*) FROM _ofs_outbox"), n + 1, "after COMMIT it sees the intent ...");
	is_int(sql_int(other, "SELECT count(*) FROM invoices WHERE id = 'inv-2'"), 1, "... and the row");
	sqlite3_close(other);

	n = pending(f);
	is_int(sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('inv-3', 'draft');"
					" UPDATE invoices SET note = 'x' WHERE id = 'inv-1'; DELETE FROM invoices WHERE id = 'inv-2';", NULL),
		   SQLITE_OK, "an insert, an update and a delete in a transaction");
	is_int(pending(f), n + 3, "three intents inside it");
	is_int(sql_exec(s, "ROLLBACK", NULL), SQLITE_OK, "ROLLBACK");
	is_int(pending(f), n, "a rolled-back transaction leaves no intent");
	is_int(sql_int(s, "SELECT (SELECT count(*) FROM invoices WHERE id = 'inv-2')"
				   " + (SELECT count(*) FROM invoices WHERE id = 'inv-3') * 10"
				   " + (SELECT count(*) FROM invoices WHERE note IS NOT NULL) * 100"), 1,
		   "... and no change to the rows");

	is_int(sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('inv-1', 'draft')", NULL) & 0xff, SQLITE_CONSTRAINT,
		   "an insert of an existing key fails");
	is_int(pending(f), n, "a failed statement leaves no intent");
}

static void
test_update_delete(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char		b[512];
	char	   *msg = NULL;
	int64_t		n;
	int			rc;

	is_int(sql_exec(s, "UPDATE invoices SET status = 'submitted', note = 'hello' WHERE id = 'inv-1'", NULL), SQLITE_OK,
		   "an update of two columns");
	is_str(last_intent(f, "op", b, sizeof(b)), "update", "is an update intent");
	is_json(last_intent(f, "pk", b, sizeof(b)), "{\"id\":\"inv-1\"}", "... with the key");
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"status\":\"submitted\",\"note\":\"hello\"}",
			"... the changed columns only");
	is_json(last_intent(f, "base", b, sizeof(b)), "{\"status\":\"draft\",\"note\":null}",
			"... and the values they replaced as base");

	sql_exec(s, "UPDATE invoices SET total = '13.00', qty = 3 WHERE id = 'inv-1'", NULL);
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"total\":\"13.00\",\"qty\":3}", "an update of total and qty");
	is_json(last_intent(f, "base", b, sizeof(b)), "{\"total\":\"12.50\",\"qty\":null}", "... base total and qty");

	sql_exec(s, "UPDATE invoices SET note = NULL WHERE id = 'inv-1'", NULL);
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"note\":null}", "setting a column to NULL sends null");
	is_json(last_intent(f, "base", b, sizeof(b)), "{\"note\":\"hello\"}", "... with its old value as base");

	n = pending(f);
	is_int(sql_exec(s, "UPDATE invoices SET total = total, note = note, status = status, qty = qty WHERE id = 'inv-1'",
					NULL), SQLITE_OK, "an update that changes nothing succeeds");
	is_int(pending(f), n, "... and makes no intent");
	sql_exec(s, "UPDATE invoices SET note = 'nobody' WHERE id = 'no-such-row'", NULL);
	is_int(pending(f), n, "an update of no row makes no intent");

	/* The row is "submitted", not an initial state: the upsert updates it, it inserts nothing. */
	rc = sql_exec(s, "INSERT INTO invoices (id, qty) VALUES ('inv-1', 7) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty",
				  &msg);
	ok(rc == SQLITE_OK, "an upsert (ON CONFLICT DO UPDATE) of an existing row in a non-initial state works (%s)",
	   msg ? msg : "ok");
	sqlite3_free(msg);
	is_str(last_intent(f, "op", b, sizeof(b)), "update", "... is captured as an update");
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"qty\":7}", "... of the changed column");

	is_int(sql_exec(s, "INSERT INTO lines (invoice, n, amount) VALUES ('inv-1', 1, '1.00'), ('inv-1', 2, '2.00'),"
					" ('inv-1', 3, '3.00'), ('inv-1', 4, '4.00')", NULL), SQLITE_OK,
		   "a four-row insert into lines");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_outbox WHERE tbl = 'public.lines' AND op = 'insert'"), 4,
		   "... makes four intents");
	is_json(sql_text(s, "SELECT pk FROM _ofs_outbox WHERE tbl = 'public.lines' ORDER BY seq LIMIT 1", b, sizeof(b)),
			"{\"invoice\":\"inv-1\",\"n\":1}", "a composite key has both columns");

	n = pending(f);
	is_int(sql_exec(s, "DELETE FROM lines WHERE n >= 3", NULL), SQLITE_OK, "a delete of two rows");
	is_int(pending(f), n + 2, "... makes two intents");
	is_str(last_intent(f, "op", b, sizeof(b)), "delete", "op delete");
	is_json(last_intent(f, "pk", b, sizeof(b)), "{\"invoice\":\"inv-1\",\"n\":4}", "... with the key");
	is_str(last_intent(f, "data", b, sizeof(b)), "(null)", "... and no data");

	is_int(sql_int(s, "SELECT count(*) = count(DISTINCT op_id) FROM _ofs_outbox"), 1, "operation ids are unique");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_outbox a JOIN _ofs_outbox b ON b.seq > a.seq WHERE b.hlc <= a.hlc"), 0,
		   "the clock increases from each intent to the next (rows of one statement included)");
}

static void
test_primary_key(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char	   *msg = NULL;
	int64_t		n = pending(f);
	int			rc;

	rc = sql_exec(s, "UPDATE invoices SET id = 'inv-9' WHERE id = 'inv-1'", &msg);
	ok(rc != SQLITE_OK, "changing a primary key is refused");
	ok(contains(msg, "primary key"), "... saying why (%s)", msg ? msg : "");
	sqlite3_free(msg);
	is_int(sql_int(s, "SELECT count(*) FROM invoices WHERE id = 'inv-1'"), 1, "... the row keeps its key");
	is_int(sql_int(s, "SELECT count(*) FROM invoices WHERE id = 'inv-9'"), 0, "... no row has the new key");
	ok(sql_exec(s, "UPDATE lines SET n = n + 10 WHERE n = 1", NULL) != SQLITE_OK,
	   "changing a column of a composite key is refused");
	ok(sql_exec(s, "UPDATE invoices SET id = 'inv-9', note = 'x' WHERE id = 'inv-1'", NULL) != SQLITE_OK,
	   "changing a key with another column is refused");
	is_int(pending(f), n, "refused key changes leave no intent");
}

static void
test_other_connection(fixture *f)
{
	sqlite3    *other = NULL;
	char	   *snap = outbox_snapshot(f->db);
	char	   *after;
	char	   *msg = NULL;
	int64_t		rows = sql_int(ofs_sqlite(f->db), "SELECT count(*) FROM invoices");
	int			rc;

	is_int(sqlite3_open_v2(f->path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK,
		   "a plain SQLite connection opens the device file");
	sqlite3_busy_timeout(other, 5000);
	is_int(sql_int(other, "SELECT count(*) FROM invoices"), rows, "... and reads the synced table");
	rc = sql_exec(other, "INSERT INTO invoices (id, status) VALUES ('sneaky', 'draft')", &msg);
	ok(rc != SQLITE_OK, "... but cannot insert into it (%s)", msg ? msg : "");
	sqlite3_free(msg);
	msg = NULL;
	rc = sql_exec(other, "UPDATE invoices SET note = 'sneaky'", &msg);
	ok(rc != SQLITE_OK, "... nor update it (%s)", msg ? msg : "");
	sqlite3_free(msg);
	ok(sql_exec(other, "DELETE FROM invoices", NULL) != SQLITE_OK, "... nor delete from it");
	ok(sql_exec(other, "INSERT INTO lines (invoice, n) VALUES ('x', 1)", NULL) != SQLITE_OK,
	   "... nor write another synced table");
	ok(sql_exec(other, "BEGIN; DELETE FROM lines; COMMIT", NULL) != SQLITE_OK, "... not in a transaction either");
	sql_exec(other, "ROLLBACK", NULL);
	sqlite3_close(other);
	is_int(sql_int(ofs_sqlite(f->db), "SELECT count(*) FROM invoices"), rows, "the synced table is unchanged");
	after = outbox_snapshot(f->db);
	is_str(after, snap, "the outbox is unchanged");
	free(snap);
	free(after);
}

static void
test_transitions(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char	   *msg = NULL;
	char		b[256];
	int64_t		n = pending(f);
	int			rc;
	json_t	   *schema;

	rc = sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('t1', 'submitted')", &msg);
	is_int(rc & 0xff, SQLITE_CONSTRAINT, "inserting a row in a state that is not initial fails at once");
	ok(contains(msg, "draft"), "... naming the allowed initial states (%s)", msg ? msg : "");
	sqlite3_free(msg);
	msg = NULL;
	is_int(sql_int(s, "SELECT count(*) FROM invoices WHERE id = 't1'"), 0, "... no row");
	is_int(pending(f), n, "... no intent");

	is_int(sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('t1', 'draft')", NULL), SQLITE_OK,
		   "inserting in the initial state works");
	n = pending(f);

	rc = sql_exec(s, "UPDATE invoices SET status = 'approved' WHERE id = 't1'", &msg);
	is_int(rc & 0xff, SQLITE_CONSTRAINT, "a forbidden transition (draft -> approved) fails at once");
	ok(contains(msg, "allowed next states: submitted"), "... with the allowed next states in the message (%s)",
	   msg ? msg : "");
	ok(contains(msg, "OF001"), "... and ofs's code OF001");
	sqlite3_free(msg);
	msg = NULL;
	is_str(sql_text(s, "SELECT status FROM invoices WHERE id = 't1'", b, sizeof(b)), "draft", "... the row stays draft");
	is_int(pending(f), n, "... and no intent is made");

	is_int(sql_exec(s, "BEGIN; UPDATE invoices SET status = 'submitted', note = 'sent' WHERE id = 't1'", NULL), SQLITE_OK,
		   "an allowed transition (draft -> submitted) in a transaction");
	rc = sql_exec(s, "UPDATE invoices SET status = 'approved' WHERE id = 't1'", &msg);
	is_int(rc & 0xff, SQLITE_CONSTRAINT, "submitted -> approved without the manager role fails");
	ok(contains(msg, "manager") && contains(msg, "OF002"), "... naming the role it needs (%s)", msg ? msg : "");
	sqlite3_free(msg);
	msg = NULL;
	is_int(sql_exec(s, "COMMIT", NULL), SQLITE_OK, "the transaction still commits");
	is_str(sql_text(s, "SELECT status FROM invoices WHERE id = 't1'", b, sizeof(b)), "submitted",
		   "... with the allowed transition");
	is_int(pending(f), n + 1, "... and one intent, for it");

	ofs_meta_set(f->db, "roles", "[\"rep\",\"manager\"]");
	is_int(sql_exec(s, "UPDATE invoices SET status = 'approved' WHERE id = 't1'", NULL), SQLITE_OK,
		   "with manager among the roles, submitted -> approved works");
	is_json(last_intent(f, "data", b, sizeof(b)), "{\"status\":\"approved\"}", "... and is captured");

	rc = sql_exec(s, "UPDATE invoices SET status = 'draft' WHERE id = 't1'", &msg);
	is_int(rc & 0xff, SQLITE_CONSTRAINT, "approved has no edge out: approved -> draft fails");
	ok(contains(msg, "none"), "... saying no state is allowed next (%s)", msg ? msg : "");
	sqlite3_free(msg);
	msg = NULL;

	/* The roles come from the origin's schema answer: a new one without manager takes it away. */
	schema = fixture_json(fixture_schema_text);
	is_int(ofs_install_schema(f->db, schema), OFS_OK, "the schema installs again over itself");
	json_decref(schema);
	sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('t2', 'draft');"
			 " UPDATE invoices SET status = 'submitted' WHERE id = 't2'", NULL);
	ok(sql_exec(s, "UPDATE invoices SET status = 'approved' WHERE id = 't2'", NULL) != SQLITE_OK,
	   "after a schema whose roles lack manager, submitted -> approved fails again");
	is_int(sql_exec(s, "UPDATE invoices SET status = 'draft' WHERE id = 't2'", NULL), SQLITE_OK,
		   "submitted -> draft (no role) works");
	is_int(sql_exec(s, "UPDATE invoices SET note = 'unrelated' WHERE id = 't2'", NULL), SQLITE_OK,
		   "an update that leaves the state alone is not checked");
	is_int(sql_exec(s, "INSERT INTO lines (invoice, n) VALUES ('t2', 1); UPDATE lines SET amount = '9' WHERE invoice = 't2'",
					NULL), SQLITE_OK, "a table without rules takes any write");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_rules WHERE tbl = 'public.invoices'"), 4,
		   "installing again does not duplicate the rules");
}

/* INSERT OR REPLACE of an existing row deletes it and inserts a new one: the origin must be told both. */
static void
test_replace(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char		b[256];
	char		q[256];
	int64_t		seq;

	sql_exec(s, "INSERT INTO invoices (id, status, note) VALUES ('rep', 'draft', 'first')", NULL);
	seq = sql_int(s, "SELECT max(seq) FROM _ofs_outbox");
	is_int(sql_exec(s, "INSERT OR REPLACE INTO invoices (id, status, note) VALUES ('rep', 'draft', 'replaced')", NULL),
		   SQLITE_OK, "INSERT OR REPLACE of an existing row succeeds");
	is_str(sql_text(s, "SELECT note FROM invoices WHERE id = 'rep'", b, sizeof(b)), "replaced", "... and replaces it");
	snprintf(q, sizeof(q), "SELECT group_concat(op, ',') FROM (SELECT op FROM _ofs_outbox WHERE seq > %lld ORDER BY seq)",
			 (long long) seq);
	sql_text(s, q, b, sizeof(b));
	ok(strcmp(b, "delete,insert") == 0 || strcmp(b, "update") == 0,
	   "... and is captured as a delete and an insert (or an update), not as a lone insert of a key the origin has (%s)", b);
}

/* The origin adds a column to a synced table: the device's table follows (a device of its own). */
static void
test_schema_change(void)
{
	fixture		device;
	fixture    *f = &device;
	sqlite3    *s;
	json_t	   *schema = fixture_json(fixture_schema_text);
	json_t	   *changes;
	char		b[256];
	char	   *msg = NULL;
	int64_t		rows;
	int			rc;

	fixture_open(f, "capture-schema", 0);
	s = ofs_sqlite(f->db);
	sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('inv-1', 'draft')", NULL);
	rows = sql_int(s, "SELECT count(*) FROM invoices");

	json_array_append_new(json_object_get(json_array_get(json_object_get(schema, "tables"), 0), "columns"),
						  json_pack("{s:s, s:s, s:b}", "name", "due", "type", "date", "nullable", 1));
	is_int(ofs_install_schema(f->db, schema), OFS_OK, "a schema with a column added to invoices installs");
	json_decref(schema);
	is_int(sql_int(s, "SELECT count(*) FROM pragma_table_info('invoices') WHERE name = 'due'"), 1,
		   "the local table has the new column");
	is_int(sql_int(s, "SELECT count(*) FROM invoices"), rows, "... and keeps its rows");
	rc = sql_exec(s, "INSERT INTO invoices (id, status, due) VALUES ('due1', 'draft', '2026-12-31')", &msg);
	ok(rc == SQLITE_OK, "an insert works after the change (%s)", msg ? msg : "ok");
	sqlite3_free(msg);
	msg = NULL;
	is_str(last_intent(f, "json_extract(data, '$.due')", b, sizeof(b)), "2026-12-31", "... and captures the new column");
	rc = sql_exec(s, "UPDATE invoices SET note = 'still' WHERE id = 'inv-1'", &msg);
	ok(rc == SQLITE_OK, "an update of an older row works (%s)", msg ? msg : "ok");
	sqlite3_free(msg);
	changes = fixture_json("[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"due2\"},"
						   " \"row\":{\"id\":\"due2\",\"status\":\"draft\",\"due\":\"2027-01-01\"}}]");
	ok(ofs_apply_changes(f->db, changes, "after-schema-change") == OFS_OK, "the origin's rows with the column apply (%s)",
	   ofs_errmsg(f->db));
	json_decref(changes);
	is_str(sql_text(s, "SELECT due FROM invoices WHERE id = 'due2'", b, sizeof(b)), "2027-01-01", "... with its value");
	fixture_close(f);
}

/*
 * The intents as capture.c keeps them: a BLOB is refused with the write,
 * the intents of several tables and of two connections keep one order
 * and one clock, the view takes the repairs docs/client.md describes, and
 * a schema change leaves the intents made before it as they were.
 */
static void
test_intent_tables(void)
{
	fixture		device;
	fixture    *f = &device;
	sqlite3    *s;
	ofs_db	   *second = NULL;
	json_t	   *schema;
	char		b[512];
	char	   *msg = NULL;
	char	   *before;
	char	   *after;
	int			rc;

	fixture_open(f, "capture-intents", 0);
	s = ofs_sqlite(f->db);
	rc = sql_exec(s, "INSERT INTO invoices (id, status, note) VALUES ('blob', 'draft', x'00ff')", &msg);
	ok(rc != SQLITE_OK && msg && strstr(msg, "BLOB"), "a BLOB in a synced row is refused with the write (%s)",
	   msg ? msg : "accepted");
	sqlite3_free(msg);
	msg = NULL;
	is_int(sql_int(s, "SELECT count(*) FROM invoices WHERE id = 'blob'"), 0, "... and the row is not there");
	ok(sql_exec(s, "UPDATE invoices SET note = x'01'", NULL) != SQLITE_OK || sql_int(s, "SELECT count(*) FROM invoices") == 0,
	   "... nor can an update store one");
	is_int(pending(f), 0, "... and no intent is left");

	/* Two connections to the file, writing in turn, in transactions over two tables. */
	is_int(ofs_open(f->path, &second), OFS_OK, "a second connection opens the file");
	for (int i = 0; i < 4; i++)
	{
		char		q[256];
		sqlite3    *w = i % 2 ? ofs_sqlite(second) : s;

		snprintf(q, sizeof(q), "BEGIN; INSERT INTO invoices (id, status) VALUES ('t%d', 'draft');"
				 " INSERT INTO lines (invoice, n, amount) VALUES ('t%d', 1, '1.00');"
				 " UPDATE invoices SET note = 'n%d' WHERE id = 't%d'; COMMIT", i, i, i, i);
		is_int(sql_exec(w, q, NULL), SQLITE_OK, "transaction %d on connection %d", i, i % 2 + 1);
	}
	is_int(pending(f), 12, "twelve intents");
	is_int(sql_int(s, "SELECT count(*) FROM (SELECT seq, hlc, lag(hlc) OVER (ORDER BY seq) AS prev FROM _ofs_outbox)"
				   " WHERE hlc <= prev"), 0, "in the order they were made, each with a later clock than the one before");
	is_str(sql_text(s, "SELECT group_concat(tbl || ':' || op || ':' || coalesce(json_extract(pk, '$.id'),"
					" json_extract(pk, '$.invoice')), ' ') FROM (SELECT * FROM _ofs_outbox ORDER BY seq LIMIT 6)", b, sizeof(b)),
		   "public.invoices:insert:t0 public.lines:insert:t0 public.invoices:update:t0"
		   " public.invoices:insert:t1 public.lines:insert:t1 public.invoices:update:t1",
		   "the tables' intents interleave as they were written");
	is_int(sql_int(s, "SELECT count(DISTINCT txn) FROM _ofs_outbox"), 4, "one transaction number per transaction");
	is_int(sql_int(s, "SELECT count(DISTINCT op_id) FROM _ofs_outbox"), 12, "and an operation id per intent");
	is_str(sql_text(s, "SELECT json_object('data', json(data), 'base', json(base)) FROM _ofs_outbox"
					" WHERE op = 'update' ORDER BY seq LIMIT 1", b, sizeof(b)),
		   "{\"data\":{\"note\":\"n0\"},\"base\":{\"note\":null}}", "an update carries what it changed and what it replaced");

	/* The repairs of docs/client.md, through the view. */
	is_int(sql_exec(s, "UPDATE _ofs_outbox SET txn = NULL WHERE txn = (SELECT txn FROM _ofs_outbox ORDER BY seq LIMIT 1)", NULL),
		   SQLITE_OK, "the oldest transaction's intents are split by UPDATE of the view");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_outbox WHERE txn IS NULL"), 3, "... its three intents have none");
	is_int(sql_exec(s, "DELETE FROM _ofs_outbox WHERE tbl = 'public.lines' AND json_extract(pk, '$.invoice') = 't3'", NULL),
		   SQLITE_OK, "an intent is taken out by DELETE from the view");
	is_int(pending(f), 11, "... and it is gone");

	/* A schema change: the pending intents keep the key and columns they were made with. */
	before = outbox_snapshot(f->db);
	schema = fixture_json(fixture_schema_text);
	{
		json_t	   *inv = json_array_get(json_object_get(schema, "tables"), 0);

		json_array_append_new(json_object_get(inv, "columns"), json_pack("{s:s, s:s, s:b}", "name", "due", "type", "date",
																		 "nullable", 1));
		json_array_remove(json_object_get(inv, "columns"), 4);	/* qty gone */
	}
	is_int(ofs_install_schema(f->db, schema), OFS_OK, "a schema with a column added and one dropped installs");
	json_decref(schema);
	after = outbox_snapshot(f->db);
	is_str(after, before, "the intents made before it are unchanged");
	free(before);
	free(after);
	is_int(sql_exec(s, "INSERT INTO invoices (id, status, due, qty) VALUES ('after', 'draft', '2027-01-02', 5)", NULL),
		   SQLITE_OK, "a write after it");
	is_str(last_intent(f, "data", b, sizeof(b)), "{\"id\":\"after\",\"status\":\"draft\",\"due\":\"2027-01-02\"}",
		   "... is captured with the new columns");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_layouts WHERE tbl = 'public.invoices'"), 2,
		   "two layouts of invoices while intents of the old one wait");
	is_int(sql_exec(s, "DELETE FROM _ofs_outbox WHERE tbl = 'public.invoices' AND op_id <> (SELECT op_id FROM _ofs_outbox"
					" ORDER BY seq DESC LIMIT 1)", NULL), SQLITE_OK, "the old intents of invoices taken out");
	schema = fixture_json(fixture_schema_text);
	ofs_install_schema(f->db, schema);
	json_decref(schema);
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_layouts WHERE tbl = 'public.invoices'"), 2,
		   "a layout with intents stays, the one captured with now is there");
	ofs_close(second);
	fixture_close(f);
}

/*
 * What an outside review found: a BLOB a row held before it was synced is
 * refused when a write would carry it; a repair of the outbox by hand
 * keeps every operation id; more synced tables (and layouts) than SQLite
 * takes in one compound SELECT; an older outbox whose column names have
 * quotes moves whole.
 */
static void
test_intent_edges(void)
{
	fixture		device;
	fixture    *f = &device;
	sqlite3    *s;
	char		b[512];
	char	   *before;
	char	   *after;
	char	   *msg = NULL;
	int			rc;

	fixture_open(f, "capture-edges", 0);
	s = ofs_sqlite(f->db);
	f->db->capturing = 0;		/* as if the row had been there before the table was synced */
	sql_exec(s, "INSERT INTO invoices (id, status, note, qty) VALUES ('blobby', 'draft', x'00ff', 1)", NULL);
	sql_exec(s, "INSERT INTO lines (invoice, n) VALUES (x'0102', 1)", NULL);
	f->db->capturing = 1;
	rc = sql_exec(s, "UPDATE invoices SET note = 'text now' WHERE id = 'blobby'", &msg);
	ok(rc != SQLITE_OK && msg && strstr(msg, "BLOB"), "an update replacing a BLOB is refused (%s)", msg ? msg : "accepted");
	sqlite3_free(msg);
	msg = NULL;
	is_int(sql_exec(s, "UPDATE invoices SET qty = 2 WHERE id = 'blobby'", NULL), SQLITE_OK,
		   "an update of another column of that row is captured");
	ok(sql_exec(s, "DELETE FROM lines WHERE n = 1", NULL) != SQLITE_OK, "a delete of a row keyed by a BLOB is refused");
	is_int(pending(f), 1, "one intent, and the outbox reads");

	/* The repair of docs/client.md keeps the ids, even after the outbox emptied and places start again. */
	sql_exec(s, "DELETE FROM _ofs_outbox", NULL);
	sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('r1', 'draft'); INSERT INTO invoices (id, status) VALUES ('r2', 'draft'); COMMIT", NULL);
	before = outbox_snapshot(f->db);
	sql_exec(s, "UPDATE _ofs_outbox SET txn = NULL WHERE txn = (SELECT txn FROM _ofs_outbox ORDER BY seq LIMIT 1)", NULL);
	is_str(sql_text(s, "SELECT group_concat(op_id, ' ') FROM (SELECT op_id FROM _ofs_outbox ORDER BY seq)", b, sizeof(b)),
		   sql_text(s, "SELECT group_concat(op_id, ' ') FROM (SELECT coalesce(op_id, '') AS op_id FROM _ofs_intents_invoices"
					" ORDER BY seq)", b + 256, sizeof(b) - 256),
		   "a repaired intent keeps the id it had (stored with it)");
	after = outbox_snapshot(f->db);
	is_str(after, before, "... and the outbox reads as before");
	is_int(sql_int(s, "SELECT count(*) FROM _ofs_outbox WHERE op_id LIKE '0000000000000000%'"), 0,
		   "no id becomes one of zeros");
	free(before);
	free(after);
	{
		char		first[80];

		sql_text(s, "SELECT op_id FROM _ofs_outbox ORDER BY seq LIMIT 1", first, sizeof(first));
		sql_exec(s, "DELETE FROM _ofs_outbox", NULL);
		sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('r3', 'draft'); INSERT INTO invoices (id, status) VALUES ('r4', 'draft'); COMMIT", NULL);
		sql_exec(s, "UPDATE _ofs_outbox SET txn = NULL", NULL);
		ok(strcmp(sql_text(s, "SELECT op_id FROM _ofs_outbox ORDER BY seq LIMIT 1", b, sizeof(b)), first) != 0,
		   "after the outbox emptied, a new repaired intent does not take an earlier one's id");
	}
	fixture_close(f);

	/* More synced tables than one compound SELECT takes. */
	{
		json_t	   *schema = json_pack("{s:s, s:[]}", "type", "schema", "tables");
		int64_t		t0;

		for (int i = 0; i < 600; i++)
		{
			char		name[32];

			snprintf(name, sizeof(name), "public.many_%03d", i);
			json_array_append_new(json_object_get(schema, "tables"),
								  json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:[s], s:[]}", "name", name, "columns",
											"name", "id", "type", "text", "name", "v", "type", "text",
											"primary_key", "id", "transitions"));
		}
		fixture_open(f, "capture-many", 1);
		s = ofs_sqlite(f->db);
		t0 = ofs_now_ms();
		is_int(ofs_install_schema(f->db, schema), OFS_OK, "600 synced tables install (%s, %lld ms)", ofs_errmsg(f->db),
			   (long long) (ofs_now_ms() - t0));
		json_decref(schema);
		is_int(sql_exec(s, "BEGIN; INSERT INTO many_599 VALUES ('a', 'x'); INSERT INTO many_000 VALUES ('b', 'y'); COMMIT", NULL),
			   SQLITE_OK, "a write to two of them is captured");
		is_str(sql_text(s, "SELECT group_concat(tbl, ' ') FROM (SELECT tbl FROM _ofs_outbox ORDER BY seq)", b, sizeof(b)),
			   "public.many_599 public.many_000", "the outbox reads them in order");
		fixture_close(f);
	}

	/* An older outbox whose table has column names with quotes. */
	{
		json_t	   *schema = fixture_json("{\"type\":\"schema\",\"tables\":[{\"name\":\"public.q\",\"columns\":["
										  "{\"name\":\"id\",\"type\":\"text\"},{\"name\":\"it's\",\"type\":\"text\"},"
										  "{\"name\":\"a\\\"b\",\"type\":\"text\"},{\"name\":\"x.y\",\"type\":\"text\"}],"
										  "\"primary_key\":[\"id\"],\"transitions\":[]}]}");
		sqlite3    *raw;
		char	   *err = NULL;

		fixture_open(f, "capture-quotes", 1);
		is_int(ofs_install_schema(f->db, schema), OFS_OK, "a table with quotes and a dot in column names installs");
		json_decref(schema);
		ofs_close(f->db);
		f->db = NULL;
		sqlite3_open(f->path, &raw);
		rc = sqlite3_exec(raw, "DROP VIEW _ofs_outbox; DROP TABLE _ofs_intents_q;"
						  "DROP TRIGGER _ofs_i_q; DROP TRIGGER _ofs_u_q; DROP TRIGGER _ofs_d_q;"
						  "CREATE TABLE _ofs_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL UNIQUE,"
						  " tbl TEXT NOT NULL, op TEXT NOT NULL, pk TEXT NOT NULL, data TEXT, base TEXT, hlc INTEGER NOT NULL,"
						  " created_at INTEGER NOT NULL, txn INTEGER);"
						  "INSERT INTO _ofs_outbox (op_id, tbl, op, pk, data, base, hlc, created_at) VALUES"
						  " ('q-1', 'public.q', 'insert', '{\"id\":\"1\"}', '{\"id\":\"1\",\"it''s\":\"x\",\"a\\\"b\":\"v\",\"x.y\":\"d\"}',"
						  "  NULL, 1, 1),"
						  " ('q-2', 'public.q', 'update', '{\"id\":\"1\"}', '{\"it''s\":\"y\"}', '{\"it''s\":\"x\"}', 2, 1)",
						  NULL, NULL, &err);
		is_int(rc, SQLITE_OK, "made into the JSON outbox layout (%s)", err ? err : "ok");
		sqlite3_free(err);
		sqlite3_close(raw);
		rc = ofs_open(f->path, &f->db);
		is_int(rc, OFS_OK, "libofs opens it (%s)", ofs_errmsg(f->db));
		s = ofs_sqlite(f->db);
		is_str(sql_text(s, "SELECT json_group_array(json_array(op_id, json(data), json(base))) FROM"
						" (SELECT * FROM _ofs_outbox ORDER BY seq)", b, sizeof(b)),
			   "[[\"q-1\",{\"id\":\"1\",\"it's\":\"x\",\"a\\\"b\":\"v\",\"x.y\":\"d\"},null],"
			   "[\"q-2\",{\"it's\":\"y\"},{\"it's\":\"x\"}]]",
			   "every value moved, whatever the characters of its column's name");
		fixture_close(f);
	}
}

static void
test_numeric(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char		b[256];
	json_t	   *batch;
	size_t		i;
	json_t	   *m;
	int			found = 0;

	sql_exec(s, "INSERT INTO invoices (id, status, total) VALUES ('num', 'draft', '12.50')", NULL);
	is_str(sql_text(s, "SELECT total FROM invoices WHERE id = 'num'", b, sizeof(b)), "12.50", "12.50 stays 12.50");
	is_str(sql_text(s, "SELECT typeof(total) FROM invoices WHERE id = 'num'", b, sizeof(b)), "text", "... as text");
	is_str(sql_text(s, "SELECT json_type(data, '$.total') || ' ' || json_extract(data, '$.total') FROM _ofs_outbox"
					" ORDER BY seq DESC LIMIT 1", b, sizeof(b)), "text 12.50", "... and as a JSON string in the intent");
	sql_exec(s, "UPDATE invoices SET total = '12345678901234567890.123456789012345678' WHERE id = 'num'", NULL);
	is_str(sql_text(s, "SELECT json_extract(data, '$.total') FROM _ofs_outbox ORDER BY seq DESC LIMIT 1", b, sizeof(b)),
		   "12345678901234567890.123456789012345678", "a numeric beyond a double's precision is kept exactly");
	sql_exec(s, "UPDATE invoices SET total = '0.10' WHERE id = 'num'", NULL);
	is_str(sql_text(s, "SELECT total FROM invoices WHERE id = 'num'", b, sizeof(b)), "0.10", "0.10 stays 0.10");
	sql_exec(s, "INSERT INTO lines (invoice, n, amount) VALUES ('num', 1, '100.000')", NULL);
	is_str(sql_text(s, "SELECT amount FROM lines WHERE invoice = 'num'", b, sizeof(b)), "100.000",
		   "100.000 stays 100.000 in another table");

	batch = ofs_outbox_batch(f->db, 100000);
	ok(json_is_array(batch) && json_array_size(batch) == (size_t) pending(f), "ofs_outbox_batch returns every intent");
	json_array_foreach(batch, i, m)
	{
		json_t	   *total = json_object_get(json_object_get(m, "data"), "total");

		if (json_is_string(total) && strcmp(json_string_value(total), "0.10") == 0)
			found = 1;
		if (!json_is_string(json_object_get(m, "op_id")) || !json_is_object(json_object_get(m, "pk")) ||
			!json_is_integer(json_object_get(m, "hlc")) || !json_is_string(json_object_get(m, "table")))
			found = -1000;
	}
	ok(found == 1, "in the mutations pushed, numeric values are JSON strings and every mutation is well formed");
	json_decref(batch);
}

static void
test_durability(fixture *f)
{
	sqlite3    *s;
	char	   *snap = outbox_snapshot(f->db);
	char	   *after;
	int64_t		maxhlc = sql_int(ofs_sqlite(f->db), "SELECT max(hlc) FROM _ofs_outbox");
	int64_t		ahead = (ofs_now_ms() + 86400000LL) << 16;
	int64_t		last;
	char		q[512];

	fixture_reopen(f);
	s = ofs_sqlite(f->db);
	after = outbox_snapshot(f->db);
	is_str(after, snap, "after a close and a reopen the outbox is intact");
	free(after);
	free(snap);
	sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('d1', 'draft')", NULL);
	ok(sql_int(s, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1") > maxhlc,
	   "the first intent after a reopen is later than every intent before it");
	is_int(sql_exec(s, "UPDATE invoices SET status = 'approved' WHERE id = 'd1'", NULL) & 0xff, SQLITE_CONSTRAINT,
		   "the transition rules survive a reopen");

	/* An intent stamped a day ahead (a wall clock that has since gone back). */
	snprintf(q, sizeof(q), "INSERT INTO _ofs_intents_invoices (seq, op_id, op, n_id, o_id, n_note, hlc, layout)"
			 " VALUES ((SELECT max(seq) + 1 FROM _ofs_intents_invoices), '%032d', 'update', 'd1', 'd1', 'ahead', %lld,"
			 " (SELECT layout FROM _ofs_tables WHERE origin = 'public.invoices'))",
			 1, (long long) ahead);
	sql_exec(s, q, NULL);
	fixture_reopen(f);
	s = ofs_sqlite(f->db);
	sql_exec(s, "UPDATE invoices SET note = 'after ahead' WHERE id = 'd1'", NULL);
	ok(sql_int(s, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1") > ahead,
	   "a clock ahead of the wall clock in the outbox is not gone back on after a reopen");

	/* The origin takes every intent: the outbox empties, the clock still must not go back. */
	is_int(all_applied(f->db), OFS_OK, "the origin applies every intent");
	is_int(pending(f), 0, "the outbox is empty");
	last = f->db->hlc_last;
	fixture_reopen(f);
	s = ofs_sqlite(f->db);
	sql_exec(s, "UPDATE invoices SET note = 'after push' WHERE id = 'd1'", NULL);
	ok(sql_int(s, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1") > last,
	   "with an empty outbox, the clock resumes after its last value following a close and reopen");
}

/*
 * A process that dies without ofs_close, after its intents left the outbox:
 * the clock it handed out (ahead of the wall clock: the origin's, from
 * welcome.hlc) must not go back in the next process.
 */
static void
test_crash_clock(fixture *f)
{
	int64_t		ahead = (ofs_now_ms() + 2 * 86400000LL) << 16;
	pid_t		pid;
	int			status = -1;
	sqlite3    *s;

	ofs_close(f->db);
	f->db = NULL;
	fflush(stdout);
	pid = fork();
	if (pid == 0)
	{
		ofs_db	   *db;
		int			code = 1;

		if (ofs_open(f->path, &db) == OFS_OK)
		{
			db->hlc_last = ahead;	/* as after a welcome whose hlc is ahead */
			sql_exec(ofs_sqlite(db), "UPDATE invoices SET note = 'in the child' WHERE id = 'd1'", NULL);
			if (all_applied(db) == OFS_OK && ofs_outbox_count(db) == 0)
				code = 0;
		}
		_exit(code);			/* no ofs_close: a crash */
	}
	waitpid(pid, &status, 0);
	if (ofs_open(f->path, &f->db) != OFS_OK)
		exit(2);
	is_int(status, 0, "a process writes with a clock ahead, pushes, and dies without ofs_close");
	s = ofs_sqlite(f->db);
	sql_exec(s, "UPDATE invoices SET note = 'after the crash' WHERE id = 'd1'", NULL);
	ok(sql_int(s, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1") > ahead,
	   "the next process's clock does not go back behind the dead one's pushed intents");
}

int
main(void)
{
	fixture		f;

	test_open_failures();
	fixture_open(&f, "capture", 0);
	test_schema_installed(&f);
	test_insert(&f);
	test_same_transaction(&f);
	test_update_delete(&f);
	test_primary_key(&f);
	test_other_connection(&f);
	test_transitions(&f);
	test_replace(&f);
	test_numeric(&f);
	test_durability(&f);
	test_crash_clock(&f);
	fixture_close(&f);
	test_schema_change();
	test_intent_tables();
	test_intent_edges();
	return done_testing();
}

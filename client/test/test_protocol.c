/*
 * test_protocol.c: the device side of the protocol's clocks, atomic
 * groups, rejections, up_to_date and cursor_too_old, without an origin:
 * the origin's messages are given to the functions that take them
 * (ofs_apply_message, ofs_outbox_results, ofs_rejections_store) as the
 * worker would send them, or broken as a hostile one might.  Also the
 * migration of a device file made before groups (no _ofs_outbox.txn).
 */
#include "fixture.h"

static int64_t
num(fixture *f, const char *sql)
{
	return sql_int(ofs_sqlite(f->db), sql);
}

static const char *
text(fixture *f, const char *sql)
{
	static char b[4096];

	return sql_text(ofs_sqlite(f->db), sql, b, sizeof(b));
}

/* message: a "changes" message made from a printf format, applied. */
static ofs_rc
message(fixture *f, int live, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ofs_rc
message(fixture *f, int live, const char *fmt, ...)
{
	char		buf[8192];
	va_list		ap;
	json_t	   *m;
	ofs_rc		rc;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	m = fixture_json(buf);
	rc = ofs_apply_message(f->db, m, live);
	json_decref(m);
	return rc;
}

static json_t *
status(fixture *f)
{
	return json_loads(ofs_status(f->db), 0, NULL);
}

/* ---- clocks ---- */

static void
test_clock(void)
{
	fixture		f;
	ofs_db	   *other;
	int64_t		h = (ofs_now_ms() + 2000) << 16;	/* the device's wall clock is 2 s behind the origin's */
	int64_t		stamped;
	char		q[256];

	fixture_open(&f, "clock", 0);
	/* A second connection to the file, opened before the origin's clock arrives. */
	if (ofs_open(f.path, &other) != OFS_OK)
	{
		fprintf(stderr, "second ofs_open: %s\n", ofs_errmsg(other));
		exit(2);
	}
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c1\",\"more\":false,\"up_to_date\":true,\"hlc\":%lld,"
				   " \"changes\":[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"k1\"},"
				   "  \"row\":{\"id\":\"k1\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"o\",\"qty\":1}}]}",
				   (long long) h), OFS_OK, "a page stamped 2 s ahead of the device's wall clock applies");
	is_int(num(&f, "SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'hlc'"), h,
		   "the device's stored clock is the origin's, with the page");
	is_int(sql_exec(ofs_sqlite(f.db), "UPDATE invoices SET note = 'mine' WHERE id = 'k1'", NULL), SQLITE_OK,
		   "the device edits the row it received");
	stamped = num(&f, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1");
	ok(stamped > h, "the edit is stamped later than the value it replaces (%lld > %lld)", (long long) stamped, (long long) h);
	is_int(sql_exec(ofs_sqlite(other), "UPDATE invoices SET qty = 2 WHERE id = 'k1'", NULL), SQLITE_OK,
		   "another connection, opened before the page, edits the row");
	stamped = sql_int(ofs_sqlite(other), "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1");
	ok(stamped > h, "... and its edit is stamped later too: it reads the stored clock (%lld)", (long long) stamped);
	ofs_close(other);

	/* The clock survives a reopen, even after the intents leave the outbox. */
	sql_exec(ofs_sqlite(f.db), "DELETE FROM _ofs_outbox", NULL);
	fixture_reopen(&f);
	sql_exec(ofs_sqlite(f.db), "UPDATE invoices SET note = 'again' WHERE id = 'k1'", NULL);
	ok(num(&f, "SELECT hlc FROM _ofs_outbox ORDER BY seq DESC LIMIT 1") > h, "after a reopen, a write is still stamped later");

	/* A pushed answer's clock is kept with the results. */
	{
		json_t	   *batch = ofs_outbox_batch(f.db, 10);
		json_t	   *results;
		int64_t		h2 = h + ((int64_t) 5000 << 16);

		snprintf(q, sizeof(q), "[{\"operation_id\":\"%s\",\"status\":\"applied\"}]",
				 json_string_value(json_object_get(json_array_get(batch, 0), "op_id")));
		results = fixture_json(q);
		f.db->hlc_last = h2;	/* as Push does with pushed.hlc */
		is_int(ofs_outbox_results(f.db, batch, results, NULL), OFS_OK, "a pushed answer applies");
		is_int(num(&f, "SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'hlc'"), h2,
			   "the clock it carried is stored with the results");
		json_decref(batch);
		json_decref(results);
	}

	/* The stored clock never goes back, whoever stores it. */
	f.db->hlc_last = 5;
	is_int(ofs_hlc_save(f.db), OFS_OK, "saving a smaller clock works");
	ok(num(&f, "SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'hlc'") > h, "... and keeps the larger one stored");

	/* Clocks that are not clocks. */
	{
		static const char *const bad[] = {"\"123\"", "-1", "1.5", "true", "{}", "[1]", "9223372036854775807",
		"9223372032559808513"};
		char	   *before = sql_strdup(ofs_sqlite(f.db), "SELECT value FROM _ofs_meta WHERE key = 'hlc'");

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"bad\",\"more\":false,\"hlc\":%s,"
						   " \"changes\":[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"k1\"}}]}", bad[i]),
				   OFS_PROTOCOL, "a page with hlc %s is refused", bad[i]);
		}
		is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c1", "... nothing of them applied (cursor)");
		is_int(num(&f, "SELECT count(*) FROM invoices WHERE id = 'k1'"), 1, "... (rows)");
		is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'hlc'"), before, "... (clock)");
		free(before);
	}
	is_int(ofs_hlc_next(INT64_MAX, 0), INT64_MAX, "ofs_hlc_next does not overflow at the largest clock");
	fixture_close(&f);
}

/* ---- atomic groups ---- */

/* The group of mutation i of batch, or "-". */
static const char *
group_of(json_t *batch, size_t i)
{
	const char *g = json_string_value(json_object_get(json_array_get(batch, i), "group"));

	return g ? g : "-";
}

static void
test_group_capture(void)
{
	fixture		f;
	sqlite3    *s;
	json_t	   *batch;
	ofs_rc		rc;
	char		g1[64];

	fixture_open(&f, "groups", 0);
	s = ofs_sqlite(f.db);
	is_int(sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('a', 'draft')", NULL), SQLITE_OK, "an autocommit insert");
	is_int(sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('b', 'draft');"
					" INSERT INTO lines (invoice, n, amount) VALUES ('b', 1, '1.00');"
					" INSERT INTO lines (invoice, n, amount) VALUES ('b', 2, '2.00'); COMMIT", NULL), SQLITE_OK,
		   "a transaction of three inserts");
	is_int(sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('x', 'draft'); ROLLBACK", NULL), SQLITE_OK,
		   "a transaction rolled back");
	is_int(sql_exec(s, "UPDATE invoices SET note = 'one' WHERE id = 'a'", NULL), SQLITE_OK, "an autocommit update");
	is_int(sql_exec(s, "UPDATE lines SET amount = '9.00' WHERE invoice = 'b'", NULL), SQLITE_OK,
		   "an autocommit update of two rows");
	is_int(sql_exec(s, "BEGIN; UPDATE invoices SET note = 'two' WHERE id = 'a'; COMMIT", NULL), SQLITE_OK,
		   "a transaction of one write");
	is_int(num(&f, "SELECT count(*) FROM _ofs_outbox"), 8, "eight intents (none from the rolled-back transaction)");
	is_int(num(&f, "SELECT count(DISTINCT txn) FROM _ofs_outbox"), 5, "... of five transactions");
	is_int(num(&f, "SELECT count(*) FROM _ofs_outbox WHERE txn IS NULL OR txn <= 0"), 0, "every intent has its transaction's number");

	batch = ofs_outbox_groups(f.db, 100, 100, &rc);
	is_int(rc, OFS_OK, "the batch is read");
	is_int(json_array_size(batch), 8, "... with every intent");
	is_str(group_of(batch, 0), "-", "an autocommit write travels without a group");
	snprintf(g1, sizeof(g1), "%s", group_of(batch, 1));
	ok(strcmp(g1, "-") != 0 && strlen(g1) >= 1 && strlen(g1) <= 256, "the transaction's writes carry a group (%s)", g1);
	ok(strcmp(group_of(batch, 2), g1) == 0 && strcmp(group_of(batch, 3), g1) == 0, "... the same for all three");
	is_str(group_of(batch, 4), "-", "the next autocommit update has none");
	ok(strcmp(group_of(batch, 5), "-") != 0 && strcmp(group_of(batch, 5), group_of(batch, 6)) == 0 &&
	   strcmp(group_of(batch, 5), g1) != 0, "one statement that writes two rows is a group of its own");
	is_str(group_of(batch, 7), "-", "a transaction of one write has no group");
	json_decref(batch);

	/* Batches take whole groups. */
	batch = ofs_outbox_groups(f.db, 2, 100, &rc);
	is_int(json_array_size(batch), 1, "a batch of 2 stops before a group of 3 it cannot hold whole");
	json_decref(batch);
	sql_exec(s, "DELETE FROM _ofs_outbox WHERE seq = (SELECT min(seq) FROM _ofs_outbox)", NULL);
	batch = ofs_outbox_groups(f.db, 2, 100, &rc);
	is_int(json_array_size(batch), 3, "a group larger than the batch goes alone, whole, when it is first");
	json_decref(batch);
	batch = ofs_outbox_groups(f.db, 5, 100, &rc);
	is_int(json_array_size(batch), 4, "a batch of 5 takes the group of 3 and a single, not half the next group");
	json_decref(batch);
	{
		char	   *before = outbox_snapshot(f.db);
		char	   *after;

		batch = ofs_outbox_groups(f.db, 2, 2, &rc);
		ok(batch == NULL && rc == OFS_REFUSED, "a group larger than max_batch cannot be sent: refused");
		ok(strstr(ofs_errmsg(f.db), "max_batch 2") != NULL && strstr(ofs_errmsg(f.db), "3 writes") != NULL,
		   "... saying why (%s)", ofs_errmsg(f.db));
		after = outbox_snapshot(f.db);
		is_str(after, before, "... and it stays in the outbox");
		free(before);
		free(after);
	}
	fixture_close(&f);
}

static void
test_group_results(void)
{
	fixture		f;
	sqlite3    *s;
	json_t	   *batch;
	json_t	   *results;
	char		q[4096];
	ofs_rc		rc;
	const char *g;

	fixture_open(&f, "group-results", 0);
	s = ofs_sqlite(f.db);
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c1\",\"more\":false,\"changes\":["
				   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"e\"},"
				   "  \"row\":{\"id\":\"e\",\"status\":\"draft\",\"total\":\"5.00\",\"note\":\"orig\",\"qty\":5}}]}"),
		   OFS_OK, "the origin's invoice e");
	sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('n', 'draft');"
			 " INSERT INTO lines (invoice, n, amount) VALUES ('n', 1, '1.00');"
			 " UPDATE invoices SET note = 'edited', qty = 6 WHERE id = 'e'; COMMIT", NULL);
	sql_exec(s, "UPDATE invoices SET total = '7.00' WHERE id = 'e'", NULL);
	batch = ofs_outbox_groups(f.db, 10, 10, &rc);
	is_int(json_array_size(batch), 4, "a group of three and a later single intent");
	g = group_of(batch, 0);

	/* An answer that stops inside the group is refused. */
	{
		char	   *before = outbox_snapshot(f.db);
		char	   *after;

		snprintf(q, sizeof(q), "[{\"operation_id\":\"%s\",\"status\":\"applied\"}]",
				 json_string_value(json_object_get(json_array_get(batch, 0), "op_id")));
		results = fixture_json(q);
		is_int(ofs_outbox_results(f.db, batch, results, NULL), OFS_PROTOCOL, "an answer for part of a group is refused");
		after = outbox_snapshot(f.db);
		is_str(after, before, "... and the outbox is as it was");
		json_decref(results);
		free(before);
		free(after);
	}

	/* The line is refused; the group rolls back. */
	snprintf(q, sizeof(q),
			 "[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"OF021\",\"message\":\"group rolled back\","
			 "  \"hint\":{\"kind\":\"group_rolled_back\",\"group\":\"%s\",\"failed\":\"%s\",\"row\":null}},"
			 " {\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"23503\",\"message\":\"no such invoice\","
			 "  \"hint\":{\"kind\":\"foreign_key_violation\",\"row\":null}},"
			 " {\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"OF021\",\"message\":\"group rolled back\","
			 "  \"hint\":{\"kind\":\"group_rolled_back\",\"group\":\"%s\",\"failed\":\"%s\","
			 "   \"row\":{\"id\":\"e\",\"status\":\"draft\",\"total\":\"5.00\",\"note\":\"origin's\",\"qty\":5}}},"
			 " {\"operation_id\":\"%s\",\"status\":\"applied\"}]",
			 json_string_value(json_object_get(json_array_get(batch, 0), "op_id")), g,
			 json_string_value(json_object_get(json_array_get(batch, 1), "op_id")),
			 json_string_value(json_object_get(json_array_get(batch, 1), "op_id")),
			 json_string_value(json_object_get(json_array_get(batch, 2), "op_id")), g,
			 json_string_value(json_object_get(json_array_get(batch, 1), "op_id")),
			 json_string_value(json_object_get(json_array_get(batch, 3), "op_id")));
	results = fixture_json(q);
	is_int(ofs_outbox_results(f.db, batch, results, NULL), OFS_OK, "the answer to a rejected group applies");
	is_int(num(&f, "SELECT count(*) FROM invoices WHERE id = 'n'"), 0, "the group's new invoice is gone (row null)");
	is_int(num(&f, "SELECT count(*) FROM lines"), 0, "... and its line");
	is_str(text(&f, "SELECT note || ' ' || qty || ' ' || total FROM invoices WHERE id = 'e'"), "origin's 5 5.00",
		   "the group's update is rolled back to the origin's row");
	is_int(num(&f, "SELECT count(*) FROM _ofs_rejected"), 3, "the three members are kept as rejected");
	is_int(num(&f, "SELECT count(DISTINCT grp) FROM _ofs_rejected WHERE grp IS NOT NULL"), 1, "... with their group");
	is_int(num(&f, "SELECT count(*) FROM _ofs_rejected WHERE sqlstate = 'OF021'"), 2, "... two of them as OF021");
	is_int(num(&f, "SELECT count(*) FROM _ofs_outbox"), 0, "the outbox is empty");
	{
		json_t	   *rej = json_loads(ofs_rejected(f.db), 0, NULL);
		json_t	   *r0 = json_array_get(rej, 0);

		ok(json_is_array(rej) && json_array_size(rej) == 3 && json_is_string(json_object_get(r0, "group")) &&
		   json_is_null(json_object_get(r0, "origin")),
		   "ofs_rejected lists them with their group (the origin's dead letter unknown yet)");
		json_decref(rej);
	}
	json_decref(results);
	json_decref(batch);
	fixture_close(&f);
}

/* ---- migration ---- */

/*
 * legacy turns a fresh device file into the layout an older libofs left:
 * the outbox a table of JSON intents (with txn from 1.1 on, without it and
 * without _ofs_rejected.grp in 1.0), capture triggers writing into it.
 */
static void
legacy(const char *path, int with_txn)
{
	sqlite3    *raw;
	char	   *err = NULL;
	int			rc;
	char	   *sql;

	is_int(sqlite3_open(path, &raw), SQLITE_OK, "the device file opened bare");
	sql = sqlite3_mprintf(
		"DROP VIEW _ofs_outbox; DROP TABLE _ofs_intents_invoices; DROP TABLE _ofs_intents_lines;"
		"DROP TRIGGER _ofs_i_invoices; DROP TRIGGER _ofs_u_invoices; DROP TRIGGER _ofs_d_invoices;"
		"DROP TRIGGER _ofs_i_lines; DROP TRIGGER _ofs_u_lines; DROP TRIGGER _ofs_d_lines;"
		"CREATE TABLE _ofs_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
		"  op_id TEXT NOT NULL UNIQUE, tbl TEXT NOT NULL, op TEXT NOT NULL, pk TEXT NOT NULL,"
		"  data TEXT, base TEXT, hlc INTEGER NOT NULL, created_at INTEGER NOT NULL%s);"
		"CREATE INDEX _ofs_outbox_row ON _ofs_outbox (tbl, pk);"
		"CREATE TRIGGER _ofs_d_invoices AFTER DELETE ON invoices WHEN ofs_capturing() BEGIN"
		" INSERT INTO _ofs_outbox (op_id, tbl, op, pk, hlc, created_at) VALUES (ofs_opid(), 'public.invoices',"
		" 'delete', json_object('id', OLD.id), ofs_hlc(), unixepoch()); END;"
		"%s"
		"INSERT INTO _ofs_outbox (op_id, tbl, op, pk, data, base, hlc, created_at%s) VALUES"
		" ('old-1', 'public.invoices', 'insert', '{\"id\":\"o1\"}', '{\"id\":\"o1\",\"status\":\"draft\",\"qty\":2}', NULL, 1, 1%s),"
		" ('old-2', 'public.invoices', 'update', '{\"id\":\"o1\"}', '{\"note\":\"x\",\"qty\":null}',"
		"  '{\"note\":null,\"qty\":2}', 2, 1%s),"
		" ('old-3', 'public.lines', 'insert', '{\"invoice\":\"o1\",\"n\":1}', '{\"invoice\":\"o1\",\"n\":1,\"amount\":\"1.5\"}',"
		"  NULL, 3, 1%s),"
		" ('old-4', 'public.lines', 'delete', '{\"invoice\":\"o1\",\"n\":1}', NULL, NULL, 4, 1%s);",
		with_txn ? ", txn INTEGER" : "", with_txn ? "" : "ALTER TABLE _ofs_rejected DROP COLUMN grp;",
		with_txn ? ", txn" : "", with_txn ? ", NULL" : "", with_txn ? ", NULL" : "",
		with_txn ? ", 77" : "", with_txn ? ", 77" : "");
	rc = sqlite3_exec(raw, sql, NULL, NULL, &err);
	sqlite3_free(sql);
	is_int(rc, SQLITE_OK, "made into the %s layout (%s)", with_txn ? "JSON outbox" : "1.0", err ? err : "ok");
	sqlite3_free(err);
	sqlite3_close(raw);
}

static void
test_migration(void)
{
	for (int with_txn = 0; with_txn < 2; with_txn++)
	{
		fixture		f;
		json_t	   *batch;
		ofs_rc		rc;
		const char *name = with_txn ? "JSON outbox" : "1.0";
		char		b[1024];

		fixture_open(&f, with_txn ? "migrate_json" : "migrate_10", 0);
		ofs_close(f.db);
		f.db = NULL;
		legacy(f.path, with_txn);

		rc = ofs_open(f.path, &f.db);
		is_int(rc, OFS_OK, "libofs opens the %s file (%s)", name, ofs_errmsg(f.db));
		is_str(sql_text(ofs_sqlite(f.db), "SELECT type FROM sqlite_master WHERE name = '_ofs_outbox'", b, sizeof(b)),
			   "view", "%s: the outbox is the view of the tables of intents", name);
		is_int(num(&f, "SELECT count(*) FROM pragma_table_info('_ofs_rejected') WHERE name = 'grp'"), 1,
			   "%s: _ofs_rejected has grp", name);
		is_int(num(&f, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%ofs_seq()%'"), 6,
			   "%s: the capture triggers are made again", name);
		is_str(sql_text(ofs_sqlite(f.db), "SELECT json_group_array(json_array(op_id, tbl, op, json(pk), json(data),"
						" json(base), hlc, txn)) FROM (SELECT * FROM _ofs_outbox ORDER BY seq)", b, sizeof(b)),
			   with_txn
			   ? "[[\"old-1\",\"public.invoices\",\"insert\",{\"id\":\"o1\"},{\"id\":\"o1\",\"status\":\"draft\",\"qty\":2},null,1,null],"
			   "[\"old-2\",\"public.invoices\",\"update\",{\"id\":\"o1\"},{\"note\":\"x\",\"qty\":null},{\"note\":null,\"qty\":2},2,null],"
			   "[\"old-3\",\"public.lines\",\"insert\",{\"invoice\":\"o1\",\"n\":1},{\"invoice\":\"o1\",\"n\":1,\"amount\":\"1.5\"},null,3,77],"
			   "[\"old-4\",\"public.lines\",\"delete\",{\"invoice\":\"o1\",\"n\":1},null,null,4,77]]"
			   : "[[\"old-1\",\"public.invoices\",\"insert\",{\"id\":\"o1\"},{\"id\":\"o1\",\"status\":\"draft\",\"qty\":2},null,1,null],"
			   "[\"old-2\",\"public.invoices\",\"update\",{\"id\":\"o1\"},{\"note\":\"x\",\"qty\":null},{\"note\":null,\"qty\":2},2,null],"
			   "[\"old-3\",\"public.lines\",\"insert\",{\"invoice\":\"o1\",\"n\":1},{\"invoice\":\"o1\",\"n\":1,\"amount\":\"1.5\"},null,3,null],"
			   "[\"old-4\",\"public.lines\",\"delete\",{\"invoice\":\"o1\",\"n\":1},null,null,4,null]]",
			   "%s: every intent moved, in order, with its id, key, data, base, clock and transaction", name);
		is_int(num(&f, "SELECT count(*) FROM _ofs_rules WHERE tbl = 'public.invoices'"), 4,
			   "%s: the transition rules are kept", name);
		ok(sql_exec(ofs_sqlite(f.db), "INSERT INTO invoices (id, status) VALUES ('z', 'approved')", NULL) != SQLITE_OK,
		   "%s: ... and still enforced", name);
		is_int(sql_exec(ofs_sqlite(f.db), "BEGIN; INSERT INTO invoices (id, status) VALUES ('m', 'draft');"
						" INSERT INTO lines (invoice, n) VALUES ('m', 1); COMMIT", NULL), SQLITE_OK,
			   "%s: a transaction after the migration", name);
		ok(num(&f, "SELECT min(seq) FROM _ofs_outbox WHERE op_id NOT LIKE 'old-%'") >
		   num(&f, "SELECT max(seq) FROM _ofs_outbox WHERE op_id LIKE 'old-%'") &&
		   num(&f, "SELECT min(hlc) FROM _ofs_outbox WHERE op_id NOT LIKE 'old-%'") > 4,
		   "%s: ... comes after the moved intents, with a later clock", name);
		batch = ofs_outbox_groups(f.db, 10, 10, &rc);
		ok(json_array_size(batch) == 6 && strcmp(group_of(batch, 0), "-") == 0 && strcmp(group_of(batch, 1), "-") == 0 &&
		   strcmp(group_of(batch, 4), "-") != 0 && strcmp(group_of(batch, 4), group_of(batch, 5)) == 0 &&
		   (with_txn ? strcmp(group_of(batch, 2), group_of(batch, 3)) == 0 && strcmp(group_of(batch, 2), "-") != 0
			: strcmp(group_of(batch, 2), "-") == 0 && strcmp(group_of(batch, 3), "-") == 0),
		   "%s: intents without a transaction travel alone, each transaction as a group", name);
		json_decref(batch);
		fixture_reopen(&f);
		is_int(num(&f, "SELECT count(*) FROM _ofs_outbox"), 6, "%s: a second open changes nothing", name);
		fixture_close(&f);
	}
}

/* ---- rejections ---- */

static ofs_rc
store(fixture *f, const char *answer)
{
	json_t	   *a = fixture_json(answer);
	ofs_rc		rc = ofs_rejections_store(f->db, a);

	json_decref(a);
	return rc;
}

static void
test_rejections(void)
{
	fixture		f;
	json_t	   *v;
	json_t	   *view;

	fixture_open(&f, "rejections", 0);
	v = json_integer(0);
	ok(ofs_rejections_differ(f.db, v), "a device that never fetched its rejections wants them");
	json_decref(v);
	is_int(store(&f, "{\"type\":\"rejections\",\"id\":4,\"version\":17,"
				 " \"dead_letters\":[{\"id\":12,\"operation_id\":\"op-12\",\"table\":\"public.invoices\","
				 "  \"pk\":{\"id\":\"inv-1\"},\"op\":\"update\",\"group\":null,\"sqlstate\":\"OF002\",\"message\":\"m\","
				 "  \"hint\":{\"kind\":\"role_required\"},\"status\":\"open\",\"created_at\":\"2026-12-02T10:00:00+00:00\","
				 "  \"closed_at\":null,\"retry_result\":null},"
				 "  {\"id\":13,\"operation_id\":\"op-13\",\"table\":\"public.invoices\",\"pk\":{\"id\":\"inv-2\"},"
				 "   \"status\":\"retried\",\"retry_result\":{\"status\":\"applied\"}}],"
				 " \"conflicts\":[{\"id\":3,\"operation_id\":\"op-5\",\"table\":\"public.invoices\",\"pk\":{\"id\":\"inv-2\"},"
				 "  \"column\":\"note\",\"origin_value\":\"a\",\"device_value\":\"b\",\"base_value\":\"c\","
				 "  \"status\":\"resolved\",\"resolution\":\"device\",\"created_at\":\"x\",\"resolved_at\":\"y\"}]}"),
		   OFS_OK, "the origin's rejections are kept");
	is_int(num(&f, "SELECT count(*) FROM _ofs_dead_letters"), 2, "two dead letters");
	is_int(num(&f, "SELECT count(*) FROM _ofs_origin_conflicts"), 1, "one conflict");
	is_str(text(&f, "SELECT status FROM _ofs_dead_letters WHERE id = 13"), "retried", "with their status");
	is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'rejections_version'"), "17", "and their version");
	v = json_integer(17);
	ok(!ofs_rejections_differ(f.db, v), "the same version is not asked for again");
	json_decref(v);
	v = json_integer(18);
	ok(ofs_rejections_differ(f.db, v), "another version is");
	json_decref(v);

	view = json_loads(ofs_origin_rejections(f.db), 0, NULL);
	ok(json_integer_value(json_object_get(view, "version")) == 17 &&
	   json_array_size(json_object_get(view, "dead_letters")) == 2 &&
	   json_array_size(json_object_get(view, "conflicts")) == 1 &&
	   strcmp(json_string_value(json_object_get(json_array_get(json_object_get(view, "conflicts"), 0), "resolution")),
			  "device") == 0, "ofs_origin_rejections returns the origin's view as sent");
	json_decref(view);
	{
		json_t	   *st = status(&f);

		ok(json_integer_value(json_object_get(st, "dead_letters")) == 1 &&
		   json_integer_value(json_object_get(st, "origin_conflicts")) == 0 &&
		   json_integer_value(json_object_get(st, "rejections_version")) == 17,
		   "ofs_status counts the open ones and shows the version");
		json_decref(st);
	}

	/* A rejected intent shows its dead letter. */
	sql_exec(ofs_sqlite(f.db), "INSERT INTO _ofs_rejected (op_id, tbl, op, pk, sqlstate, at) VALUES"
			 " ('op-12', 'public.invoices', 'update', '{\"id\":\"inv-1\"}', 'OF002', 1)", NULL);
	{
		json_t	   *rej = json_loads(ofs_rejected(f.db), 0, NULL);
		json_t	   *origin = json_object_get(json_array_get(rej, 0), "origin");

		ok(json_integer_value(json_object_get(origin, "id")) == 12 &&
		   strcmp(json_string_value(json_object_get(origin, "status")), "open") == 0,
		   "ofs_rejected shows the origin's dead letter of a rejected intent, with its status");
		json_decref(rej);
	}

	/* Answers that are not lists of entries are refused whole; the list before stays. */
	{
		static const char *const bad[] = {
			"{\"type\":\"rejections\",\"dead_letters\":[],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":\"18\",\"dead_letters\":[],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":-1,\"dead_letters\":[],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":{},\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[],\"conflicts\":null}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[1],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[{\"id\":\"1\"}],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[{\"id\":1.5}],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[{\"id\":1,\"status\":7}],\"conflicts\":[]}",
			"{\"type\":\"rejections\",\"version\":18,\"dead_letters\":[],\"conflicts\":[{\"id\":1,\"table\":[]}]}",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			is_int(store(&f, bad[i]), OFS_PROTOCOL, "refused: %s", bad[i]);
		is_int(num(&f, "SELECT count(*) FROM _ofs_dead_letters"), 2, "the list before is kept");
		is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'rejections_version'"), "17", "... and its version");
	}

	/* A page names the version: only another one is wanted. */
	f.db->rejections_wanted = 0;
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c1\",\"changes\":[],\"rejections\":17}"), OFS_OK,
		   "a live page with the version the device holds");
	is_int(f.db->rejections_wanted, 0, "... wants nothing");
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c2\",\"changes\":[],\"rejections\":18}"), OFS_OK,
		   "a live page with another version");
	is_int(f.db->rejections_wanted, 1, "... wants the list");
	f.db->rejections_wanted = 0;
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c3\",\"changes\":[],\"rejections\":\"18\"}"), OFS_PROTOCOL,
		   "a page whose version is a string is refused");
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c3\",\"changes\":[],\"rejections\":[18]}"), OFS_PROTOCOL,
		   "... and one whose version is a list");
	is_int(f.db->rejections_wanted, 0, "... wanting nothing");

	/* An empty list replaces the one before. */
	is_int(store(&f, "{\"type\":\"rejections\",\"version\":19,\"dead_letters\":[],\"conflicts\":[]}"), OFS_OK,
		   "an empty list is kept");
	is_int(num(&f, "SELECT (SELECT count(*) FROM _ofs_dead_letters) + (SELECT count(*) FROM _ofs_origin_conflicts)"), 0,
		   "... in place of the one before");
	fixture_close(&f);
}

/* ---- up to date ---- */

static int
synced(fixture *f, const char *field)
{
	json_t	   *st = status(f);
	int			yes = json_is_true(json_object_get(st, field));

	json_decref(st);
	return yes;
}

static void
test_up_to_date(void)
{
	fixture		f;
	int64_t		h = (ofs_now_ms() - 1000) << 16;

	fixture_open(&f, "uptodate", 0);
	ok(!synced(&f, "synced") && !synced(&f, "up_to_date"), "a new device is not synced");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c1\",\"more\":true,\"up_to_date\":false,\"hlc\":%lld,"
				   " \"changes\":[]}", (long long) h), OFS_OK, "a page with more to come");
	ok(!synced(&f, "synced"), "... is not synced");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c2\",\"more\":false,\"up_to_date\":true,\"hlc\":%lld,"
				   " \"changes\":[]}", (long long) (h + 7)), OFS_OK, "the last page, up to date");
	ok(synced(&f, "synced") && synced(&f, "up_to_date"), "... is synced");
	{
		json_t	   *st = status(&f);

		is_int(json_integer_value(json_object_get(st, "synced_hlc")), h + 7, "as of the origin's clock of that page");
		json_decref(st);
	}
	sql_exec(ofs_sqlite(f.db), "INSERT INTO invoices (id, status) VALUES ('p', 'draft')", NULL);
	ok(!synced(&f, "synced") && synced(&f, "up_to_date"), "a pending intent: up to date, not synced");
	sql_exec(ofs_sqlite(f.db), "DELETE FROM _ofs_outbox", NULL);
	ok(synced(&f, "synced"), "the outbox empty again: synced");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c3\",\"more\":true,\"up_to_date\":true,\"changes\":[]}"),
		   OFS_OK, "a page that says up to date with more to come");
	ok(!synced(&f, "up_to_date"), "... is not taken as up to date");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c4\",\"more\":false,\"changes\":[]}"), OFS_OK,
		   "a last page without up_to_date (an older origin)");
	ok(synced(&f, "up_to_date"), "... counts as up to date");
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c5\",\"up_to_date\":false,\"changes\":[]}"), OFS_OK,
		   "a live page that says it is not up to date");
	ok(!synced(&f, "up_to_date"), "... is believed");
	is_int(message(&f, 1, "{\"type\":\"changes\",\"cursor\":\"c6\",\"up_to_date\":true,\"changes\":[]}"), OFS_OK,
		   "a live page, up to date");
	ok(synced(&f, "synced"), "... synced");
	is_int(ofs_subscribe(f.db, "public.tax_rates", NULL), OFS_OK, "a new subscription");
	ok(!synced(&f, "synced"), "... is not synced until the next sync");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c7\",\"more\":false,\"up_to_date\":\"yes\",\"changes\":[]}"),
		   OFS_PROTOCOL, "an up_to_date that is not a boolean is refused");
	is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c6", "... and nothing of its page kept");
	fixture_close(&f);
}

/* ---- cursor_too_old ---- */

static void
test_restart(void)
{
	fixture		f;
	sqlite3    *s;
	char	   *before;
	char	   *after;

	fixture_open(&f, "restart", 0);
	s = ofs_sqlite(f.db);
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"c9\",\"more\":false,\"up_to_date\":true,\"changes\":["
				   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r1\"},"
				   "  \"row\":{\"id\":\"r1\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"o\",\"qty\":1}},"
				   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r2\"},"
				   "  \"row\":{\"id\":\"r2\",\"status\":\"draft\",\"total\":\"2.00\",\"note\":\"o\",\"qty\":2}},"
				   " {\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"r1\",\"n\":1},"
				   "  \"row\":{\"invoice\":\"r1\",\"n\":1,\"amount\":\"1.00\"}}]}"), OFS_OK, "the origin's rows");
	sql_exec(s, "INSERT INTO invoices (id, status, note) VALUES ('mine', 'draft', 'pending insert')", NULL);
	sql_exec(s, "UPDATE invoices SET note = 'pending edit' WHERE id = 'r1'", NULL);
	before = outbox_snapshot(f.db);
	is_int(ofs_restart(f.db), OFS_OK, "the device starts afresh");
	after = outbox_snapshot(f.db);
	is_str(after, before, "its outbox is kept, and nothing was captured");
	is_int(num(&f, "SELECT count(*) FROM invoices WHERE id IN ('r1', 'r2')") + num(&f, "SELECT count(*) FROM lines"), 0,
		   "the synced rows are gone");
	is_str(text(&f, "SELECT note FROM invoices WHERE id = 'mine'"), "pending insert", "a pending insert is replayed");
	is_str(text(&f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "(none)", "the cursor is gone");
	ok(!synced(&f, "up_to_date"), "the device is not up to date");
	is_int(message(&f, 0, "{\"type\":\"changes\",\"cursor\":\"d1\",\"more\":false,\"up_to_date\":true,\"changes\":["
				   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r1\"},"
				   "  \"row\":{\"id\":\"r1\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"o\",\"qty\":1}}]}"), OFS_OK,
		   "the pull from no cursor");
	is_str(text(&f, "SELECT note FROM invoices WHERE id = 'r1'"), "pending edit",
		   "brings the origin's rows back with the pending edit on top");
	after = (free(after), outbox_snapshot(f.db));
	is_str(after, before, "the outbox is still as it was");
	free(before);
	free(after);
	fixture_close(&f);
}

int
main(void)
{
	test_clock();
	test_group_capture();
	test_group_results();
	test_migration();
	test_rejections();
	test_up_to_date();
	test_restart();
	return done_testing();
}

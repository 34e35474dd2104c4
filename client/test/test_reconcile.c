/*
 * test_reconcile.c: the origin's changes applied on the device
 * (ofs_apply_changes: rows and cursor in one transaction, no intents, the
 * pending intents replayed on top) and the origin's answers to a push
 * (ofs_outbox_results: applied, duplicate, rejected and rolled back,
 * conflict; a mismatched answer refused without losing intents).
 */
#include "fixture.h"

static ofs_rc
apply(fixture *f, const char *changes, const char *cursor)
{
	json_t	   *c = fixture_json(changes);
	ofs_rc		rc = ofs_apply_changes(f->db, c, cursor);

	json_decref(c);
	return rc;
}

static const char *
text(fixture *f, const char *sql)
{
	static char b[4096];

	return sql_text(ofs_sqlite(f->db), sql, b, sizeof(b));
}

static int64_t
num(fixture *f, const char *sql)
{
	return sql_int(ofs_sqlite(f->db), sql);
}

static int64_t
pending(fixture *f)
{
	return num(f, "SELECT count(*) FROM _ofs_outbox");
}

/* The invoices and lines as one text, to compare before and after. */
static char *
rows_snapshot(fixture *f)
{
	return sql_strdup(ofs_sqlite(f->db),
					  "SELECT coalesce((SELECT group_concat(x, ';') FROM (SELECT id || ',' || quote(status) || ','"
					  " || quote(total) || ',' || quote(note) || ',' || quote(qty) AS x FROM invoices ORDER BY id)), '')"
					  " || '/' || coalesce((SELECT group_concat(x, ';') FROM (SELECT invoice || ',' || n || ','"
					  " || quote(amount) AS x FROM lines ORDER BY invoice, n)), '')");
}

typedef struct seen
{
	int			changed;
	int			rejected;
	int			conflicts;
	char		last_table[64];
	char		last_op[16];
	char		last_pk[128];
	char		hint[1024];
	char		conflict_pk[128];
} seen;

static void
on_row_changed(void *user, const char *table, const char *op, const char *pk_json, const char *row_json)
{
	seen	   *s = user;

	(void) row_json;
	s->changed++;
	snprintf(s->last_table, sizeof(s->last_table), "%s", table ? table : "(null)");
	snprintf(s->last_op, sizeof(s->last_op), "%s", op ? op : "(null)");
	snprintf(s->last_pk, sizeof(s->last_pk), "%s", pk_json ? pk_json : "(null)");
}

static void
on_rejected(void *user, const char *op_id, const char *table, const char *sqlstate, const char *message,
			const char *hint_json)
{
	seen	   *s = user;

	(void) op_id;
	(void) table;
	(void) sqlstate;
	(void) message;
	s->rejected++;
	snprintf(s->hint, sizeof(s->hint), "%s", hint_json ? hint_json : "(null)");
}

static void
on_conflict(void *user, const char *op_id, const char *table, const char *pk_json)
{
	seen	   *s = user;

	(void) op_id;
	(void) table;
	s->conflicts++;
	snprintf(s->conflict_pk, sizeof(s->conflict_pk), "%s", pk_json ? pk_json : "(null)");
}

static void
test_apply(fixture *f)
{
	seen		s = {0};
	ofs_callbacks cb = {0};
	ofs_rc		rc;

	cb.row_changed = on_row_changed;
	ofs_set_callbacks(f->db, &cb, &s);
	rc = apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},"
			   "  \"row\":{\"id\":\"a\",\"status\":\"draft\",\"total\":\"10.00\",\"note\":\"n-a\",\"qty\":1}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"b\"},"
			   "  \"row\":{\"id\":\"b\",\"status\":\"submitted\",\"total\":\"20.5\",\"note\":null,\"qty\":null}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"c\"},"
			   "  \"row\":{\"id\":\"c\",\"status\":\"approved\",\"total\":null,\"note\":\"n-c\",\"qty\":3}},"
			   " {\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"a\",\"n\":1},"
			   "  \"row\":{\"invoice\":\"a\",\"n\":1,\"amount\":\"1.50\"}}]", "c1");
	is_int(rc, OFS_OK, "a page of upserts applies");
	is_int(num(f, "SELECT count(*) FROM invoices"), 3, "its invoices land");
	is_str(text(f, "SELECT status || ' ' || total || ' ' || note || ' ' || qty FROM invoices WHERE id = 'a'"),
		   "draft 10.00 n-a 1", "... with their values");
	is_str(text(f, "SELECT typeof(total) || ' ' || total FROM invoices WHERE id = 'b'"), "text 20.5",
		   "numeric from the origin stays exact text");
	is_str(text(f, "SELECT status FROM invoices WHERE id = 'c'"), "approved",
		   "the origin's rows are not held to the transition rules (approved is not an initial state)");
	is_str(text(f, "SELECT amount FROM lines WHERE invoice = 'a' AND n = 1"), "1.50", "a row with a composite key lands");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c1", "the cursor is stored");
	is_int(pending(f), 0, "applying the origin's rows makes no intent");
	is_int(s.changed, 4, "row_changed is called for every change");
	is_str(s.last_table, "public.lines", "... with the table");
	is_str(s.last_op, "upsert", "... the op");

	rc = apply(f, "[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"b\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},"
			   "  \"row\":{\"id\":\"a\",\"status\":\"submitted\",\"total\":\"11.00\",\"note\":\"n-a\",\"qty\":1,"
			   "          \"column_the_device_lacks\":\"x\"}}]", "c2");
	is_int(rc, OFS_OK, "a page with a delete and an update applies");
	is_int(num(f, "SELECT count(*) FROM invoices WHERE id = 'b'"), 0, "the deleted row is gone");
	is_str(text(f, "SELECT status || ' ' || total FROM invoices WHERE id = 'a'"), "submitted 11.00",
		   "the updated row has the new values (a column the device lacks is ignored)");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c2", "the cursor moves on");
	is_int(pending(f), 0, "deletes and updates from the origin make no intent");
	is_str(s.last_pk, "{\"id\":\"a\"}", "row_changed gets the key");

	is_int(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"never-here\"}}]", "c3"), OFS_OK,
		   "deleting a row the device does not have is fine");
	is_int(apply(f, "[{\"table\":\"public.elsewhere\",\"op\":\"upsert\",\"pk\":{\"id\":1},\"row\":{\"id\":1}}]", "c4"),
		   OFS_OK, "a change of a table the device does not have is skipped");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c4", "... and the cursor still moves");
	is_int(apply(f, "[]", "c5"), OFS_OK, "an empty page applies");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c5", "... and stores its cursor");
	is_int(apply(f, "[]", NULL), OFS_OK, "a page without a cursor applies");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "c5", "... and leaves the cursor");
	ofs_set_callbacks(f->db, NULL, NULL);
}

/*
 * Rows of one page in one shape take the statement of the row before;
 * a row in another order, with another column or with a null key is
 * still written (or refused) as such.
 */
static void
test_apply_shapes(fixture *f)
{
	ofs_rc		rc;

	rc = apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s1\"},\"row\":{\"id\":\"s1\",\"status\":\"draft\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s2\"},\"row\":{\"id\":\"s2\",\"status\":\"submitted\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s3\"},\"row\":{\"status\":\"draft\",\"id\":\"s3\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s4\"},\"row\":{\"id\":\"s4\",\"note\":\"n\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s5\"},\"row\":{\"id\":\"s5\",\"status\":\"draft\",\"extra\":1}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s6\"},\"row\":{\"id\":\"s6\",\"status\":\"draft\",\"extra\":2}},"
			   " {\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"s1\",\"n\":1},\"row\":{\"invoice\":\"s1\",\"n\":1}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s1\"},\"row\":{\"id\":\"s1\",\"status\":\"submitted\"}}]",
			   "shapes-1");
	is_int(rc, OFS_OK, "a page of rows in several shapes applies (%s)", ofs_errmsg(f->db));
	is_str(text(f, "SELECT group_concat(id || ':' || coalesce(status, '-') || ':' || coalesce(note, '-'), ' ')"
				" FROM (SELECT * FROM invoices WHERE id LIKE 's_' ORDER BY id)"),
		   "s1:submitted:- s2:submitted:- s3:draft:- s4:-:n s5:draft:- s6:draft:-", "... each row as it was sent");
	rc = apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s7\"},\"row\":{\"id\":\"s7\",\"status\":\"draft\"}},"
			   " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"s8\"},\"row\":{\"id\":null,\"status\":\"draft\"}}]",
			   "shapes-2");
	is_int(rc, OFS_PROTOCOL, "a row of the same shape with a null key is refused");
	is_int(num(f, "SELECT count(*) FROM invoices WHERE id = 's7' OR id IS NULL"), 0, "... and its page is not applied");
}

static void
test_apply_atomic(fixture *f)
{
	char	   *before = rows_snapshot(f);
	char	   *after;
	char	   *cursor = strdup(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"));
	static const char *const broken[] = {
		/* the third change's row is not an object */
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"z\"},\"row\":{\"id\":\"z\",\"status\":\"draft\"}},"
		" {\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"a\"}},"
		" {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"y\"},\"row\":\"not an object\"}]",
		/* an unknown op last */
		"[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"z\"},\"row\":{\"id\":\"z\",\"status\":\"draft\"}},"
		" {\"table\":\"public.lines\",\"op\":\"delete\",\"pk\":{\"invoice\":\"a\",\"n\":1}},"
		" {\"table\":\"public.invoices\",\"op\":\"truncate\",\"pk\":{\"id\":\"a\"}}]",
		/* a change that is not an object */
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"a\"}}, 42]",
		/* a change without its op */
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"a\"}},"
		" {\"table\":\"public.invoices\",\"pk\":{\"id\":\"c\"}}]",
		/* an upsert without a row */
		"[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"a\"}},"
		" {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"q\"}}]",
	};
	size_t		i;

	for (i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
	{
		ofs_rc		rc = apply(f, broken[i], "cursor-of-a-broken-page");

		ok(rc != OFS_OK && ofs_errmsg(f->db)[0] != '\0', "a page failing midway (%zu) is refused (%s)", i,
		   ofs_errmsg(f->db));
		after = rows_snapshot(f);
		is_str(after, before, "... none of its rows changed");
		free(after);
		is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), cursor, "... nor the cursor");
	}
	is_int(pending(f), 0, "failed pages make no intent");
	{
		json_t	   *notarray = json_object();

		is_int(ofs_apply_changes(f->db, notarray, "x"), OFS_PROTOCOL, "changes that are not an array are refused");
		json_decref(notarray);
	}

	/* An application transaction in the way. */
	sql_exec(ofs_sqlite(f->db), "BEGIN; INSERT INTO invoices (id, status) VALUES ('app-tx', 'draft')", NULL);
	ok(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"a\"}}]", "cx") != OFS_OK,
	   "a page cannot be applied inside the application's open transaction (%s)", ofs_errmsg(f->db));
	sql_exec(ofs_sqlite(f->db), "ROLLBACK", NULL);
	after = rows_snapshot(f);
	is_str(after, before, "... nothing changed");
	free(after);
	is_int(pending(f), 0, "... and no intent is left");
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), cursor, "... nor the cursor");
	is_int(sql_exec(ofs_sqlite(f->db), "INSERT INTO invoices (id, status) VALUES ('cap', 'draft');"
					" DELETE FROM invoices WHERE id = 'cap'", NULL), SQLITE_OK, "capture works after failed pages");
	is_int(pending(f), 2, "... (two intents)");
	sql_exec(ofs_sqlite(f->db), "DELETE FROM _ofs_outbox", NULL);
	free(before);
	free(cursor);
}

static void
test_replay(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	char	   *snap;
	char	   *after;

	/* A local update pending on a row the origin changes. */
	sql_exec(s, "UPDATE invoices SET note = 'mine' WHERE id = 'a'", NULL);
	snap = outbox_snapshot(f->db);
	is_int(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},"
				 "  \"row\":{\"id\":\"a\",\"status\":\"draft\",\"total\":\"99.00\",\"note\":\"theirs\",\"qty\":2}}]", "r1"),
		   OFS_OK, "the origin changes a row with a pending local update");
	is_str(text(f, "SELECT status || ' ' || total || ' ' || qty FROM invoices WHERE id = 'a'"), "draft 99.00 2",
		   "the row has the origin's other columns");
	is_str(text(f, "SELECT note FROM invoices WHERE id = 'a'"), "mine", "... and the pending column's local value");
	after = outbox_snapshot(f->db);
	is_str(after, snap, "the pending intent is untouched and replaying made none");
	free(after);
	free(snap);

	/* Two pending updates of one column: the last one wins, in order. */
	sql_exec(s, "UPDATE invoices SET qty = 5 WHERE id = 'a'; UPDATE invoices SET qty = 6 WHERE id = 'a'", NULL);
	apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"a\"},"
		  "  \"row\":{\"id\":\"a\",\"status\":\"draft\",\"total\":\"99.00\",\"note\":\"theirs\",\"qty\":3}}]", "r2");
	is_str(text(f, "SELECT qty || ' ' || note FROM invoices WHERE id = 'a'"), "6 mine",
		   "pending updates replay in the order they were made");

	/* A pending delete stays deleted. */
	sql_exec(s, "DELETE FROM invoices WHERE id = 'c'", NULL);
	is_int(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"c\"},"
				 "  \"row\":{\"id\":\"c\",\"status\":\"approved\",\"total\":\"3.00\",\"note\":\"changed\",\"qty\":3}}]",
				 "r3"), OFS_OK, "the origin changes a row deleted locally");
	is_int(num(f, "SELECT count(*) FROM invoices WHERE id = 'c'"), 0, "the pending delete keeps it deleted");

	/* A pending insert replays after the origin deletes (resnapshot) or sends the row. */
	sql_exec(s, "INSERT INTO invoices (id, status, total) VALUES ('new1', 'draft', '5.00')", NULL);
	is_int(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"delete\",\"pk\":{\"id\":\"new1\"}}]", "r4"), OFS_OK,
		   "the origin deletes a row inserted locally and not pushed yet");
	is_str(text(f, "SELECT status || ' ' || total FROM invoices WHERE id = 'new1'"), "draft 5.00",
		   "the pending insert is replayed");
	apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"new1\"},"
		  "  \"row\":{\"id\":\"new1\",\"status\":\"draft\",\"total\":\"7.00\",\"note\":\"origin\",\"qty\":null}}]", "r5");
	is_str(text(f, "SELECT total || ' ' || note FROM invoices WHERE id = 'new1'"), "5.00 origin",
		   "over the origin's row, the insert's columns win and the others are the origin's");

	/* A composite key, sent with its columns in another order. */
	sql_exec(s, "UPDATE lines SET amount = '9.99' WHERE invoice = 'a' AND n = 1", NULL);
	apply(f, "[{\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"n\":1,\"invoice\":\"a\"},"
		  "  \"row\":{\"n\":1,\"amount\":\"1.75\",\"invoice\":\"a\"}}]", "r6");
	is_str(text(f, "SELECT amount FROM lines WHERE invoice = 'a' AND n = 1"), "9.99",
		   "a pending update of a row with a composite key replays whatever the key's column order");

	/* Replay does not touch rows the page did not. */
	sql_exec(s, "INSERT INTO lines (invoice, n, amount) VALUES ('a', 2, '2.00')", NULL);
	snap = rows_snapshot(f);
	apply(f, "[{\"table\":\"public.lines\",\"op\":\"upsert\",\"pk\":{\"invoice\":\"zz\",\"n\":7},"
		  "  \"row\":{\"invoice\":\"zz\",\"n\":7,\"amount\":\"7\"}}]", "r7");
	sql_exec(s, "DELETE FROM lines WHERE invoice = 'zz'", NULL);
	after = rows_snapshot(f);
	is_str(after, snap, "rows the page does not touch keep their local state");
	free(after);
	free(snap);
	is_str(text(f, "SELECT value FROM _ofs_meta WHERE key = 'cursor'"), "r7", "the cursor follows each page");
	sql_exec(s, "DELETE FROM _ofs_outbox", NULL);
}

/* The op_id of the intent at position i (0-based) of the outbox. */
static char *
op_at(fixture *f, int i)
{
	char		q[128];

	snprintf(q, sizeof(q), "SELECT op_id FROM _ofs_outbox ORDER BY seq LIMIT 1 OFFSET %d", i);
	return strdup(text(f, q));
}

static ofs_rc
answer(fixture *f, int max, const char *results_text, ofs_sync_stats *stats)
{
	json_t	   *batch = ofs_outbox_batch(f->db, max);
	json_t	   *results = fixture_json(results_text);
	ofs_rc		rc = ofs_outbox_results(f->db, batch, results, stats);

	json_decref(batch);
	json_decref(results);
	return rc;
}

static void
test_results(fixture *f)
{
	sqlite3    *s = ofs_sqlite(f->db);
	seen		seen = {0};
	ofs_callbacks cb = {0};
	ofs_sync_stats stats = {0};
	char	   *op[9];
	char		results[4096];
	char	   *snap;
	char	   *rows;
	char	   *after;
	json_t	   *rej;
	json_t	   *batch;
	size_t		i;
	json_t	   *r;
	int			found = 0;

	is_int(apply(f, "[{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r1\"},"
				 "  \"row\":{\"id\":\"r1\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"orig\",\"qty\":1}},"
				 " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r2\"},"
				 "  \"row\":{\"id\":\"r2\",\"status\":\"draft\",\"total\":\"2.00\",\"note\":\"orig\",\"qty\":2}},"
				 " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r3\"},"
				 "  \"row\":{\"id\":\"r3\",\"status\":\"draft\",\"total\":\"3.00\",\"note\":\"orig\",\"qty\":3}},"
				 " {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"r4\"},"
				 "  \"row\":{\"id\":\"r4\",\"status\":\"draft\",\"total\":\"4.00\",\"note\":\"orig\",\"qty\":4}}]", "p1"),
		   OFS_OK, "the origin's rows r1..r4");
	sql_exec(s, "UPDATE invoices SET note = 'n1' WHERE id = 'r1';"	/* 0: applied */
			 " INSERT INTO invoices (id, status) VALUES ('r9', 'draft');"	/* 1: duplicate */
			 " UPDATE invoices SET status = 'submitted', note = 'n2' WHERE id = 'r2';"	/* 2: rejected, row back */
			 " INSERT INTO invoices (id, status, total) VALUES ('r8', 'draft', '8.00');"	/* 3: rejected, no row */
			 " UPDATE invoices SET note = 'n3' WHERE id = 'r3';"	/* 4: conflict */
			 " DELETE FROM invoices WHERE id = 'r4';"	/* 5: rejected, row back */
			 " UPDATE invoices SET total = '2.50' WHERE id = 'r2';"	/* 6: pending */
			 " UPDATE invoices SET qty = 70 WHERE id = 'r1';"	/* 7: pending */
			 " UPDATE invoices SET qty = 80 WHERE id = 'r9'", NULL);	/* 8: pending */
	is_int(pending(f), 9, "nine local intents");
	for (i = 0; i < 9; i++)
		op[i] = op_at(f, (int) i);

	batch = ofs_outbox_batch(f->db, 6);
	is_int(json_array_size(batch), 6, "a batch holds at most the number asked");
	is_str(json_string_value(json_object_get(json_array_get(batch, 0), "op_id")), op[0], "... oldest first");
	json_decref(batch);

	cb.rejected = on_rejected;
	cb.conflict = on_conflict;
	ofs_set_callbacks(f->db, &cb, &seen);
	snprintf(results, sizeof(results),
			 "[{\"operation_id\":\"%s\",\"status\":\"applied\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"duplicate\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"OF002\","
			 "  \"message\":\"transition of public.invoices.status from draft to submitted requires role boss\","
			 "  \"hint\":{\"kind\":\"role_required\",\"row\":{\"id\":\"r2\",\"status\":\"draft\",\"total\":\"2.00\","
			 "           \"note\":\"origin-r2\",\"qty\":2},\"allowed_next\":[],\"required_role\":\"boss\"}},"
			 " {\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"42501\",\"message\":\"permission denied\","
			 "  \"hint\":{\"kind\":\"permission_denied\",\"row\":null}},"
			 " {\"operation_id\":\"%s\",\"status\":\"conflict\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"42501\",\"message\":\"no deleting\","
			 "  \"hint\":{\"kind\":\"permission_denied\",\"row\":{\"id\":\"r4\",\"status\":\"draft\",\"total\":\"4.00\","
			 "           \"note\":\"orig\",\"qty\":4}}}]", op[0], op[1], op[2], op[3], op[4], op[5]);
	is_int(answer(f, 6, results, &stats), OFS_OK, "the origin's answers to a batch of six apply");
	ok(stats.applied == 2 && stats.rejected == 3 && stats.conflicts == 1,
	   "stats: 2 applied (duplicate included), 3 rejected, 1 conflict (%lld %lld %lld)", (long long) stats.applied,
	   (long long) stats.rejected, (long long) stats.conflicts);
	is_int(pending(f), 3, "the answered intents left the outbox, the unanswered stay");
	is_str(text(f, "SELECT op_id FROM _ofs_outbox ORDER BY seq LIMIT 1"), op[6], "... in their order");
	is_str(text(f, "SELECT note || ' ' || qty FROM invoices WHERE id = 'r1'"), "n1 70", "an applied update stays");
	is_int(num(f, "SELECT count(*) FROM invoices WHERE id = 'r9'"), 1, "a duplicate insert stays");
	is_str(text(f, "SELECT status || ' ' || note FROM invoices WHERE id = 'r2'"), "draft origin-r2",
		   "a rejected update is rolled back to the hint's row");
	is_str(text(f, "SELECT total FROM invoices WHERE id = 'r2'"), "2.50",
		   "... with the row's later pending intent replayed on top");
	is_int(num(f, "SELECT count(*) FROM invoices WHERE id = 'r8'"), 0,
		   "a rejected insert whose hint has no row (null) is removed");
	is_str(text(f, "SELECT status || ' ' || total || ' ' || note FROM invoices WHERE id = 'r4'"), "draft 4.00 orig",
		   "a rejected delete brings the hint's row back");
	is_str(text(f, "SELECT note FROM invoices WHERE id = 'r3'"), "n3", "a conflict leaves the local row until the next pull");
	is_int(pending(f), 3, "rolling back made no intent");

	is_int(num(f, "SELECT count(*) FROM _ofs_rejected"), 3, "the rejected intents are kept");
	is_int(seen.rejected, 3, "the rejected callback ran for each");
	ok(strstr(seen.hint, "permission_denied") != NULL, "... with the hint (%s)", seen.hint);
	is_int(seen.conflicts, 1, "the conflict callback ran");
	is_str(seen.conflict_pk, "{\"id\":\"r3\"}", "... with the key");
	is_int(num(f, "SELECT count(*) FROM _ofs_conflicts"), 1, "the conflict is kept");
	rej = json_loads(ofs_rejected(f->db) ? ofs_rejected(f->db) : "", 0, NULL);
	ok(json_is_array(rej) && json_array_size(rej) == 3, "ofs_rejected lists them as a JSON array");
	json_array_foreach(rej, i, r)
	{
		if (strcmp(json_string_value(json_object_get(r, "op_id")) ? json_string_value(json_object_get(r, "op_id")) : "",
				   op[2]) != 0)
			continue;
		found = 1;
		is_str(json_string_value(json_object_get(r, "table")), "public.invoices", "a rejected intent has its table");
		is_str(json_string_value(json_object_get(r, "op")), "update", "... its op");
		is_str(json_string_value(json_object_get(json_object_get(r, "pk"), "id")), "r2", "... its key");
		is_str(json_string_value(json_object_get(json_object_get(r, "data"), "note")), "n2", "... its data");
		is_str(json_string_value(json_object_get(r, "sqlstate")), "OF002", "... the SQLSTATE");
		ok(strstr(json_string_value(json_object_get(r, "message")) ? json_string_value(json_object_get(r, "message")) : "",
				  "requires role boss") != NULL, "... the message");
		is_str(json_string_value(json_object_get(json_object_get(r, "hint"), "required_role")), "boss",
			   "... and the hint, as JSON");
		is_str(json_string_value(json_object_get(json_object_get(json_object_get(r, "hint"), "row"), "note")), "origin-r2",
			   "... with the origin's row");
	}
	ok(found, "ofs_rejected has the rejected update");
	json_decref(rej);

	/* A mismatched answer: refused, nothing lost. */
	snap = outbox_snapshot(f->db);
	rows = rows_snapshot(f);
	snprintf(results, sizeof(results), "[{\"operation_id\":\"%s\",\"status\":\"applied\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"applied\"}]", op[7], op[6]);
	is_int(answer(f, 3, results, NULL), OFS_PROTOCOL, "answers in the wrong op_id order are refused");
	ok(strstr(ofs_errmsg(f->db), op[7]) != NULL, "... naming the operation (%s)", ofs_errmsg(f->db));
	snprintf(results, sizeof(results),
			 "[{\"operation_id\":\"%s\",\"status\":\"rejected\",\"sqlstate\":\"23514\",\"message\":\"no\","
			 "  \"hint\":{\"kind\":\"check_violation\",\"row\":{\"id\":\"r2\",\"status\":\"draft\",\"total\":\"0\"}}},"
			 " {\"operation_id\":\"%s\",\"status\":\"applied\"}]", op[6], op[8]);
	is_int(answer(f, 3, results, NULL), OFS_PROTOCOL, "a good answer followed by a wrong one is refused as a whole");
	snprintf(results, sizeof(results), "[{\"operation_id\":\"%s\",\"status\":\"applied\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"applied\"}, {\"operation_id\":\"%s\",\"status\":\"applied\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"applied\"}]", op[6], op[7], op[8], op[8]);
	is_int(answer(f, 3, results, NULL), OFS_PROTOCOL, "more answers than intents are refused");
	snprintf(results, sizeof(results), "[{\"operation_id\":\"%s\",\"status\":\"maybe\"}]", op[6]);
	is_int(answer(f, 3, results, NULL), OFS_PROTOCOL, "an unknown status is refused");
	snprintf(results, sizeof(results), "[{\"status\":\"applied\"}]");
	is_int(answer(f, 3, results, NULL), OFS_PROTOCOL, "an answer without an operation id is refused");
	after = outbox_snapshot(f->db);
	is_str(after, snap, "refused answers lose no intent");
	free(after);
	after = rows_snapshot(f);
	is_str(after, rows, "... and change no row");
	free(after);
	is_int(num(f, "SELECT count(*) FROM _ofs_rejected"), 3, "... nor the rejected intents");
	is_int(answer(f, 3, "[]", NULL), OFS_OK, "an empty answer is fine");
	is_int(pending(f), 3, "... and keeps every intent");
	free(snap);
	free(rows);

	snprintf(results, sizeof(results), "[{\"operation_id\":\"%s\",\"status\":\"applied\"}]", op[6]);
	is_int(answer(f, 3, results, NULL), OFS_OK, "a shorter answer applies");
	is_int(pending(f), 2, "... to the intents it answers");
	snprintf(results, sizeof(results), "[{\"operation_id\":\"%s\",\"status\":\"applied\"},"
			 " {\"operation_id\":\"%s\",\"status\":\"duplicate\"}]", op[7], op[8]);
	is_int(answer(f, 3, results, NULL), OFS_OK, "the rest apply");
	is_int(pending(f), 0, "the outbox is empty");
	ofs_set_callbacks(f->db, NULL, NULL);
	{
		json_t	   *st = json_loads(ofs_status(f->db), 0, NULL);

		ok(json_integer_value(json_object_get(st, "pending")) == 0 &&
		   json_integer_value(json_object_get(st, "rejected")) == 3 &&
		   json_integer_value(json_object_get(st, "conflicts")) == 1,
		   "ofs_status counts pending, rejected and conflicts");
		json_decref(st);
	}
	for (i = 0; i < 9; i++)
		free(op[i]);
}

int
main(void)
{
	fixture		f;

	fixture_open(&f, "reconcile", 0);
	test_apply(&f);
	test_apply_atomic(&f);
	test_apply_shapes(&f);
	test_replay(&f);
	test_results(&f);
	fixture_close(&f);
	return done_testing();
}

/*
 * outbox.c: the intents waiting for the origin, and what becomes of them.
 *
 * Intents leave the outbox only when the origin has answered for them:
 * applied (or a duplicate of one applied before), rejected, or kept as a
 * conflict.  An intent sent whose answer was lost stays and is sent again;
 * the origin recognizes its operation id and answers "duplicate", so it is
 * never applied twice.  A rejected intent is rolled back on the device to
 * the origin's row from the compensation hint, and kept for the app.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int64_t
ofs_outbox_count(ofs_db *db)
{
	sqlite3_stmt *st;
	int64_t		n = -1;

	if (sqlite3_prepare_v2(db->sql, "SELECT count(*) FROM _ofs_outbox", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* Mutation: the outbox row st is at as a protocol mutation. */
static json_t *
Mutation(sqlite3_stmt *st)
{
	json_t	   *m = json_object();

	json_object_set_new(m, "op_id", json_string((const char *) sqlite3_column_text(st, 0)));
	json_object_set_new(m, "table", json_string((const char *) sqlite3_column_text(st, 1)));
	json_object_set_new(m, "op", json_string((const char *) sqlite3_column_text(st, 2)));
	json_object_set_new(m, "pk", json_loads((const char *) sqlite3_column_text(st, 3), JSON_DECODE_ANY, NULL));
	if (sqlite3_column_type(st, 4) != SQLITE_NULL)
		json_object_set_new(m, "data", json_loads((const char *) sqlite3_column_text(st, 4), JSON_DECODE_ANY, NULL));
	if (sqlite3_column_type(st, 5) != SQLITE_NULL)
		json_object_set_new(m, "base", json_loads((const char *) sqlite3_column_text(st, 5), JSON_DECODE_ANY, NULL));
	json_object_set_new(m, "hlc", json_integer(sqlite3_column_int64(st, 6)));
	return m;
}

/*
 * TakeRun moves the mutations of one transaction (run) into batch, naming
 * their group when there are several: the origin applies them all or
 * none.  The group is the transaction's number, which is drawn at random
 * per transaction (store.c), so it never names another transaction of the
 * device and is the same each time the intents are sent again.
 */
static void
TakeRun(json_t *batch, json_t *run, int64_t txn)
{
	size_t		i;
	json_t	   *m;

	json_array_foreach(run, i, m)
	{
		if (json_array_size(run) > 1)
		{
			char		group[24];

			snprintf(group, sizeof(group), "%016llx", (unsigned long long) txn);
			json_object_set_new(m, "group", json_string(group));
		}
		json_array_append(batch, m);
	}
	json_array_clear(run);
}

/*
 * ofs_outbox_groups reads the outbox in order, a transaction at a time
 * (its intents are consecutive: SQLite has one writer at a time), and
 * stops before the first transaction that would take the batch past
 * target.  A group is never split across pushes (docs/PROTOCOL.md,
 * "Atomic groups"); a transaction larger than limit, the origin's
 * max_batch, can never be sent: it is refused here and stays in the
 * outbox, and the intents after it wait behind it.
 */
json_t *
ofs_outbox_groups(ofs_db *db, int target, int limit, ofs_rc *rc)
{
	sqlite3_stmt *st;
	json_t	   *batch = json_array();
	json_t	   *run = json_array();
	int64_t		run_txn = 0;
	int			run_grouped = 0;
	int			full = 0;
	int			step = SQLITE_DONE;

	*rc = OFS_OK;
	if (target < 1)
		target = 1;
	if (limit < target)
		limit = target;
	if (sqlite3_prepare_v2(db->sql, "SELECT op_id, tbl, op, pk, data, base, hlc, txn FROM _ofs_outbox ORDER BY seq",
						   -1, &st, NULL) != SQLITE_OK)
	{
		*rc = ofs_sqlfail(db, "reading the outbox");
		json_decref(batch);
		json_decref(run);
		return NULL;
	}
	while (!full && (step = sqlite3_step(st)) == SQLITE_ROW)
	{
		int			grouped = sqlite3_column_type(st, 7) != SQLITE_NULL;
		int64_t		txn = sqlite3_column_int64(st, 7);

		/* A row of another transaction (or of none: captured before groups) ends the run. */
		if (json_array_size(run) > 0 && (!grouped || !run_grouped || txn != run_txn))
		{
			if (json_array_size(batch) + json_array_size(run) > (size_t) target && json_array_size(batch) > 0)
			{
				full = 1;
				break;
			}
			TakeRun(batch, run, run_txn);
			if (json_array_size(batch) >= (size_t) target)
			{
				full = 1;
				break;
			}
		}
		if (json_array_size(run) == 0)
		{
			run_txn = txn;
			run_grouped = grouped;
		}
		json_array_append_new(run, Mutation(st));
		if (json_array_size(run) > (size_t) limit)
		{
			if (json_array_size(batch) > 0)
				full = 1;
			else
			{
				sqlite3_stmt *cnt;
				long long	n = (long long) json_array_size(run);

				if (sqlite3_prepare_v2(db->sql, "SELECT count(*) FROM _ofs_outbox WHERE txn = ?1", -1, &cnt, NULL) == SQLITE_OK)
				{
					sqlite3_bind_int64(cnt, 1, run_txn);
					if (sqlite3_step(cnt) == SQLITE_ROW)
						n = sqlite3_column_int64(cnt, 0);
					sqlite3_finalize(cnt);
				}
				*rc = ofs_fail(db, OFS_REFUSED, "the oldest pending transaction made %lld writes, more than the"
							   " origin takes in one push (max_batch %d): its writes must reach the origin together,"
							   " so it cannot be pushed; it and the intents after it stay in the outbox", n, limit);
			}
			break;
		}
	}
	/* An intent that cannot be read (its JSON cannot be made) stops the push, said, rather than an empty batch. */
	if (*rc == OFS_OK && !full && step != SQLITE_DONE && step != SQLITE_ROW)
		*rc = ofs_fail(db, OFS_ERROR, "reading the outbox: %s", sqlite3_errmsg(db->sql));
	sqlite3_finalize(st);
	if (*rc == OFS_OK && !full && json_array_size(run) > 0 &&
		(json_array_size(batch) == 0 || json_array_size(batch) + json_array_size(run) <= (size_t) target))
		TakeRun(batch, run, run_txn);
	json_decref(run);
	if (*rc != OFS_OK)
	{
		json_decref(batch);
		return NULL;
	}
	return batch;
}

/* ofs_outbox_batch: at most max of the oldest intents, whole transactions (NULL on failure). */
json_t *
ofs_outbox_batch(ofs_db *db, int max)
{
	ofs_rc		rc;

	return ofs_outbox_groups(db, max, max, &rc);
}

/*
 * Locate finds the place (seq) of the pending intent op_id.  The operation
 * id of an intent is its transaction and its place in hex (capture.c), so
 * the place is read from its last 16 digits and checked; an intent made
 * before that layout keeps an id of its own and is looked for by it.
 */
static int64_t
Locate(ofs_db *db, const char *op_id)
{
	sqlite3_stmt *st;
	int64_t		seq = -1;
	size_t		len = strlen(op_id);

	if (len == 32 && sqlite3_prepare_v2(db->sql, "SELECT seq FROM _ofs_outbox WHERE seq = ?2 AND op_id = ?1",
										-1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, op_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t) strtoull(op_id + 16, NULL, 16));
		if (sqlite3_step(st) == SQLITE_ROW)
			seq = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if (seq < 0 && sqlite3_prepare_v2(db->sql, "SELECT seq FROM _ofs_outbox WHERE op_id = ?1",
									  -1, &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, op_id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			seq = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return seq;
}

/*
 * Answered removes the answered intent op_id of the origin's table tbl
 * straight from its table of intents (the statement prepared once per
 * table and batch, in *st for *st_tbl), the common case of an applied
 * intent; 0 when the intent is not found there by its place (an intent
 * made before the tables of intents, or repaired by hand).
 */
static int
Answered(ofs_db *db, const char *tbl, const char *op_id, sqlite3_stmt **st, char **st_tbl)
{
	int			rc;

	if (tbl == NULL || strlen(op_id) != 32)
		return 0;
	if (*st == NULL || strcmp(*st_tbl, tbl) != 0)
	{
		char	   *local = ofs_rows_local_name(db, tbl);
		char	   *sql = local ? sqlite3_mprintf("DELETE FROM \"_ofs_intents_%w\" WHERE seq = ?2"
												 " AND coalesce(op_id, printf('%%016x%%016x', txn, seq)) = ?1", local) : NULL;

		sqlite3_finalize(*st);
		*st = NULL;
		free(*st_tbl);
		*st_tbl = NULL;
		if (sql == NULL || sqlite3_prepare_v2(db->sql, sql, -1, st, NULL) != SQLITE_OK)
			*st = NULL;
		else
			*st_tbl = strdup(tbl);
		sqlite3_free(sql);
		free(local);
		if (*st == NULL || *st_tbl == NULL)
			return 0;
	}
	sqlite3_bind_text(*st, 1, op_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(*st, 2, (int64_t) strtoull(op_id + 16, NULL, 16));
	rc = sqlite3_step(*st);
	sqlite3_reset(*st);
	return rc == SQLITE_DONE && sqlite3_changes(db->sql) == 1;
}

/* Run runs sql with ?1..?5 bound to the texts given (NULL: left NULL) and ?6 to seq. */
static ofs_rc
Run(ofs_db *db, const char *sql, const char *a, const char *b, const char *c, const char *d, const char *e,
	int64_t seq)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "outbox");
	if (sqlite3_bind_parameter_count(st) >= 6)
		sqlite3_bind_int64(st, 6, seq);
	if (a)
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	if (c)
		sqlite3_bind_text(st, 3, c, -1, SQLITE_STATIC);
	if (d)
		sqlite3_bind_text(st, 4, d, -1, SQLITE_STATIC);
	if (e)
		sqlite3_bind_text(st, 5, e, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? OFS_OK : ofs_sqlfail(db, "outbox");
}

/*
 * ofs_outbox_results applies the origin's answers to a pushed batch, in one
 * transaction: answered intents leave the outbox; rejected ones are kept
 * with their hint and their rows rolled back to the origin's, with the
 * intents still pending replayed on top.
 */
ofs_rc
ofs_outbox_results(ofs_db *db, json_t *batch, json_t *results, ofs_sync_stats *stats)
{
	size_t		i;
	json_t	   *r;
	json_t	   *touched = json_array();
	ofs_rc		rc = OFS_OK;
	sqlite3_stmt *answered = NULL;
	char	   *answered_tbl = NULL;

	if (!json_is_array(results) || json_array_size(results) > json_array_size(batch))
	{
		json_decref(touched);
		return ofs_fail(db, OFS_PROTOCOL, "the origin's answer to a push does not match it");
	}
	/* An answer that stops inside a group would leave part of it to be sent alone. */
	if (json_array_size(results) > 0 && json_array_size(results) < json_array_size(batch))
	{
		const char *last = json_string_value(json_object_get(json_array_get(batch, json_array_size(results) - 1), "group"));
		const char *next = json_string_value(json_object_get(json_array_get(batch, json_array_size(results)), "group"));

		if (last && next && strcmp(last, next) == 0)
		{
			json_decref(touched);
			return ofs_fail(db, OFS_PROTOCOL, "the origin answered for part of the atomic group %s", last);
		}
	}
	if (ofs_exec(db, "BEGIN IMMEDIATE") != OFS_OK)
	{
		json_decref(touched);
		return OFS_ERROR;
	}
	db->capturing = 0;
	json_array_foreach(results, i, r)
	{
		json_t	   *m = json_array_get(batch, i);
		const char *op_id = json_string_value(json_object_get(r, "operation_id"));
		const char *status = json_string_value(json_object_get(r, "status"));
		const char *kind = json_string_value(json_object_get(json_object_get(r, "hint"), "kind"));

		/*
		 * A duplicate carries the first answer's fields: an intent whose
		 * first answer was lost (rejected, or kept as a conflict) is
		 * handled as that answer.
		 */
		if (status && strcmp(status, "duplicate") == 0)
		{
			if (kind && strcmp(kind, "conflict") == 0)
				status = "conflict";
			else if (json_is_string(json_object_get(r, "sqlstate")))
				status = "rejected";
		}
		const char *mine = json_string_value(json_object_get(m, "op_id"));
		int64_t		seq;

		if (!op_id || !status || !mine || strcmp(op_id, mine) != 0)
		{
			rc = ofs_fail(db, OFS_PROTOCOL, "the origin answered for operation %s where %s was expected",
						  op_id ? op_id : "(none)", mine ? mine : "(none)");
			break;
		}
		if ((strcmp(status, "applied") == 0 || strcmp(status, "duplicate") == 0) &&
			Answered(db, json_string_value(json_object_get(m, "table")), op_id, &answered, &answered_tbl))
		{
			if (stats)
				stats->applied++;
			continue;
		}
		/* Gone meanwhile (repaired by hand): the answer has nothing left to act on. */
		seq = Locate(db, op_id);
		if (strcmp(status, "applied") == 0 || strcmp(status, "duplicate") == 0)
		{
			if (stats)
				stats->applied++;
		}
		else if (strcmp(status, "rejected") == 0)
		{
			json_t	   *hint = json_object_get(r, "hint");
			json_t	   *row = json_object_get(hint, "row");
			const char *tbl = json_string_value(json_object_get(m, "table"));
			char	   *local = tbl ? ofs_local_table(db, tbl) : NULL;
			char	   *hinttext = json_dumps(hint ? hint : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
			const char *sqlstate = json_string_value(json_object_get(r, "sqlstate"));
			const char *message = json_string_value(json_object_get(r, "message"));

			/*
			 * A member of a rejected group is answered OF021 with the
			 * origin's row in its hint (group_rolled_back): it is rolled
			 * back like any rejection.
			 */
			rc = Run(db, "INSERT OR REPLACE INTO _ofs_rejected (op_id, tbl, op, pk, data, sqlstate, message, hint, at, grp)"
					 " SELECT op_id, tbl, op, pk, data, ?2, ?3, ?4, unixepoch(), ?5 FROM _ofs_outbox WHERE seq = ?6 AND op_id = ?1",
					 op_id, sqlstate ? sqlstate : "", message ? message : "", hinttext,
					 json_string_value(json_object_get(m, "group")), seq);
			/* The row goes back to the origin's (or away, when the origin has none). */
			if (rc == OFS_OK && local)
			{
				if (json_is_object(row))
					rc = ofs_upsert_row(db, local, row);
				else if (json_is_null(row))
					rc = ofs_delete_row(db, local, json_object_get(m, "pk"));
				/* else: a hint without the origin's row says nothing of it; the row stays. */
				json_array_append_new(touched, json_pack("{sO sO}", "table", json_object_get(m, "table"),
														 "pk", json_object_get(m, "pk")));
			}
			if (stats)
				stats->rejected++;
			if (db->cb.rejected)
				db->cb.rejected(db->user, op_id, tbl ? tbl : "", sqlstate ? sqlstate : "",
								message ? message : "", hinttext ? hinttext : "null");
			free(hinttext);
			free(local);
		}
		else if (strcmp(status, "conflict") == 0)
		{
			char	   *pktext = json_dumps(json_object_get(m, "pk"), JSON_COMPACT | JSON_ENCODE_ANY);

			rc = Run(db, "INSERT OR REPLACE INTO _ofs_conflicts (op_id, tbl, pk, data, at)"
					 " SELECT op_id, tbl, pk, data, unixepoch() FROM _ofs_outbox WHERE seq = ?6 AND op_id = ?1",
					 op_id, NULL, NULL, NULL, NULL, seq);
			if (stats)
				stats->conflicts++;
			if (db->cb.conflict)
				db->cb.conflict(db->user, op_id, json_string_value(json_object_get(m, "table")),
								pktext ? pktext : "null");
			free(pktext);
		}
		else
			rc = ofs_fail(db, OFS_PROTOCOL, "unknown result \"%s\" for operation %s", status, op_id);
		if (rc == OFS_OK)
			rc = Run(db, "DELETE FROM _ofs_outbox WHERE seq = ?6 AND op_id = ?1", op_id, NULL, NULL, NULL, NULL, seq);
		if (rc != OFS_OK)
			break;
	}
	sqlite3_finalize(answered);
	free(answered_tbl);
	if (rc == OFS_OK)
		rc = ofs_replay_pending(db, touched);
	/* The answered intents leave the outbox: the clock they carried is kept in meta. */
	if (rc == OFS_OK)
		rc = ofs_hlc_save(db);
	db->capturing = 1;
	json_decref(touched);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	return ofs_exec(db, "COMMIT");
}

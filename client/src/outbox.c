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

/* ofs_outbox_batch: the oldest intents as protocol mutations (a JSON array). */
json_t *
ofs_outbox_batch(ofs_db *db, int max)
{
	sqlite3_stmt *st;
	json_t	   *batch = json_array();

	if (sqlite3_prepare_v2(db->sql, "SELECT op_id, tbl, op, pk, data, base, hlc FROM _ofs_outbox ORDER BY seq LIMIT ?1",
						   -1, &st, NULL) != SQLITE_OK)
	{
		ofs_sqlfail(db, "reading the outbox");
		json_decref(batch);
		return NULL;
	}
	sqlite3_bind_int(st, 1, max);
	while (sqlite3_step(st) == SQLITE_ROW)
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
		json_array_append_new(batch, m);
	}
	sqlite3_finalize(st);
	return batch;
}

static ofs_rc
Run(ofs_db *db, const char *sql, const char *a, const char *b, const char *c, const char *d)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "outbox");
	if (a)
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	if (c)
		sqlite3_bind_text(st, 3, c, -1, SQLITE_STATIC);
	if (d)
		sqlite3_bind_text(st, 4, d, -1, SQLITE_STATIC);
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

	if (!json_is_array(results) || json_array_size(results) > json_array_size(batch))
	{
		json_decref(touched);
		return ofs_fail(db, OFS_PROTOCOL, "the origin's answer to a push does not match it");
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

		if (!op_id || !status || !mine || strcmp(op_id, mine) != 0)
		{
			rc = ofs_fail(db, OFS_PROTOCOL, "the origin answered for operation %s where %s was expected",
						  op_id ? op_id : "(none)", mine ? mine : "(none)");
			break;
		}
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

			rc = Run(db, "INSERT OR REPLACE INTO _ofs_rejected (op_id, tbl, op, pk, data, sqlstate, message, hint, at)"
					 " SELECT op_id, tbl, op, pk, data, ?2, ?3, ?4, unixepoch() FROM _ofs_outbox WHERE op_id = ?1",
					 op_id, sqlstate ? sqlstate : "", message ? message : "", hinttext);
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
					 " SELECT op_id, tbl, pk, data, unixepoch() FROM _ofs_outbox WHERE op_id = ?1",
					 op_id, NULL, NULL, NULL);
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
			rc = Run(db, "DELETE FROM _ofs_outbox WHERE op_id = ?1", op_id, NULL, NULL, NULL);
		if (rc != OFS_OK)
			break;
	}
	if (rc == OFS_OK)
		rc = ofs_replay_pending(db, touched);
	/* The answered intents leave the outbox: the clock they carried is kept in meta. */
	if (rc == OFS_OK)
	{
		char		clock[32];

		snprintf(clock, sizeof(clock), "%lld", (long long) db->hlc_last);
		rc = ofs_meta_set(db, "hlc", clock);
	}
	db->capturing = 1;
	json_decref(touched);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	return ofs_exec(db, "COMMIT");
}

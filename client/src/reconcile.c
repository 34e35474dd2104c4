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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


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
	json_t	   *set;
	size_t		i;
	json_t	   *t;
	sqlite3_stmt *st;
	ofs_rc		rc = OFS_OK;

	/* Nothing pending (a page of an initial sync, most live pages): nothing to replay. */
	if (json_array_size(touched) == 0)
		return OFS_OK;
	if (sqlite3_prepare_v2(db->sql, "SELECT EXISTS (SELECT 1 FROM _ofs_outbox)", -1, &st, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "reading the outbox");
	i = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (i == 0)
		return OFS_OK;
	set = json_object();
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
				rc = data ? ofs_update_row(db, local, pk, data) : OFS_OK;
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

/* What a "changes" message says besides its rows, stored with them. */
typedef struct PageMeta
{
	int64_t		hlc;			/* the origin's clock, -1: none */
	int			up_to_date;		/* 1 or 0 */
} PageMeta;

static ofs_rc Apply(ofs_db *db, json_t *changes, const char *cursor, const PageMeta *pm);

/*
 * ofs_apply_changes applies one page of the origin's changes and stores its
 * cursor, in one transaction.
 */
ofs_rc
ofs_apply_changes(ofs_db *db, json_t *changes, const char *cursor)
{
	return Apply(db, changes, cursor, NULL);
}

/*
 * ofs_apply_message checks a "changes" message before using any of it:
 * cursor a string, changes an array, hlc a clock, up_to_date a boolean,
 * rejections a version.  A page without up_to_date (an origin before the
 * field) counts as up to date when it has no more to send.
 */
ofs_rc
ofs_apply_message(ofs_db *db, json_t *m, int live)
{
	json_t	   *changes = json_object_get(m, "changes");
	const char *cursor = json_string_value(json_object_get(m, "cursor"));
	json_t	   *hlc = json_object_get(m, "hlc");
	json_t	   *utd = json_object_get(m, "up_to_date");
	json_t	   *more = json_object_get(m, "more");
	json_t	   *rej = json_object_get(m, "rejections");
	PageMeta	pm;
	ofs_rc		rc;

	if (cursor == NULL || !json_is_array(changes))
		return ofs_fail(db, OFS_PROTOCOL, "a page of changes lacks its cursor or changes");
	if (hlc && !ofs_hlc_valid(hlc))
		return ofs_fail(db, OFS_PROTOCOL, "a page of changes has a clock (hlc) that is not an integer in range");
	if ((utd && !json_is_boolean(utd)) || (more && !json_is_boolean(more) && !json_is_null(more)))
		return ofs_fail(db, OFS_PROTOCOL, "a page of changes has an up_to_date or more that is not a boolean");
	if (!ofs_rejections_valid(rej))
		return ofs_fail(db, OFS_PROTOCOL, "a page of changes has a rejections version that is not a number");
	pm.hlc = hlc ? (int64_t) json_integer_value(hlc) : -1;
	pm.up_to_date = !json_is_true(more) && (utd ? json_is_true(utd) : 1);
	(void) live;				/* a live page has no more: up to date unless it says otherwise */
	rc = Apply(db, changes, cursor, &pm);
	if (rc == OFS_OK && rej && !json_is_null(rej) && ofs_rejections_differ(db, rej))
		db->rejections_wanted = 1;
	return rc;
}

/*
 * ofs_restart starts the device afresh after the origin refused its cursor
 * (cursor_too_old, docs/PROTOCOL.md "pull"), in one transaction: the rows
 * of the synced tables go (with capture off: they are not the device's
 * deletes), the cursor goes, and the pending intents, which stay, are
 * replayed onto the empty tables so that the device's own writes still
 * show; the pull from no cursor that follows brings the origin's rows back
 * and replays the intents of the rows it touches again.
 */
ofs_rc
ofs_restart(ofs_db *db)
{
	sqlite3_stmt *st;
	json_t	   *touched = json_array();
	ofs_rc		rc = OFS_OK;

	if (ofs_exec(db, "BEGIN IMMEDIATE") != OFS_OK)
	{
		json_decref(touched);
		return OFS_ERROR;
	}
	db->capturing = 0;
	if (sqlite3_prepare_v2(db->sql, "SELECT local FROM _ofs_tables ORDER BY local", -1, &st, NULL) != SQLITE_OK)
		rc = ofs_sqlfail(db, "reading the synced tables");
	else
	{
		while (rc == OFS_OK && sqlite3_step(st) == SQLITE_ROW)
		{
			char	   *sql = sqlite3_mprintf("DELETE FROM \"%w\"", (const char *) sqlite3_column_text(st, 0));

			rc = sql ? ofs_exec(db, sql) : ofs_fail(db, OFS_ERROR, "out of memory");
			sqlite3_free(sql);
		}
		sqlite3_finalize(st);
	}
	if (rc == OFS_OK && sqlite3_prepare_v2(db->sql, "SELECT tbl, pk FROM _ofs_outbox ORDER BY seq", -1, &st, NULL) == SQLITE_OK)
	{
		while (sqlite3_step(st) == SQLITE_ROW)
		{
			json_t	   *pk = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);

			if (pk)
				json_array_append_new(touched, json_pack("{s:s, s:o}", "table", sqlite3_column_text(st, 0), "pk", pk));
		}
		sqlite3_finalize(st);
	}
	if (rc == OFS_OK)
		rc = ofs_replay_pending(db, touched);
	if (rc == OFS_OK)
		rc = ofs_exec(db, "DELETE FROM _ofs_meta WHERE key IN ('cursor', 'synced_hlc')");
	if (rc == OFS_OK)
		rc = ofs_meta_set(db, "up_to_date", "0");
	db->capturing = 1;
	json_decref(touched);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	return ofs_exec(db, "COMMIT");
}

/* Apply: one page and what comes with it (pm, may be NULL), in one transaction. */
static ofs_rc
Apply(ofs_db *db, json_t *changes, const char *cursor, const PageMeta *pm)
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
		local = ofs_rows_local_name(db, table);
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
	/* The clock follows the origin's with the rows it stamped (docs/PROTOCOL.md, "Clocks"). */
	if (rc == OFS_OK && pm && pm->hlc >= 0)
		rc = ofs_hlc_observe(db, pm->hlc);
	if (rc == OFS_OK && pm)
		rc = ofs_meta_set(db, "up_to_date", pm->up_to_date ? "1" : "0");
	if (rc == OFS_OK && pm && pm->up_to_date && pm->hlc >= 0)
	{
		char		h[32];

		snprintf(h, sizeof(h), "%lld", (long long) pm->hlc);
		rc = ofs_meta_set(db, "synced_hlc", h);
	}
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

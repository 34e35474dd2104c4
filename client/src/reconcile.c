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

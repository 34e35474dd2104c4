/*
 * rejections.c: the origin's list of the device's dead letters and
 * conflicts (docs/PROTOCOL.md, "rejections"), kept on the device.
 *
 * The origin numbers the state of a device's rejections (a version, in
 * welcome and in pages of changes).  The device keeps the version of the
 * list it holds; when the origin names another, sync.c asks for the list
 * and this file replaces the device's copy with it, in one transaction
 * with its version, so that a list half stored is never taken for the
 * whole.  What the origin sends is checked before any of it is kept: a
 * list that is not what the protocol says is refused whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int
ofs_rejections_valid(json_t *v)
{
	return v == NULL || json_is_null(v) || (json_is_integer(v) && json_integer_value(v) >= 0);
}

int
ofs_rejections_differ(ofs_db *db, json_t *v)
{
	char	   *seen = ofs_meta_get(db, "rejections_version");
	char		now[32];
	int			differ;

	if (!json_is_integer(v))
	{
		free(seen);
		return 0;
	}
	snprintf(now, sizeof(now), "%lld", (long long) json_integer_value(v));
	differ = seen == NULL || strcmp(seen, now) != 0;
	free(seen);
	return differ;
}

/* Valid: is list an array of objects, each with an integer id (and strings or nulls where strings go)? */
static int
ValidList(json_t *list)
{
	static const char *const strings[] = {"operation_id", "table", "status", "op", "group", "sqlstate", "message",
	"column", "resolution", "created_at", "closed_at", "resolved_at"};
	size_t		i;
	json_t	   *e;

	if (!json_is_array(list))
		return 0;
	json_array_foreach(list, i, e)
	{
		if (!json_is_object(e) || !json_is_integer(json_object_get(e, "id")))
			return 0;
		for (size_t k = 0; k < sizeof(strings) / sizeof(strings[0]); k++)
		{
			json_t	   *s = json_object_get(e, strings[k]);

			if (s && !json_is_string(s) && !json_is_null(s))
				return 0;
		}
	}
	return 1;
}

/* Keep stores one list into table (a dead letters' or conflicts' table of the device). */
static ofs_rc
Keep(ofs_db *db, const char *table, json_t *list)
{
	sqlite3_stmt *st;
	char	   *sql = sqlite3_mprintf("INSERT OR REPLACE INTO %s (id, op_id, tbl, pk, status, entry)"
									  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", table);
	size_t		i;
	json_t	   *e;
	ofs_rc		rc = OFS_OK;

	if (sql == NULL)
		return ofs_fail(db, OFS_ERROR, "out of memory");
	if (sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL) != SQLITE_OK)
	{
		sqlite3_free(sql);
		return ofs_sqlfail(db, "keeping the origin's rejections");
	}
	sqlite3_free(sql);
	json_array_foreach(list, i, e)
	{
		json_t	   *pk = json_object_get(e, "pk");
		char	   *pktext = pk ? json_dumps(pk, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		char	   *entry = json_dumps(e, JSON_COMPACT);

		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		sqlite3_bind_int64(st, 1, (sqlite3_int64) json_integer_value(json_object_get(e, "id")));
		sqlite3_bind_text(st, 2, json_string_value(json_object_get(e, "operation_id")), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, json_string_value(json_object_get(e, "table")), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, pktext, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, json_string_value(json_object_get(e, "status")), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, entry, -1, SQLITE_STATIC);
		if (entry == NULL)
			rc = ofs_fail(db, OFS_ERROR, "out of memory");
		else if (sqlite3_step(st) != SQLITE_DONE)
			rc = ofs_sqlfail(db, "keeping the origin's rejections");
		free(pktext);
		free(entry);
		if (rc != OFS_OK)
			break;
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * ofs_rejections_store replaces the device's copy of the origin's list
 * with answer (a "rejections" message) and records its version.
 */
ofs_rc
ofs_rejections_store(ofs_db *db, json_t *answer)
{
	json_t	   *version = json_object_get(answer, "version");
	json_t	   *dead = json_object_get(answer, "dead_letters");
	json_t	   *conflicts = json_object_get(answer, "conflicts");
	char		v[32];
	char		now[32];
	ofs_rc		rc;

	if (!json_is_integer(version) || json_integer_value(version) < 0)
		return ofs_fail(db, OFS_PROTOCOL, "the origin's rejections have no version");
	if (!ValidList(dead) || !ValidList(conflicts))
		return ofs_fail(db, OFS_PROTOCOL, "the origin's rejections are not lists of entries with an id");
	if (ofs_exec(db, "BEGIN IMMEDIATE") != OFS_OK)
		return OFS_ERROR;
	rc = ofs_exec(db, "DELETE FROM _ofs_dead_letters; DELETE FROM _ofs_origin_conflicts");
	if (rc == OFS_OK)
		rc = Keep(db, "_ofs_dead_letters", dead);
	if (rc == OFS_OK)
		rc = Keep(db, "_ofs_origin_conflicts", conflicts);
	snprintf(v, sizeof(v), "%lld", (long long) json_integer_value(version));
	snprintf(now, sizeof(now), "%lld", (long long) (ofs_now_ms() / 1000));
	if (rc == OFS_OK)
		rc = ofs_meta_set(db, "rejections_version", v);
	if (rc == OFS_OK)
		rc = ofs_meta_set(db, "rejections_at", now);
	if (rc != OFS_OK)
		return ofs_rollback(db, "ROLLBACK", rc);
	rc = ofs_exec(db, "COMMIT");
	if (rc == OFS_OK)
		db->rejections_wanted = 0;
	return rc;
}

const char *
ofs_origin_rejections(ofs_db *db)
{
	return ofs_query_text(db,
						  "SELECT json_object("
						  " 'version', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'rejections_version'),"
						  " 'fetched_at', (SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'rejections_at'),"
						  " 'dead_letters', (SELECT json_group_array(json(entry)) FROM"
						  "   (SELECT entry FROM _ofs_dead_letters WHERE json_valid(entry) ORDER BY id)),"
						  " 'conflicts', (SELECT json_group_array(json(entry)) FROM"
						  "   (SELECT entry FROM _ofs_origin_conflicts WHERE json_valid(entry) ORDER BY id)))",
						  &db->origin_text);
}

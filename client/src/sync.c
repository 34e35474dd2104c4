/*
 * sync.c: the sync cycle and live mode.
 *
 * A cycle is: connect, hello (token and shapes), schema (create the local
 * tables, learn the rules), push every pending intent, pull until the
 * origin has nothing more.  Live mode does a cycle, asks the origin to
 * push changes as they commit, pushes local writes as they commit, and on
 * any failure reconnects after a jittered exponential backoff, resuming
 * from the saved cursor.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define OFS_TIMEOUT_MS 30000
#define OFS_PUSH_BATCH 500

static void
State(ofs_db *db, const char *state)
{
	if (db->cb.connection)
		db->cb.connection(db->user, state);
}

/* ErrorOf turns an "error" answer into a result code and message. */
static ofs_rc
ErrorOf(ofs_db *db, json_t *m, const char *what)
{
	const char *code = json_string_value(json_object_get(m, "code"));
	const char *message = json_string_value(json_object_get(m, "message"));
	const char *type = json_string_value(json_object_get(m, "type"));
	ofs_rc		rc = OFS_REFUSED;

	if (type == NULL || strcmp(type, "error") != 0)
		return ofs_fail(db, OFS_PROTOCOL, "%s: unexpected answer \"%s\"", what, type ? type : "?");
	if (code && (strcmp(code, "unauthorized") == 0 || strcmp(code, "unauthenticated") == 0 ||
				 strcmp(code, "revoked") == 0))
		rc = OFS_UNAUTHORIZED;
	else if (json_is_true(json_object_get(m, "retry")) || (code && strcmp(code, "shutting_down") == 0))
		rc = OFS_UNREACHABLE;
	return ofs_fail(db, rc, "%s: %s (%s)", what, message ? message : "refused", code ? code : "error");
}

static int
IsType(json_t *m, const char *type)
{
	const char *t = json_string_value(json_object_get(m, "type"));

	return t && strcmp(t, type) == 0;
}

/* Connect opens a session: hello with the shapes, then the schema. */
static ofs_rc
Connect(ofs_db *db, ofs_conn **out)
{
	char	   *url = ofs_meta_get(db, "url");
	char	   *token = ofs_meta_get(db, "token");
	ofs_conn   *c = NULL;
	json_t	   *subs = json_array();
	json_t	   *answer = NULL;
	sqlite3_stmt *st;
	ofs_rc		rc;

	*out = NULL;
	if (url == NULL || token == NULL)
	{
		free(url);
		free(token);
		json_decref(subs);
		return ofs_fail(db, OFS_NOT_CONFIGURED, "the device has no origin: run init (ofs_configure) first");
	}
	if (sqlite3_prepare_v2(db->sql, "SELECT tbl, nullif(filter, '') FROM _ofs_shapes ORDER BY tbl, filter",
						   -1, &st, NULL) == SQLITE_OK)
	{
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(subs, json_pack("{s:s, s:s?}", "table", sqlite3_column_text(st, 0),
												  "filter", sqlite3_column_text(st, 1)));
		sqlite3_finalize(st);
	}
	State(db, "connecting");
	rc = ofs_conn_open(db, url, 10000, &c);
	free(url);
	if (rc == OFS_OK)
		rc = ofs_conn_request(c, json_pack("{s:s, s:s, s:o}", "type", "hello", "token", token,
										   "subscriptions", subs), &answer, OFS_TIMEOUT_MS);
	else
		json_decref(subs);
	free(token);
	if (rc == OFS_OK && !IsType(answer, "welcome"))
		rc = ErrorOf(db, answer, "hello");
	if (rc == OFS_OK && json_is_string(json_object_get(answer, "device")))
		rc = ofs_meta_set(db, "device", json_string_value(json_object_get(answer, "device")));
	if (rc == OFS_OK && json_is_integer(json_object_get(answer, "hlc")) &&
		json_integer_value(json_object_get(answer, "hlc")) > db->hlc_last)
		db->hlc_last = json_integer_value(json_object_get(answer, "hlc"));
	json_decref(answer);
	answer = NULL;
	if (rc == OFS_OK)
		rc = ofs_conn_request(c, json_pack("{s:s}", "type", "schema"), &answer, OFS_TIMEOUT_MS);
	if (rc == OFS_OK && !IsType(answer, "schema"))
		rc = ErrorOf(db, answer, "schema");
	if (rc == OFS_OK)
		rc = ofs_install_schema(db, answer);
	json_decref(answer);
	if (rc != OFS_OK)
	{
		ofs_conn_close(c);
		State(db, "disconnected");
		return rc;
	}
	State(db, "connected");
	*out = c;
	return OFS_OK;
}

/* ApplyPage applies a "changes" message and reports its progress. */
static ofs_rc
ApplyPage(ofs_db *db, json_t *m, ofs_sync_stats *stats)
{
	json_t	   *changes = json_object_get(m, "changes");
	json_t	   *snap = json_object_get(m, "snapshot");
	const char *cursor = json_string_value(json_object_get(m, "cursor"));
	ofs_rc		rc;

	if (cursor == NULL || !json_is_array(changes))
		return ofs_fail(db, OFS_PROTOCOL, "a page of changes lacks its cursor or changes");
	rc = ofs_apply_changes(db, changes, cursor);
	if (rc == OFS_OK && stats)
		stats->pulled += (int64_t) json_array_size(changes);
	if (rc == OFS_OK && json_is_object(snap) && db->cb.progress)
		db->cb.progress(db->user, json_string_value(json_object_get(snap, "table")),
						json_integer_value(json_object_get(snap, "rows_done")),
						json_integer_value(json_object_get(snap, "rows_total")));
	return rc;
}

/*
 * ApplyQueued applies the live pages received while a push waited for its
 * answer, before the answer's results take the intents out of the outbox:
 * a page the origin built before the push committed carries the rows
 * without them, and applying it replays the intents still pending on top.
 * Applied after the results, it would put older values back, and the
 * origin does not send a device its own writes again to mend that.
 */
static ofs_rc
ApplyQueued(ofs_db *db, ofs_conn *c)
{
	json_t	   *m;
	ofs_rc		rc = OFS_OK;

	while (rc == OFS_OK && (m = ofs_conn_queued(c)) != NULL)
	{
		if (IsType(m, "changes"))
		{
			rc = ApplyPage(db, m, NULL);
			if (rc == OFS_OK)
				rc = ofs_conn_send(c, json_pack("{s:s, s:O}", "type", "ack", "cursor", json_object_get(m, "cursor")));
		}
		else if (IsType(m, "error"))
			rc = ErrorOf(db, m, "live");
		json_decref(m);
	}
	return rc;
}

/* Push sends the outbox in batches until it is empty. */
static ofs_rc
Push(ofs_db *db, ofs_conn *c, ofs_sync_stats *stats)
{
	for (;;)
	{
		json_t	   *batch = ofs_outbox_batch(db, OFS_PUSH_BATCH);
		json_t	   *answer = NULL;
		ofs_rc		rc;

		if (batch == NULL)
			return OFS_ERROR;
		if (json_array_size(batch) == 0)
		{
			json_decref(batch);
			return OFS_OK;
		}
		if (stats)
			stats->pushed += (int64_t) json_array_size(batch);
		rc = ofs_conn_request(c, json_pack("{s:s, s:O}", "type", "push", "mutations", batch),
							  &answer, OFS_TIMEOUT_MS);
		if (rc == OFS_OK && !IsType(answer, "pushed"))
			rc = ErrorOf(db, answer, "push");
		if (rc == OFS_OK)
			rc = ApplyQueued(db, c);
		if (rc == OFS_OK)
			rc = ofs_outbox_results(db, batch, json_object_get(answer, "results"), stats);
		json_decref(answer);
		json_decref(batch);
		if (rc != OFS_OK)
			return rc;
	}
}

/* Pull asks for pages until the origin has nothing more (type "pull" or "live"). */
static ofs_rc
Pull(ofs_db *db, ofs_conn *c, ofs_sync_stats *stats, const char *type)
{
	for (;;)
	{
		char	   *cursor = ofs_meta_get(db, "cursor");
		json_t	   *answer = NULL;
		ofs_rc		rc;
		int			more;

		rc = ofs_conn_request(c, json_pack("{s:s, s:s?, s:i}", "type", type, "cursor", cursor, "max_rows", 1000),
							  &answer, OFS_TIMEOUT_MS);
		free(cursor);
		if (rc == OFS_OK && !IsType(answer, "changes"))
			rc = ErrorOf(db, answer, type);
		if (rc == OFS_OK)
			rc = ApplyPage(db, answer, stats);
		more = json_is_true(json_object_get(answer, "more"));
		json_decref(answer);
		if (rc != OFS_OK || !more || strcmp(type, "live") == 0)
			return rc;
	}
}

static void
Finish(ofs_db *db, ofs_sync_stats *stats)
{
	char		now[32];

	snprintf(now, sizeof(now), "%lld", (long long) time(NULL));
	ofs_meta_set(db, "last_sync", now);
	if (stats)
		stats->pending = ofs_outbox_count(db);
}

ofs_rc
ofs_sync(ofs_db *db, ofs_sync_stats *stats)
{
	ofs_conn   *c;
	ofs_rc		rc;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	rc = Connect(db, &c);
	if (rc != OFS_OK)
		return rc;
	rc = Push(db, c, stats);
	if (rc == OFS_OK)
		rc = Pull(db, c, stats, "pull");
	if (rc == OFS_OK)
		Finish(db, stats);
	ofs_conn_close(c);
	State(db, "disconnected");
	return rc;
}

void
ofs_stop(ofs_db *db)
{
	db->stop = 1;
}

static void
SleepMs(ofs_db *db, int64_t ms)
{
	int64_t		end = ofs_now_ms() + ms;

	while (!db->stop && ofs_now_ms() < end)
	{
		struct timespec ts = {0, 10 * 1000000L};

		nanosleep(&ts, NULL);
	}
}

/* LocalChange: did anyone commit to the database since the last look? */
static int
LocalChange(ofs_db *db, int64_t *data_version, int64_t *total)
{
	sqlite3_stmt *st;
	int64_t		dv = 0;
	int64_t		t = sqlite3_total_changes64(db->sql);
	int			changed;

	if (sqlite3_prepare_v2(db->sql, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK)
	{
		if (sqlite3_step(st) == SQLITE_ROW)
			dv = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	changed = dv != *data_version || t != *total;
	*data_version = dv;
	*total = t;
	return changed;
}

/* LiveSession serves one connection until it drops, the time is up or ofs_stop. */
static ofs_rc
LiveSession(ofs_db *db, ofs_conn *c, int64_t deadline)
{
	int64_t		dv = -1;
	int64_t		total = -1;
	int			recheck = 1;
	ofs_rc		rc;

	rc = Push(db, c, NULL);
	if (rc == OFS_OK)
		rc = Pull(db, c, NULL, "pull");
	if (rc == OFS_OK)
		rc = Pull(db, c, NULL, "live");
	if (rc != OFS_OK)
		return rc;
	Finish(db, NULL);
	State(db, "live");
	while (!db->stop && (deadline == 0 || ofs_now_ms() < deadline))
	{
		json_t	   *m = NULL;

		/*
		 * Another connection's commit shows in data_version; after our own
		 * work the outbox is looked at once more, so that a commit made
		 * meanwhile is not taken for ours.
		 */
		if ((LocalChange(db, &dv, &total) || recheck) && (recheck = 0, ofs_outbox_count(db) > 0))
		{
			rc = Push(db, c, NULL);
			if (rc != OFS_OK)
				return rc;
			recheck = 1;
		}
		rc = ofs_conn_next(c, 2, &m);
		if (rc != OFS_OK)
			return rc;
		if (m == NULL)
			continue;
		if (IsType(m, "changes"))
		{
			rc = ApplyPage(db, m, NULL);
			if (rc == OFS_OK)
				rc = ofs_conn_send(c, json_pack("{s:s, s:O}", "type", "ack", "cursor", json_object_get(m, "cursor")));
			recheck = 1;
		}
		else if (IsType(m, "error"))
			rc = ErrorOf(db, m, "live");
		json_decref(m);
		if (rc != OFS_OK)
			return rc;
	}
	return OFS_OK;
}

ofs_rc
ofs_live(ofs_db *db, double seconds)
{
	int64_t		deadline = seconds > 0 ? ofs_now_ms() + (int64_t) (seconds * 1000) : 0;
	int			attempt = 0;
	ofs_rc		rc = OFS_OK;

	db->stop = 0;
	/* Devices that lost the origin together must not come back together. */
	srand((unsigned) (ofs_now_ms() ^ ((int64_t) getpid() << 16)));
	while (!db->stop && (deadline == 0 || ofs_now_ms() < deadline))
	{
		ofs_conn   *c;

		rc = Connect(db, &c);
		if (rc == OFS_OK)
		{
			attempt = 0;
			rc = LiveSession(db, c, deadline);
			ofs_conn_close(c);
			State(db, "disconnected");
			if (rc == OFS_OK)
				break;
		}
		if (rc == OFS_UNAUTHORIZED || rc == OFS_NOT_CONFIGURED || rc == OFS_MISUSE || rc == OFS_ERROR)
			return rc;
		{
			double		r = (double) (rand() % 1000000) / 1000000.0;
			int64_t		wait = ofs_backoff_ms(attempt++, r);

			if (deadline && ofs_now_ms() + wait > deadline)
				wait = deadline - ofs_now_ms();
			if (wait > 0)
				SleepMs(db, wait);
		}
	}
	return db->stop || (deadline && ofs_now_ms() >= deadline) ? OFS_OK : rc;
}

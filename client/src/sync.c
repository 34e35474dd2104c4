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

/*
 * Welcome takes what the origin's welcome says, checked first: the device's
 * name, the origin's clock (the device's follows it), the batch limit of
 * this session and the version of the device's rejections.
 */
static ofs_rc
Welcome(ofs_db *db, json_t *w)
{
	json_t	   *device = json_object_get(w, "device");
	json_t	   *hlc = json_object_get(w, "hlc");
	json_t	   *limits = json_object_get(w, "limits");
	json_t	   *max_batch = json_object_get(limits, "max_batch");
	json_t	   *mps = json_object_get(limits, "max_messages_per_second");
	json_t	   *rej = json_object_get(w, "rejections");
	ofs_rc		rc = OFS_OK;

	if ((hlc && !ofs_hlc_valid(hlc)) || !ofs_rejections_valid(rej) ||
		(limits && !json_is_object(limits)) || (max_batch && !json_is_integer(max_batch)) ||
		(mps && !json_is_integer(mps)))
		return ofs_fail(db, OFS_PROTOCOL, "the origin's welcome has a clock, a limit or a rejections version of the wrong type");
	if (json_is_string(device))
		rc = ofs_meta_set(db, "device", json_string_value(device));
	if (rc == OFS_OK && hlc)
		rc = ofs_hlc_observe(db, (int64_t) json_integer_value(hlc));
	db->max_batch = 0;
	if (json_integer_value(max_batch) > 0)
		db->max_batch = json_integer_value(max_batch) > 1000000 ? 1000000 : (int) json_integer_value(max_batch);
	db->max_messages_per_second = 0;
	if (json_integer_value(mps) > 0)
		db->max_messages_per_second = json_integer_value(mps) > 1000000 ? 1000000 : (int) json_integer_value(mps);
	if (rc == OFS_OK && rej && !json_is_null(rej) && ofs_rejections_differ(db, rej))
		db->rejections_wanted = 1;
	return rc;
}

/* Hello opens a session: connect, then hello with the token and the shapes. */
static ofs_rc
Hello(ofs_db *db, ofs_conn **out)
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
	if (rc == OFS_OK)
		rc = Welcome(db, answer);
	json_decref(answer);
	if (rc != OFS_OK)
	{
		ofs_conn_close(c);
		State(db, "disconnected");
		return rc;
	}
	*out = c;
	return OFS_OK;
}

/* Connect opens a session: hello with the shapes, then the schema. */
static ofs_rc
Connect(ofs_db *db, ofs_conn **out)
{
	ofs_conn   *c;
	json_t	   *answer = NULL;
	ofs_rc		rc;

	*out = NULL;
	rc = Hello(db, &c);
	if (rc != OFS_OK)
		return rc;
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

/*
 * Rejections asks the origin for the device's dead letters and conflicts
 * (clearing the entries named in clear first, when not NULL; stolen) and
 * keeps the answer in place of the list the device had.
 */
static ofs_rc
Rejections(ofs_db *db, ofs_conn *c, json_t *clear)
{
	json_t	   *answer = NULL;
	json_t	   *req = json_pack("{s:s}", "type", "rejections");
	ofs_rc		rc;

	if (clear)
		json_object_set_new(req, "clear", clear);
	rc = ofs_conn_request(c, req, &answer, OFS_TIMEOUT_MS);
	if (rc == OFS_OK && !IsType(answer, "rejections"))
		rc = ErrorOf(db, answer, "rejections");
	if (rc == OFS_OK)
		rc = ofs_rejections_store(db, answer);
	json_decref(answer);
	return rc;
}

/* RejectionsIfWanted fetches the list when the origin named a version the device has not seen. */
static ofs_rc
RejectionsIfWanted(ofs_db *db, ofs_conn *c)
{
	return db->rejections_wanted ? Rejections(db, c, NULL) : OFS_OK;
}

/* ApplyPage applies a "changes" message (live: one the origin sent on its own) and reports its progress. */
static ofs_rc
ApplyPage(ofs_db *db, json_t *m, ofs_sync_stats *stats, int live)
{
	json_t	   *changes = json_object_get(m, "changes");
	json_t	   *snap = json_object_get(m, "snapshot");
	ofs_rc		rc;

	rc = ofs_apply_message(db, m, live);
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
			rc = ApplyPage(db, m, NULL, 1);
			if (rc == OFS_OK)
				rc = ofs_conn_send(c, json_pack("{s:s, s:O}", "type", "ack", "cursor", json_object_get(m, "cursor")));
		}
		else if (IsType(m, "error"))
			rc = ErrorOf(db, m, "live");
		json_decref(m);
	}
	return rc;
}

/*
 * Push sends the outbox in batches until it is empty: OFS_PUSH_BATCH
 * intents at a time, whole transactions only (a transaction's intents
 * travel as one atomic group), a larger transaction alone up to the
 * origin's max_batch.
 */
static ofs_rc
Push(ofs_db *db, ofs_conn *c, ofs_sync_stats *stats)
{
	int			limit = db->max_batch > 0 ? db->max_batch : 1000;	/* 1000: the protocol's default */
	int			target = limit < OFS_PUSH_BATCH ? limit : OFS_PUSH_BATCH;

	for (;;)
	{
		json_t	   *batch;
		json_t	   *answer = NULL;
		json_t	   *hlc;
		ofs_rc		rc;

		batch = ofs_outbox_groups(db, target, limit, &rc);
		if (batch == NULL)
			return rc;
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
		hlc = json_object_get(answer, "hlc");
		if (rc == OFS_OK && hlc && !ofs_hlc_valid(hlc))
			rc = ofs_fail(db, OFS_PROTOCOL, "the origin's answer to a push has a clock (hlc) that is not an integer in range");
		if (rc == OFS_OK)
			rc = ApplyQueued(db, c);
		/* The clock follows the origin's; ofs_outbox_results stores it with the results. */
		if (rc == OFS_OK && hlc && (int64_t) json_integer_value(hlc) > db->hlc_last)
			db->hlc_last = (int64_t) json_integer_value(hlc);
		if (rc == OFS_OK)
			rc = ofs_outbox_results(db, batch, json_object_get(answer, "results"), stats);
		json_decref(answer);
		json_decref(batch);
		if (rc != OFS_OK)
			return rc;
	}
}

/* IsError: is m an "error" with this code? */
static int
IsError(json_t *m, const char *code)
{
	const char *c = json_string_value(json_object_get(m, "code"));

	return IsType(m, "error") && c && strcmp(c, code) == 0;
}

/*
 * Pull asks for pages until the origin has nothing more (type "pull"), or
 * for the one page that makes the connection live (type "live").  When the
 * origin refuses the device's cursor as older than one it confirmed
 * (cursor_too_old), the device starts afresh (ofs_restart), pulls from no
 * cursor until it has everything, and then asks again for what it asked.
 *
 * A pull asks ahead: on a page that says more, the next pull (from that
 * page's cursor, confirming the cursor stored, docs/PROTOCOL.md) is sent
 * before the page is applied, so that the origin reads the next page while
 * the device writes this one.
 */
static ofs_rc
Pull(ofs_db *db, ofs_conn *c, ofs_sync_stats *stats, const char *type)
{
	const char *ask = type;
	int			restarted = 0;
	int64_t		ahead = -1;		/* the id of the pull sent ahead, -1: none */

	for (;;)
	{
		char	   *cursor = ofs_meta_get(db, "cursor");
		json_t	   *answer = NULL;
		json_t	   *next;
		ofs_rc		rc = OFS_OK;
		int			more;
		int64_t		id = ahead;

		if (id < 0)
		{
			json_t	   *req = json_pack("{s:s, s:s?, s:i}", "type", ask, "cursor", cursor, "max_rows", 1000);

			/* a pull confirms what the device stored (here: its own cursor) */
			if (strcmp(ask, "pull") == 0)
				json_object_set_new(req, "confirmed", cursor ? json_string(cursor) : json_null());
			rc = ofs_conn_ask(c, req, &id);
		}
		ahead = -1;
		if (rc == OFS_OK)
			rc = ofs_conn_answer(c, id, &answer, OFS_TIMEOUT_MS);
		if (rc == OFS_OK && IsError(answer, "cursor_too_old") && cursor != NULL && !restarted)
		{
			free(cursor);
			json_decref(answer);
			rc = ofs_restart(db);
			if (rc != OFS_OK)
				return rc;
			restarted = 1;
			ask = "pull";
			continue;
		}
		if (rc == OFS_OK && !IsType(answer, "changes"))
			rc = ErrorOf(db, answer, ask);
		more = json_is_true(json_object_get(answer, "more"));
		next = json_object_get(answer, "cursor");
		if (rc == OFS_OK && more && strcmp(ask, "pull") == 0 && json_is_string(next))
			rc = ofs_conn_ask(c, json_pack("{s:s, s:O, s:i, s:s?}", "type", "pull", "cursor", next, "max_rows", 1000,
										   "confirmed", cursor), &ahead);
		free(cursor);
		if (rc == OFS_OK)
			rc = ApplyPage(db, answer, stats, 0);
		json_decref(answer);
		if (rc != OFS_OK || strcmp(ask, "live") == 0)
			return rc;
		if (more)
			continue;
		if (strcmp(ask, type) != 0)
		{
			ask = type;
			continue;
		}
		return OFS_OK;
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
		rc = RejectionsIfWanted(db, c);
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

	/* A commit to the file in this process ends the loop's wait at once. */
	ofs_wake_register(c, sqlite3_db_filename(db->sql, "main"));
	rc = Push(db, c, NULL);
	if (rc == OFS_OK)
		rc = Pull(db, c, NULL, "pull");
	if (rc == OFS_OK)
		rc = Pull(db, c, NULL, "live");
	if (rc == OFS_OK)
		rc = RejectionsIfWanted(db, c);
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
			rc = ApplyPage(db, m, NULL, 1);
			if (rc == OFS_OK)
				rc = ofs_conn_send(c, json_pack("{s:s, s:O}", "type", "ack", "cursor", json_object_get(m, "cursor")));
			if (rc == OFS_OK)
				rc = RejectionsIfWanted(db, c);
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

const char *
ofs_available_tables(ofs_db *db)
{
	ofs_conn   *c;
	json_t	   *answer = NULL;
	json_t	   *tables;
	ofs_rc		rc;
	size_t		i;
	json_t	   *t;

	rc = Hello(db, &c);
	if (rc != OFS_OK)
		return NULL;
	State(db, "connected");
	rc = ofs_conn_request(c, json_pack("{s:s, s:b}", "type", "schema", "all", 1), &answer, OFS_TIMEOUT_MS);
	ofs_conn_close(c);
	State(db, "disconnected");
	if (rc == OFS_OK && !IsType(answer, "schema"))
		rc = ErrorOf(db, answer, "schema");
	tables = rc == OFS_OK ? json_object_get(answer, "tables") : NULL;
	if (rc == OFS_OK && !json_is_array(tables))
		rc = ofs_fail(db, OFS_PROTOCOL, "the origin's schema has no list of tables");
	/* What the origin sends is checked before it is handed on. */
	json_array_foreach(tables, i, t)
	{
		if (rc != OFS_OK)
			break;
		if (!json_is_object(t) || !json_is_string(json_object_get(t, "name")) ||
			!json_is_array(json_object_get(t, "columns")) || !json_is_boolean(json_object_get(t, "subscribed")))
			rc = ofs_fail(db, OFS_PROTOCOL, "the origin's schema lists a table without name, columns or subscribed");
	}
	free(db->tables_text);
	db->tables_text = rc == OFS_OK ? json_dumps(tables, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(answer);
	return db->tables_text;
}

/*
 * ofs_clear_rejections connects, asks the origin to clear the entries
 * named (or, with none named, only to list them), and keeps the list it
 * answers.
 */
ofs_rc
ofs_clear_rejections(ofs_db *db, const int64_t *dead_letters, size_t n_dead_letters,
					 const int64_t *conflicts, size_t n_conflicts)
{
	ofs_conn   *c;
	json_t	   *clear = NULL;
	ofs_rc		rc;

	if ((n_dead_letters && dead_letters == NULL) || (n_conflicts && conflicts == NULL))
		return ofs_fail(db, OFS_MISUSE, "ids are needed for the entries to clear");
	rc = Hello(db, &c);
	if (rc != OFS_OK)
		return rc;
	State(db, "connected");
	if (n_dead_letters + n_conflicts > 0)
	{
		json_t	   *dl = json_array();
		json_t	   *cf = json_array();

		for (size_t i = 0; i < n_dead_letters; i++)
			json_array_append_new(dl, json_integer(dead_letters[i]));
		for (size_t i = 0; i < n_conflicts; i++)
			json_array_append_new(cf, json_integer(conflicts[i]));
		clear = json_pack("{s:o, s:o}", "dead_letters", dl, "conflicts", cf);
	}
	rc = Rejections(db, c, clear);
	ofs_conn_close(c);
	State(db, "disconnected");
	return rc;
}

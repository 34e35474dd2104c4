/*
 * test_session.c: ofs_sync against a scripted origin (a libwebsockets
 * server in a thread of the test), for what only a session shows: the
 * welcome's clock, limits and rejections version taken (or refused when
 * of the wrong type); pushes that hold whole groups within max_batch; the
 * pushed answer's clock; a cursor refused as too old, after which the
 * device starts afresh; the rejections fetched when their version
 * changed; and ofs_clear_rejections.  Also: a commit to the device file
 * on another connection of the process ends the live connection's wait
 * at once, rather than at its next poll.
 */
#include <pthread.h>

#include <libwebsockets.h>

#include "fixture.h"

/* What the scripted origin does, and what it saw. */
typedef struct origin
{
	const char *welcome;		/* the welcome's text, after {"type":"welcome","id":N, */
	int			too_old;		/* answer a pull with a cursor by cursor_too_old */
	int64_t		pushed_hlc;
	/* seen */
	int			pushes;
	int			pushed_max;		/* the largest push */
	int			split;			/* a group seen in two pushes */
	int			pulls;
	int			pulls_without_cursor;
	int			rejections_asked;
	char		clear[256];		/* the last clear asked for */
	char		groups_seen[4096];	/* groups of earlier pushes, ";g;" each */
	int			bad;			/* a message the origin could not read */
	int			pages;			/* > 0: pulls are answered page by page, cursors "p1".."pN" */
	char		pull_log[4096];	/* pages mode: "cursor>confirmed " for each pull */
	int64_t		msg_at[256];	/* when each message arrived (ms) */
	int			nmsg;
} origin;

static origin O;
static struct lws_context *server;
static volatile int server_stop;
static int	server_port;

typedef struct session
{
	json_t	   *out;			/* answers waiting to be written */
} session;

static json_t *
answer_to(json_t *req)
{
	const char *type = json_string_value(json_object_get(req, "type"));
	json_t	   *id = json_object_get(req, "id");
	json_t	   *a = NULL;
	char		buf[8192];

	if (type == NULL)
	{
		O.bad++;
		return NULL;
	}
	if (O.nmsg < (int) (sizeof(O.msg_at) / sizeof(O.msg_at[0])))
		O.msg_at[O.nmsg++] = ofs_now_ms();
	if (strcmp(type, "pull") == 0 && O.pages > 0)
	{
		const char *cursor = json_string_value(json_object_get(req, "cursor"));
		json_t	   *confirmed = json_object_get(req, "confirmed");
		int			k = cursor && cursor[0] == 'p' ? atoi(cursor + 1) : 0;
		char		entry[64];

		snprintf(entry, sizeof(entry), "%s>%s ", cursor ? cursor : "-",
				 json_is_string(confirmed) ? json_string_value(confirmed) : confirmed ? "null" : "absent");
		if (strlen(O.pull_log) + strlen(entry) < sizeof(O.pull_log))
			strcat(O.pull_log, entry);
		snprintf(buf, sizeof(buf), "{\"type\":\"changes\",\"cursor\":\"p%d\",\"more\":%s,\"changes\":["
				 "{\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"page%d\"},"
				 "\"row\":{\"id\":\"page%d\",\"status\":\"draft\"}}]}",
				 k + 1, k + 1 < O.pages ? "true" : "false", k + 1, k + 1);
		a = fixture_json(buf);
	}
	else if (strcmp(type, "hello") == 0)
	{
		snprintf(buf, sizeof(buf), "{\"type\":\"welcome\",%s}", O.welcome);
		a = fixture_json(buf);
	}
	else if (strcmp(type, "schema") == 0)
		a = fixture_json(fixture_schema_text);
	else if (strcmp(type, "push") == 0)
	{
		json_t	   *muts = json_object_get(req, "mutations");
		json_t	   *results = json_array();
		json_t	   *m;
		size_t		i;
		char		mine[4096] = "";

		O.pushes++;
		if ((int) json_array_size(muts) > O.pushed_max)
			O.pushed_max = (int) json_array_size(muts);
		json_array_foreach(muts, i, m)
		{
			const char *g = json_string_value(json_object_get(m, "group"));

			if (g)
			{
				char		key[300];

				snprintf(key, sizeof(key), ";%s;", g);
				if (strstr(O.groups_seen, key))
					O.split = 1;
				if (!strstr(mine, key) && strlen(mine) + strlen(key) < sizeof(mine))
					strcat(mine, key);
			}
			json_array_append_new(results, json_pack("{s:O, s:s}", "operation_id", json_object_get(m, "op_id"),
													 "status", "applied"));
		}
		if (strlen(O.groups_seen) + strlen(mine) < sizeof(O.groups_seen))
			strcat(O.groups_seen, mine);
		a = json_pack("{s:s, s:o, s:I}", "type", "pushed", "results", results, "hlc", (json_int_t) O.pushed_hlc);
	}
	else if (strcmp(type, "pull") == 0)
	{
		json_t	   *cursor = json_object_get(req, "cursor");

		O.pulls++;
		if (cursor == NULL || json_is_null(cursor))
			O.pulls_without_cursor++;
		if (O.too_old && json_is_string(cursor))
			a = fixture_json("{\"type\":\"error\",\"code\":\"cursor_too_old\",\"sqlstate\":\"OF011\","
							 "\"message\":\"the cursor is older than one the device confirmed\",\"retry\":false}");
		else
			a = fixture_json("{\"type\":\"changes\",\"cursor\":\"fresh\",\"more\":false,\"up_to_date\":true,"
							 " \"hlc\":1000,\"rejections\":7,\"changes\":["
							 "  {\"table\":\"public.invoices\",\"op\":\"upsert\",\"pk\":{\"id\":\"o1\"},"
							 "   \"row\":{\"id\":\"o1\",\"status\":\"draft\",\"total\":\"1.00\",\"note\":\"origin\",\"qty\":1}}]}");
	}
	else if (strcmp(type, "rejections") == 0)
	{
		char	   *clear = json_dumps(json_object_get(req, "clear"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

		O.rejections_asked++;
		snprintf(O.clear, sizeof(O.clear), "%s", clear ? clear : "null");
		free(clear);
		a = fixture_json(json_object_get(req, "clear")
						 ? "{\"type\":\"rejections\",\"version\":8,\"dead_letters\":[],\"conflicts\":[]}"
						 : "{\"type\":\"rejections\",\"version\":7,\"dead_letters\":[{\"id\":1,\"operation_id\":\"x\","
						 " \"status\":\"open\"}],\"conflicts\":[{\"id\":2,\"operation_id\":\"y\",\"status\":\"open\"}]}");
	}
	else
		O.bad++;
	if (a && id)
		json_object_set(a, "id", id);
	return a;
}

static int
ServerCallback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	session    *s = user;

	switch (reason)
	{
		case LWS_CALLBACK_ESTABLISHED:
			s->out = json_array();
			break;
		case LWS_CALLBACK_RECEIVE:
			{
				/* The client's messages are small: one frame each. */
				json_t	   *req = json_loadb(in, len, 0, NULL);
				json_t	   *a = req ? answer_to(req) : NULL;

				if (req == NULL)
					O.bad++;
				if (a)
				{
					json_array_append_new(s->out, a);
					lws_callback_on_writable(wsi);
				}
				json_decref(req);
			}
			break;
		case LWS_CALLBACK_SERVER_WRITEABLE:
			if (json_array_size(s->out) > 0)
			{
				char	   *t = json_dumps(json_array_get(s->out, 0), JSON_COMPACT);
				size_t		n = strlen(t);
				unsigned char *buf = malloc(LWS_PRE + n);

				memcpy(buf + LWS_PRE, t, n);
				lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
				free(buf);
				free(t);
				json_array_remove(s->out, 0);
				if (json_array_size(s->out) > 0)
					lws_callback_on_writable(wsi);
			}
			break;
		case LWS_CALLBACK_CLOSED:
			json_decref(s->out);
			s->out = NULL;
			break;
		default:
			break;
	}
	return 0;
}

static const struct lws_protocols server_protocols[] = {
	{"ofs.v1", ServerCallback, sizeof(session), 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static void *
Serve(void *arg)
{
	(void) arg;
	while (!server_stop)
		lws_service(server, 0);
	return NULL;
}

static pthread_t server_thread;

static void
server_start(void)
{
	struct lws_context_creation_info info;

	lws_set_log_level(0, NULL);
	memset(&info, 0, sizeof(info));
	info.port = 0;
	info.iface = "127.0.0.1";
	info.protocols = server_protocols;
	info.gid = -1;
	info.uid = -1;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	server = lws_create_context(&info);
	if (server == NULL)
	{
		fprintf(stderr, "cannot start the scripted origin\n");
		exit(2);
	}
	server_port = lws_get_vhost_listen_port(lws_get_vhost_by_name(server, "default"));
	pthread_create(&server_thread, NULL, Serve, NULL);
}

static void
server_end(void)
{
	server_stop = 1;
	lws_cancel_service(server);
	pthread_join(server_thread, NULL);
	lws_context_destroy(server);
}

static void
configure(fixture *f)
{
	char		url[64];

	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", server_port);
	if (ofs_configure(f->db, url, "token") != OFS_OK)
	{
		fprintf(stderr, "ofs_configure: %s\n", ofs_errmsg(f->db));
		exit(2);
	}
}

static int64_t
num(fixture *f, const char *sql)
{
	return sql_int(ofs_sqlite(f->db), sql);
}

static void
test_session(void)
{
	fixture		f;
	sqlite3    *s;
	ofs_sync_stats st;
	ofs_rc		rc;
	int64_t		h = (ofs_now_ms() + 60000) << 16;
	char		welcome[512];
	json_t	   *status;

	fixture_open(&f, "session", 0);
	configure(&f);
	s = ofs_sqlite(f.db);
	/* An old cursor, a row the origin no longer has, and writes: a group of 3, singles, a group of 2. */
	{
		json_t	   *c = fixture_json("[{\"table\":\"public.invoices\",\"op\":\"upsert\","
									 "\"pk\":{\"id\":\"gone\"},\"row\":{\"id\":\"gone\",\"status\":\"draft\"}}]");

		is_int(ofs_apply_changes(f.db, c, "old"), OFS_OK, "the device holds a row and an old cursor");
		json_decref(c);
	}
	sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('g1', 'draft');"
			 " INSERT INTO lines (invoice, n) VALUES ('g1', 1); INSERT INTO lines (invoice, n) VALUES ('g1', 2); COMMIT", NULL);
	sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('s1', 'draft')", NULL);
	sql_exec(s, "INSERT INTO invoices (id, status) VALUES ('s2', 'draft')", NULL);
	sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('g2', 'draft');"
			 " INSERT INTO lines (invoice, n) VALUES ('g2', 1); COMMIT", NULL);
	is_int(num(&f, "SELECT count(*) FROM _ofs_outbox"), 7, "seven intents wait");

	snprintf(welcome, sizeof(welcome), "\"device\":\"d1\",\"role\":\"rep\",\"protocol\":1,\"hlc\":%lld,"
			 "\"limits\":{\"max_batch\":3},\"rejections\":7", (long long) h);
	O.welcome = welcome;
	O.too_old = 1;
	O.pushed_hlc = h + ((int64_t) 1000 << 16);
	rc = ofs_sync(f.db, &st);
	is_int(rc, OFS_OK, "a sync with the scripted origin succeeds (%s)", ofs_errmsg(f.db));
	is_int(O.bad, 0, "the origin could read every message");
	is_int(st.pushed, 7, "every intent was pushed");
	ok(O.pushed_max <= 3, "no push held more than welcome.limits.max_batch (%d)", O.pushed_max);
	is_int(O.split, 0, "no group was split across pushes");
	is_int(O.pushes, 3, "three pushes: the group of 3, two singles, the group of 2");
	ok(f.db->hlc_last >= O.pushed_hlc &&
	   num(&f, "SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'hlc'") >= O.pushed_hlc,
	   "the device's clock followed the pushed answer's");
	is_int(O.pulls, 2, "the pull with the old cursor was refused, then one from no cursor");
	is_int(O.pulls_without_cursor, 1, "... which had no cursor");
	is_int(num(&f, "SELECT count(*) FROM invoices WHERE id = 'gone'"), 0, "the row the origin no longer has is gone");
	is_int(num(&f, "SELECT count(*) FROM invoices WHERE id = 'o1'"), 1, "the origin's row arrived");
	is_int(O.rejections_asked, 1, "the device asked for its rejections (version 7 was new to it)");
	is_int(num(&f, "SELECT count(*) FROM _ofs_dead_letters") + num(&f, "SELECT count(*) FROM _ofs_origin_conflicts"), 2,
		   "... and kept them");
	status = json_loads(ofs_status(f.db), 0, NULL);
	ok(json_is_true(json_object_get(status, "synced")), "the device is synced");
	json_decref(status);

	/* A second sync: version 7 is known, nothing asked. */
	O.too_old = 0;
	is_int(ofs_sync(f.db, NULL), OFS_OK, "a second sync");
	is_int(O.rejections_asked, 1, "... does not ask for the rejections again");

	/* Clearing. */
	{
		int64_t		dl[] = {1};

		is_int(ofs_clear_rejections(f.db, dl, 1, NULL, 0), OFS_OK, "ofs_clear_rejections");
		is_str(O.clear, "{\"conflicts\":[],\"dead_letters\":[1]}", "... sends the ids");
		is_int(num(&f, "SELECT CAST(value AS INTEGER) FROM _ofs_meta WHERE key = 'rejections_version'"), 8,
			   "... and keeps the answer");
	}

	/* A group larger than max_batch. */
	sql_exec(s, "BEGIN; INSERT INTO invoices (id, status) VALUES ('big', 'draft');"
			 " INSERT INTO lines (invoice, n) VALUES ('big', 1); INSERT INTO lines (invoice, n) VALUES ('big', 2);"
			 " INSERT INTO lines (invoice, n) VALUES ('big', 3); COMMIT", NULL);
	O.pushes = 0;
	rc = ofs_sync(f.db, NULL);
	is_int(rc, OFS_REFUSED, "a transaction of 4 writes with max_batch 3 fails the sync");
	is_int(O.pushes, 0, "... nothing of it pushed");
	is_int(num(&f, "SELECT count(*) FROM _ofs_outbox"), 4, "... and it stays in the outbox");
	sql_exec(s, "DELETE FROM _ofs_outbox", NULL);

	/* Welcomes of the wrong types. */
	{
		static const char *const bad[] = {
			"\"device\":\"d1\",\"hlc\":\"1\"",
			"\"device\":\"d1\",\"hlc\":-5",
			"\"device\":\"d1\",\"hlc\":1.5",
			"\"device\":\"d1\",\"rejections\":\"7\"",
			"\"device\":\"d1\",\"limits\":[]",
			"\"device\":\"d1\",\"limits\":{\"max_batch\":\"3\"}",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			O.welcome = bad[i];
			is_int(ofs_sync(f.db, NULL), OFS_PROTOCOL, "a welcome with %s is refused", bad[i]);
		}
	}
	fixture_close(&f);
}


/*
 * Pages are asked for ahead: each pull after the first names the page
 * just received and confirms the cursor stored; and the device keeps
 * below the origin's max_messages_per_second.
 */
static void
test_ask_ahead(void)
{
	fixture		f;
	int			most = 0;

	fixture_open(&f, "ask-ahead", 0);
	configure(&f);
	memset(&O, 0, sizeof(O));
	O.welcome = "\"device\":\"d1\",\"role\":\"rep\",\"protocol\":1,\"limits\":{\"max_messages_per_second\":5}";
	O.pages = 12;
	is_int(ofs_sync(f.db, NULL), OFS_OK, "a sync of 12 pages (%s)", ofs_errmsg(f.db));
	is_int(num(&f, "SELECT count(*) FROM invoices WHERE id LIKE 'page%'"), 12, "... brings every page's row");
	is_str(O.pull_log, "->null p1>null p2>p1 p3>p2 p4>p3 p5>p4 p6>p5 p7>p6 p8>p7 p9>p8 p10>p9 p11>p10 ",
		   "the first pull confirms nothing stored; each next one names the page received and confirms the one stored");
	for (int i = 0; i < O.nmsg; i++)
	{
		int			n = 0;

		for (int j = i; j < O.nmsg && O.msg_at[j] - O.msg_at[i] < 1000; j++)
			n++;
		if (n > most)
			most = n;
	}
	ok(most <= 5, "no more than max_messages_per_second (5) messages in any second (%d)", most);
	is_int(num(&f, "SELECT count(*) FROM _ofs_meta WHERE key = 'cursor' AND value = 'p12'"), 1, "the last cursor is stored");
	O.pages = 0;
	fixture_close(&f);
}

/* A second connection to the device file commits, a little later. */
static void *
CommitLater(void *arg)
{
	fixture    *f = arg;
	ofs_db	   *other;
	struct timespec ts = {0, 50 * 1000000L};

	nanosleep(&ts, NULL);
	if (ofs_open(f->path, &other) == OFS_OK)
		sqlite3_exec(ofs_sqlite(other), "INSERT OR REPLACE INTO _ofs_meta (key, value) VALUES ('wake', '1')",
					 NULL, NULL, NULL);
	ofs_close(other);
	return NULL;
}

static void
test_wake(void)
{
	fixture		f;
	ofs_conn   *c;
	json_t	   *m = NULL;
	char		url[64];
	pthread_t	t;
	int64_t		start;
	ofs_rc		rc;

	fixture_open(&f, "wake", 0);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", server_port);
	rc = ofs_conn_open(f.db, url, 5000, &c);
	is_int(rc, OFS_OK, "a connection to the scripted origin opens");
	if (rc != OFS_OK)
	{
		fixture_close(&f);
		return;
	}
	ofs_wake_register(c, sqlite3_db_filename(ofs_sqlite(f.db), "main"));
	start = ofs_now_ms();
	pthread_create(&t, NULL, CommitLater, &f);
	rc = ofs_conn_next(c, 20000, &m);
	/* Woken by the commit: well before the 20 s the wait was given. */
	ok(rc == OFS_OK && m == NULL && ofs_now_ms() - start < 10000,
	   "a commit on another connection to the device file ends the live wait (after %lld ms)",
	   (long long) (ofs_now_ms() - start));
	pthread_join(t, NULL);
	json_decref(m);
	ofs_conn_close(c);
	fixture_close(&f);
}

int
main(void)
{
	server_start();
	test_session();
	test_ask_ahead();
	test_wake();
	server_end();
	return done_testing();
}

/*
 * http.c: /metrics and /status, served by the sync worker over HTTP on a
 * port of its own (ofs.http_port, 0: off), on ofs.http_listen_addresses
 * (loopback by default), apart from the devices' port: a scrape or a
 * browser never shares a connection, a buffer or a limit with a device.
 *
 * /metrics is Prometheus' text exposition format: the counters of every
 * worker (shared memory: ofs.stats' and metrics.h's), and what only SQL
 * knows (open dead letters and conflicts, the feed, the device furthest
 * behind), read from the same tables as the views, cheaply enough for a
 * scrape a second.  /status is one self-contained HTML page for a person
 * on call, refreshed every 10 seconds; it names devices and shows error
 * texts, so it needs a token of ofs.status_token (Authorization: Bearer,
 * or ?token=).  Every request is answered at once from the worker's loop;
 * only GET is served, a request of other paths or methods gets 404 or
 * 405, one without a valid token 401; one request per connection, no
 * upgrade.  The SQL figures are read at most once a second per worker,
 * however often /metrics is asked.  docs/monitoring.md has it all.
 */
#include "postgres.h"

#include <libwebsockets.h>
#include <jansson.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "ofs.h"
#include "worker.h"
#include "message.h"
#include "shmem.h"
#include "metrics.h"

int			ofs_http_port = 0;
char	   *ofs_http_listen_addresses = NULL;

/* One request: its answer, written as the connection takes it. */
typedef struct HttpReq
{
	char	   *body;			/* malloc'd */
	size_t		len;
	size_t		sent;
	bool		done;			/* all written: close once libwebsockets has sent it */
} HttpReq;

/* HTTP connections open in this worker, and at most how many. */
#define MAX_HTTP 64
static int	http_open = 0;

bool
HttpAdmit(void)
{
	return http_open < MAX_HTTP;
}

/* A token is at most this long; longer is no token of ofs. */
#define MAX_TOKEN 128
#define CHUNK 16384

/*
 * Recent rates for /status' charts: the shared counters sampled every 10
 * seconds by this worker (any worker may answer; each keeps its own).
 */
#define SAMPLES 60
#define SAMPLE_MS 10000
typedef struct Sample
{
	int64_t		at_ms;
	uint64		in;				/* messages received */
	uint64		applied;
	uint64		rejected;
	uint64		rows;			/* rows sent */
	uint64		errors;
} Sample;
static Sample samples[SAMPLES];
static int	nsamples = 0;
static int	next_sample = 0;

static uint64
Counter(OfsCounter c)
{
	return ofs_shared ? pg_atomic_read_u64(&ofs_shared->counters[c]) : 0;
}

void
HttpSample(int64_t now)
{
	Sample	   *s;

	if (nsamples > 0 && now - samples[(next_sample + SAMPLES - 1) % SAMPLES].at_ms < SAMPLE_MS)
		return;
	s = &samples[next_sample];
	s->at_ms = now;
	s->in = Counter(OFS_STAT_MESSAGES_IN);
	s->applied = Counter(OFS_STAT_APPLIED);
	s->rejected = Counter(OFS_STAT_REJECTED);
	s->rows = Counter(OFS_STAT_ROWS_SENT);
	s->errors = Counter(OFS_STAT_ERRORS);
	next_sample = (next_sample + 1) % SAMPLES;
	if (nsamples < SAMPLES)
		nsamples++;
}

/* ---- answering ---- */

static int
Respond(struct lws *wsi, HttpReq *req, int status, const char *type, char *body, const char *hname, const char *hvalue)
{
	unsigned char buf[LWS_PRE + 1024];
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = buf + sizeof(buf) - 1;

	free(req->body);
	req->body = body;
	req->len = body ? strlen(body) : 0;
	req->sent = 0;
	req->done = false;
	if (lws_add_http_common_headers(wsi, (unsigned int) status, type, req->len, &p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "cache-control:", (const unsigned char *) "no-store", 8, &p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "x-content-type-options:", (const unsigned char *) "nosniff", 7, &p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "connection:", (const unsigned char *) "close", 5, &p, end) ||
		(hname && lws_add_http_header_by_name(wsi, (const unsigned char *) hname, (const unsigned char *) hvalue,
											  (int) strlen(hvalue), &p, end)) ||
		lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

/* Text: a malloc'd copy of a short answer. */
static char *
Text(const char *s)
{
	char	   *t = strdup(s);

	return t;
}

/* Malloced: StringInfo's text in malloc'd memory (the answer outlives the message context). */
static char *
Malloced(StringInfo b)
{
	char	   *t = malloc(b->len + 1);

	if (t)
		memcpy(t, b->data, b->len + 1);
	return t;
}

/* ---- /metrics ---- */

static void
Head(StringInfo b, const char *name, const char *type, const char *help)
{
	appendStringInfo(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
One(StringInfo b, const char *name, const char *type, const char *help, double v)
{
	Head(b, name, type, help);
	if (v == floor(v) && fabs(v) < 1e15)
		appendStringInfo(b, "%s %.0f\n", name, v);
	else
		appendStringInfo(b, "%s %.6f\n", name, v);
}

static void
Histogram(StringInfo b, OfsHistogramKind kind, const char *help)
{
	OfsHistogram *h = &ofs_shared->metrics.hist[kind];
	const char *name = ofs_hist_names[kind];
	uint64		cum = 0;

	Head(b, name, "histogram", help);
	for (int i = 0; i <= OFS_HIST_BUCKETS; i++)
	{
		cum += pg_atomic_read_u64(&h->buckets[i]);
		if (i < OFS_HIST_BUCKETS)
			appendStringInfo(b, "%s_bucket{le=\"%g\"} " UINT64_FORMAT "\n", name, ofs_hist_bounds[i], cum);
		else
			appendStringInfo(b, "%s_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n", name, cum);
	}
	appendStringInfo(b, "%s_sum %.6f\n%s_count " UINT64_FORMAT "\n", name,
					 pg_atomic_read_u64(&h->sum_us) / 1e6, name, cum);
}

/* What only SQL knows, from the tables the views read (docs/monitoring.md). */
#define METRICS_SQL \
	"SELECT (SELECT count(*) FROM ofs.dead_letters WHERE status = 'open')," \
	"       (SELECT count(*) FROM ofs.conflicts WHERE status = 'open')," \
	"       (SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM ofs.change_log)," \
	"       coalesce((SELECT extract(epoch FROM now() - captured_at) FROM ofs.change_log ORDER BY seq LIMIT 1), 0)," \
	"       coalesce(lag.seconds, 0), coalesce(lag.changes, 0)," \
	"       (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ofs sync worker')," \
	"       extract(epoch FROM pg_postmaster_start_time())" \
	"  FROM (SELECT 1) one LEFT JOIN LATERAL (" \
	"    SELECT extract(epoch FROM now() - d.since) AS seconds," \
	"           (SELECT count(*) FROM ofs.change_log c WHERE c.seq >= (SELECT f.seq FROM ofs.change_log f" \
	"             WHERE f.captured_at > d.since ORDER BY f.seq LIMIT 1)) AS changes" \
	"      FROM (SELECT coalesce(caught_up_at, created_at) AS since FROM ofs.device" \
	"             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) d" \
	"     WHERE d.since < (SELECT captured_at FROM ofs.change_log ORDER BY seq DESC LIMIT 1)" \
	"     ORDER BY d.since LIMIT 1) lag ON true"

/* The SQL figures last read, and when (this worker's). */
static double sql_values[8];
static bool sql_ok = false;
static char sql_error[256];
static int64_t sql_read_at = -1000000;

static char *
Metrics(int *status)
{
	StringInfoData b;
	SqlResult	res;
	OfsMetrics *m;
	const char *sqlnames[8] = {
		"ofs_dead_letters_open", "ofs_conflicts_open", "ofs_feed_entries", "ofs_feed_oldest_entry_age_seconds",
		"ofs_device_lag_seconds_max", "ofs_device_lag_changes_max", "ofs_workers_running", "ofs_start_time_seconds"
	};
	const char *sqlhelp[8] = {
		"Dead letters not retried or discarded (ofs.dead_letters).",
		"Conflicts not resolved (ofs.conflicts).",
		"Entries the changes feed retains (the span of their sequence numbers).",
		"Age of the oldest entry the feed retains.",
		"How long the active device furthest behind the feed has been behind (from ofs.device.caught_up_at).",
		"Changes captured since the active device furthest behind last caught up.",
		"Sync worker processes running.",
		"When PostgreSQL started: the counters of this endpoint start at zero then."
	};
	char	   *answer;

	if (ofs_shared == NULL)
	{
		*status = 503;
		return Text("ofs is not in shared_preload_libraries: the sync workers have no shared counters\n");
	}
	m = &ofs_shared->metrics;
	initStringInfo(&b);
	One(&b, "ofs_devices_connected", "gauge", "Devices connected and authenticated.", (double) Counter(OFS_STAT_CONNECTED));
	One(&b, "ofs_devices_live", "gauge", "Devices whose changes are pushed as they commit (live).",
		(double) pg_atomic_read_u64(&m->live));
	One(&b, "ofs_worker_starts_total", "counter", "Sync workers started (PostgreSQL restarts one that exits).",
		(double) pg_atomic_read_u64(&m->worker_starts));
	One(&b, "ofs_sessions_total", "counter", "Devices authenticated (hello accepted).", (double) Counter(OFS_STAT_SESSIONS));
	Head(&b, "ofs_messages_received_total", "counter", "Messages received from devices, by type (invalid: not a known type).");
	for (int t = 0; t < OFS_METRIC_TYPES; t++)
	{
		const char *name = MessageTypeName(t);
		uint64		n = pg_atomic_read_u64(&m->messages[t]);

		if (name)
			appendStringInfo(&b, "ofs_messages_received_total{type=\"%s\"} " UINT64_FORMAT "\n", name, n);
		else if (t == MSG_TYPE_COUNT)
			appendStringInfo(&b, "ofs_messages_received_total{type=\"invalid\"} " UINT64_FORMAT "\n", n);
	}
	One(&b, "ofs_messages_sent_total", "counter", "Messages sent to devices.", (double) Counter(OFS_STAT_MESSAGES_OUT));
	One(&b, "ofs_received_bytes_total", "counter", "Bytes of messages received from devices.", (double) Counter(OFS_STAT_BYTES_IN));
	One(&b, "ofs_sent_bytes_total", "counter", "Bytes of messages sent to devices.", (double) Counter(OFS_STAT_BYTES_OUT));
	Head(&b, "ofs_mutations_total", "counter", "Mutations pushed by devices, by result.");
	appendStringInfo(&b, "ofs_mutations_total{result=\"applied\"} " UINT64_FORMAT "\n", Counter(OFS_STAT_APPLIED));
	appendStringInfo(&b, "ofs_mutations_total{result=\"duplicate\"} " UINT64_FORMAT "\n", Counter(OFS_STAT_DUPLICATES));
	appendStringInfo(&b, "ofs_mutations_total{result=\"rejected\"} " UINT64_FORMAT "\n", Counter(OFS_STAT_REJECTED));
	appendStringInfo(&b, "ofs_mutations_total{result=\"conflict\"} " UINT64_FORMAT "\n", Counter(OFS_STAT_CONFLICTS));
	One(&b, "ofs_rows_sent_total", "counter", "Rows sent to devices in changes.", (double) Counter(OFS_STAT_ROWS_SENT));
	Head(&b, "ofs_connections_closed_total", "counter",
		 "Device connections closed, by WebSocket close code (device: closed by the device or the network).");
	for (int i = 0; i < OFS_CLOSE_KINDS; i++)
	{
		uint64		n = pg_atomic_read_u64(&m->closes[i]);

		if (ofs_close_codes[i] == 0)
			appendStringInfo(&b, "ofs_connections_closed_total{code=\"device\"} " UINT64_FORMAT "\n", n);
		else if (ofs_close_codes[i] < 0)
			appendStringInfo(&b, "ofs_connections_closed_total{code=\"other\"} " UINT64_FORMAT "\n", n);
		else
			appendStringInfo(&b, "ofs_connections_closed_total{code=\"%d\"} " UINT64_FORMAT "\n", ofs_close_codes[i], n);
	}
	Head(&b, "ofs_errors_total", "counter", "Errors sent to devices, by protocol code.");
	for (int i = 0; i < OFS_ERROR_KINDS; i++)
		appendStringInfo(&b, "ofs_errors_total{code=\"%s\"} " UINT64_FORMAT "\n", ofs_error_codes[i],
						 pg_atomic_read_u64(&m->errors[i]));
	Histogram(&b, OFS_HIST_PUSH, "Time to apply a push and answer it.");
	Histogram(&b, OFS_HIST_PULL, "Time to read a page of changes and answer a pull.");
	Histogram(&b, OFS_HIST_DELIVERY,
			  "Time from the latest commit of changes that woke the workers to a live page's sending.");

	/* A flood of scrapes must not become a flood of SQL in the devices' loop: once a second at most. */
	if (WorkerNowMs() - sql_read_at >= 1000)
	{
		WorkerSql(METRICS_SQL, 0, NULL, &res);
		sql_ok = res.ok && res.nvalues == 8;
		for (int i = 0; sql_ok && i < 8; i++)
			sql_values[i] = res.values[i] ? strtod(res.values[i], NULL) : 0;
		if (!sql_ok)
			strlcpy(sql_error, res.message ? res.message : "no result", sizeof(sql_error));
		SqlResultFree(&res);
		sql_read_at = WorkerNowMs();
	}
	if (sql_ok)
	{
		for (int i = 0; i < 8; i++)
			One(&b, sqlnames[i], "gauge", sqlhelp[i], sql_values[i]);
		*status = 200;
	}
	else
	{
		/* The counters still say something; the scrape fails, so that an alert on up fires. */
		appendStringInfo(&b, "# the figures of SQL could not be read: %s\n", sql_error);
		*status = 503;
	}
	answer = Malloced(&b);
	pfree(b.data);
	return answer;
}

/* ---- /status ---- */

/* TokenOk: does a token of ofs.status_token, not revoked, match? */
static bool
TokenOk(const char *token)
{
	SqlResult	res;
	bool		ok;
	const char *args[1] = {token};

	if (token == NULL || token[0] == '\0' || strlen(token) > MAX_TOKEN)
		return false;
	WorkerSql("SELECT EXISTS (SELECT 1 FROM ofs.status_token WHERE token_sha256 = sha256(convert_to($1, 'UTF8'))"
			  " AND revoked_at IS NULL)", 1, args, &res);
	ok = res.ok && res.nvalues == 1 && res.values[0] && strcmp(res.values[0], "t") == 0;
	SqlResultFree(&res);
	return ok;
}

/* Token: the request's token (Authorization: Bearer, or ?token=) into buf, or NULL. */
static const char *
Token(struct lws *wsi, char *buf, size_t size)
{
	char		auth[MAX_TOKEN + 32];
	int			n = lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);

	if (n > 7 && strncasecmp(auth, "Bearer ", 7) == 0)
	{
		strlcpy(buf, auth + 7, size);
		return buf;
	}
	/* the value, past "token=" in buf */
	return lws_get_urlarg_by_name(wsi, "token=", buf, (int) size);
}

static void
Esc(StringInfo b, const char *s)
{
	for (; s && *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(b, "&amp;");
				break;
			case '<':
				appendStringInfoString(b, "&lt;");
				break;
			case '>':
				appendStringInfoString(b, "&gt;");
				break;
			case '"':
				appendStringInfoString(b, "&quot;");
				break;
			case '\'':
				appendStringInfoString(b, "&#39;");
				break;
			default:
				appendStringInfoChar(b, *s);
		}
	}
}

/* EscLiteral: a SQL string literal of s (quotes doubled), escaped for HTML: safe to copy into psql. */
static void
EscLiteral(StringInfo b, const char *s)
{
	StringInfoData lit;

	initStringInfo(&lit);
	appendStringInfoChar(&lit, '\'');
	for (; s && *s; s++)
	{
		if (*s == '\'')
			appendStringInfoChar(&lit, '\'');
		appendStringInfoChar(&lit, *s);
	}
	appendStringInfoChar(&lit, '\'');
	Esc(b, lit.data);
	pfree(lit.data);
}

/* Str: a JSON member as text ("" when null), for the page. */
static const char *
Str(json_t *o, const char *key, char *buf, size_t size)
{
	json_t	   *v = json_object_get(o, key);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		snprintf(buf, size, "%lld", (long long) json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, size, "%.1f", json_real_value(v));
	else if (v && !json_is_null(v))
	{
		char	   *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		strlcpy(buf, t ? t : "", size);
		free(t);
	}
	else
		buf[0] = '\0';
	return buf;
}

/* Cells: a <td> for each of the members keys (NULL-ended) of e, escaped. */
static void
Cells(StringInfo b, json_t *e, const char *const *keys)
{
	char		buf[256];

	for (; *keys; keys++)
	{
		appendStringInfoString(b, "<td>");
		Esc(b, Str(e, *keys, buf, sizeof(buf)));
		appendStringInfoString(b, "</td>");
	}
}

/* Spark: a small SVG chart of one rate (per second) over the samples. */
static void
Spark(StringInfo b, const char *title, int which)
{
	double		rates[SAMPLES];
	int			n = 0;
	double		max = 0;

	for (int i = 1; i < nsamples; i++)
	{
		Sample	   *a = &samples[(next_sample - nsamples + i - 1 + SAMPLES) % SAMPLES];
		Sample	   *c = &samples[(next_sample - nsamples + i + SAMPLES) % SAMPLES];
		uint64		va = which == 0 ? a->in : which == 1 ? a->applied : which == 2 ? a->rejected : which == 3 ? a->rows : a->errors;
		uint64		vc = which == 0 ? c->in : which == 1 ? c->applied : which == 2 ? c->rejected : which == 3 ? c->rows : c->errors;
		double		secs = (c->at_ms - a->at_ms) / 1000.0;

		rates[n] = secs > 0 && vc >= va ? (vc - va) / secs : 0;
		if (rates[n] > max)
			max = rates[n];
		n++;
	}
	appendStringInfo(b, "<figure class=\"spark\"><figcaption>%s: %.1f/s</figcaption>"
					 "<svg viewBox=\"0 0 120 30\" width=\"120\" height=\"30\" role=\"img\"><polyline fill=\"none\""
					 " stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"", title, n ? rates[n - 1] : 0.0);
	for (int i = 0; i < n; i++)
		appendStringInfo(b, "%s%.1f,%.1f", i ? " " : "", n > 1 ? 120.0 * i / (n - 1) : 0.0,
						 28 - (max > 0 ? 26 * rates[i] / max : 0));
	appendStringInfoString(b, "\"/></svg></figure>");
}

#define STATUS_SQL \
	"SELECT jsonb_build_object(" \
	" 'now', to_char(now(), 'YYYY-MM-DD HH24:MI:SS TZ')," \
	" 'workers', (SELECT coalesce(jsonb_agg(jsonb_build_object('pid', pid, 'started'," \
	"       to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS'), 'state', state) ORDER BY pid), '[]')" \
	"       FROM pg_stat_activity WHERE application_name = 'ofs sync worker')," \
	" 'configured', current_setting('ofs.workers', true)," \
	" 'stats', (SELECT jsonb_build_object('connected', s.connected_devices, 'dead_letters', s.dead_letters," \
	"       'conflicts_open', s.conflicts_open, 'errors', s.errors, 'last_error', s.last_error," \
	"       'last_error_at', to_char(s.last_error_at, 'YYYY-MM-DD HH24:MI:SS')) FROM ofs.stats s)," \
	" 'devices', (SELECT coalesce(jsonb_agg(jsonb_build_object('device', d.device, 'role', d.role, 'status', d.status," \
	"       'last_contact', to_char(d.last_contact, 'YYYY-MM-DD HH24:MI:SS'), 'changes_behind', d.changes_behind," \
	"       'behind', CASE WHEN d.changes_behind > 0 THEN extract(epoch FROM now() - coalesce(d.caught_up_at, d.created_at))::bigint END)" \
	"       ORDER BY d.changes_behind DESC, d.last_contact DESC NULLS LAST), '[]')" \
	"       FROM (SELECT * FROM ofs.devices ORDER BY changes_behind DESC, last_contact DESC NULLS LAST LIMIT 50) d)," \
	" 'dead_letters', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', l.id, 'device', l.device, 'table', l.table_name," \
	"       'pk', left(l.pk::text, 200), 'error', l.sqlstate || ' ' || left(l.message, 300)," \
	"       'hint', left(l.hint::text, 300)," \
	"       'at', to_char(l.created_at, 'YYYY-MM-DD HH24:MI:SS')) ORDER BY l.id DESC), '[]')" \
	"       FROM (SELECT * FROM ofs.dead_letters WHERE status = 'open' ORDER BY id DESC LIMIT 20) l)," \
	" 'conflicts', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'device', c.device, 'table', c.table_name," \
	"       'pk', left(c.pk::text, 200), 'column', c.column_name, 'origin_value', left(c.origin_value::text, 200)," \
	"       'device_value', left(c.device_value::text, 200)," \
	"       'at', to_char(c.created_at, 'YYYY-MM-DD HH24:MI:SS')) ORDER BY c.id DESC), '[]')" \
	"       FROM (SELECT * FROM ofs.conflicts WHERE status = 'open' ORDER BY id DESC LIMIT 20) c))::text"

static const char *const page_style =
	"body{font:14px system-ui,sans-serif;margin:1.5em;color:#111}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}"
	"table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;"
	"vertical-align:top}th{background:#f3f4f6}.red{background:#fee2e2}.ok{color:#166534}.bad{color:#b91c1c;font-weight:600}"
	"code{background:#f3f4f6;padding:1px 4px;font-size:12px}.spark{display:inline-block;margin:0 1.2em 0 0}"
	"figcaption{font-size:12px;color:#555}.muted{color:#666}";

static char *
Status(int *status)
{
	SqlResult	res;
	json_t	   *j = NULL;
	StringInfoData b;
	char		t1[256];
	char		t2[256];
	char		t3[256];
	size_t		i;
	json_t	   *e;
	json_t	   *workers;
	json_t	   *stats;
	char	   *answer;
	int			configured;

	WorkerSql(STATUS_SQL, 0, NULL, &res);
	if (res.ok && res.nvalues == 1 && res.values[0])
		j = json_loads(res.values[0], 0, NULL);
	if (j == NULL)
	{
		char		msg[512];

		snprintf(msg, sizeof(msg), "the status could not be read: %s\n", res.message ? res.message : "no result");
		SqlResultFree(&res);
		*status = 503;
		return Text(msg);
	}
	SqlResultFree(&res);
	workers = json_object_get(j, "workers");
	stats = json_object_get(j, "stats");
	configured = atoi(Str(j, "configured", t1, sizeof(t1)));
	initStringInfo(&b);
	appendStringInfo(&b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
					 "<meta http-equiv=\"refresh\" content=\"10\"><title>ofs status</title><style>%s</style></head><body>",
					 page_style);
	appendStringInfo(&b, "<h1>ofs status</h1><p class=\"muted\">%s &middot; this page refreshes every 10 seconds</p>",
					 Str(j, "now", t1, sizeof(t1)));

	/* Workers */
	appendStringInfo(&b, "<h2 id=\"workers\">Sync workers: <span class=\"%s\">%zu running of %d</span></h2>",
					 (int) json_array_size(workers) < configured ? "bad" : "ok", json_array_size(workers), configured);
	if ((int) json_array_size(workers) < configured)
		appendStringInfoString(&b, "<p class=\"red\">Fewer workers than <code>ofs.workers</code> run: read the server log"
							   " for lines starting <code>ofs sync worker</code>; PostgreSQL restarts a worker that exits.</p>");
	appendStringInfoString(&b, "<table><tr><th>pid</th><th>started</th><th>state</th></tr>");
	json_array_foreach(workers, i, e)
	{
		appendStringInfo(&b, "<tr><td>%s</td><td>", Str(e, "pid", t1, sizeof(t1)));
		Esc(&b, Str(e, "started", t1, sizeof(t1)));
		appendStringInfoString(&b, "</td><td>");
		Esc(&b, Str(e, "state", t1, sizeof(t1)));
		appendStringInfoString(&b, "</td></tr>");
	}
	appendStringInfoString(&b, "</table>");

	/* Rates */
	appendStringInfoString(&b, "<h2>Recent rates</h2><div>");
	Spark(&b, "messages in", 0);
	Spark(&b, "mutations applied", 1);
	Spark(&b, "mutations rejected", 2);
	Spark(&b, "rows sent", 3);
	Spark(&b, "errors", 4);
	appendStringInfo(&b, "</div><p class=\"muted\">%s devices connected, %s errors since PostgreSQL started",
					 Str(stats, "connected", t1, sizeof(t1)), Str(stats, "errors", t2, sizeof(t2)));
	if (json_is_string(json_object_get(stats, "last_error")))
	{
		appendStringInfoString(&b, "; the last at ");
		Esc(&b, Str(stats, "last_error_at", t1, sizeof(t1)));
		appendStringInfoString(&b, ": ");
		Esc(&b, Str(stats, "last_error", t1, sizeof(t1)));
	}
	appendStringInfoString(&b, "</p>");

	/* Devices */
	appendStringInfoString(&b, "<h2 id=\"devices\">Devices</h2><table><tr><th>device</th><th>role</th><th>status</th>"
						   "<th>last contact</th><th>changes behind</th><th>behind for (s)</th><th>what to do</th></tr>");
	json_array_foreach(json_object_get(j, "devices"), i, e)
	{
		bool		behind = json_integer_value(json_object_get(e, "changes_behind")) > 0;
		const char *st = Str(e, "status", t3, sizeof(t3));
		static const char *const cells[] = {"device", "role", "status", "last_contact", "changes_behind", "behind", NULL};

		appendStringInfo(&b, "<tr class=\"%s\">", behind || strcmp(st, "active") != 0 ? "red" : "");
		Cells(&b, e, cells);
		appendStringInfoString(&b, "<td>");
		if (behind && strcmp(st, "active") == 0)
		{
			appendStringInfoString(&b, "The device has not synced since: check that it runs and reaches the origin; if"
								   " it syncs and stays behind, <code>SELECT ofs.resnapshot_device(");
			EscLiteral(&b, Str(e, "device", t1, sizeof(t1)));
			appendStringInfoString(&b, ");</code>");
		}
		appendStringInfoString(&b, "</td></tr>");
	}
	appendStringInfoString(&b, "</table>");

	/* Dead letters */
	appendStringInfo(&b, "<h2 id=\"dead-letters\">Open dead letters: %s</h2>", Str(stats, "dead_letters", t1, sizeof(t1)));
	appendStringInfoString(&b, "<table><tr><th>id</th><th>device</th><th>table</th><th>key</th><th>error</th>"
						   "<th>hint</th><th>at</th><th>what to do</th></tr>");
	json_array_foreach(json_object_get(j, "dead_letters"), i, e)
	{
		const char *id = Str(e, "id", t3, sizeof(t3));
		static const char *const cells[] = {"id", "device", "table", "pk", "error", "hint", "at", NULL};

		appendStringInfoString(&b, "<tr class=\"red\">");
		Cells(&b, e, cells);
		appendStringInfo(&b, "<td>Fix the cause, then <code>SELECT ofs.retry_dead_letter(%s);</code> or drop it:"
						 " <code>SELECT ofs.discard_dead_letter(%s);</code></td></tr>", id, id);
	}
	appendStringInfoString(&b, "</table>");

	/* Conflicts */
	appendStringInfo(&b, "<h2 id=\"conflicts\">Open conflicts: %s</h2>", Str(stats, "conflicts_open", t1, sizeof(t1)));
	appendStringInfoString(&b, "<table><tr><th>id</th><th>device</th><th>table</th><th>key</th><th>column</th>"
						   "<th>origin's value</th><th>device's value</th><th>at</th><th>what to do</th></tr>");
	json_array_foreach(json_object_get(j, "conflicts"), i, e)
	{
		const char *id = Str(e, "id", t3, sizeof(t3));
		static const char *const cells[] = {"id", "device", "table", "pk", "column", "origin_value", "device_value", "at", NULL};

		appendStringInfoString(&b, "<tr class=\"red\">");
		Cells(&b, e, cells);
		appendStringInfo(&b, "<td>Decide: <code>SELECT ofs.resolve_conflict(%s, 'origin');</code> or"
						 " <code>SELECT ofs.resolve_conflict(%s, 'device');</code></td></tr>", id, id);
	}
	appendStringInfoString(&b, "</table><p class=\"muted\">Figures from <code>ofs.stats</code>, <code>ofs.devices</code>,"
						   " <code>ofs.dead_letters</code> and <code>ofs.conflicts</code>; counters for Prometheus at"
						   " <code>/metrics</code>.</p></body></html>\n");
	json_decref(j);
	*status = 200;
	answer = Malloced(&b);
	pfree(b.data);
	return answer;
}

/* ---- the protocol ---- */

static int
Request(struct lws *wsi, HttpReq *req, const char *path)
{
	int			status = 200;
	char	   *body;
	char		tokbuf[MAX_TOKEN + 2];

	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
		return Respond(wsi, req, 405, "text/plain", Text("only GET is served here\n"), "allow:", "GET");
	if (strcmp(path, "/metrics") == 0)
	{
		body = Metrics(&status);
		return Respond(wsi, req, status, "text/plain; version=0.0.4; charset=utf-8", body, NULL, NULL);
	}
	if (strcmp(path, "/status") == 0)
	{
		if (!TokenOk(Token(wsi, tokbuf, sizeof(tokbuf))))
			return Respond(wsi, req, 401, "text/plain",
						   Text("a status token is needed: SELECT ofs.create_status_token('name'), then"
								" Authorization: Bearer <token> or /status?token=<token>\n"),
						   "www-authenticate:", "Bearer realm=\"ofs\"");
		body = Status(&status);
		return Respond(wsi, req, status, status == 200 ? "text/html; charset=utf-8" : "text/plain", body, NULL, NULL);
	}
	return Respond(wsi, req, 404, "text/plain", Text("not found: this server has /metrics and /status\n"), NULL, NULL);
}

static int
HttpCallback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	HttpReq    *req = (HttpReq *) user;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			{
				MemoryContext old = MemoryContextSwitchTo(WorkerMessageContext);
				int			rc = Request(wsi, req, in ? (const char *) in : "");

				MemoryContextSwitchTo(old);
				MemoryContextReset(WorkerMessageContext);
				return rc;
			}
		case LWS_CALLBACK_HTTP_BODY:
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			/* A body is never read (only GET is served, answered at once): the connection closes after the answer. */
			return 0;
		case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
			/* No upgrade (WebSocket, h2c) on this port: plain HTTP/1.1 requests only. */
			if (lws_hdr_total_length(wsi, WSI_TOKEN_UPGRADE) > 0)
				return -1;
			return 0;
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
			/* an upgrade is refused before it is made: the connection closes */
			return -1;
		case LWS_CALLBACK_WSI_CREATE:
			http_open++;
			break;
		case LWS_CALLBACK_WSI_DESTROY:
			http_open--;
			if (req)
			{
				free(req->body);
				req->body = NULL;
			}
			break;
		case LWS_CALLBACK_HTTP_WRITEABLE:
			{
				size_t		n;
				unsigned char *out;
				bool		final;

				/* Called again only once what was written has left: the connection closes then. */
				if (req == NULL || req->done || req->body == NULL)
					return -1;
				n = Min(req->len - req->sent, (size_t) CHUNK);
				final = req->sent + n == req->len;
				out = malloc(LWS_PRE + n + 1);
				if (out == NULL)
					return -1;
				memcpy(out + LWS_PRE, req->body + req->sent, n);
				if (lws_write(wsi, out + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int) n)
				{
					free(out);
					return -1;
				}
				free(out);
				req->sent += n;
				if (!final)
				{
					lws_callback_on_writable(wsi);
					return 0;
				}
				free(req->body);
				req->body = NULL;
				/* One request per connection: nothing pipelined behind it is read. */
				req->done = true;
				lws_callback_on_writable(wsi);
				return 0;
			}
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
			if (req)
			{
				free(req->body);
				req->body = NULL;
			}
			break;
		default:
			break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols http_protocols[] = {
	{"ofs-http", HttpCallback, sizeof(HttpReq), 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* HttpCreateVhost makes the vhost of the HTTP port's connections. */
struct lws_vhost *
HttpCreateVhost(struct lws_context *ctx)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	/*
	 * Not CONTEXT_PORT_NO_LISTEN_SERVER, the devices' vhost's "port":
	 * libwebsockets picks a request's vhost again by that, and would give
	 * HTTP requests to the devices' protocol.
	 */
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = http_protocols;
	info.vhost_name = "ofs-http";
	info.timeout_secs = 10;
	/* No keep-alive beyond a short while: a scraper reconnects cheaply. */
	info.keepalive_timeout = 5;
	return lws_create_vhost(ctx, &info);
}

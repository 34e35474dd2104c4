/*
 * protocol.c: the messages of the sync protocol (docs/PROTOCOL.md).
 *
 * A device's message is parsed with jansson and checked field by field;
 * then the extension's SQL function that does the work is called with the
 * fields as text parameters (sql.c).  Nothing a device sends is ever put
 * into SQL text.  Answers that are mostly a SQL function's JSON result are
 * spliced rather than parsed again: {"type":..,"id":..} followed by the
 * result's fields.
 *
 * This file includes jansson, so it must not include utils/builtins.h,
 * whose json_object would clash with jansson's.  The clash is also at run
 * time: the postgres executable exports a json_object of its own, which the
 * dynamic linker prefers to jansson's, so new objects are made with
 * NewObject (json_pack calls jansson's own json_object internally).
 *
 * A session keeps only the authority hello gave it: the token's hash and
 * the role.  Every request checks, in its own transaction and after its
 * work, that they still hold (sql.c, SqlCheckAuthority), so a request that
 * could have seen a replaced token or a new role is rolled back and the
 * connection closed; commits that change devices also close older
 * sessions at once (fanout.c).  Cursors are sealed on the way
 * out and opened on the way in (cursor.c).
 */
#include "postgres.h"

#include <jansson.h>

#include "lib/stringinfo.h"

#include "ofs.h"
#include "worker.h"
#include "message.h"
#include "shmem.h"
#include "hlc.h"

#define OFS_PROTOCOL_VERSION 1

static json_t *
NewObject(void)
{
	return json_pack("{}");
}

/* Reply sends {"type": type, "id": id, ...fields of body}. */
static void
Reply(Session *s, const char *type, json_t *id, const char *body)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"type\":\"%s\"", type);
	if (id)
	{
		char	   *idtext = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);

		if (idtext)
		{
			appendStringInfo(&buf, ",\"id\":%s", idtext);
			free(idtext);
		}
	}
	if (body)
	{
		const char *p = body;

		while (*p == ' ')
			p++;
		if (*p == '{')
			p++;
		while (*p == ' ')
			p++;
		if (*p != '}' && *p != '\0')
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, p);
	}
	else
		appendStringInfoChar(&buf, '}');
	SessionSend(s, buf.data, buf.len);
	pfree(buf.data);
}

/* ReplyJson sends a jansson object, adding type and id. */
static void
ReplyJson(Session *s, const char *type, json_t *id, json_t *obj)
{
	char	   *text;

	json_object_set_new(obj, "type", json_string(type));
	if (id)
		json_object_set(obj, "id", id);
	text = json_dumps(obj, JSON_COMPACT);
	if (text)
	{
		SessionSend(s, text, strlen(text));
		free(text);
	}
}

void
ProtocolSendError(Session *s, const void *idp, const char *code, const char *message,
				  const char *sqlstate, bool retry)
{
	json_t	   *id = (json_t *) idp;
	json_t	   *obj = NewObject();

	json_object_set_new(obj, "code", json_string(code));
	json_object_set_new(obj, "message", json_string(message ? message : code));
	if (sqlstate)
		json_object_set_new(obj, "sqlstate", json_string(sqlstate));
	json_object_set_new(obj, "retry", json_boolean(retry));
	ReplyJson(s, "error", id, obj);
	json_decref(obj);
	OfsMetricError(code);
	s->errors++;
	/* A connection that has not said hello gets a few errors, not a stream. */
	if (s->state == SESSION_AWAIT_HELLO && s->errors >= OFS_UNAUTHENTICATED_ERRORS)
		SessionClose(s, 4001, "too many errors before hello");
}

/*
 * Revoked tells a device that its authority is gone and closes the
 * connection: the requests of a session never outlive its credential.
 */
void
ProtocolRevoked(Session *s, const char *message)
{
	ProtocolSendError(s, NULL, "revoked",
					  message ? message : "the device's token was replaced, revoked or expired",
					  "28000", false);
	SessionClose(s, 4003, "device revoked");
}

/* CheckSession is the after-hook of a session's requests (sql.c). */
static void
CheckSession(void *arg, SqlResult *res)
{
	Session    *s = (Session *) arg;

	SqlCheckAuthority(s->device, s->token_sha256, s->role, &s->role_oid, &s->expires_ms);
}

/* SessionSql runs a request of an authenticated session, checked. */
static void
SessionSql(Session *s, const char *sql, int nargs, const char *const *args, SqlResult *res)
{
	WorkerSqlTx(sql, nargs, args, NULL, CheckSession, s, res);
}

/* SqlError answers a failed SQL call, naming the protocol's code for it. */
static void
SqlError(Session *s, json_t *id, SqlResult *res)
{
	const char *code = "server_error";
	char	   *message = res->message;

	if (s->state == SESSION_READY && strcmp(res->sqlstate, "28000") == 0)
	{
		ProtocolRevoked(s, res->message);
		return;
	}

	if (strcmp(res->sqlstate, "28000") == 0)
		code = "unauthorized";
	else if (strncmp(res->sqlstate, "42601", 5) == 0 || strcmp(res->sqlstate, "42703") == 0 ||
			 strcmp(res->sqlstate, "22P02") == 0 || strcmp(res->sqlstate, "54000") == 0 ||
			 strcmp(res->sqlstate, "42883") == 0 || strcmp(res->sqlstate, "42804") == 0 ||
			 strcmp(res->sqlstate, "22003") == 0 || strcmp(res->sqlstate, "22007") == 0 ||
			 strcmp(res->sqlstate, "22008") == 0)
		code = "invalid_filter";
	else if (strcmp(res->sqlstate, "42P01") == 0 || strcmp(res->sqlstate, "42704") == 0)
		code = "not_found";
	else if (strcmp(res->sqlstate, "22023") == 0)
		code = "invalid_message";
	else if (strcmp(res->sqlstate, "OF011") == 0)
		code = "cursor_too_old";
	if (res->detail && strcmp(code, "server_error") == 0)
		message = psprintf("%s (%s)", res->message, res->detail);
	if (strcmp(code, "server_error") == 0)
		OfsRecordError(message);
	ProtocolSendError(s, id, code, message, res->sqlstate, res->retry);
}

/* The credential a hello presents, checked with its answer. */
typedef struct HelloCheck
{
	char		token_sha256[65];
	uint32_t	role_oid;
	int64_t		expires_ms;
} HelloCheck;

static void
CheckHello(void *arg, SqlResult *res)
{
	HelloCheck *h = (HelloCheck *) arg;

	if (res->nvalues == 3)
		SqlCheckAuthority(res->values[1], h->token_sha256, res->values[2], &h->role_oid, &h->expires_ms);
}

static void
HandleHello(Session *s, Message *m, const char *text)
{
	json_t	   *id = m->id;
	const char *args[2];
	SqlResult	res;
	json_t	   *welcome;
	json_t	   *limits;
	char	   *substext = NULL;
	HelloCheck	check;

	if (!SqlTokenSha256(m->token, check.token_sha256))
	{
		ProtocolSendError(s, id, "server_error", "could not hash the token", NULL, true);
		return;
	}
	if (m->subscriptions)
		substext = json_dumps(m->subscriptions, JSON_COMPACT);
	args[0] = m->token;
	args[1] = substext;
	check.expires_ms = 0;
	check.role_oid = 0;
	/* 1.1 keeps its internal functions in ofs_internal; 1.0 in ofs. */
	WorkerSqlTx(ofs_sql_version >= 101
				? "SELECT h::text, h->>'device', h->>'role' FROM ofs_internal.hello($1, $2::jsonb) h"
				: "SELECT h::text, h->>'device', h->>'role' FROM ofs.hello($1, $2::jsonb) h",
				2, args, NULL, CheckHello, &check, &res);
	free(substext);
	if (!res.ok && strcmp(res.sqlstate, "28000") == 0)
	{
		ProtocolSendError(s, id, "unauthorized", res.message, res.sqlstate, false);
		SessionClose(s, 4001, "unauthorized");
		SqlResultFree(&res);
		return;
	}
	if (!res.ok)
	{
		SqlError(s, id, &res);
		SqlResultFree(&res);
		return;
	}
	welcome = res.nvalues == 3 ? json_loads(res.values[0], 0, NULL) : NULL;
	if (welcome == NULL || res.values[1] == NULL || res.values[2] == NULL)
	{
		ProtocolSendError(s, id, "server_error", "hello returned no device", NULL, false);
		json_decref(welcome);
		SqlResultFree(&res);
		return;
	}
	if (s->device == NULL)
	{
		OfsCount(OFS_STAT_CONNECTED, 1);
		OfsCount(OFS_STAT_SESSIONS, 1);
	}
	/* A second hello authenticates again: the session takes its authority. */
	SessionSetString(&s->device, res.values[1]);
	SessionSetString(&s->role, res.values[2]);
	memcpy(s->token_sha256, check.token_sha256, sizeof(s->token_sha256));
	s->role_oid = check.role_oid;
	s->expires_ms = check.expires_ms;
	s->state = SESSION_READY;
	SessionSetLive(s, false);
	limits = NewObject();
	json_object_set_new(limits, "max_message_bytes", json_integer(ofs_max_message_bytes));
	json_object_set_new(limits, "max_batch", json_integer(OFS_MAX_BATCH));
	json_object_set_new(limits, "max_rows", json_integer(OFS_MAX_ROWS));
	json_object_set_new(limits, "max_messages_per_second", json_integer(ofs_max_messages_per_second));
	json_object_set_new(limits, "max_shapes", json_integer(OFS_MAX_SHAPES));
	json_object_set_new(welcome, "limits", limits);
	json_object_set_new(welcome, "protocol", json_integer(OFS_PROTOCOL_VERSION));
	ReplyJson(s, "welcome", id, welcome);
	json_decref(welcome);
	SqlResultFree(&res);
}

static void
HandleSubscribe(Session *s, Message *m, const char *text)
{
	json_t	   *id = m->id;
	bool		subscribe = m->type == MSG_SUBSCRIBE;
	const char *args[3];
	SqlResult	res;

	args[0] = s->device;
	args[1] = m->table;
	args[2] = m->filter;
	if (subscribe)
	{
		/* Each shape costs every pull of the device: there are at most so many. */
		SessionSql(s, "SELECT coalesce(sum(cardinality(s.filters)), 0) FROM ofs.device_shape s WHERE s.device = $1",
				   1, args, &res);
		if (res.ok && res.nvalues == 1 && atoi(res.values[0]) >= OFS_MAX_SHAPES)
		{
			char		message[96];

			snprintf(message, sizeof(message), "a device may have at most %d shapes; unsubscribe some first",
					 OFS_MAX_SHAPES);
			SqlResultFree(&res);
			ProtocolSendError(s, id, "invalid_message", message, "54000", false);
			return;
		}
		if (!res.ok)
		{
			SqlError(s, id, &res);
			SqlResultFree(&res);
			return;
		}
		SqlResultFree(&res);
	}
	SessionSql(s, subscribe ? "SELECT ofs.subscribe($1, $2, $3)::text"
			   : "SELECT ofs.unsubscribe($1, $2, $3)::text", 3, args, &res);
	if (res.ok)
	{
		Reply(s, subscribe ? "subscribed" : "unsubscribed", id, res.values[0]);
		/* A live device gets the new shape's rows at once. */
		if (s->live)
		{
			s->live_pending = true;
			WorkerScheduleLive();
		}
	}
	else
		SqlError(s, id, &res);
	SqlResultFree(&res);
}

/*
 * HandlePush hands the mutations to ofs.apply_batch as the device wrote
 * them: the message's own text goes to PostgreSQL's JSON parser, so a
 * numeric value arrives digit for digit (jansson holds numbers as doubles
 * and 64-bit integers, and is used here only to check the message's shape).
 */
static void
HandlePush(Session *s, Message *m, const char *text)
{
	json_t	   *id = m->id;
	const char *args[2];
	SqlResult	res;
	int64_t		started = WorkerNowUs();

	args[0] = s->device;
	args[1] = text;
	/* hlc: the origin's clock after the batch, which the device moves its own past. */
	SessionSql(s, "SELECT jsonb_build_object('hlc', ofs.hlc_now(), 'results', coalesce(jsonb_agg("
			   "         jsonb_build_object('operation_id', r.operation_id, 'status', r.status)"
			   "         || jsonb_strip_nulls(jsonb_build_object('sqlstate', r.sqlstate, 'message', r.message))"
			   "         || CASE WHEN r.hint IS NULL THEN '{}' ELSE jsonb_build_object('hint', r.hint) END"
			   "         ORDER BY r.ord), '[]'))::text,"
			   "       count(*) FILTER (WHERE r.status = 'applied'),"
			   "       count(*) FILTER (WHERE r.status = 'duplicate'),"
			   "       count(*) FILTER (WHERE r.status = 'rejected'),"
			   "       count(*) FILTER (WHERE r.status = 'conflict')"
			   "  FROM ofs.apply_batch($1, $2::jsonb -> 'mutations')"
			   "       WITH ORDINALITY AS r(operation_id, status, sqlstate, message, hint, ord)",
			   2, args, &res);
	if (res.ok && res.nvalues == 5)
	{
		Reply(s, "pushed", id, res.values[0]);
		OfsCount(OFS_STAT_APPLIED, atoll(res.values[1]));
		OfsCount(OFS_STAT_DUPLICATES, atoll(res.values[2]));
		OfsCount(OFS_STAT_REJECTED, atoll(res.values[3]));
		OfsCount(OFS_STAT_CONFLICTS, atoll(res.values[4]));
	}
	else if (res.ok)
		ProtocolSendError(s, id, "server_error", "apply_batch returned nothing", NULL, true);
	else
		SqlError(s, id, &res);
	SqlResultFree(&res);
	OfsMetricObserve(OFS_HIST_PUSH, (WorkerNowUs() - started) / 1e6);
}

/*
 * ReplyChanges sends a "changes" answer: the SQL's result without its
 * cursor (body), with the cursor sealed for the device, whether the device
 * is up to date once it has applied it (nothing more waits), and the
 * origin's clock, read after the page (so at least every version in it).
 */
bool
ProtocolReplyChanges(Session *s, void *idp, const char *cursor, const char *body, bool more)
{
	json_t	   *id = (json_t *) idp;
	char	   *sealed = CursorSeal(s->device, cursor);
	json_t	   *c;
	char	   *ctext;
	StringInfoData buf;

	if (cursor != NULL && sealed == NULL)
	{
		ProtocolSendError(s, id, "server_error", "could not seal the cursor", NULL, true);
		return false;
	}
	c = sealed ? json_string(sealed) : json_null();
	ctext = json_dumps(c, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(c);
	free(sealed);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"cursor\":%s,\"up_to_date\":%s,\"hlc\":" INT64_FORMAT,
					 ctext ? ctext : "null", more ? "false" : "true", HlcCurrent());
	free(ctext);
	while (*body == ' ')
		body++;
	if (*body == '{')
		body++;
	while (*body == ' ')
		body++;
	if (*body != '}' && *body != '\0')
		appendStringInfoChar(&buf, ',');
	appendStringInfoString(&buf, body);
	Reply(s, "changes", id, buf.data);
	pfree(buf.data);
	return true;
}

/*
 * OpenCursor reads a cursor the device sent: *plain is set for an unsealed
 * cursor while cursors are sealed (honoured only if it is the one last
 * sent).  A cursor that does not open is none (cursor.c).
 */
static char *
OpenCursor(Session *s, const char *text, bool *plain)
{
	char	   *cursor = NULL;
	CursorVerdict v = CursorOpen(s->device, text, &cursor);

	*plain = (v == CURSOR_PLAIN && CursorSealing());
	/* Logged once per connection: a device must not fill the log. */
	if (v == CURSOR_FORGED && !s->cursor_logged && (s->cursor_logged = true))
		ereport(LOG,
				(errmsg("ofs sync worker: device \"%s\" sent a cursor this origin did not give it; it starts afresh",
						s->device)));
	return cursor;
}

/*
 * A page is bounded by bytes as well as rows.  A pull whose answer would be
 * larger than OFS_MAX_PAGE_BYTES is rolled back (nothing of it is recorded
 * as sent) and made again with fewer rows; a single row larger than that
 * goes alone, in a message of up to OFS_MAX_MESSAGE_OUT bytes.
 */

typedef struct PageCheck
{
	Session    *s;
	size_t		bytes;			/* the page's size, when too large */
	int			rows;
} PageCheck;

static void
CheckPage(void *arg, SqlResult *res)
{
	PageCheck  *pc = (PageCheck *) arg;
	size_t		bytes = res->nvalues == 4 && res->values[0] ? strlen(res->values[0]) : 0;
	int			rows = res->nvalues == 4 && res->values[3] ? atoi(res->values[3]) : 0;

	CheckSession(pc->s, res);
	if ((bytes > OFS_MAX_PAGE_BYTES && rows > 1) || bytes > OFS_MAX_MESSAGE_OUT)
	{
		pc->bytes = bytes;
		pc->rows = rows;
		ereport(ERROR,
				(errcode(MAKE_SQLSTATE('O', 'F', '0', '3', '1')),
				 errmsg("a page of %d rows has %zu bytes, more than a page may have", rows, bytes)));
	}
}

/* ProtocolPageRows: how many rows to ask for after a page of rows had bytes. */
int
ProtocolPageRows(int rows, size_t bytes)
{
	double		fit = (double) rows * OFS_MAX_PAGE_BYTES / (double) Max(bytes, 1) * 0.8;

	return (int) Max(1, Min(fit, rows - 1));
}

/*
 * Pull answers a pull (or the first page of live) with the pull engine, and keeps
 * the cursor and whether more waits for the live stream.
 */
static void
Pull(Session *s, json_t *id, const char *sent, int max_rows, const char *confirmed)
{
	SqlResult	res;
	char		maxtext[16];
	bool		plain;
	char	   *cursor = OpenCursor(s, sent, &plain);
	PageCheck	pc = {s, 0, 0};
	int			rows = Min(max_rows, s->page_rows > 0 ? s->page_rows : OFS_MAX_ROWS);
	int64_t		started = WorkerNowUs();

	for (;;)
	{
		if (ofs_sql_version >= 101)
			WorkerPullTx(s->device, cursor, rows, confirmed, plain, CheckPage, &pc, &res);
		else
		{
			/* The SQL of 1.0 has its own ofs.pull, for its own tables. */
			const char *args[4] = {s->device, cursor, maxtext, confirmed};

			snprintf(maxtext, sizeof(maxtext), "%d", rows);
			WorkerSqlTx("SELECT (p - 'cursor')::text, p->>'cursor', (p->>'more')::boolean, jsonb_array_length(p->'changes')"
						"  FROM ofs.pull($1, $2, $3::int, $4) p", 4, args, NULL, CheckPage, &pc, &res);
		}
		if (res.ok || strcmp(res.sqlstate, OFS_PAGE_TOO_LARGE) != 0 || pc.rows <= 1)
			break;
		/* Too large: again with the rows that fit, remembered for the next pages. */
		rows = ProtocolPageRows(pc.rows, pc.bytes);
		s->page_rows = rows;
		SqlResultFree(&res);
	}
	free(cursor);
	if (!res.ok && strcmp(res.sqlstate, OFS_PAGE_TOO_LARGE) == 0)
	{
		char		message[160];

		snprintf(message, sizeof(message),
				 "the next row has %zu bytes as JSON; the origin sends rows of up to %d bytes",
				 pc.bytes, OFS_MAX_MESSAGE_OUT);
		OfsRecordError(message);
		ProtocolSendError(s, id, "server_error", message, OFS_PAGE_TOO_LARGE, false);
	}
	else if (!res.ok)
		SqlError(s, id, &res);
	else if (res.nvalues != 4)
		ProtocolSendError(s, id, "server_error", "pull returned nothing", NULL, true);
	else if (ProtocolReplyChanges(s, id, res.values[1], res.values[0], strcmp(res.values[2], "t") == 0))
	{
		/* Small pages let the next ones grow back. */
		if (s->page_rows > 0 && strlen(res.values[0]) < OFS_MAX_PAGE_BYTES / 4)
			s->page_rows = s->page_rows * 2 >= OFS_MAX_ROWS ? 0 : s->page_rows * 2;
		SessionSetString(&s->cursor, res.values[1]);
		s->live_pending = strcmp(res.values[2], "t") == 0;
		OfsCount(OFS_STAT_ROWS_SENT, atoi(res.values[3]));
	}
	SqlResultFree(&res);
	OfsMetricObserve(OFS_HIST_PULL, (WorkerNowUs() - started) / 1e6);
}

/* SetAcked keeps the cursor a device confirmed, opened (none if it does not open). */
static void
SetAcked(Session *s, const char *sent)
{
	bool		plain;
	char	   *cursor = OpenCursor(s, sent, &plain);

	free(s->acked);
	s->acked = plain ? NULL : cursor;
	if (plain)
		free(cursor);
}

static void
HandlePull(Session *s, Message *m, const char *text)
{
	bool		live = m->type == MSG_LIVE;

	if (m->live_off)
	{
		SessionSetLive(s, false);
		Reply(s, "live", m->id, "{\"on\": false}");
		return;
	}
	if (live)
	{
		SetAcked(s, m->cursor);
		SessionSetLive(s, true);
	}
	else if (m->has_confirmed && m->confirmed == NULL)
	{
		/* Asking ahead with nothing stored yet: this pull confirms nothing. */
		Pull(s, m->id, m->cursor, m->max_rows, "{\"p\": 0}");
		return;
	}
	else if (m->has_confirmed)
		SetAcked(s, m->confirmed);
	Pull(s, m->id, m->cursor, m->max_rows, live ? NULL : s->acked);
	if (live && s->live_pending)
		WorkerScheduleLive();
}

static void
HandleAck(Session *s, Message *m, const char *text)
{
	SetAcked(s, m->cursor);
}

static void
HandleSchema(Session *s, Message *m, const char *text)
{
	SqlResult	res;
	const char *args[2] = {s->device, m->all_tables ? "true" : "false"};

	if (ofs_sql_version < 101)
	{
		if (m->all_tables)
		{
			ProtocolSendError(s, m->id, "server_error",
							  "schema with \"all\" needs the origin's ofs extension at 1.1 (ALTER EXTENSION ofs UPDATE)",
							  "0A000", true);
			return;
		}
		SessionSql(s, "SELECT ofs.device_schema($1)::text", 1, args, &res);
	}
	else
		SessionSql(s, "SELECT ofs.device_schema($1, $2::boolean)::text", 2, args, &res);
	if (res.ok)
		Reply(s, "schema", m->id, res.values[0]);
	else
		SqlError(s, m->id, &res);
	SqlResultFree(&res);
}

/*
 * HandleRejections answers the device's own dead letters and conflicts
 * (ofs.device_rejections), after clearing what it asks to clear.
 */
static void
HandleRejections(Session *s, Message *m, const char *text)
{
	SqlResult	res;
	char	   *clear = m->clear ? json_dumps(m->clear, JSON_COMPACT) : NULL;
	const char *args[2] = {s->device, clear};

	if (ofs_sql_version < 101)
		ProtocolSendError(s, m->id, "server_error",
						  "rejections need the origin's ofs extension at 1.1 (ALTER EXTENSION ofs UPDATE)",
						  "0A000", true);
	else
	{
		SessionSql(s, "SELECT ofs.device_rejections($1, $2::jsonb)::text", 2, args, &res);
		if (res.ok)
			Reply(s, "rejections", m->id, res.values[0]);
		else
			SqlError(s, m->id, &res);
		SqlResultFree(&res);
	}
	free(clear);
}

/* The handlers of the message types (message.h), all but hello for devices. */
typedef void (*Handler) (Session *s, Message *m, const char *text);

static const Handler handlers[MSG_TYPE_COUNT] = {
	[MSG_HELLO] = HandleHello,
	[MSG_SCHEMA] = HandleSchema,
	[MSG_SUBSCRIBE] = HandleSubscribe,
	[MSG_UNSUBSCRIBE] = HandleSubscribe,
	[MSG_PUSH] = HandlePush,
	[MSG_PULL] = HandlePull,
	[MSG_LIVE] = HandlePull,
	[MSG_ACK] = HandleAck,
	[MSG_REJECTIONS] = HandleRejections,
};

/* ProtocolHandle answers one message of a device. */
void
ProtocolHandle(Session *s, const char *text, size_t len)
{
	Message		m;

	MessageParse(text, len, OFS_MAX_ROWS, OFS_MAX_BATCH, &m);
	OfsMetricMessage(m.typed ? (int) m.type : (int) MSG_TYPE_COUNT);
	if (m.typed && m.type != MSG_HELLO && s->state != SESSION_READY)
	{
		/* Whatever else it is, a request before hello ends the connection. */
		ProtocolSendError(s, m.id, "unauthenticated", "the first message must be hello", NULL, false);
		SessionClose(s, 4001, "not authenticated");
	}
	else if (m.error_code)
		ProtocolSendError(s, m.id, m.error_code, m.error, m.error_sqlstate, false);
	else if (m.type != MSG_HELLO && s->expires_ms > 0 && WorkerNowMs() >= s->expires_ms)
		ProtocolRevoked(s, "the device's token has expired");
	else
		handlers[m.type] (s, &m, text);
	MessageFree(&m);
}


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
 */
#include "postgres.h"

#include <jansson.h>

#include "lib/stringinfo.h"

#include "ofs.h"
#include "worker.h"

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
	s->errors++;
}

/* SqlError answers a failed SQL call, naming the protocol's code for it. */
static void
SqlError(Session *s, json_t *id, SqlResult *res)
{
	const char *code = "server_error";
	char	   *message = res->message;

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
	if (res->detail && strcmp(code, "server_error") == 0)
		message = psprintf("%s (%s)", res->message, res->detail);
	if (strcmp(code, "server_error") == 0)
		OfsRecordError(message);
	ProtocolSendError(s, id, code, message, res->sqlstate, res->retry);
}

static const char *
StringField(json_t *msg, const char *name)
{
	json_t	   *v = json_object_get(msg, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* FieldIs: the field is absent/null (when allowed) or of the given type. */
static bool
FieldOk(json_t *msg, const char *name, json_type type, bool optional)
{
	json_t	   *v = json_object_get(msg, name);

	if (v == NULL || json_is_null(v))
		return optional;
	return json_typeof(v) == type;
}

static void
BadField(Session *s, json_t *id, const char *type, const char *name, const char *what)
{
	ProtocolSendError(s, id, "invalid_message",
					  psprintf("\"%s\" needs field \"%s\" as %s", type, name, what), NULL, false);
}

static void
HandleHello(Session *s, json_t *id, json_t *msg)
{
	const char *args[2];
	SqlResult	res;
	json_t	   *subs = json_object_get(msg, "subscriptions");
	json_t	   *welcome;
	json_t	   *limits;
	char	   *substext = NULL;

	if (!FieldOk(msg, "token", JSON_STRING, false))
	{
		BadField(s, id, "hello", "token", "a string");
		return;
	}
	if (!FieldOk(msg, "subscriptions", JSON_ARRAY, true))
	{
		BadField(s, id, "hello", "subscriptions", "an array of {table, filter}");
		return;
	}
	if (subs && json_is_array(subs))
		substext = json_dumps(subs, JSON_COMPACT);
	args[0] = StringField(msg, "token");
	args[1] = substext;
	WorkerSql("SELECT ofs.hello($1, $2::jsonb)::text", 2, args, &res);
	free(substext);
	if (!res.ok)
	{
		SqlError(s, id, &res);
		if (strcmp(res.sqlstate, "28000") == 0)
			SessionClose(s, 4001, "unauthorized");
		SqlResultFree(&res);
		return;
	}
	welcome = json_loads(res.values[0], 0, NULL);
	if (welcome == NULL || !json_is_string(json_object_get(welcome, "device")))
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
	SessionSetString(&s->device, json_string_value(json_object_get(welcome, "device")));
	s->state = SESSION_READY;
	s->live = false;
	limits = NewObject();
	json_object_set_new(limits, "max_message_bytes", json_integer(ofs_max_message_bytes));
	json_object_set_new(limits, "max_batch", json_integer(OFS_MAX_BATCH));
	json_object_set_new(limits, "max_rows", json_integer(OFS_MAX_ROWS));
	json_object_set_new(limits, "max_messages_per_second", json_integer(ofs_max_messages_per_second));
	json_object_set_new(welcome, "limits", limits);
	json_object_set_new(welcome, "protocol", json_integer(OFS_PROTOCOL_VERSION));
	ReplyJson(s, "welcome", id, welcome);
	json_decref(welcome);
	SqlResultFree(&res);
}

static void
HandleSubscribe(Session *s, json_t *id, json_t *msg, bool subscribe)
{
	const char *type = subscribe ? "subscribe" : "unsubscribe";
	const char *args[3];
	SqlResult	res;

	if (!FieldOk(msg, "table", JSON_STRING, false))
	{
		BadField(s, id, type, "table", "a string");
		return;
	}
	if (!FieldOk(msg, "filter", JSON_STRING, true))
	{
		BadField(s, id, type, "filter", "a string");
		return;
	}
	args[0] = s->device;
	args[1] = StringField(msg, "table");
	args[2] = StringField(msg, "filter");
	WorkerSql(subscribe ? "SELECT ofs.subscribe($1, $2, $3)::text"
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

static void
HandlePush(Session *s, json_t *id, json_t *msg)
{
	json_t	   *muts = json_object_get(msg, "mutations");
	const char *args[2];
	SqlResult	res;
	char	   *text;

	if (!json_is_array(muts))
	{
		BadField(s, id, "push", "mutations", "an array of mutations");
		return;
	}
	if (json_array_size(muts) > OFS_MAX_BATCH)
	{
		ProtocolSendError(s, id, "invalid_message",
						  psprintf("a push may hold at most %d mutations", OFS_MAX_BATCH), NULL, false);
		return;
	}
	text = json_dumps(muts, JSON_COMPACT);
	args[0] = s->device;
	args[1] = text;
	WorkerSql("SELECT jsonb_build_object('results', coalesce(jsonb_agg("
			  "         jsonb_build_object('operation_id', r.operation_id, 'status', r.status)"
			  "         || jsonb_strip_nulls(jsonb_build_object('sqlstate', r.sqlstate, 'message', r.message))"
			  "         || CASE WHEN r.hint IS NULL THEN '{}' ELSE jsonb_build_object('hint', r.hint) END"
			  "         ORDER BY r.ord), '[]'))::text,"
			  "       count(*) FILTER (WHERE r.status = 'applied'),"
			  "       count(*) FILTER (WHERE r.status = 'duplicate'),"
			  "       count(*) FILTER (WHERE r.status = 'rejected'),"
			  "       count(*) FILTER (WHERE r.status = 'conflict')"
			  "  FROM ofs.apply_batch($1, $2::jsonb) WITH ORDINALITY AS r(operation_id, status, sqlstate, message, hint, ord)",
			  2, args, &res);
	free(text);
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
}

/*
 * Pull answers a pull (or the first page of live) with ofs.pull, and keeps
 * the cursor and whether more waits for the live stream.
 */
static void
Pull(Session *s, json_t *id, const char *cursor, int max_rows, const char *confirmed)
{
	const char *args[4];
	char		maxtext[16];
	SqlResult	res;

	snprintf(maxtext, sizeof(maxtext), "%d", max_rows);
	args[0] = s->device;
	args[1] = cursor;
	args[2] = maxtext;
	args[3] = confirmed;
	WorkerSql("SELECT p::text, p->>'cursor', (p->>'more')::boolean, jsonb_array_length(p->'changes')"
			  "  FROM ofs.pull($1, $2, $3::int, $4) p", 4, args, &res);
	if (!res.ok)
		SqlError(s, id, &res);
	else if (res.nvalues != 4)
		ProtocolSendError(s, id, "server_error", "pull returned nothing", NULL, true);
	else
	{
		SessionSetString(&s->cursor, res.values[1]);
		s->live_pending = strcmp(res.values[2], "t") == 0;
		Reply(s, "changes", id, res.values[0]);
		OfsCount(OFS_STAT_ROWS_SENT, atoi(res.values[3]));
	}
	SqlResultFree(&res);
}

static void
HandlePull(Session *s, json_t *id, json_t *msg, bool live)
{
	const char *type = live ? "live" : "pull";
	json_t	   *max = json_object_get(msg, "max_rows");
	json_t	   *on = json_object_get(msg, "on");
	int			max_rows = OFS_MAX_ROWS;

	if (live && json_is_false(on))
	{
		s->live = false;
		Reply(s, "live", id, "{\"on\": false}");
		return;
	}
	if (!FieldOk(msg, "cursor", JSON_STRING, true))
	{
		BadField(s, id, type, "cursor", "a string or null");
		return;
	}
	if (max && !json_is_null(max))
	{
		if (!json_is_integer(max) || json_integer_value(max) < 1)
		{
			BadField(s, id, type, "max_rows", "a positive integer");
			return;
		}
		if (json_integer_value(max) < OFS_MAX_ROWS)
			max_rows = (int) json_integer_value(max);
	}
	if (live)
	{
		SessionSetString(&s->acked, StringField(msg, "cursor"));
		s->live = true;
	}
	Pull(s, id, StringField(msg, "cursor"), max_rows, live ? NULL : s->acked);
	if (live && s->live_pending)
		WorkerScheduleLive();
}

typedef struct LiveBatch
{
	Session   **list;
	int			n;
} LiveBatch;

/* LiveResult sends one device's share of a batch of live pulls. */
static void
LiveResult(void *arg, char **cols, int ncols)
{
	LiveBatch  *b = (LiveBatch *) arg;
	int			ord = ncols >= 2 && cols[0] ? atoi(cols[0]) : 0;
	Session    *s;
	json_t	   *res;
	json_t	   *changes;

	if (ord < 1 || ord > b->n || cols[1] == NULL)
		return;
	s = b->list[ord - 1];
	res = json_loads(cols[1], 0, NULL);
	if (res == NULL)
		return;
	if (json_is_string(json_object_get(res, "error")))
	{
		const char *state = json_string_value(json_object_get(res, "sqlstate"));

		OfsRecordError(json_string_value(json_object_get(res, "error")));
		if (state && strcmp(state, "28000") == 0)
		{
			ProtocolSendError(s, NULL, "revoked", json_string_value(json_object_get(res, "error")),
							  state, false);
			SessionClose(s, 4003, "device revoked");
		}
		s->live_pending = false;
		json_decref(res);
		return;
	}
	changes = json_object_get(res, "changes");
	SessionSetString(&s->cursor, json_string_value(json_object_get(res, "cursor")));
	s->live_pending = json_is_true(json_object_get(res, "more"));
	if (json_array_size(changes) > 0)
	{
		Reply(s, "changes", NULL, cols[1]);
		OfsCount(OFS_STAT_ROWS_SENT, (int64) json_array_size(changes));
	}
	json_decref(res);
}

/*
 * ProtocolLiveBatch pulls for many live devices in one call of
 * ofs.pull_live, which reads the feed and the rows once for all of them.
 */
void
ProtocolLiveBatch(Session **list, int n)
{
	json_t	   *devices = json_array();
	json_t	   *cursors = json_array();
	json_t	   *acked = json_array();
	const char *args[3];
	char	   *texts[3];
	SqlResult	res;
	LiveBatch	b = {list, n};

	for (int i = 0; i < n; i++)
	{
		json_array_append_new(devices, json_string(list[i]->device));
		json_array_append_new(cursors, list[i]->cursor ? json_string(list[i]->cursor) : json_null());
		json_array_append_new(acked, list[i]->acked ? json_string(list[i]->acked) : json_null());
		/* A device with nothing new is not asked again until the next commit. */
		list[i]->live_pending = false;
	}
	texts[0] = json_dumps(devices, JSON_COMPACT);
	texts[1] = json_dumps(cursors, JSON_COMPACT);
	texts[2] = json_dumps(acked, JSON_COMPACT);
	json_decref(devices);
	json_decref(cursors);
	json_decref(acked);
	for (int i = 0; i < 3; i++)
		args[i] = texts[i];
	WorkerSqlRows("SELECT ord, result::text FROM ofs.pull_live("
				  "ARRAY(SELECT jsonb_array_elements_text($1::jsonb)),"
				  "ARRAY(SELECT jsonb_array_elements_text($2::jsonb)),"
				  "ARRAY(SELECT jsonb_array_elements_text($3::jsonb)))",
				  3, args, LiveResult, &b, &res);
	if (!res.ok)
		OfsRecordError(res.message);
	SqlResultFree(&res);
	for (int i = 0; i < 3; i++)
		free(texts[i]);
}

/* ProtocolHandle answers one message of a device. */
void
ProtocolHandle(Session *s, const char *text, size_t len)
{
	json_error_t err;
	json_t	   *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	json_t	   *id;
	const char *type;

	if (msg == NULL || !json_is_object(msg))
	{
		ProtocolSendError(s, NULL, "invalid_json",
						  msg ? "a message must be a JSON object"
						  : psprintf("the message is not JSON: %s (at character %d)", err.text, err.position),
						  NULL, false);
		json_decref(msg);
		return;
	}
	id = json_object_get(msg, "id");
	if (id && !(json_is_integer(id) || (json_is_string(id) && json_string_length(id) <= 64)))
	{
		ProtocolSendError(s, NULL, "invalid_message", "\"id\" must be a number or a string of at most 64 characters",
						  NULL, false);
		json_decref(msg);
		return;
	}
	type = StringField(msg, "type");
	if (type == NULL)
		ProtocolSendError(s, id, "invalid_message", "a message needs a string \"type\"", NULL, false);
	else if (strcmp(type, "hello") == 0)
		HandleHello(s, id, msg);
	else if (s->state != SESSION_READY)
	{
		ProtocolSendError(s, id, "unauthenticated", "the first message must be hello", NULL, false);
		SessionClose(s, 4001, "not authenticated");
	}
	else if (strcmp(type, "schema") == 0)
	{
		SqlResult	res;
		const char *args[1] = {s->device};

		WorkerSql("SELECT ofs.device_schema($1)::text", 1, args, &res);
		if (res.ok)
			Reply(s, "schema", id, res.values[0]);
		else
			SqlError(s, id, &res);
		SqlResultFree(&res);
	}
	else if (strcmp(type, "subscribe") == 0)
		HandleSubscribe(s, id, msg, true);
	else if (strcmp(type, "unsubscribe") == 0)
		HandleSubscribe(s, id, msg, false);
	else if (strcmp(type, "push") == 0)
		HandlePush(s, id, msg);
	else if (strcmp(type, "pull") == 0)
		HandlePull(s, id, msg, false);
	else if (strcmp(type, "live") == 0)
		HandlePull(s, id, msg, true);
	else if (strcmp(type, "ack") == 0)
	{
		if (FieldOk(msg, "cursor", JSON_STRING, false))
			SessionSetString(&s->acked, StringField(msg, "cursor"));
		else
			BadField(s, id, "ack", "cursor", "a string");
	}
	else
		ProtocolSendError(s, id, "invalid_message", psprintf("unknown message type \"%.64s\"", type), NULL, false);
	json_decref(msg);
}

/*
 * ProtocolCheckDevices closes the connections of devices that were revoked
 * or whose token expired.
 */
void
ProtocolCheckDevices(void)
{
	json_t	   *names = json_array();
	char	   *text;
	const char *args[1];
	SqlResult	res;
	Session    *s;

	for (s = sessions; s; s = s->next)
		if (s->device && s->state == SESSION_READY)
			json_array_append_new(names, json_string(s->device));
	if (json_array_size(names) == 0)
	{
		json_decref(names);
		return;
	}
	text = json_dumps(names, JSON_COMPACT);
	json_decref(names);
	args[0] = text;
	WorkerSql("SELECT coalesce(jsonb_agg(d.device), '[]')::text FROM ofs.device d"
			  " WHERE d.device IN (SELECT jsonb_array_elements_text($1::jsonb))"
			  "   AND (d.revoked_at IS NOT NULL OR d.expires_at < now())", 1, args, &res);
	free(text);
	if (res.ok && res.nvalues == 1)
	{
		json_t	   *gone = json_loads(res.values[0], 0, NULL);
		size_t		i;
		json_t	   *v;

		json_array_foreach(gone, i, v)
		{
			for (s = sessions; s; s = s->next)
				if (s->device && s->state == SESSION_READY && strcmp(s->device, json_string_value(v)) == 0)
				{
					ProtocolSendError(s, NULL, "revoked",
									  psprintf("device \"%s\" was revoked or its token expired", s->device),
									  "28000", false);
					SessionClose(s, 4003, "device revoked");
				}
		}
		json_decref(gone);
	}
	else if (!res.ok)
		OfsRecordError(res.message);
	SqlResultFree(&res);
}

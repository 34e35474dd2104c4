/*
 * message.c: a device's message, parsed and checked before any SQL.
 *
 * Everything that can be said about a message without the origin's data is
 * said here: that it is a JSON object, its id, its type, and the presence
 * and types of the fields its type needs.  The texts of the refusals are
 * the protocol's (docs/PROTOCOL.md, error).  No PostgreSQL header is
 * included, so the fuzz target runs this very code on its own.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "message.h"

static const char *const type_names[MSG_TYPE_COUNT] = {
	[MSG_HELLO] = "hello",
	[MSG_SCHEMA] = "schema",
	[MSG_SUBSCRIBE] = "subscribe",
	[MSG_UNSUBSCRIBE] = "unsubscribe",
	[MSG_PUSH] = "push",
	[MSG_PULL] = "pull",
	[MSG_LIVE] = "live",
	[MSG_ACK] = "ack",
	[MSG_REJECTIONS] = "rejections",
};

const char *
MessageTypeName(int type)
{
	return type >= 0 && type < MSG_TYPE_COUNT ? type_names[type] : NULL;
}

/* Bounds a cursor's text only: its feed position lists in-progress xids. */
#define MAX_PLAIN_CURSOR (1024 * 1024)
/* Page numbers and versions stay far below where arithmetic could overflow. */
#define MAX_CURSOR_NUMBER ((json_int_t) 1 << 53)

static void
Refuse(Message *m, const char *code, const char *fmt, const char *a, const char *b, const char *c)
{
	m->error_code = code;
	snprintf(m->error, sizeof(m->error), fmt, a, b, c);
}

/* Field: the field is absent or null (when optional) or of the type. */
static bool
Field(Message *m, const char *name, json_type type, bool optional, const char *what)
{
	json_t	   *v = json_object_get(m->root, name);

	if ((v == NULL || json_is_null(v)) ? optional : json_typeof(v) == type)
		return true;
	Refuse(m, "invalid_message", "\"%s\" needs field \"%s\" as %s", m->type_name, name, what);
	return false;
}

static const char *
String(Message *m, const char *name)
{
	json_t	   *v = json_object_get(m->root, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * Parse parses the text.  A number too large for jansson (an integer beyond
 * 64 bits) does not make the message invalid: its shape is read with
 * integers as doubles, and the values that matter travel as the message's
 * own text (protocol.c, push).
 */
static json_t *
Parse(const char *text, size_t len, json_error_t *err)
{
	json_t	   *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, err);

	if (root == NULL && json_error_code(err) == json_error_numeric_overflow)
		root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, err);
	return root;
}

/* A mutation's group and its position, to sort. */
typedef struct GroupAt
{
	const char *name;
	size_t		at;
} GroupAt;

static int
GroupAtCompare(const void *a, const void *b)
{
	const GroupAt *x = a;
	const GroupAt *y = b;
	int			c = strcmp(x->name, y->name);

	return c != 0 ? c : (x->at > y->at) - (x->at < y->at);
}

/*
 * GroupsOk: every group is a string of 1 to 256 bytes and its mutations
 * follow each other (a group applies as one, so it arrives as one).
 * Sorted by name, then position, a group's positions must be consecutive.
 */
static bool
GroupsOk(Message *m)
{
	size_t		n = json_array_size(m->mutations);
	GroupAt    *g = n > 0 ? malloc(sizeof(GroupAt) * n) : NULL;
	size_t		ng = 0;
	bool		ok = true;

	if (n > 0 && g == NULL)
	{
		Refuse(m, "invalid_message", "out of memory%s%s%s", "", "", "");
		return false;
	}
	for (size_t i = 0; i < n && ok; i++)
	{
		json_t	   *mu = json_array_get(m->mutations, i);
		json_t	   *v = json_is_object(mu) ? json_object_get(mu, "group") : NULL;

		if (v == NULL || json_is_null(v))
			continue;
		if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 256)
		{
			Refuse(m, "invalid_message", "a mutation's \"group\" must be a string of 1 to 256 bytes%s%s%s", "", "", "");
			ok = false;
			break;
		}
		g[ng].name = json_string_value(v);
		g[ng].at = i;
		ng++;
	}
	if (ok && ng > 1)
	{
		qsort(g, ng, sizeof(GroupAt), GroupAtCompare);
		for (size_t k = 1; k < ng && ok; k++)
			if (strcmp(g[k].name, g[k - 1].name) == 0 && g[k].at != g[k - 1].at + 1)
			{
				Refuse(m, "invalid_message", "the mutations of a group must follow each other in the push%s%s%s", "", "", "");
				ok = false;
			}
	}
	free(g);
	return ok;
}

/* ClearOk: rejections' clear is {dead_letters?: [ids], conflicts?: [ids]} of integers. */
static bool
ClearOk(Message *m)
{
	const char *key;
	json_t	   *list;

	json_object_foreach(m->clear, key, list)
	{
		size_t		i;
		json_t	   *id;

		if ((strcmp(key, "dead_letters") != 0 && strcmp(key, "conflicts") != 0) || !json_is_array(list) ||
			json_array_size(list) > 1000)
		{
			Refuse(m, "invalid_message", "\"rejections\" needs \"clear\" as %s%s%s",
				   "{\"dead_letters\": [ids], \"conflicts\": [ids]} with at most 1000 ids each", "", "");
			return false;
		}
		json_array_foreach(list, i, id)
		{
			if (!json_is_integer(id) || json_integer_value(id) < 0)
			{
				Refuse(m, "invalid_message", "\"rejections\" needs \"clear\" ids as %s%s%s",
					   "non-negative integers", "", "");
				return false;
			}
		}
	}
	return true;
}

void
MessageParse(const char *text, size_t len, int max_rows, int max_batch, Message *m)
{
	json_error_t err;
	const char *type;
	int			t;

	memset(m, 0, sizeof(*m));
	m->type = MSG_TYPE_COUNT;
	m->root = Parse(text, len, &err);
	if (m->root == NULL)
	{
		char		pos[16];

		snprintf(pos, sizeof(pos), "%d", err.position);
		Refuse(m, "invalid_json", "the message is not JSON: %s (at character %s)%s", err.text, pos, "");
		return;
	}
	if (!json_is_object(m->root))
	{
		Refuse(m, "invalid_json", "a message must be a JSON object%s%s%s", "", "", "");
		return;
	}
	m->id = json_object_get(m->root, "id");
	if (m->id && json_is_real(m->id) && fabs(json_real_value(m->id)) < 9007199254740992.0 &&
		json_real_value(m->id) == (double) (json_int_t) json_real_value(m->id))
	{
		/* Read with integers as doubles (a number elsewhere was too large): the id is an integer again. */
		json_object_set_new(m->root, "id", json_integer((json_int_t) json_real_value(m->id)));
		m->id = json_object_get(m->root, "id");
	}
	if (m->id && !(json_is_number(m->id) || (json_is_string(m->id) && json_string_length(m->id) <= 64)))
	{
		m->id = NULL;
		Refuse(m, "invalid_message", "\"id\" must be a number or a string of at most 64 bytes%s%s%s", "", "", "");
		return;
	}
	type = String(m, "type");
	if (type == NULL)
	{
		Refuse(m, "invalid_message", "a message needs a string \"type\"%s%s%s", "", "", "");
		return;
	}
	m->typed = true;
	for (t = 0; t < MSG_TYPE_COUNT; t++)
		if (strcmp(type, type_names[t]) == 0)
			break;
	if (t == MSG_TYPE_COUNT)
	{
		char		shown[65];

		snprintf(shown, sizeof(shown), "%.64s", type);
		Refuse(m, "invalid_message", "unknown message type \"%s\"%s%s", shown, "", "");
		return;
	}
	m->type = (MessageType) t;
	m->type_name = type_names[t];
	m->max_rows = max_rows;

	switch (m->type)
	{
		case MSG_HELLO:
			if (!Field(m, "token", JSON_STRING, false, "a string") ||
				!Field(m, "subscriptions", JSON_ARRAY, true, "an array of {table, filter}"))
				return;
			m->token = String(m, "token");
			m->subscriptions = json_object_get(m->root, "subscriptions");
			if (json_is_null(m->subscriptions))
				m->subscriptions = NULL;
			if (m->subscriptions && json_array_size(m->subscriptions) > OFS_MAX_SHAPES)
			{
				char		limit[16];

				snprintf(limit, sizeof(limit), "%d", OFS_MAX_SHAPES);
				Refuse(m, "invalid_message", "a device may have at most %s shapes%s%s", limit, "", "");
				m->error_sqlstate = "54000";
				return;
			}
			break;
		case MSG_SUBSCRIBE:
		case MSG_UNSUBSCRIBE:
			if (!Field(m, "table", JSON_STRING, false, "a string") ||
				!Field(m, "filter", JSON_STRING, true, "a string"))
				return;
			m->table = String(m, "table");
			m->filter = String(m, "filter");
			break;
		case MSG_PUSH:
			m->mutations = json_object_get(m->root, "mutations");
			if (!json_is_array(m->mutations))
			{
				Refuse(m, "invalid_message", "\"%s\" needs field \"%s\" as %s", "push", "mutations", "an array of mutations");
				return;
			}
			if (json_array_size(m->mutations) > (size_t) max_batch)
			{
				char		limit[16];

				snprintf(limit, sizeof(limit), "%d", max_batch);
				Refuse(m, "invalid_message", "a push may hold at most %s mutations%s%s", limit, "", "");
				return;
			}
			if (!GroupsOk(m))
				return;
			break;
		case MSG_LIVE:
			if (json_is_false(json_object_get(m->root, "on")))
			{
				m->live_off = true;
				break;
			}
			/* FALLTHROUGH */
		case MSG_PULL:
			{
				json_t	   *max = json_object_get(m->root, "max_rows");

				if (!Field(m, "cursor", JSON_STRING, true, "a string or null"))
					return;
				if (max && !json_is_null(max))
				{
					if (!json_is_integer(max) || json_integer_value(max) < 1)
					{
						Refuse(m, "invalid_message", "\"%s\" needs field \"%s\" as %s", m->type_name, "max_rows",
							   "a positive integer");
						return;
					}
					if (json_integer_value(max) < max_rows)
						m->max_rows = (int) json_integer_value(max);
				}
				m->cursor = String(m, "cursor");
				/* A device that asks for the next page before storing this one says what it stored. */
				if (m->type == MSG_PULL && json_object_get(m->root, "confirmed"))
				{
					if (!Field(m, "confirmed", JSON_STRING, true, "a string or null"))
						return;
					m->has_confirmed = true;
					m->confirmed = String(m, "confirmed");
				}
			}
			break;
		case MSG_ACK:
			if (!Field(m, "cursor", JSON_STRING, false, "a string"))
				return;
			m->cursor = String(m, "cursor");
			break;
		case MSG_SCHEMA:
			{
				json_t	   *all = json_object_get(m->root, "all");

				if (all && !json_is_boolean(all) && !json_is_null(all))
				{
					Refuse(m, "invalid_message", "\"%s\" needs field \"%s\" as %s", "schema", "all", "a boolean");
					return;
				}
				m->all_tables = json_is_true(all);
			}
			break;
		case MSG_REJECTIONS:
			if (!Field(m, "clear", JSON_OBJECT, true, "an object of id lists"))
				return;
			m->clear = json_object_get(m->root, "clear");
			if (json_is_null(m->clear))
				m->clear = NULL;
			if (m->clear && !ClearOk(m))
				return;
			break;
		case MSG_TYPE_COUNT:
			break;
	}
}

void
MessageFree(Message *m)
{
	json_decref(m->root);
	m->root = NULL;
}

/* CursorNumber: a JSON integer, or a string of digits, in [0, max). */
static bool
CursorNumber(json_t *v, json_int_t max)
{
	json_int_t	n = 0;

	if (json_is_integer(v))
		n = json_integer_value(v);
	else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 17)
	{
		for (const char *p = json_string_value(v); *p; p++)
		{
			if (*p < '0' || *p > '9')
				return false;
			n = n * 10 + (*p - '0');
		}
	}
	else
		return false;
	return n >= 0 && n < max;
}

/*
 * CursorPlainOk: the shape ofs.pull gives its cursors, with numbers in
 * range: {"f": text, "v": n, "p": n, "s": [{"t": n, "g": n, ...}, ...]}.
 */
bool
CursorPlainOk(const char *text, size_t len)
{
	json_t	   *c;
	json_t	   *e;
	size_t		i;
	bool		ok;

	if (len > MAX_PLAIN_CURSOR)
		return false;
	c = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	ok = json_is_object(c) && json_object_size(c) == 4 &&
		json_is_string(json_object_get(c, "f")) &&
		CursorNumber(json_object_get(c, "v"), MAX_CURSOR_NUMBER) &&
		CursorNumber(json_object_get(c, "p"), MAX_CURSOR_NUMBER) &&
		json_is_array(json_object_get(c, "s")) && json_array_size(json_object_get(c, "s")) <= 100000;
	if (ok)
		json_array_foreach(json_object_get(c, "s"), i, e)
	{
		if (!json_is_object(e) || !CursorNumber(json_object_get(e, "t"), (json_int_t) 1 << 32) ||
			!CursorNumber(json_object_get(e, "g"), MAX_CURSOR_NUMBER))
		{
			ok = false;
			break;
		}
	}
	json_decref(c);
	return ok;
}

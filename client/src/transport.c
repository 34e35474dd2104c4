/*
 * transport.c: the WebSocket connection to the origin (libwebsockets).
 *
 * One connection, one libwebsockets context, serviced from the caller's
 * thread: requests are queued and written in the WRITEABLE callback;
 * messages are gathered from fragments and kept in an inbox until the
 * caller takes them.  A timer wakes the service loop so that every wait is
 * bounded.  Whatever the origin sends is parsed and checked before use: a
 * hostile or broken origin gets an error, never a crash.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "internal.h"

#define OFS_MAX_INCOMING (80 * 1024 * 1024)

/*
 * The origin cuts off a device that sends more than
 * welcome.limits.max_messages_per_second messages in a second (a pull
 * that asks ahead makes pages follow each other quickly): the device keeps
 * one below it over any 1.1 s, waiting when it would not.  A limit above
 * OFS_PACE_SLOTS is not paced.
 */
#define OFS_PACE_SLOTS 1024
#define OFS_PACE_WINDOW_MS 1100

typedef struct OutMsg
{
	struct OutMsg *next;
	size_t		len;
	unsigned char data[];
} OutMsg;

struct ofs_conn
{
	ofs_db	   *db;
	struct lws_context *ctx;
	struct lws *wsi;
	int			open;			/* established */
	int			closed;			/* closed or failed */
	int			close_code;
	char		error[256];
	OutMsg	   *out_head;
	OutMsg	   *out_tail;
	char	   *rx;
	size_t		rx_len;
	size_t		rx_cap;
	int			rx_bad;
	json_t	   *inbox;			/* messages received, oldest first */
	int64_t		next_id;
	lws_sorted_usec_list_t tick;
	int			ticked;
	atomic_int	woken;			/* a local commit to the device's file: look now */
	int64_t		sent_at[OFS_PACE_SLOTS];	/* when the last messages were sent, a ring */
	int			sent_next;
	int64_t		sent_count;
	char	   *wake_path;		/* the file this connection is woken for, or NULL */
	struct ofs_conn *wake_next;
};

/*
 * The live connections of this process, by device file: a commit to the
 * file on any connection of the process ends the wait of the connection
 * that serves it (ofs_wake_file), so that a local write is pushed at once.
 * Writers in other processes are seen by the live loop's poll.
 */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static ofs_conn *wake_list = NULL;

void
ofs_wake_register(ofs_conn *c, const char *path)
{
	if (c == NULL || path == NULL || path[0] == '\0' || c->wake_path)
		return;
	c->wake_path = strdup(path);
	if (c->wake_path == NULL)
		return;
	pthread_mutex_lock(&wake_lock);
	c->wake_next = wake_list;
	wake_list = c;
	pthread_mutex_unlock(&wake_lock);
}

static void
WakeUnregister(ofs_conn *c)
{
	ofs_conn  **p;

	if (c->wake_path == NULL)
		return;
	pthread_mutex_lock(&wake_lock);
	for (p = &wake_list; *p; p = &(*p)->wake_next)
		if (*p == c)
		{
			*p = c->wake_next;
			break;
		}
	pthread_mutex_unlock(&wake_lock);
	free(c->wake_path);
	c->wake_path = NULL;
}

void
ofs_wake_file(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return;
	pthread_mutex_lock(&wake_lock);
	for (ofs_conn *c = wake_list; c; c = c->wake_next)
		if (strcmp(c->wake_path, path) == 0)
		{
			atomic_store(&c->woken, 1);
			lws_cancel_service(c->ctx);
		}
	pthread_mutex_unlock(&wake_lock);
}

static void
Tick(lws_sorted_usec_list_t *sul)
{
	ofs_conn   *c = lws_container_of(sul, ofs_conn, tick);

	c->ticked = 1;
	/* A timer run before lws polls must still end the wait that follows. */
	lws_cancel_service(c->ctx);
}

/* Service runs the loop once, for at most about ms milliseconds. */
static void
Service(ofs_conn *c, int ms)
{
	c->ticked = 0;
	lws_sul_schedule(c->ctx, 0, &c->tick, Tick, (lws_usec_t) (ms > 0 ? ms : 1) * LWS_US_PER_MS);
	lws_service(c->ctx, 0);
	lws_sul_cancel(&c->tick);
}

static void
Received(ofs_conn *c, const char *in, size_t len, struct lws *wsi)
{
	if (lws_is_first_fragment(wsi))
	{
		c->rx_len = 0;
		c->rx_bad = 0;
	}
	if (c->rx_bad || c->rx_len + len > OFS_MAX_INCOMING)
	{
		c->rx_bad = 1;
		return;
	}
	if (c->rx_len + len + 1 > c->rx_cap)
	{
		size_t		cap = c->rx_cap ? c->rx_cap : 4096;
		char	   *rx;

		while (cap < c->rx_len + len + 1)
			cap *= 2;
		rx = realloc(c->rx, cap);
		if (rx == NULL)
		{
			c->rx_bad = 1;
			return;
		}
		c->rx = rx;
		c->rx_cap = cap;
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return;
	{
		json_t	   *m = json_loadb(c->rx, c->rx_len, 0, NULL);

		/* Anything but a JSON object with a string type is dropped. */
		if (m && json_is_object(m) && json_is_string(json_object_get(m, "type")))
			json_array_append_new(c->inbox, m);
		else
			json_decref(m);
	}
	c->rx_len = 0;
}

static int
Callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	ofs_conn   *c = (ofs_conn *) lws_get_opaque_user_data(wsi);

	(void) user;
	if (c == NULL)
		return 0;
	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			c->open = 1;
			if (c->out_head)
				lws_callback_on_writable(wsi);
			break;
		case LWS_CALLBACK_CLIENT_RECEIVE:
			Received(c, in, len, wsi);
			break;
		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (c->out_head)
			{
				OutMsg	   *m = c->out_head;

				if (lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int) m->len)
					return -1;
				c->out_head = m->next;
				if (c->out_head == NULL)
					c->out_tail = NULL;
				free(m);
				if (c->out_head)
					lws_callback_on_writable(wsi);
			}
			break;
		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			if (len >= 2)
				c->close_code = (((const unsigned char *) in)[0] << 8) | ((const unsigned char *) in)[1];
			if (len > 2)
				snprintf(c->error, sizeof(c->error), "the origin closed the connection: %.*s",
						 (int) (len - 2), (const char *) in + 2);
			break;
		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			snprintf(c->error, sizeof(c->error), "cannot connect to the origin: %s",
					 in ? (const char *) in : "connection failed");
			c->closed = 1;
			c->wsi = NULL;
			break;
		case LWS_CALLBACK_CLIENT_CLOSED:
			c->closed = 1;
			c->wsi = NULL;
			break;
		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"ofs.v1", Callback, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static const struct lws_extension extensions[] = {
	{"permessage-deflate", lws_extension_callback_pm_deflate,
	"permessage-deflate; client_no_context_takeover; client_max_window_bits"},
	{NULL, NULL, NULL}
};

ofs_rc
ofs_conn_open(ofs_db *db, const char *url, int timeout_ms, ofs_conn **out)
{
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	ofs_conn   *c = calloc(1, sizeof(ofs_conn));
	char	   *copy = strdup(url ? url : "");
	const char *prot;
	const char *ads;
	const char *path;
	char		pathbuf[512];
	int			port;
	int64_t		deadline = ofs_now_ms() + timeout_ms;
	int			tls;

	*out = NULL;
	if (c == NULL || copy == NULL)
	{
		free(c);
		free(copy);
		return ofs_fail(db, OFS_ERROR, "out of memory");
	}
	if (lws_parse_uri(copy, &prot, &ads, &port, &path) != 0 ||
		(strcmp(prot, "ws") != 0 && strcmp(prot, "wss") != 0))
	{
		free(c);
		free(copy);
		return ofs_fail(db, OFS_MISUSE, "not a ws:// or wss:// URL: %s", url ? url : "(none)");
	}
	tls = strcmp(prot, "wss") == 0;
	snprintf(pathbuf, sizeof(pathbuf), "/%s", path);
	c->db = db;
	c->inbox = json_array();
	lws_set_log_level(0, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	/* Off unless asked for: see "Transport" in docs/PROTOCOL.md. */
	info.extensions = getenv("OFS_PERMESSAGE_DEFLATE") ? extensions : NULL;
	info.gid = -1;
	info.uid = -1;
	if (tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	c->ctx = lws_create_context(&info);
	if (c->ctx == NULL)
	{
		free(copy);
		ofs_conn_close(c);
		return ofs_fail(db, OFS_ERROR, "cannot create the WebSocket context");
	}
	memset(&ci, 0, sizeof(ci));
	ci.context = c->ctx;
	ci.address = ads;
	ci.port = port;
	ci.path = pathbuf;
	ci.host = ads;
	ci.origin = ads;
	ci.protocol = "ofs.v1";
	ci.opaque_user_data = c;
	ci.pwsi = &c->wsi;
	if (tls)
		ci.ssl_connection = LCCSCF_USE_SSL |
			(getenv("OFS_TLS_INSECURE") ? LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK : 0);
	if (lws_client_connect_via_info(&ci) == NULL)
	{
		free(copy);
		ofs_conn_close(c);
		return ofs_fail(db, OFS_UNREACHABLE, "cannot connect to %s", url);
	}
	free(copy);
	while (!c->open && !c->closed && ofs_now_ms() < deadline)
		Service(c, 50);
	if (!c->open)
	{
		ofs_fail(db, OFS_UNREACHABLE, "%s", c->error[0] ? c->error : "the origin did not answer in time");
		ofs_conn_close(c);
		return OFS_UNREACHABLE;
	}
	*out = c;
	return OFS_OK;
}

/* Pace waits, serving the connection, until one more message keeps the device below the origin's limit. */
static void
Pace(ofs_conn *c)
{
	int			keep = c->db->max_messages_per_second - 1;

	if (keep < 1 || keep > OFS_PACE_SLOTS)
		return;
	/* the slot to be written next holds the keep-th last message's time */
	for (;;)
	{
		int			slot = (int) ((c->sent_count - keep) % OFS_PACE_SLOTS);
		int64_t		wait;

		if (c->sent_count < keep || c->closed)
			return;
		if (slot < 0)
			slot += OFS_PACE_SLOTS;
		wait = c->sent_at[slot] + OFS_PACE_WINDOW_MS - ofs_now_ms();
		if (wait <= 0)
			return;
		Service(c, (int) wait);
	}
}

ofs_rc
ofs_conn_send(ofs_conn *c, json_t *msg)
{
	char	   *text;

	Pace(c);
	c->sent_at[c->sent_count++ % OFS_PACE_SLOTS] = ofs_now_ms();
	text = json_dumps(msg, JSON_COMPACT);
	size_t		len = text ? strlen(text) : 0;
	OutMsg	   *m = text ? malloc(sizeof(OutMsg) + LWS_PRE + len) : NULL;

	json_decref(msg);
	if (m == NULL)
	{
		free(text);
		return ofs_fail(c->db, OFS_ERROR, "out of memory");
	}
	if (c->closed || c->wsi == NULL)
	{
		free(text);
		free(m);
		return ofs_fail(c->db, OFS_UNREACHABLE, "%s", c->error[0] ? c->error : "the connection is closed");
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->data + LWS_PRE, text, len);
	free(text);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	lws_callback_on_writable(c->wsi);
	return OFS_OK;
}

/* Take finds and removes the first inbox message matching id (or without id, for NULL). */
static json_t *
Take(ofs_conn *c, json_t *id)
{
	size_t		i;
	json_t	   *m;

	json_array_foreach(c->inbox, i, m)
	{
		json_t	   *mid = json_object_get(m, "id");

		if ((id == NULL && mid == NULL) || (id && mid && json_equal(id, mid)))
		{
			json_incref(m);
			json_array_remove(c->inbox, i);
			return m;
		}
	}
	return NULL;
}

/*
 * ofs_conn_ask sends at once: the caller goes on to other work (applying a
 * page) while the origin answers, so the message must not wait for the
 * loop's next run to leave.
 */
ofs_rc
ofs_conn_ask(ofs_conn *c, json_t *msg, int64_t *id)
{
	ofs_rc		rc;

	*id = ++c->next_id;
	json_object_set_new(msg, "id", json_integer(*id));
	rc = ofs_conn_send(c, msg);
	for (int i = 0; rc == OFS_OK && c->out_head != NULL && !c->closed && i < 4; i++)
		Service(c, 0);
	return rc;
}

ofs_rc
ofs_conn_answer(ofs_conn *c, int64_t id, json_t **answer, int timeout_ms)
{
	json_t	   *want = json_integer(id);
	int64_t		deadline = ofs_now_ms() + timeout_ms;
	ofs_rc		rc = OFS_OK;

	*answer = NULL;
	while (rc == OFS_OK)
	{
		json_t	   *m = Take(c, want);

		if (m)
		{
			*answer = m;
			break;
		}
		if (c->closed)
			rc = ofs_fail(c->db, c->close_code == 4001 || c->close_code == 4003 ? OFS_UNAUTHORIZED : OFS_UNREACHABLE,
						  "%s", c->error[0] ? c->error : "the origin closed the connection");
		else if (ofs_now_ms() >= deadline)
			rc = ofs_fail(c->db, OFS_UNREACHABLE, "the origin did not answer in time");
		else
			Service(c, (int) (deadline - ofs_now_ms()));
	}
	json_decref(want);
	return rc;
}

ofs_rc
ofs_conn_request(ofs_conn *c, json_t *msg, json_t **answer, int timeout_ms)
{
	int64_t		id;
	ofs_rc		rc = ofs_conn_ask(c, msg, &id);

	*answer = NULL;
	return rc == OFS_OK ? ofs_conn_answer(c, id, answer, timeout_ms) : rc;
}

json_t *
ofs_conn_queued(ofs_conn *c)
{
	return Take(c, NULL);
}

ofs_rc
ofs_conn_next(ofs_conn *c, int timeout_ms, json_t **msg)
{
	int64_t		deadline = ofs_now_ms() + timeout_ms;

	*msg = NULL;
	for (;;)
	{
		json_t	   *m = Take(c, NULL);

		if (m)
		{
			*msg = m;
			return OFS_OK;
		}
		if (c->closed)
			return ofs_fail(c->db, c->close_code == 4001 || c->close_code == 4003 ? OFS_UNAUTHORIZED : OFS_UNREACHABLE,
							"%s", c->error[0] ? c->error : "the origin closed the connection");
		if (ofs_now_ms() >= deadline || atomic_exchange(&c->woken, 0))
			return OFS_OK;
		Service(c, (int) (deadline - ofs_now_ms()));
	}
}

int
ofs_conn_closed(ofs_conn *c, int *code)
{
	if (code)
		*code = c->close_code;
	return c->closed;
}

void
ofs_conn_close(ofs_conn *c)
{
	OutMsg	   *m;

	if (c == NULL)
		return;
	WakeUnregister(c);
	if (c->ctx)
		lws_context_destroy(c->ctx);
	for (m = c->out_head; m;)
	{
		OutMsg	   *next = m->next;

		free(m);
		m = next;
	}
	free(c->rx);
	json_decref(c->inbox);
	free(c);
}

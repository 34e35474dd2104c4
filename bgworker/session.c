/*
 * session.c: the WebSocket side of a device connection.
 *
 * One libwebsockets protocol callback: a connection becomes a Session (in
 * libwebsockets' per-session memory), its text messages are gathered from
 * fragments up to ofs.max_message_bytes and handed to protocol.c, and its
 * answers wait in a queue written only from the WRITEABLE callback.  The
 * limits that protect the worker from one device live here: message size,
 * messages per second, queued bytes for a device that does not read, and a
 * deadline for hello.  A close is queued like a message, so that an error
 * reaches the device before the close frame.
 */
#include "postgres.h"

#include <uv.h>
#include <libwebsockets.h>

#include "utils/memutils.h"

#include "ofs.h"
#include "worker.h"
#include "shmem.h"

/* The live sessions of this worker: this file's alone. */
static Session *sessions = NULL;
static int	nsessions = 0;

static void
SessionLink(Session *s)
{
	s->prev = NULL;
	s->next = sessions;
	if (sessions)
		sessions->prev = s;
	sessions = s;
	nsessions++;
}

static void
SessionUnlink(Session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else if (sessions == s)
		sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	nsessions--;
}

/*
 * Bytes buffered for connections that have not said hello yet, over the
 * whole worker: before hello a message may have OFS_MAX_HELLO_BYTES, and
 * all of them together OFS_MAX_UNAUTHENTICATED_BYTES, so that connections
 * without a token cannot make the worker hold much memory.
 */
static size_t unauthenticated_bytes = 0;

/* CountUnauthenticated brings the count up to date with s's buffer. */
static void
CountUnauthenticated(Session *s)
{
	size_t		now = s->state == SESSION_AWAIT_HELLO ? s->rx_cap : 0;

	unauthenticated_bytes = unauthenticated_bytes - s->rx_counted + now;
	s->rx_counted = now;
}

static void
SessionFree(Session *s)
{
	OutMsg	   *m = s->out_head;

	while (m)
	{
		OutMsg	   *next = m->next;

		free(m);
		m = next;
	}
	s->out_head = s->out_tail = NULL;
	s->out_bytes = 0;
	s->rx_cap = 0;
	s->state = SESSION_CLOSING;
	CountUnauthenticated(s);
	free(s->rx);
	free(s->device);
	free(s->cursor);
	free(s->acked);
	free(s->role);
	s->rx = s->device = s->cursor = s->acked = s->role = NULL;
}

/* SessionSetString replaces a malloc'd string field with a copy of value. */
void
SessionSetString(char **field, const char *value)
{
	free(*field);
	*field = value ? strdup(value) : NULL;
}

/*
 * SessionSend queues a text message.  A device whose unsent answers exceed
 * the limit does not read: it is cut off rather than let to grow memory.
 */
void
SessionSend(Session *s, const char *text, size_t len)
{
	OutMsg	   *m;

	if (s->state == SESSION_CLOSING)
		return;
	/* One message may be larger than the queue's bound, alone in it (a large row). */
	if (s->out_bytes + len > OFS_MAX_QUEUED_BYTES && !(s->out_bytes == 0 && len <= OFS_MAX_MESSAGE_OUT))
	{
		SessionClose(s, 4009, "the device does not read its messages");
		return;
	}
	m = malloc(sizeof(OutMsg) + LWS_PRE + len);
	if (m == NULL)
	{
		SessionClose(s, 1011, "out of memory");
		return;
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->data + LWS_PRE, text, len);
	if (s->out_tail)
		s->out_tail->next = m;
	else
		s->out_head = m;
	s->out_tail = m;
	s->out_bytes += len;
	OfsCount(OFS_STAT_MESSAGES_OUT, 1);
	OfsCount(OFS_STAT_BYTES_OUT, (int64) len);
	lws_callback_on_writable(s->wsi);
}

/* SessionClose closes the connection once what is queued has been sent. */
/* SessionSetLive turns the live stream on or off, counted in ofs_devices_live. */
void
SessionSetLive(Session *s, bool on)
{
	if (s->live != on)
		OfsMetricLive(on ? 1 : -1);
	s->live = on;
}

void
SessionClose(Session *s, int code, const char *reason)
{
	if (s->state == SESSION_CLOSING)
		return;
	OfsMetricClose(code);
	if (s->device)
		OfsCount(OFS_STAT_CONNECTED, -1);
	s->state = SESSION_CLOSING;
	SessionSetLive(s, false);
	s->close_code = code;
	strlcpy(s->close_reason, reason, sizeof(s->close_reason));
	/* A device that does not read never lets the close go out: drop it. */
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 5);
	lws_callback_on_writable(s->wsi);
}

/* SessionReceive gathers a message's fragments and hands it on. */
static void
SessionReceive(Session *s, const char *in, size_t len)
{
	struct lws *wsi = s->wsi;
	int64_t		now;

	if (s->state == SESSION_CLOSING)
		return;
	if (lws_is_first_fragment(wsi))
	{
		s->rx_len = 0;
		s->rx_binary = lws_frame_is_binary(wsi);
	}
	if (s->rx_len + len > (size_t) ofs_max_message_bytes)
	{
		char		message[96];

		snprintf(message, sizeof(message), "a message may have at most %d bytes", ofs_max_message_bytes);
		ProtocolSendError(s, NULL, "too_big", message, NULL, false);
		SessionClose(s, 1009, "message too big");
		return;
	}
	if (s->state == SESSION_AWAIT_HELLO && s->rx_len + len > OFS_MAX_HELLO_BYTES)
	{
		char		message[96];

		snprintf(message, sizeof(message), "before hello a message may have at most %d bytes", OFS_MAX_HELLO_BYTES);
		ProtocolSendError(s, NULL, "too_big", message, NULL, false);
		SessionClose(s, 1009, "message too big");
		return;
	}
	if (s->rx_len + len + 1 > s->rx_cap)
	{
		size_t		cap = Max(s->rx_cap * 2, s->rx_len + len + 1);
		char	   *rx;

		cap = Max(cap, 1024);
		if (s->state == SESSION_AWAIT_HELLO &&
			unauthenticated_bytes - s->rx_counted + cap > OFS_MAX_UNAUTHENTICATED_BYTES)
		{
			SessionClose(s, 1013, "too many connections without hello; try again later");
			return;
		}
		rx = realloc(s->rx, cap);

		if (rx == NULL)
		{
			SessionClose(s, 1011, "out of memory");
			return;
		}
		s->rx = rx;
		s->rx_cap = cap;
		CountUnauthenticated(s);
	}
	memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
		return;
	s->rx[s->rx_len] = '\0';
	OfsCount(OFS_STAT_MESSAGES_IN, 1);
	OfsCount(OFS_STAT_BYTES_IN, (int64) s->rx_len);

	/* A flood is cut off: the worker serves every device in turn. */
	now = WorkerNowMs();
	if (now - s->window_ms >= 1000)
	{
		s->window_ms = now;
		s->window_msgs = 0;
	}
	if (++s->window_msgs > ofs_max_messages_per_second)
	{
		char		message[96];

		snprintf(message, sizeof(message), "more than %d messages in a second", ofs_max_messages_per_second);
		ProtocolSendError(s, NULL, "rate_limited", message, NULL, false);
		SessionClose(s, 4008, "too many messages");
		return;
	}
	/*
	 * What answering allocates in PostgreSQL's memory lives in a context
	 * reset after each message: no message leaves memory behind.
	 */
	{
		MemoryContext old = MemoryContextSwitchTo(WorkerMessageContext);

		if (s->rx_binary)
			ProtocolSendError(s, NULL, "invalid_message",
							  "binary messages are not part of the protocol; send JSON text", NULL, false);
		else
			ProtocolHandle(s, s->rx, s->rx_len);
		MemoryContextSwitchTo(old);
		MemoryContextReset(WorkerMessageContext);
	}
	/* Large buffers are not kept for idle connections, nor any before hello. */
	if (s->rx_cap > 65536 || s->state != SESSION_READY)
	{
		free(s->rx);
		s->rx = NULL;
		s->rx_cap = 0;
	}
	CountUnauthenticated(s);
	s->rx_len = 0;
}

static int
SessionWriteable(Session *s)
{
	OutMsg	   *m = s->out_head;

	if (m)
	{
		int			n = lws_write(s->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);

		if (n < (int) m->len)
			return -1;
		s->out_head = m->next;
		if (s->out_head == NULL)
			s->out_tail = NULL;
		s->out_bytes -= m->len;
		free(m);
		if (s->out_head || s->close_code)
			lws_callback_on_writable(s->wsi);
		else if (s->live && s->live_pending)
			WorkerScheduleLive();
		return 0;
	}
	if (s->close_code)
	{
		/*
		 * The close frame is written here: lws_close_reason() followed by
		 * returning -1 drops the connection without one in this version.
		 */
		unsigned char frame[LWS_PRE + 125];
		size_t		n = strlen(s->close_reason);

		if (n > 123)
			n = 123;
		frame[LWS_PRE] = (unsigned char) (s->close_code >> 8);
		frame[LWS_PRE + 1] = (unsigned char) (s->close_code & 0xff);
		memcpy(frame + LWS_PRE + 2, s->close_reason, n);
		if (s->close_sent)
			return 0;
		(void) lws_write(s->wsi, frame + LWS_PRE, n + 2, (enum lws_write_protocol) 4);	/* close */
		/*
		 * Linger: closing the socket at once, with a flooding device's
		 * messages still unread, would reset the connection and lose the
		 * close frame.  The device answers the close (libwebsockets then
		 * ends the connection); input meanwhile is ignored, and a device
		 * that never answers is dropped by the timeout.
		 */
		s->close_sent = true;
		lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 2);
		return 0;
	}
	return 0;
}

/* SessionCallback is the libwebsockets callback of protocol "ofs.v1". */
int
SessionCallback(struct lws *wsi, int reason, void *user, void *in, size_t len)
{
	Session    *s = (Session *) user;

	switch ((enum lws_callback_reasons) reason)
	{
		case LWS_CALLBACK_ESTABLISHED:
			AdmissionEstablished(wsi);
			memset(s, 0, sizeof(*s));
			s->wsi = wsi;
			s->state = SESSION_AWAIT_HELLO;
			s->connected_ms = s->window_ms = WorkerNowMs();
			SessionLink(s);
			break;
		case LWS_CALLBACK_RECEIVE:
			SessionReceive(s, in, len);
			break;
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return SessionWriteable(s);
		case LWS_CALLBACK_HTTP:
			/* Plain HTTP on the devices' port: answered at once, not left to the handshake timeout. */
			if (lws_return_http_status(wsi, 426, "this port speaks the ofs sync protocol over WebSocket"
									   " (docs/PROTOCOL.md); /metrics and /status are on ofs.http_port"))
				return -1;
			return lws_http_transaction_completed(wsi) ? -1 : 0;
		case LWS_CALLBACK_WSI_DESTROY:
			AdmissionRemove(wsi);
			break;
		case LWS_CALLBACK_CLOSED:
			if (s->state != SESSION_CLOSING && s->device)
				OfsCount(OFS_STAT_CONNECTED, -1);
			/* closed by the device or the network, not by the worker */
			if (s->state != SESSION_CLOSING)
				OfsMetricClose(0);
			SessionSetLive(s, false);
			SessionUnlink(s);
			SessionFree(s);
			break;
		default:
			break;
	}
	return 0;
}

/* SessionCount is how many sessions (connections past their handshake) there are. */
int
SessionCount(void)
{
	return nsessions;
}

/*
 * SessionsCollect puts up to max sessions for which want() holds into out
 * (NULL: only count them), and returns how many it found.
 */
int
SessionsCollect(bool (*want) (Session *s, void *arg), void *arg, Session **out, int max)
{
	int			n = 0;

	for (Session *s = sessions; s; s = s->next)
		if (want(s, arg))
		{
			if (out && n < max)
				out[n] = s;
			n++;
			if (out && n == max)
				break;
		}
	return n;
}

/* SessionsMarkLive: changes committed; every live session may have some. */
void
SessionsMarkLive(void)
{
	for (Session *s = sessions; s; s = s->next)
		if (s->live)
			s->live_pending = true;
}

/*
 * SessionsHousekeeping closes the sessions that never said hello, or
 * whose token expired.  Called about once a second.
 */
void
SessionsHousekeeping(int64_t now)
{
	for (Session *s = sessions; s; s = s->next)
		if (s->state == SESSION_AWAIT_HELLO && now - s->connected_ms > OFS_HELLO_TIMEOUT_MS)
		{
			ProtocolSendError(s, NULL, "unauthenticated", "no hello within 10 seconds", NULL, false);
			SessionClose(s, 4001, "no hello");
		}
		else if (s->state == SESSION_READY && s->expires_ms > 0 && now >= s->expires_ms)
		{
			ProtocolSendError(s, NULL, "revoked", "the device's token has expired", "28000", false);
			SessionClose(s, 4003, "token expired");
		}
}

/* SessionsCloseAll tells every session why and closes it with 1001. */
void
SessionsCloseAll(const char *message)
{
	for (Session *s = sessions; s; s = s->next)
	{
		ProtocolSendError(s, NULL, "shutting_down", message, NULL, true);
		SessionClose(s, 1001, "server shutting down");
	}
}

/*
 * worker.c: the sync worker, a background worker serving devices.
 *
 * ofs.workers processes each listen on ofs.port (the kernel spreads new
 * connections over them: SO_REUSEPORT), so that one slow statement stalls
 * only the devices of one worker; each statement is bounded by
 * ofs.statement_timeout (docs/DESIGN.md, "The sync worker").
 *
 * The event loop is libuv's, run by libwebsockets as a foreign loop, and
 * driven from a PostgreSQL wait event set that watches the loop's backend
 * fd, the process latch and postmaster death.  The latch is set by a
 * backend that commits captured changes (src/shmem.c) or revokes a device,
 * so live devices hear of new changes at once, without polling.  Signal
 * handlers only set flags; the loop acts on them.
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <libwebsockets.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ofs.h"
#include "worker.h"
#include "shmem.h"
#include "hlc.h"

char	   *ofs_listen_addresses = NULL;
int			ofs_port = 7878;
char	   *ofs_database = NULL;
int			ofs_workers = 2;
int			ofs_max_message_bytes = 1024 * 1024;
char	   *ofs_tls_cert_file = NULL;
char	   *ofs_tls_key_file = NULL;
int			ofs_statement_timeout_ms = 30000;
int			ofs_max_messages_per_second = 200;

/*
 * Memory the worker allocates while answering one message, or in one turn
 * of its loop, goes into a context that is reset afterwards, as
 * PostgreSQL's own workers do: nothing a device sends can make the worker
 * grow.  What outlives a message (sessions, queued answers) is malloc'd
 * and freed with its connection.
 */
MemoryContext WorkerMessageContext = NULL;
static MemoryContext WorkerLoopContext = NULL;

static volatile sig_atomic_t shutdown_requested = false;
static bool live_scheduled = false;

PGDLLEXPORT void ofs_worker_main(Datum arg);

int64_t
WorkerNowMs(void)
{
	return (int64_t) (GetCurrentTimestamp() / 1000);
}

int64_t
WorkerNowUs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* WorkerScheduleLive asks the loop to push to live devices without waiting. */
void
WorkerScheduleLive(void)
{
	live_scheduled = true;
}

static void
WorkerSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
LwsLog(int level, const char *line)
{
	char		buf[256];
	size_t		n;

	strlcpy(buf, line, sizeof(buf));
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	ereport(level == LLL_ERR ? WARNING : LOG,
			(errmsg_internal("ofs sync worker: libwebsockets: %s", buf)));
}

static const struct lws_protocols protocols[] = {
	{"ofs.v1", (lws_callback_function *) SessionCallback, sizeof(Session), 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * permessage-deflate is offered only when ofs.permessage_deflate is on:
 * libwebsockets 4.1's inflate can abort the process on a crafted
 * compressed message (an assertion in its trailer handling), and a worker
 * that aborts makes PostgreSQL restart every backend.
 */
static const struct lws_extension extensions[] = {
	{"permessage-deflate", lws_extension_callback_pm_deflate,
	"permessage-deflate; client_no_context_takeover; client_max_window_bits"},
	{NULL, NULL, NULL}
};

bool		ofs_permessage_deflate = false;

/* Unanswered pings close half-open connections. */
static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 30,
	.secs_since_valid_hangup = 60,
};

/*
 * The worker listens on sockets of its own, with SO_REUSEPORT, so that
 * every worker has one on the same port and the kernel spreads new
 * connections over them; each accepted connection is handed to
 * libwebsockets.  One vhost serves them all.
 */
#define MAX_LISTENERS 16

typedef struct Listener
{
	uv_poll_t	poll;
	int			fd;
	bool		http;			/* ofs.http_port (http.c), not the devices' port */
} Listener;

static Listener listeners[MAX_LISTENERS];
static int	nlisteners = 0;
static struct lws_vhost *vhost = NULL;
static struct lws_vhost *http_vhost = NULL;
static bool use_tls = false;

static void
OnAccept(uv_poll_t *handle, int status, int events)
{
	Listener   *l = (Listener *) handle->data;

	for (;;)
	{
		struct sockaddr_storage sa;
		socklen_t	salen = sizeof(sa);
		int			c = accept4(l->fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		lws_sock_file_fd_type fd;
		struct lws *wsi;

		if (c < 0)
			break;
		/* HTTP: bounded apart (http.c); devices are admitted by admission.c. */
		if (l->http)
		{
			if (!HttpAdmit())
			{
				close(c);
				continue;
			}
			fd.sockfd = c;
			if (lws_adopt_descriptor_vhost(http_vhost, LWS_ADOPT_HTTP | LWS_ADOPT_SOCKET, fd, NULL, NULL) == NULL)
				close(c);
			continue;
		}
		/* Over a limit (admission.c): closed at once, never adopted. */
		if (!AdmissionAllowed(&sa))
		{
			close(c);
			continue;
		}
		/* Small messages go out at once (no Nagle delay behind an unacknowledged one). */
		{
			int			one = 1;

			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		fd.sockfd = c;
		wsi = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_HTTP | LWS_ADOPT_SOCKET |
										 (use_tls ? LWS_ADOPT_ALLOW_SSL : 0),
										 fd, NULL, NULL);
		if (wsi == NULL)
			close(c);
		else
			AdmissionAdd(wsi, &sa);
	}
}

/* CloseListeners closes the listening sockets of the devices' port (http false) or of the HTTP port. */
static void
CloseListeners(bool http)
{
	int			kept = 0;

	for (int i = 0; i < nlisteners; i++)
	{
		if (listeners[i].http != http)
			continue;
		uv_poll_stop(&listeners[i].poll);
		uv_close((uv_handle_t *) &listeners[i].poll, NULL);
		close(listeners[i].fd);
		listeners[i].fd = -1;
	}
	/* uv_close finishes later: the handles of those kept do not move. */
	for (int i = 0; i < nlisteners; i++)
		if (listeners[i].fd >= 0)
			kept = i + 1;
	nlisteners = kept;
}

static int
CountListeners(bool http)
{
	int			n = 0;

	for (int i = 0; i < nlisteners; i++)
		if (listeners[i].fd >= 0 && listeners[i].http == http)
			n++;
	return n;
}

/* ListenOn binds every address host resolves to on port (http: the HTTP port); false if one fails. */
static bool
ListenOn(uv_loop_t *loop, const char *host, int portnum, bool http)
{
	struct addrinfo hints;
	struct addrinfo *res;
	struct addrinfo *ai;
	char		port[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", portnum);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0)
	{
		ereport(LOG,
				(errmsg("ofs sync worker could not resolve listen address \"%s\": %s", host, gai_strerror(rc)),
				 errhint("Check %s; the worker tries again every 5 seconds.",
						 http ? "ofs.http_listen_addresses" : "ofs.listen_addresses")));
		return false;
	}
	for (ai = res; ai; ai = ai->ai_next)
	{
		int			fd;
		int			one = 1;

		if (nlisteners == MAX_LISTENERS)
			break;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0)
		{
			int			save = errno;

			close(fd);
			freeaddrinfo(res);
			errno = save;
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("ofs sync worker could not listen on %s port %d: %m", host, portnum),
					 errhint("Another program may use the port: change %s. The worker tries again every 5 seconds.",
							 http ? "ofs.http_port or ofs.http_listen_addresses" : "ofs.port or ofs.listen_addresses")));
			return false;
		}
		listeners[nlisteners].fd = fd;
		listeners[nlisteners].http = http;
		uv_poll_init(loop, &listeners[nlisteners].poll, fd);
		listeners[nlisteners].poll.data = &listeners[nlisteners];
		uv_poll_start(&listeners[nlisteners].poll, UV_READABLE, OnAccept);
		nlisteners++;
	}
	freeaddrinfo(res);
	return true;
}

/* Listen opens the listening sockets of ofs.listen_addresses. */
static bool
Listen(uv_loop_t *loop, bool http)
{
	const char *addrs = http ? ofs_http_listen_addresses : ofs_listen_addresses;
	char	   *list = pstrdup(addrs ? addrs : "127.0.0.1");
	char	   *save = NULL;
	char	   *addr;

	for (addr = strtok_r(list, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save))
		if (!ListenOn(loop, addr, http ? ofs_http_port : ofs_port, http))
		{
			CloseListeners(http);
			return false;
		}
	return CountListeners(http) > 0;
}

/* CreateVhost makes the one vhost that serves adopted connections. */
static struct lws_vhost *
CreateVhost(struct lws_context *ctx)
{
	struct lws_context_creation_info info;

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.extensions = ofs_permessage_deflate ? extensions : NULL;
	info.vhost_name = "ofs";
	info.retry_and_idle_policy = &idle_policy;
	/* libwebsockets' own wait for a handshake, as admission.c's deadline. */
	info.timeout_secs = Max(1, (ofs_handshake_timeout_ms + 999) / 1000);
	if (use_tls)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = ofs_tls_cert_file;
		info.ssl_private_key_filepath = ofs_tls_key_file;
	}
	return lws_create_vhost(ctx, &info);
}

/*
 * WaitForSql waits until ofs.database holds a version of the extension's
 * SQL that this library serves (sqlversion.c logs why it waits, once).
 */
static void
WaitForSql(void)
{
	for (;;)
	{
		if (WorkerSqlCheck("ofs sync worker") == WORKER_SQL_READY)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (shutdown_requested)
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Housekeeping drops connections that did not finish their handshake in
 * time, and closes those that never said hello, or whose token expired.
 */
static void
Housekeeping(int64_t now)
{
	AdmissionExpire(now);
	SessionsHousekeeping(now);
	HttpSample(now);
	/*
	 * The clock's next reservation is written here, not by a push waiting
	 * for it.  A failure (a full disk) is logged; a push then tries again,
	 * and reports it.
	 */
	HlcReserveAhead();
}

/*
 * CloseAll stops listening and closes every connection with 1001 (reconnect
 * with backoff), giving the closes up to two seconds to go out.
 */
static void
CloseAll(uv_loop_t *loop, WaitEventSet *set, const char *message)
{
	int64_t		deadline = WorkerNowMs() + 2000;

	CloseListeners(false);
	CloseListeners(true);
	SessionsCloseAll(message);
	while (SessionCount() > 0 && WorkerNowMs() < deadline)
	{
		WaitEvent	ev;

		uv_run(loop, UV_RUN_NOWAIT);
		(void) WaitEventSetWait(set, 50, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static void
Shutdown(struct lws_context *ctx, uv_loop_t *loop, WaitEventSet *set)
{
	CloseAll(loop, set, "the sync worker is stopping; reconnect later");
	lws_context_destroy(ctx);
	for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++)
		;
}

void
ofs_worker_main(Datum arg)
{
	int			worker = DatumGetInt32(arg);
	struct lws_context_creation_info info;
	struct lws_context *ctx = NULL;
	uv_loop_t  *loop;
	void	   *foreign[1];
	WaitEventSet *set;
	bool		listening = false;
	bool		http_listening = false;
	int64_t		next_bind = 0;
	int64_t		next_http_bind = 0;
	int64_t		next_house = 0;
	int64_t		next_devices = 0;
	uint64		seen_feed;
	uint64		seen_devices;

	pqsignal(SIGTERM, WorkerSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(ofs_database, NULL, 0);
	pgstat_report_appname("ofs sync worker");
	SetConfigOption("lock_timeout", "10s", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * The worker runs as the bootstrap superuser: no schema a role can
	 * create objects in may be on its path, or a function there (a better
	 * match for an argument's type than pg_catalog's) would run as it.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	WorkerMessageContext = AllocSetContextCreate(TopMemoryContext, "ofs sync worker message",
												 ALLOCSET_DEFAULT_SIZES);
	WorkerLoopContext = AllocSetContextCreate(TopMemoryContext, "ofs sync worker loop",
											  ALLOCSET_DEFAULT_SIZES);
	WaitForSql();
	CursorLoadKey();
	OfsRegisterLatch(MyLatch);

	AdmissionInit();
	lws_set_log_level(LLL_ERR | LLL_WARN, LwsLog);
	loop = malloc(sizeof(uv_loop_t));
	if (loop == NULL || uv_loop_init(loop) != 0)
		ereport(FATAL, (errmsg("ofs sync worker could not create its event loop (uv_loop_init)")));
	foreign[0] = loop;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
		LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	use_tls = ofs_tls_cert_file && ofs_tls_cert_file[0];
	if (use_tls)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.foreign_loops = foreign;
	info.port = CONTEXT_PORT_NO_LISTEN;
	ctx = lws_create_context(&info);
	if (ctx == NULL)
		ereport(FATAL, (errmsg("ofs sync worker could not create its libwebsockets context (lws_create_context)")));
	vhost = CreateVhost(ctx);
	if (vhost == NULL)
		ereport(FATAL,
				(errmsg("ofs sync worker could not create its WebSocket server (lws_create_vhost)"),
				 errhint("With TLS, check that ofs.tls_cert_file and ofs.tls_key_file are readable by the server.")));
	if (ofs_http_port > 0 && (http_vhost = HttpCreateVhost(ctx)) == NULL)
		ereport(FATAL, (errmsg("ofs sync worker could not create its HTTP server (lws_create_vhost)")));

	set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, uv_backend_fd(loop), NULL, NULL);

	seen_feed = pg_atomic_read_u64(&ofs_shared->feed_commits);
	seen_devices = pg_atomic_read_u64(&ofs_shared->device_changes);
	ereport(LOG, (errmsg("ofs sync worker %d started for database \"%s\"", worker, ofs_database)));
	pg_atomic_fetch_add_u64(&ofs_shared->metrics.worker_starts, 1);

	for (;;)
	{
		WaitEvent	ev;
		int			timeout;
		int64_t		now;
		uint64		feed;
		uint64		devices;

		MemoryContextReset(WorkerLoopContext);
		MemoryContextSwitchTo(WorkerLoopContext);
		uv_run(loop, UV_RUN_NOWAIT);
		if (shutdown_requested)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_devices = 0;	/* read the SQL version again */
		}
		now = WorkerNowMs();
		/* The HTTP port, when set, apart: failing to listen on it leaves the devices' port alone. */
		if (http_vhost && !http_listening && now >= next_http_bind)
		{
			http_listening = Listen(loop, true);
			if (http_listening)
				ereport(LOG, (errmsg("ofs sync worker %d serving /metrics and /status on %s port %d", worker,
									 ofs_http_listen_addresses, ofs_http_port)));
			next_http_bind = now + 5000;
		}
		if (!listening && now >= next_bind)
		{
			listening = Listen(loop, false);
			if (listening)
				ereport(LOG, (errmsg("ofs sync worker %d listening on %s port %d", worker,
									 ofs_listen_addresses, ofs_port)));
			next_bind = now + 5000;
		}
		feed = pg_atomic_read_u64(&ofs_shared->feed_commits);
		if (feed != seen_feed)
		{
			seen_feed = feed;
			SessionsMarkLive();
			live_scheduled = true;
		}
		devices = pg_atomic_read_u64(&ofs_shared->device_changes);
		if (devices != seen_devices || now >= next_devices)
		{
			seen_devices = devices;
			next_devices = now + 10000;
			/*
			 * An upgrade script wakes the workers like a device change:
			 * read the SQL version again.  SQL this library does not
			 * serve (dropped, or newer) closes every connection until
			 * it does.
			 */
			if (WorkerSqlCheck("ofs sync worker") != WORKER_SQL_READY)
			{
				CloseAll(loop, set, "the ofs extension of the origin is being changed; reconnect later");
				listening = false;
				WaitForSql();
				CursorLoadKey();
				next_bind = 0;
				continue;
			}
			CursorLoadKey();
			FanoutCheckAuthority();
		}
		if (now >= next_house)
		{
			Housekeeping(now);
			next_house = now + 1000;
		}
		if (live_scheduled)
		{
			live_scheduled = false;
			if (FanoutLiveRound())
				live_scheduled = true;
		}
		uv_run(loop, UV_RUN_NOWAIT);

		timeout = uv_backend_timeout(loop);
		if (timeout < 0 || timeout > 1000)
			timeout = 1000;
		/* Housekeeping (deadlines, expiries) runs every second on time. */
		if (next_house - WorkerNowMs() < timeout)
			timeout = (int) Max(next_house - WorkerNowMs(), 0);
		if (live_scheduled)
			timeout = 0;

		/*
		 * A commit that came while this turn ran SQL set the latch, but a
		 * wait inside that SQL (a lock, say) may have reset it: the
		 * counters, read again, are what says whether to sleep, so that a
		 * change never waits for the next tick.
		 */
		if (pg_atomic_read_u64(&ofs_shared->feed_commits) != seen_feed ||
			pg_atomic_read_u64(&ofs_shared->device_changes) != seen_devices)
			timeout = 0;
		(void) WaitEventSetWait(set, timeout, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	Shutdown(ctx, loop, set);
	OfsUnregisterLatch(MyLatch);
	ereport(LOG, (errmsg("ofs sync worker %d stopped", worker)));
	/* Exit 1: the postmaster restarts a worker stopped on its own. */
	proc_exit(1);
}

/* WorkerInit defines the worker's GUCs and, when preloading, registers it. */
void
WorkerInit(void)
{
	DefineCustomStringVariable("ofs.listen_addresses",
							   "Addresses the sync worker listens on (comma separated; * for all).",
							   NULL, &ofs_listen_addresses, "127.0.0.1",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.port", "TCP port of the sync worker's WebSocket server.",
							NULL, &ofs_port, 7878, 1, 65535, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.http_port",
							"TCP port of the sync worker's HTTP server: /metrics and /status (0: none).",
							NULL, &ofs_http_port, 0, 0, 65535, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ofs.http_listen_addresses",
							   "Addresses the sync worker's HTTP server listens on (comma separated; * for all).",
							   NULL, &ofs_http_listen_addresses, "127.0.0.1",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ofs.database", "Database the sync worker serves (it must have the ofs extension).",
							   NULL, &ofs_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.workers", "Number of sync worker processes (0: none).",
							NULL, &ofs_workers, 2, 0, OFS_MAX_WORKER_LATCHES, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.max_message_bytes", "Largest message a device may send.",
							NULL, &ofs_max_message_bytes, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomStringVariable("ofs.tls_cert_file", "TLS certificate of the sync worker (empty: no TLS).",
							   NULL, &ofs_tls_cert_file, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("ofs.tls_key_file", "TLS private key of the sync worker.",
							   NULL, &ofs_tls_key_file, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.statement_timeout", "Longest a device's request may run in SQL (0: no limit).",
							NULL, &ofs_statement_timeout_ms, 30000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.max_messages_per_second", "Messages per second a device may send before it is cut off.",
							NULL, &ofs_max_messages_per_second, 200, 1, 1000000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ofs.max_connections",
							"Connections each sync worker takes at most (also bounded by its descriptor limit).",
							NULL, &ofs_max_connections, 10000, 16, 1000000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.max_connections_per_address",
							"Connections each sync worker takes at most from one client address.",
							NULL, &ofs_max_connections_per_address, 500, 1, 1000000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.handshake_timeout",
							"How long a new connection has to finish its WebSocket handshake.",
							NULL, &ofs_handshake_timeout_ms, 5000, 100, 600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("ofs.permessage_deflate",
							 "Offer permessage-deflate to devices (see docs/PROTOCOL.md before turning it on).",
							 NULL, &ofs_permessage_deflate, false, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ofs.compact_interval", "How often the maintenance worker compacts the changes feed (0: never).",
							NULL, &ofs_compact_interval_s, 600, 0, INT_MAX / 1000, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ofs.feed_retention", "How long the changes feed keeps superseded entries and deletions.",
							   NULL, &ofs_feed_retention, "7 days", PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	if (ofs_workers > 0)
	{
		BackgroundWorker worker = {
			.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
			.bgw_start_time = BgWorkerStart_RecoveryFinished,
			.bgw_restart_time = 10,
		};

		strlcpy(worker.bgw_library_name, "ofs", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "ofs_maintenance_main", BGW_MAXLEN);
		strlcpy(worker.bgw_name, "ofs maintenance", BGW_MAXLEN);
		strlcpy(worker.bgw_type, "ofs maintenance", BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
	for (int i = 0; i < ofs_workers; i++)
	{
		BackgroundWorker worker = {
			.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
			.bgw_start_time = BgWorkerStart_RecoveryFinished,
			.bgw_restart_time = 1,
			.bgw_main_arg = Int32GetDatum(i),
		};

		strlcpy(worker.bgw_library_name, "ofs", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "ofs_worker_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "ofs sync worker %d", i);
		strlcpy(worker.bgw_type, "ofs sync worker", BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
}

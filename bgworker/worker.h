/*
 * worker.h: declarations shared by the files of the sync worker.
 *
 * worker.c runs the event loop (libuv, driven from a PostgreSQL wait event
 * set); session.c is the WebSocket protocol callback, each connection's
 * queues and limits, and the one owner of the list of sessions;
 * admission.c decides which connections are taken; message.c parses and
 * checks a device's message, and protocol.c answers it; fanout.c serves
 * many sessions at once (live rounds, authority sweeps); sql.c runs the
 * extension's SQL functions in a transaction of their own, catching every
 * error so that none unwinds through libwebsockets.
 */
#ifndef OFS_WORKER_H
#define OFS_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lws;

/* The GUCs of the worker (worker.c). */
extern char *ofs_listen_addresses;
extern int	ofs_port;
extern char *ofs_database;
extern int	ofs_workers;
extern int	ofs_max_message_bytes;
extern char *ofs_tls_cert_file;
extern char *ofs_tls_key_file;
extern int	ofs_statement_timeout_ms;
extern int	ofs_max_messages_per_second;
extern int	ofs_compact_interval_s;
extern bool ofs_permessage_deflate;
extern char *ofs_feed_retention;
extern int	ofs_max_connections;
extern int	ofs_max_connections_per_address;
extern int	ofs_handshake_timeout_ms;

#define OFS_MAX_BATCH			1000
#define OFS_MAX_ROWS			1000
#define OFS_MAX_QUEUED_BYTES	(8 * 1024 * 1024)
/* A page of changes has at most this many bytes (but one row)... */
#define OFS_MAX_PAGE_BYTES		(4 * 1024 * 1024)
/* ...and a message to a device at most this many (a row alone). */
#define OFS_MAX_MESSAGE_OUT		(72 * 1024 * 1024)
#define OFS_HELLO_TIMEOUT_MS	10000
/* Errors a connection may cause before hello; the next closes it (4001). */
#define OFS_UNAUTHENTICATED_ERRORS	3
/* Before hello: a message's bytes, and all such connections' buffers together. */
#define OFS_MAX_HELLO_BYTES		(256 * 1024)
#define OFS_MAX_UNAUTHENTICATED_BYTES	(32 * 1024 * 1024)

typedef enum SessionState
{
	SESSION_AWAIT_HELLO,		/* connected, not yet authenticated */
	SESSION_READY,				/* a device; requests are answered */
	SESSION_CLOSING				/* a close is queued; input is ignored */
} SessionState;

/* One queued outgoing message, with the headroom libwebsockets needs. */
typedef struct OutMsg
{
	struct OutMsg *next;
	size_t		len;
	unsigned char data[];		/* LWS_PRE bytes, then len bytes of text */
} OutMsg;

/* One WebSocket connection.  Lives in libwebsockets' per-session memory. */
typedef struct Session
{
	struct lws *wsi;
	struct Session *prev;
	struct Session *next;
	SessionState state;
	char	   *device;			/* malloc'd, once authenticated */
	/* The authority hello granted; every request checks it still holds. */
	char		token_sha256[65];	/* hex SHA-256 of the token */
	char	   *role;			/* malloc'd: the role it acts as */
	uint32_t	role_oid;		/* ... and that role's OID */
	int64_t		expires_ms;		/* the token's expiry (0: none) */
	int			page_rows;		/* rows per page after a too large one (0: the limit) */
	bool		cursor_logged;	/* a forged cursor of this session was logged */
	bool		live;			/* changes are pushed as they commit */
	bool		live_pending;	/* there may be changes to push */
	char	   *cursor;			/* live: cursor of the last changes sent */
	char	   *acked;			/* live: last cursor the device stored */
	OutMsg	   *out_head;
	OutMsg	   *out_tail;
	size_t		out_bytes;
	char	   *rx;				/* the message being received */
	size_t		rx_len;
	size_t		rx_cap;
	size_t		rx_counted;		/* of rx_cap, counted as unauthenticated (session.c) */
	bool		rx_binary;
	int64_t		connected_ms;
	int64_t		window_ms;		/* start of the rate-limit window */
	int			window_msgs;
	int			errors;
	int			close_code;		/* non-zero: close after the queue drains */
	bool		close_sent;		/* the close frame is out; waiting for the device's */
	char		close_reason[96];
} Session;

/* worker.c */
#include "utils/palloc.h"
extern MemoryContext WorkerMessageContext;	/* reset after each message */
extern int64_t WorkerNowMs(void);
/* http.c: /metrics and /status on ofs.http_port */
struct lws_context;
struct lws_vhost;
extern int	ofs_http_port;
extern char *ofs_http_listen_addresses;
extern struct lws_vhost *HttpCreateVhost(struct lws_context *ctx);
extern bool HttpAdmit(void);	/* room for one more HTTP connection */
extern void HttpSample(int64_t now);
extern int64_t WorkerNowUs(void);	/* monotonic, for durations */
extern void WorkerScheduleLive(void);

/* admission.c */
struct sockaddr_storage;
extern void AdmissionInit(void);
extern int	AdmissionCapacity(void);
extern bool AdmissionAllowed(const struct sockaddr_storage *sa);
extern void AdmissionAdd(struct lws *wsi, const struct sockaddr_storage *sa);
extern void AdmissionEstablished(struct lws *wsi);
extern void AdmissionRemove(struct lws *wsi);
extern int	AdmissionCount(void);
extern void AdmissionExpire(int64_t now);

/* session.c */
extern int	SessionCallback(struct lws *wsi, int reason, void *user, void *in, size_t len);
extern void SessionSend(Session *s, const char *text, size_t len);
extern void SessionSetLive(Session *s, bool on);
extern void SessionClose(Session *s, int code, const char *reason);
extern void SessionSetString(char **field, const char *value);
extern int	SessionCount(void);
extern int	SessionsCollect(bool (*want) (Session *s, void *arg), void *arg, Session **out, int max);
extern void SessionsMarkLive(void);
extern void SessionsHousekeeping(int64_t now);
extern void SessionsCloseAll(const char *message);

/* protocol.c */
extern void ProtocolHandle(Session *s, const char *text, size_t len);
extern void ProtocolSendError(Session *s, const void *id, const char *code,
							  const char *message, const char *sqlstate, bool retry);
extern void ProtocolRevoked(Session *s, const char *message);
extern bool ProtocolReplyChanges(Session *s, void *id, const char *cursor, const char *body, bool more);
extern int	ProtocolPageRows(int rows, size_t bytes);
/* A page over OFS_MAX_PAGE_BYTES: rolled back and made again with fewer rows. */
#define OFS_PAGE_TOO_LARGE "OF031"

/* fanout.c */
extern bool FanoutLiveRound(void);
extern void FanoutCheckAuthority(void);

/* sqlversion.c */
typedef enum WorkerSqlState
{
	WORKER_SQL_READY,			/* a version this library serves */
	WORKER_SQL_ABSENT,			/* no ofs extension in ofs.database */
	WORKER_SQL_TOO_OLD,			/* older than OFS_OLDEST_SQL_VERSION */
	WORKER_SQL_TOO_NEW,			/* newer than the library, or unreadable */
	WORKER_SQL_UNREADABLE		/* the catalog could not be read */
} WorkerSqlState;

extern int	ofs_sql_version;
extern WorkerSqlState WorkerSqlCheck(const char *who);

/* cursor.c */
typedef enum CursorVerdict
{
	CURSOR_NONE,				/* no cursor: start afresh */
	CURSOR_SEALED,				/* sealed by this origin for this device */
	CURSOR_PLAIN,				/* unsealed, of a valid shape */
	CURSOR_FORGED				/* anything else: treated as none */
} CursorVerdict;

#include "utils/resowner.h"
extern ResourceOwner WorkerCryptoOwner(void);
extern void CursorSetKey(const uint8_t *bytes, size_t len);
extern void CursorLoadKey(void);
extern bool CursorSealing(void);
extern char *CursorSeal(const char *device, const char *cursor);
extern CursorVerdict CursorOpen(const char *device, const char *text, char **cursor);

/* sql.c */
#define SQL_MAX_VALUES 8
typedef struct SqlResult
{
	bool		ok;
	int			nvalues;
	char	   *values[SQL_MAX_VALUES];	/* malloc'd text of the first row, or NULL */
	char		sqlstate[6];
	char	   *message;		/* malloc'd, on failure */
	char	   *detail;
	bool		retry;			/* the same request may succeed later */
} SqlResult;

typedef void (*SqlRowFn) (void *arg, char **cols, int ncols);
/* Runs inside the transaction after the statement; may raise an ERROR. */
typedef void (*SqlAfterFn) (void *arg, SqlResult *res);

extern void WorkerSql(const char *sql, int nargs, const char *const *args, SqlResult *res);
extern void WorkerSqlRows(const char *sql, int nargs, const char *const *args,
						  SqlRowFn fn, void *arg, SqlResult *res);
extern void WorkerSqlTx(const char *sql, int nargs, const char *const *args,
						SqlRowFn fn, SqlAfterFn after, void *arg, SqlResult *res);
extern void WorkerPullTx(const char *device, const char *cursor, int max_rows, const char *confirmed,
						 bool plain, SqlAfterFn after, void *arg, SqlResult *res);
extern void WorkerLiveTx(int n, char **devices, char **cursors, char **acked, int max_rows,
						 SqlRowFn fn, SqlAfterFn after, void *arg, SqlResult *res);
extern void SqlResultFree(SqlResult *res);
extern void SqlCheckAuthority(const char *device, const char *token_sha256, const char *role,
							  uint32_t *role_oid, int64_t *expires_ms);
extern void SqlLostAuthorities(const char *devices, const char *hashes, const char *roles,
							   const char *oids, int n, bool *lost);
extern bool SqlTokenSha256(const char *token, char out[65]);

#endif							/* OFS_WORKER_H */

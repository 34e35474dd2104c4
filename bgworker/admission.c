/*
 * admission.c: which connections a sync worker takes, and for how long it
 * waits for them to become devices.
 *
 * Every connection costs a descriptor and libwebsockets' state from the
 * moment it is accepted, before it has said a word.  So that a flood of
 * connections (half-open, or one address opening thousands) cannot starve
 * real devices, each worker keeps:
 *   - at most ofs.max_connections connections (and never more than its
 *     descriptor limit allows, which it raises to the hard limit at start);
 *   - at most ofs.max_connections_per_address from one client address;
 *   - a deadline, ofs.handshake_timeout, for a connection to finish its
 *     WebSocket handshake; after it the connection is dropped.
 * A refused connection is closed at once.  The limits are per worker: the
 * kernel spreads connections over the workers (docs/PROTOCOL.md, Limits).
 */
#include "postgres.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <libwebsockets.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "worker.h"

int			ofs_max_connections = 10000;
int			ofs_max_connections_per_address = 500;
int			ofs_handshake_timeout_ms = 5000;

/* Descriptors kept for everything else the worker opens. */
#define RESERVED_FDS 64

typedef struct AddrKey
{
	uint8		bytes[16];		/* IPv6, or IPv4 mapped */
} AddrKey;

typedef struct AddrEntry
{
	AddrKey		key;
	int			count;
} AddrEntry;

typedef struct ConnEntry
{
	struct lws *wsi;			/* key */
	AddrKey		addr;
	int64_t		accepted_ms;
	bool		established;
} ConnEntry;

static HTAB *conns = NULL;
static HTAB *addrs = NULL;
static int	nconns = 0;
static int	fd_capacity = 0;

/* AdmissionInit raises the descriptor limit and makes the tables. */
void
AdmissionInit(void)
{
	struct rlimit rl;
	HASHCTL		ctl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		if (rl.rlim_cur < rl.rlim_max)
		{
			rlim_t		before = rl.rlim_cur;

			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				rl.rlim_cur = before;
		}
		fd_capacity = rl.rlim_cur > (rlim_t) INT_MAX ? INT_MAX : (int) rl.rlim_cur;
	}
	else
		fd_capacity = 1024;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(struct lws *);
	ctl.entrysize = sizeof(ConnEntry);
	ctl.hcxt = TopMemoryContext;
	conns = hash_create("ofs sync worker connections", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(AddrKey);
	ctl.entrysize = sizeof(AddrEntry);
	ctl.hcxt = TopMemoryContext;
	addrs = hash_create("ofs sync worker client addresses", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* AdmissionCapacity is how many connections this worker takes at most. */
int
AdmissionCapacity(void)
{
	return Min(ofs_max_connections, Max(fd_capacity - RESERVED_FDS, 16));
}

static void
AddrOf(const struct sockaddr_storage *sa, AddrKey *key)
{
	memset(key, 0, sizeof(*key));
	if (sa->ss_family == AF_INET6)
		memcpy(key->bytes, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
	else if (sa->ss_family == AF_INET)
	{
		key->bytes[10] = key->bytes[11] = 0xff;
		memcpy(key->bytes + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);
	}
}

/*
 * AdmissionAllowed: may a connection from this address be taken now?
 * Called for each accepted socket before libwebsockets sees it.
 */
bool
AdmissionAllowed(const struct sockaddr_storage *sa)
{
	AddrKey		key;
	AddrEntry  *a;

	if (nconns >= AdmissionCapacity())
		return false;
	AddrOf(sa, &key);
	a = hash_search(addrs, &key, HASH_FIND, NULL);
	return a == NULL || a->count < ofs_max_connections_per_address;
}

/* AdmissionAdd records a connection handed to libwebsockets. */
void
AdmissionAdd(struct lws *wsi, const struct sockaddr_storage *sa)
{
	bool		found;
	ConnEntry  *c = hash_search(conns, &wsi, HASH_ENTER, &found);
	AddrEntry  *a;

	if (found)
		return;
	AddrOf(sa, &c->addr);
	c->accepted_ms = WorkerNowMs();
	c->established = false;
	a = hash_search(addrs, &c->addr, HASH_ENTER, &found);
	a->count = found ? a->count + 1 : 1;
	nconns++;
}

/* AdmissionEstablished: the connection finished its WebSocket handshake. */
void
AdmissionEstablished(struct lws *wsi)
{
	ConnEntry  *c = hash_search(conns, &wsi, HASH_FIND, NULL);

	if (c)
		c->established = true;
}

/* AdmissionRemove forgets a connection libwebsockets is destroying. */
void
AdmissionRemove(struct lws *wsi)
{
	ConnEntry  *c = hash_search(conns, &wsi, HASH_FIND, NULL);
	AddrEntry  *a;

	if (c == NULL)
		return;
	a = hash_search(addrs, &c->addr, HASH_FIND, NULL);
	if (a && --a->count <= 0)
		hash_search(addrs, &c->addr, HASH_REMOVE, NULL);
	hash_search(conns, &wsi, HASH_REMOVE, NULL);
	nconns--;
}

/* AdmissionCount is how many connections the worker holds. */
int
AdmissionCount(void)
{
	return nconns;
}

/*
 * AdmissionExpire drops connections that have not finished their
 * handshake within ofs.handshake_timeout.  Called about once a second.
 */
void
AdmissionExpire(int64_t now)
{
	HASH_SEQ_STATUS seq;
	ConnEntry  *c;

	hash_seq_init(&seq, conns);
	while ((c = hash_seq_search(&seq)) != NULL)
		if (!c->established && now - c->accepted_ms > ofs_handshake_timeout_ms)
		{
			/*
			 * Closed at once: this runs from the worker's loop, outside
			 * libwebsockets' callbacks.  Its destroy callback removes the
			 * entry, which a sequential scan allows for the current one.
			 */
			c->established = true;
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
		}
}

/*
 * device_bench: the device rows of the benchmark (bench/rows/6*_device_*.sh),
 * driving libofs as an application would.  Every mode prints its figures on
 * one line of stdout (seconds unless said otherwise) and its diagnostics on
 * stderr; it exits 1, saying why, when something did not happen as it
 * should (a sync failed, rows are missing).
 *
 *   device_bench initial PATH URL TOKEN TABLE ROWS
 *       A fresh device file subscribes to TABLE and syncs once; the time of
 *       ofs_sync, from its start to its return.  The local table must then
 *       hold ROWS rows.
 *   device_bench copy PATH CONNINFO TABLE ROWS
 *       The baseline of "initial": COPY TABLE TO STDOUT from the origin
 *       (libpq, connection included) inserted as it arrives into a plain
 *       SQLite table of a fresh file, in one transaction, with the pragmas
 *       of a device file (WAL, synchronous = NORMAL).
 *   device_bench relay DIR URL TOKEN_A TOKEN_B TABLE ROWS
 *       Device B syncs, then goes live (ofs_live in a thread of its own,
 *       counting row_changed).  Device A syncs, inserts ROWS rows offline
 *       (transactions of 1,000 through ofs_sqlite) and syncs again: the time
 *       from the start of that sync (in a thread of its own) until B's
 *       callback has seen all ROWS rows, then the time of A's sync alone
 *       (-1 when it has not returned 20 s after B had all the rows).
 *   device_bench latency DIR URL TOKEN_A TOKEN_B TABLE TRIALS
 *       A and B each live in a thread of their own, each with its own
 *       ofs_db.  A second ofs_db on A's file (the application's connection,
 *       in the main thread) inserts one row at a time through ofs_sqlite;
 *       the time from just before the insert until B's row_changed callback
 *       fires for it (CLOCK_MONOTONIC, one process), after 20 trials not
 *       counted, 25 ms apart (a row not there within 5 s is waited for no
 *       longer; its time is taken if it comes before the end).  Prints p50,
 *       p99 and max in milliseconds ("inf": a row that never came), the
 *       number of rows that never came, the number that came after 5 s, and
 *       the number of trials run (no new trial starts after 45 s).
 *   device_bench notify CONNINFO TABLE TRIALS
 *       The baseline of "latency" at the origin: one libpq connection
 *       inserts a row into TABLE (not synced) and calls pg_notify in the
 *       same transaction; another, LISTENing in a thread, receives it.
 *       Same trials, same figures.
 *   device_bench write PATH URL TOKEN TABLE RUNS TXNS ROWS
 *       A device syncs once (creating the synced table), then, offline,
 *       RUNS times: TXNS transactions of ROWS inserts through a prepared
 *       statement into the synced table (the row and its intent in the
 *       outbox) and the same into a plain table of the same file and
 *       connection, alternating which goes first.  Prints the medians over
 *       the runs of the time of one run, synced then plain.
 *   device_bench read PATH URL TOKEN TABLE LOOKUPS
 *       A device pulls TABLE, copies its rows into a plain table of the same
 *       file, and looks up LOOKUPS random keys by primary key through a
 *       prepared SELECT on each table (twice, alternating; the round with
 *       the lower p99 counts), each lookup timed on its own.  Prints p50
 *       and p99 of the synced table, then of the plain one, in
 *       microseconds.
 *   device_bench offline PATH URL TOKEN CONNINFO TABLE ROWS
 *       A device syncs once (TABLE empty), inserts ROWS rows offline
 *       (transactions of 1,000 through ofs_sqlite) and syncs again, in a
 *       thread of its own; the main thread counts TABLE at the origin
 *       (libpq) every 2 ms.  Prints the time from the start of that sync
 *       until the origin has all ROWS rows, the time of the whole sync, and
 *       the number of changes the sync pulled back.
 *   device_bench insert CONNINFO TABLE ROWS
 *       The baseline of "offline": the same ROWS rows inserted at the
 *       origin into TABLE (a plain table) by multi-row INSERTs of 1,000
 *       rows, a transaction each (libpq, connection included).
 *   device_bench conflicts DIR URL TOKEN_A TOKEN_B CONNINFO TABLE ROWS
 *       Devices A and B sync TABLE (ROWS rows), then both edit every row
 *       offline (A's texts, then B's), and sync together, each in a thread
 *       of its own, round after round, until both hold exactly the origin's
 *       rows (at most 10 rounds).  Prints the time of the rounds, their
 *       number, and the changes the devices pulled.
 *   device_bench update CONNINFO TABLE ROWS
 *       The baseline of "conflicts": the same two edits of every row made
 *       at the origin as two UPDATE statements (libpq, connection
 *       included).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/select.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "libofs.h"

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double
now_s(void)
{
	return now_ns() / 1e9;
}

static void
sleep_ms(double ms)
{
	struct timespec ts = {(time_t) (ms / 1000), (long) ((ms - (time_t) (ms / 1000) * 1000) * 1e6)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "device_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void
remove_db(const char *path)
{
	char		p[4096];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
}

static void
sql_exec(sqlite3 *s, const char *sql)
{
	char	   *msg = NULL;

	if (sqlite3_exec(s, sql, NULL, NULL, &msg) != SQLITE_OK)
		die("%s: %s", sql, msg ? msg : sqlite3_errmsg(s));
}

static sqlite3_stmt *
sql_prepare(sqlite3 *s, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
		die("%s: %s", sql, sqlite3_errmsg(s));
	return st;
}

static int64_t
sql_count(sqlite3 *s, const char *table)
{
	char	   *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", table);
	sqlite3_stmt *st = sql_prepare(s, sql);
	int64_t		n = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return n;
}

/* The text of row i: 32 hex digits and "abcdefgh", 40 bytes like the origin's md5(i) || 'abcdefgh'. */
static void
row_text(uint64_t i, char out[41])
{
	uint64_t	a = i * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
	uint64_t	b;

	a = (a ^ (a >> 30)) * 0xBF58476D1CE4E5B9ULL;
	a = (a ^ (a >> 27)) * 0x94D049BB133111EBULL;
	a ^= a >> 31;
	b = (a ^ (a >> 29)) * 0xBF58476D1CE4E5B9ULL;
	b ^= b >> 32;
	snprintf(out, 41, "%016llx%016llxabcdefgh", (unsigned long long) a, (unsigned long long) b);
}

/* insert_row binds (key, text of i, i % 2) to an INSERT of three parameters and runs it. */
static void
insert_row(sqlite3 *s, sqlite3_stmt *st, const char *key, uint64_t i)
{
	char		text[41];
	int			rc;

	row_text(i, text);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, text, 40, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, (int64_t) (i % 2));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		die("insert of %s: %s", key, sqlite3_errmsg(s));
}

/* A fresh device file at path, configured and subscribed to table (not synced yet). */
static ofs_db *
fresh_device(const char *path, const char *url, const char *token, const char *table)
{
	ofs_db	   *db;

	remove_db(path);
	if (ofs_open(path, &db) != OFS_OK)
		die("ofs_open %s: %s", path, ofs_errmsg(db));
	if (ofs_configure(db, url, token) != OFS_OK)
		die("ofs_configure: %s", ofs_errmsg(db));
	if (ofs_subscribe(db, table, NULL) != OFS_OK)
		die("ofs_subscribe %s: %s", table, ofs_errmsg(db));
	return db;
}

static void
sync_or_die(ofs_db *db, const char *what, ofs_sync_stats *stats)
{
	ofs_sync_stats s;
	ofs_rc		rc = ofs_sync(db, stats ? stats : &s);

	if (rc != OFS_OK)
		die("ofs_sync (%s): rc %d: %s", what, rc, ofs_errmsg(db));
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return x < y ? -1 : x > y;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values (nearest rank). */
static int64_t
quantile(const int64_t *v, int n, double q)
{
	int			k = (int) (q * n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* ---- live devices, each in a thread of its own ---- */

typedef struct Live
{
	ofs_db	   *db;
	pthread_t	thread;
	char		table[256];		/* the origin's name, as callbacks give it */
	atomic_int	live;
	atomic_int	stopping;
	atomic_int	disconnects;
	atomic_llong changed;		/* row_changed upserts of table */
	int64_t		target;			/* relay: when changed reaches it, done_ns is set */
	atomic_llong done_ns;
	/* latency: arrival time of each key prefix<i> */
	const char *prefix;
	atomic_llong *arrived;
	int			narrived;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ofs_rc		rc;
	char		err[512];
} Live;

static void
LiveRow(void *user, const char *table, const char *op, const char *pk_json, const char *row_json)
{
	Live	   *l = user;
	int64_t		t = now_ns();
	long long	n;

	(void) row_json;
	if (strcmp(table, l->table) != 0 || strcmp(op, "upsert") != 0)
		return;
	n = atomic_fetch_add(&l->changed, 1) + 1;
	if (l->target && n == l->target)
		atomic_store(&l->done_ns, t);
	if (l->arrived)
	{
		const char *p = strstr(pk_json, l->prefix);

		if (p)
		{
			long		i = strtol(p + strlen(l->prefix), NULL, 10);

			if (i >= 0 && i < l->narrived)
			{
				long long	zero = 0;

				if (atomic_compare_exchange_strong(&l->arrived[i], &zero, t))
				{
					pthread_mutex_lock(&l->mu);
					pthread_cond_broadcast(&l->cv);
					pthread_mutex_unlock(&l->mu);
				}
			}
		}
	}
}

static void
LiveState(void *user, const char *state)
{
	Live	   *l = user;

	if (strcmp(state, "live") == 0)
		atomic_store(&l->live, 1);
	else if (strcmp(state, "disconnected") == 0)
	{
		if (atomic_exchange(&l->live, 0) && !atomic_load(&l->stopping))
			atomic_fetch_add(&l->disconnects, 1);
	}
}

static void *
LiveMain(void *arg)
{
	Live	   *l = arg;

	l->rc = ofs_live(l->db, 0);
	if (l->rc != OFS_OK)
		snprintf(l->err, sizeof(l->err), "%s", ofs_errmsg(l->db));
	return NULL;
}

static void
live_start(Live *l, ofs_db *db, const char *table)
{
	ofs_callbacks cb;

	l->db = db;
	snprintf(l->table, sizeof(l->table), "public.%s", table);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	memset(&cb, 0, sizeof(cb));
	cb.row_changed = LiveRow;
	cb.connection = LiveState;
	ofs_set_callbacks(db, &cb, l);
	if (pthread_create(&l->thread, NULL, LiveMain, l) != 0)
		die("pthread_create failed");
}

static void
live_wait(Live *l, const char *who)
{
	int64_t		deadline = now_ns() + 30 * (int64_t) 1000000000;

	while (!atomic_load(&l->live))
	{
		if (now_ns() > deadline)
			die("device %s did not go live within 30 s", who);
		sleep_ms(5);
	}
}

static void
live_stop(Live *l, const char *who)
{
	atomic_store(&l->stopping, 1);
	ofs_stop(l->db);
	pthread_join(l->thread, NULL);
	if (l->rc != OFS_OK)
		die("ofs_live of device %s returned %d: %s", who, l->rc, l->err);
	if (atomic_load(&l->disconnects) > 0)
		fprintf(stderr, "device %s lost its live connection %d time(s)\n", who, atomic_load(&l->disconnects));
	ofs_set_callbacks(l->db, NULL, NULL);
}

/* ---- modes ---- */

static int
mode_initial(int argc, char **argv)
{
	ofs_db	   *db;
	ofs_sync_stats st;
	double		t0, t1;
	int64_t		n;

	if (argc != 7)
		die("usage: initial PATH URL TOKEN TABLE ROWS");
	db = fresh_device(argv[2], argv[3], argv[4], argv[5]);
	t0 = now_s();
	sync_or_die(db, "initial", &st);
	t1 = now_s();
	n = sql_count(ofs_sqlite(db), argv[5]);
	if (n != atoll(argv[6]))
		die("the device holds %lld rows of %s after its first sync, not %s", (long long) n, argv[5], argv[6]);
	fprintf(stderr, "initial sync: %lld changes pulled in %.3f s\n", (long long) st.pulled, t1 - t0);
	ofs_close(db);
	printf("%.6f\n", t1 - t0);
	return 0;
}

/* copy_field: the next tab-separated field of a COPY text line, unescaped in place; NULL for \N. */
static char *
copy_field(char **pos, int *is_null)
{
	char	   *start = *pos;
	char	   *r = start;
	char	   *w = start;

	*is_null = 0;
	if (r[0] == '\\' && r[1] == 'N' && (r[2] == '\t' || r[2] == '\n' || r[2] == '\0'))
	{
		*is_null = 1;
		r += 2;
		*pos = *r ? r + 1 : r;
		return NULL;
	}
	while (*r && *r != '\t' && *r != '\n')
	{
		if (*r == '\\' && r[1])
		{
			r++;
			switch (*r)
			{
				case 't':
					*w++ = '\t';
					break;
				case 'n':
					*w++ = '\n';
					break;
				case 'r':
					*w++ = '\r';
					break;
				default:
					*w++ = *r;
			}
			r++;
		}
		else
			*w++ = *r++;
	}
	*pos = *r ? r + 1 : r;
	*w = '\0';
	return start;
}

static int
mode_copy(int argc, char **argv)
{
	sqlite3    *s;
	sqlite3_stmt *ins;
	PGconn	   *conn;
	PGresult   *res;
	char	   *buf;
	char	   *sql;
	int			len;
	double		t0, t1;
	int64_t		n;

	if (argc != 6)
		die("usage: copy PATH CONNINFO TABLE ROWS");
	remove_db(argv[2]);
	if (sqlite3_open(argv[2], &s) != SQLITE_OK)
		die("cannot open %s", argv[2]);
	sql_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
	t0 = now_s();
	conn = PQconnectdb(argv[3]);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connection to the origin failed: %s", PQerrorMessage(conn));
	sql_exec(s, "CREATE TABLE plain_todos (id TEXT PRIMARY KEY, text TEXT, done INTEGER)");
	sql_exec(s, "BEGIN");
	ins = sql_prepare(s, "INSERT INTO plain_todos (id, text, done) VALUES (?1, ?2, ?3)");
	sql = sqlite3_mprintf("COPY \"%w\" (id, text, done) TO STDOUT", argv[4]);
	res = PQexec(conn, sql);
	sqlite3_free(sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
		die("COPY: %s", PQerrorMessage(conn));
	PQclear(res);
	while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
	{
		char	   *pos = buf;
		int			null_id, null_text, null_done;
		char	   *id = copy_field(&pos, &null_id);
		char	   *text = copy_field(&pos, &null_text);
		char	   *done = copy_field(&pos, &null_done);

		sqlite3_bind_text(ins, 1, id, -1, SQLITE_STATIC);
		if (null_text)
			sqlite3_bind_null(ins, 2);
		else
			sqlite3_bind_text(ins, 2, text, -1, SQLITE_STATIC);
		if (null_done)
			sqlite3_bind_null(ins, 3);
		else
			sqlite3_bind_int64(ins, 3, strtoll(done, NULL, 10));
		if (null_id || sqlite3_step(ins) != SQLITE_DONE)
			die("inserting a copied row: %s", sqlite3_errmsg(s));
		sqlite3_reset(ins);
		PQfreemem(buf);
	}
	if (len == -2)
		die("COPY: %s", PQerrorMessage(conn));
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("COPY: %s", PQerrorMessage(conn));
	PQclear(res);
	sqlite3_finalize(ins);
	sql_exec(s, "COMMIT");
	t1 = now_s();
	PQfinish(conn);
	n = sql_count(s, "plain_todos");
	if (n != atoll(argv[5]))
		die("the plain table holds %lld rows, not %s", (long long) n, argv[5]);
	sqlite3_close(s);
	printf("%.6f\n", t1 - t0);
	return 0;
}

/* An ofs_sync in a thread of its own. */
typedef struct Syncer
{
	ofs_db	   *db;
	ofs_sync_stats st;
	ofs_rc		rc;
	char		err[512];
	atomic_llong end_ns;
} Syncer;

static void *
SyncMain(void *arg)
{
	Syncer	   *s = arg;

	s->rc = ofs_sync(s->db, &s->st);
	if (s->rc != OFS_OK)
		snprintf(s->err, sizeof(s->err), "%s", ofs_errmsg(s->db));
	atomic_store(&s->end_ns, now_ns());
	return NULL;
}

static int
mode_relay(int argc, char **argv)
{
	char		path_a[4096], path_b[4096];
	const char *dir, *url, *table;
	ofs_db	   *a, *b;
	Live		lb;
	Syncer		as;
	pthread_t	th;
	sqlite3_stmt *ins;
	char	   *sql;
	int64_t		rows, i, t0, t1, done, deadline, pending, got;

	if (argc != 8)
		die("usage: relay DIR URL TOKEN_A TOKEN_B TABLE ROWS");
	dir = argv[2];
	url = argv[3];
	table = argv[6];
	rows = atoll(argv[7]);
	snprintf(path_a, sizeof(path_a), "%s/relay_a.db", dir);
	snprintf(path_b, sizeof(path_b), "%s/relay_b.db", dir);

	b = fresh_device(path_b, url, argv[5], table);
	sync_or_die(b, "device B, first", NULL);
	if (sql_count(ofs_sqlite(b), table) != 0)
		die("device B does not start empty");
	a = fresh_device(path_a, url, argv[4], table);
	sync_or_die(a, "device A, first", NULL);

	/* A, offline: rows inserted in transactions of 1,000. */
	sql = sqlite3_mprintf("INSERT INTO \"%w\" (id, text, done) VALUES (?1, ?2, ?3)", table);
	ins = sql_prepare(ofs_sqlite(a), sql);
	sqlite3_free(sql);
	for (i = 0; i < rows; i++)
	{
		char		key[64];

		if (i % 1000 == 0)
			sql_exec(ofs_sqlite(a), "BEGIN");
		snprintf(key, sizeof(key), "relay-%lld", (long long) i);
		insert_row(ofs_sqlite(a), ins, key, (uint64_t) i);
		if (i % 1000 == 999 || i == rows - 1)
			sql_exec(ofs_sqlite(a), "COMMIT");
	}
	sqlite3_finalize(ins);
	pending = sql_count(ofs_sqlite(a), "_ofs_outbox");
	if (pending != rows)
		die("device A has %lld intents in its outbox, not %lld", (long long) pending, (long long) rows);

	memset(&lb, 0, sizeof(lb));
	lb.target = rows;
	live_start(&lb, b, table);
	live_wait(&lb, "B");
	sleep_ms(200);

	/* A's sync runs in a thread of its own: B is timed whatever A's sync takes. */
	memset(&as, 0, sizeof(as));
	as.db = a;
	t0 = now_ns();
	if (pthread_create(&th, NULL, SyncMain, &as) != 0)
		die("pthread_create failed");
	deadline = now_ns() + 60 * (int64_t) 1000000000;
	while ((done = atomic_load(&lb.done_ns)) == 0 && now_ns() < deadline && !(atomic_load(&as.end_ns) && as.rc))
		sleep_ms(1);
	got = atomic_load(&lb.changed);
	if (atomic_load(&as.end_ns) && as.rc != OFS_OK)
		die("ofs_sync (device A, with its offline rows): rc %d: %s", as.rc, as.err);
	if (done == 0)
		die("live device B received %lld of %lld rows within 60 s of the start of A's sync",
			(long long) got, (long long) rows);
	/* A's sync is waited for up to 20 s more; past that, its time is reported as unknown (-1). */
	deadline = now_ns() + 20 * (int64_t) 1000000000;
	while ((t1 = atomic_load(&as.end_ns)) == 0 && now_ns() < deadline)
		sleep_ms(1);
	live_stop(&lb, "B");
	if (sql_count(ofs_sqlite(b), table) != rows)
		die("device B holds %lld rows, not %lld", (long long) sql_count(ofs_sqlite(b), table), (long long) rows);
	if (t1 == 0)
	{
		fprintf(stderr, "relay: B had all %lld rows %.3f s after A's sync started; A's sync had not returned %.3f s after it started\n",
				(long long) rows, (done - t0) / 1e9, (now_ns() - t0) / 1e9);
		printf("%.6f -1\n", (done - t0) / 1e9);
		fflush(stdout);
		_exit(0);				/* A's sync is still running */
	}
	pthread_join(th, NULL);
	if (as.rc != OFS_OK)
		die("ofs_sync (device A, with its offline rows): rc %d: %s", as.rc, as.err);
	if (as.st.applied != rows || as.st.pending != 0)
		die("device A's sync: %lld applied of %lld pushed, %lld pending", (long long) as.st.applied,
			(long long) as.st.pushed, (long long) as.st.pending);
	fprintf(stderr, "relay: A pushed %lld and pulled %lld in %.3f s; B had all %lld rows %.3f s after A's sync started\n",
			(long long) as.st.pushed, (long long) as.st.pulled, (t1 - t0) / 1e9, (long long) rows, (done - t0) / 1e9);
	ofs_close(a);
	ofs_close(b);
	printf("%.6f %.6f\n", (done - t0) / 1e9, (t1 - t0) / 1e9);
	return 0;
}

#define WARMUP 20
#define TRIAL_GAP_MS 25
#define TRIAL_TIMEOUT_S 5
#define TRIALS_BUDGET_S 45

/*
 * report_latencies prints p50, p99 and max (ms) over the trials run, the
 * number of rows that never arrived (counted as infinitely late: "inf"
 * when a quantile falls on one), the number that arrived but after the
 * TRIAL_TIMEOUT_S wait (counted with their real time), and the number of
 * trials run (fewer than asked when TRIALS_BUDGET_S ran out).
 */
static void
report_latencies(const int64_t *start, const int64_t *waited, atomic_llong *arrived, int trials)
{
	int64_t    *lat = malloc(sizeof(int64_t) * (trials > 0 ? trials : 1));
	int			n = 0, lost = 0, late = 0;

	for (int i = 0; i < trials; i++)
	{
		int64_t		end;

		if (start[i] == 0)
			continue;
		end = atomic_load(&arrived[i]);
		if (end == 0)
			lost++;
		else if (waited[i] == 0)
			late++;
		lat[n++] = end == 0 ? INT64_MAX : end - start[i];
	}
	if (n == 0)
		die("no trial was run");
	qsort(lat, n, sizeof(int64_t), cmp_i64);
#define MS(x) ((x) == INT64_MAX ? INFINITY : (x) / 1e6)
	printf("%.3f %.3f %.3f %d %d %d\n", MS(quantile(lat, n, 0.50)), MS(quantile(lat, n, 0.99)),
		   MS(lat[n - 1]), lost, late, n);
#undef MS
	free(lat);
}

static int
mode_latency(int argc, char **argv)
{
	char		path_a[4096], path_b[4096];
	const char *dir, *url, *table;
	int			trials, total;
	ofs_db	   *a, *b, *w;
	Live		la, lb;
	sqlite3_stmt *ins, *pending;
	char	   *sql;
	int64_t    *start, *end, budget;

	if (argc != 8)
		die("usage: latency DIR URL TOKEN_A TOKEN_B TABLE TRIALS");
	dir = argv[2];
	url = argv[3];
	table = argv[6];
	trials = atoi(argv[7]);
	total = WARMUP + trials;
	snprintf(path_a, sizeof(path_a), "%s/latency_a.db", dir);
	snprintf(path_b, sizeof(path_b), "%s/latency_b.db", dir);

	a = fresh_device(path_a, url, argv[4], table);
	sync_or_die(a, "device A, first", NULL);
	b = fresh_device(path_b, url, argv[5], table);
	sync_or_die(b, "device B, first", NULL);
	/* The application's own connection to A's file. */
	if (ofs_open(path_a, &w) != OFS_OK)
		die("ofs_open %s (writer): %s", path_a, ofs_errmsg(w));
	sql = sqlite3_mprintf("INSERT INTO \"%w\" (id, text, done) VALUES (?1, ?2, ?3)", table);
	ins = sql_prepare(ofs_sqlite(w), sql);
	sqlite3_free(sql);
	pending = sql_prepare(ofs_sqlite(w), "SELECT 1 FROM _ofs_outbox WHERE json_extract(pk, '$.id') = ?1");

	memset(&la, 0, sizeof(la));
	memset(&lb, 0, sizeof(lb));
	lb.prefix = "\"lat-";
	lb.narrived = total;
	lb.arrived = calloc(total, sizeof(atomic_llong));
	start = calloc(total, sizeof(int64_t));
	end = calloc(total, sizeof(int64_t));
	live_start(&la, a, table);
	live_start(&lb, b, table);
	live_wait(&la, "A");
	live_wait(&lb, "B");
	sleep_ms(300);

	budget = now_ns() + TRIALS_BUDGET_S * (int64_t) 1000000000;
	for (int i = 0; i < total && now_ns() < budget; i++)
	{
		char		key[64];
		struct timespec until;

		snprintf(key, sizeof(key), "lat-%d", i);
		start[i] = now_ns();
		insert_row(ofs_sqlite(w), ins, key, (uint64_t) i);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += TRIAL_TIMEOUT_S;
		pthread_mutex_lock(&lb.mu);
		while (atomic_load(&lb.arrived[i]) == 0)
			if (pthread_cond_timedwait(&lb.cv, &lb.mu, &until) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&lb.mu);
		end[i] = atomic_load(&lb.arrived[i]);
		if (end[i] == 0)
		{
			/* Where is it: not yet pushed by A, or applied by the origin and not yet at B? */
			sqlite3_bind_text(pending, 1, key, -1, SQLITE_STATIC);
			fprintf(stderr, "row %s did not reach device B within %d s; its intent %s A's outbox\n", key,
					TRIAL_TIMEOUT_S, sqlite3_step(pending) == SQLITE_ROW ? "is still in" : "has left");
			sqlite3_reset(pending);
		}
		sleep_ms(TRIAL_GAP_MS);
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(pending);
	sleep_ms(500);
	live_stop(&la, "A");
	live_stop(&lb, "B");
	report_latencies(start + WARMUP, end + WARMUP, lb.arrived + WARMUP, trials);
	ofs_close(w);
	ofs_close(a);
	ofs_close(b);
	return 0;
}

typedef struct Listener
{
	PGconn	   *conn;
	int			total;
	atomic_llong *arrived;
	atomic_int	stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} Listener;

static void *
ListenMain(void *arg)
{
	Listener   *l = arg;
	int			sock = PQsocket(l->conn);

	while (!atomic_load(&l->stop))
	{
		fd_set		rd;
		struct timeval tv = {0, 100000};
		PGnotify   *nt;

		FD_ZERO(&rd);
		FD_SET(sock, &rd);
		if (select(sock + 1, &rd, NULL, NULL, &tv) < 0 && errno != EINTR)
			break;
		PQconsumeInput(l->conn);
		while ((nt = PQnotifies(l->conn)) != NULL)
		{
			int64_t		t = now_ns();
			long		i = strtol(nt->extra, NULL, 10);

			if (i >= 0 && i < l->total)
			{
				long long	zero = 0;

				if (atomic_compare_exchange_strong(&l->arrived[i], &zero, t))
				{
					pthread_mutex_lock(&l->mu);
					pthread_cond_broadcast(&l->cv);
					pthread_mutex_unlock(&l->mu);
				}
			}
			PQfreemem(nt);
		}
	}
	return NULL;
}

static int
mode_notify(int argc, char **argv)
{
	PGconn	   *send, *recv;
	PGresult   *res;
	Listener	l;
	pthread_t	th;
	int			trials, total;
	int64_t    *start, *end, budget;

	if (argc != 5)
		die("usage: notify CONNINFO TABLE TRIALS");
	trials = atoi(argv[4]);
	total = WARMUP + trials;
	send = PQconnectdb(argv[2]);
	recv = PQconnectdb(argv[2]);
	if (PQstatus(send) != CONNECTION_OK || PQstatus(recv) != CONNECTION_OK)
		die("connection to the origin failed: %s", PQerrorMessage(PQstatus(send) != CONNECTION_OK ? send : recv));
	res = PQexec(recv, "LISTEN bench_device_latency");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("LISTEN: %s", PQerrorMessage(recv));
	PQclear(res);
	memset(&l, 0, sizeof(l));
	l.conn = recv;
	l.total = total;
	l.arrived = calloc(total, sizeof(atomic_llong));
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.cv, NULL);
	start = calloc(total, sizeof(int64_t));
	end = calloc(total, sizeof(int64_t));
	if (pthread_create(&th, NULL, ListenMain, &l) != 0)
		die("pthread_create failed");
	budget = now_ns() + TRIALS_BUDGET_S * (int64_t) 1000000000;
	for (int i = 0; i < total && now_ns() < budget; i++)
	{
		char		key[64], text[41];
		char	   *q;
		struct timespec until;

		snprintf(key, sizeof(key), "lat-%d", i);
		row_text((uint64_t) i, text);
		/* Two statements in one implicit transaction: the simple query protocol, literals quoted. */
		q = sqlite3_mprintf("INSERT INTO \"%w\" (id, text, done) VALUES ('%q', '%q', %d);"
							" SELECT pg_notify('bench_device_latency', '%d')", argv[3], key, text, i % 2, i);
		start[i] = now_ns();
		res = PQexec(send, q);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("insert and notify: %s", PQerrorMessage(send));
		PQclear(res);
		sqlite3_free(q);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += TRIAL_TIMEOUT_S;
		pthread_mutex_lock(&l.mu);
		while (atomic_load(&l.arrived[i]) == 0)
			if (pthread_cond_timedwait(&l.cv, &l.mu, &until) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&l.mu);
		end[i] = atomic_load(&l.arrived[i]);
		sleep_ms(TRIAL_GAP_MS);
	}
	sleep_ms(500);
	atomic_store(&l.stop, 1);
	pthread_join(th, NULL);
	report_latencies(start + WARMUP, end + WARMUP, l.arrived + WARMUP, trials);
	PQfinish(send);
	PQfinish(recv);
	return 0;
}

/* write_run: txns transactions of rows inserts; seconds. */
static double
write_run(sqlite3 *s, sqlite3_stmt *ins, const char *tag, int run, int txns, int rows)
{
	double		t0 = now_s();

	for (int t = 0; t < txns; t++)
	{
		sql_exec(s, "BEGIN");
		for (int j = 0; j < rows; j++)
		{
			char		key[64];

			snprintf(key, sizeof(key), "%s-%d-%d-%d", tag, run, t, j);
			insert_row(s, ins, key, (uint64_t) ((run * txns + t) * rows + j));
		}
		sql_exec(s, "COMMIT");
	}
	return now_s() - t0;
}

static int
mode_write(int argc, char **argv)
{
	ofs_db	   *db;
	sqlite3    *s;
	sqlite3_stmt *synced, *plain;
	char	   *sql;
	int			runs, txns, rows;
	double	   *ts, *tp;
	int64_t		intents;

	if (argc != 9)
		die("usage: write PATH URL TOKEN TABLE RUNS TXNS ROWS");
	runs = atoi(argv[6]);
	txns = atoi(argv[7]);
	rows = atoi(argv[8]);
	db = fresh_device(argv[2], argv[3], argv[4], argv[5]);
	sync_or_die(db, "first", NULL);
	s = ofs_sqlite(db);
	if (sql_count(s, argv[5]) != 0)
		die("the synced table does not start empty");
	sql_exec(s, "CREATE TABLE plain_todos (id TEXT PRIMARY KEY, text TEXT, done INTEGER)");
	sql = sqlite3_mprintf("INSERT INTO \"%w\" (id, text, done) VALUES (?1, ?2, ?3)", argv[5]);
	synced = sql_prepare(s, sql);
	sqlite3_free(sql);
	plain = sql_prepare(s, "INSERT INTO plain_todos (id, text, done) VALUES (?1, ?2, ?3)");
	/* One run of each first, not counted. */
	write_run(s, synced, "warm", 0, 1, rows);
	write_run(s, plain, "warm", 0, 1, rows);
	ts = calloc(runs, sizeof(double));
	tp = calloc(runs, sizeof(double));
	for (int r = 0; r < runs; r++)
	{
		if (r % 2 == 0)
		{
			ts[r] = write_run(s, synced, "w", r, txns, rows);
			tp[r] = write_run(s, plain, "w", r, txns, rows);
		}
		else
		{
			tp[r] = write_run(s, plain, "w", r, txns, rows);
			ts[r] = write_run(s, synced, "w", r, txns, rows);
		}
		fprintf(stderr, "run %d: synced %.1f ms, plain %.1f ms for %d transactions of %d rows\n",
				r + 1, ts[r] * 1000, tp[r] * 1000, txns, rows);
	}
	sqlite3_finalize(synced);
	sqlite3_finalize(plain);
	intents = sql_count(s, "_ofs_outbox");
	if (intents != (int64_t) (runs * txns + 1) * rows)
		die("the outbox holds %lld intents, not %lld", (long long) intents, (long long) (runs * txns + 1) * rows);
	qsort(ts, runs, sizeof(double), cmp_double);
	qsort(tp, runs, sizeof(double), cmp_double);
	ofs_close(db);
	printf("%.6f %.6f\n", ts[runs / 2], tp[runs / 2]);
	return 0;
}

/* lookups: n timed point lookups of keys[order[i]]; per-lookup times sorted into out (ns). */
static void
lookups(sqlite3 *s, sqlite3_stmt *st, char **keys, const int *order, int n, int64_t *out)
{
	size_t		bytes = 0;

	for (int i = 0; i < n; i++)
	{
		const char *key = keys[order[i]];
		int64_t		t0 = now_ns();
		int			rc;

		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
		{
			bytes += (size_t) sqlite3_column_bytes(st, 0);
			bytes += (size_t) sqlite3_column_bytes(st, 1);
			bytes += (size_t) sqlite3_column_int64(st, 2);
		}
		sqlite3_reset(st);
		out[i] = now_ns() - t0;
		if (rc != SQLITE_ROW)
			die("lookup of %s: %s", key, rc == SQLITE_DONE ? "no row" : sqlite3_errmsg(s));
	}
	if (bytes == 0)
		die("lookups read nothing");
	qsort(out, n, sizeof(int64_t), cmp_i64);
}

static int
mode_read(int argc, char **argv)
{
	ofs_db	   *db;
	sqlite3    *s;
	sqlite3_stmt *st, *synced, *plain;
	char	   *sql;
	char	  **keys;
	int		   *order;
	int64_t    *lat;
	int64_t		nrows;
	int			n, k = 0;
	double		best[2][2] = {{1e18, 0}, {1e18, 0}};	/* [synced, plain][p99, p50] */
	uint64_t	x = 88172645463325252ULL;

	if (argc != 7)
		die("usage: read PATH URL TOKEN TABLE LOOKUPS");
	n = atoi(argv[6]);
	db = fresh_device(argv[2], argv[3], argv[4], argv[5]);
	sync_or_die(db, "first", NULL);
	s = ofs_sqlite(db);
	nrows = sql_count(s, argv[5]);
	if (nrows <= 0)
		die("the device pulled no rows");
	sql_exec(s, "CREATE TABLE plain_todos (id TEXT PRIMARY KEY, text TEXT, done INTEGER)");
	sql = sqlite3_mprintf("INSERT INTO plain_todos (id, text, done) SELECT id, text, done FROM \"%w\"", argv[5]);
	sql_exec(s, sql);
	sqlite3_free(sql);
	keys = calloc(nrows, sizeof(char *));
	sql = sqlite3_mprintf("SELECT id FROM \"%w\"", argv[5]);
	st = sql_prepare(s, sql);
	sqlite3_free(sql);
	while (sqlite3_step(st) == SQLITE_ROW && k < nrows)
		keys[k++] = strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	order = calloc(n, sizeof(int));
	for (int i = 0; i < n; i++)
	{
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		order[i] = (int) (x % (uint64_t) k);
	}
	sql = sqlite3_mprintf("SELECT id, text, done FROM \"%w\" WHERE id = ?1", argv[5]);
	synced = sql_prepare(s, sql);
	sqlite3_free(sql);
	plain = sql_prepare(s, "SELECT id, text, done FROM plain_todos WHERE id = ?1");
	lat = calloc(n, sizeof(int64_t));
	/* Warm-up, not counted: every page of both tables read once. */
	lookups(s, synced, keys, order, n, lat);
	lookups(s, plain, keys, order, n, lat);
	for (int round = 0; round < 4; round++)
	{
		int			which = (round % 2) ^ (round / 2);	/* synced, plain, plain, synced */
		double		p99, p50;

		lookups(s, which ? plain : synced, keys, order, n, lat);
		p99 = quantile(lat, n, 0.99) / 1e3;
		p50 = quantile(lat, n, 0.50) / 1e3;
		fprintf(stderr, "%s table: p50 %.2f us, p99 %.2f us, max %.1f us over %d lookups of %lld rows\n",
				which ? "plain" : "synced", p50, p99, lat[n - 1] / 1e3, n, (long long) nrows);
		if (p99 < best[which][0])
		{
			best[which][0] = p99;
			best[which][1] = p50;
		}
	}
	sqlite3_finalize(synced);
	sqlite3_finalize(plain);
	ofs_close(db);
	printf("%.3f %.3f %.3f %.3f\n", best[0][1], best[0][0], best[1][1], best[1][0]);
	return 0;
}

/* ---- offline rows, conflicts ---- */

static PGconn *
origin_connect(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
		die("connection to the origin failed: %s", PQerrorMessage(conn));
	return conn;
}

static void
origin_exec(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		die("%.200s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
}

/* origin_text: the first value of a query, as text (malloc'd). */
static char *
origin_text(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	char	   *v;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		die("%.200s: %s", sql, PQerrorMessage(conn));
	v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static int64_t
origin_count(PGconn *conn, const char *table)
{
	char		sql[512];
	char	   *v;
	int64_t		n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table);
	v = origin_text(conn, sql);
	n = atoll(v);
	free(v);
	return n;
}

/*
 * The rows of a table as one text, id order, on the origin and on a
 * device: "id|text|done" lines (md5 of them at the origin, compared with
 * the device's text hashed there too, to keep the comparison exact).
 */
static char *
device_rows_text(sqlite3 *s, const char *table)
{
	char	   *sql = sqlite3_mprintf("SELECT id, coalesce(text, '<null>'), coalesce(done, -1) FROM \"%w\" ORDER BY id", table);
	sqlite3_stmt *st = sql_prepare(s, sql);
	size_t		cap = 1 << 16, len = 0;
	char	   *out = malloc(cap);

	sqlite3_free(sql);
	out[0] = '\0';
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		char		line[512];
		int			n = snprintf(line, sizeof(line), "%s|%s|%lld\n", (const char *) sqlite3_column_text(st, 0),
								 (const char *) sqlite3_column_text(st, 1), (long long) sqlite3_column_int64(st, 2));

		if (len + n + 1 > cap)
			out = realloc(out, cap *= 2);
		memcpy(out + len, line, n + 1);
		len += n;
	}
	sqlite3_finalize(st);
	return out;
}

static char *
origin_rows_text(PGconn *conn, const char *table)
{
	char		sql[512];

	snprintf(sql, sizeof(sql),
			 "SELECT coalesce(string_agg(id || '|' || coalesce(text, '<null>') || '|' || coalesce(done, -1) || E'\\n', '' ORDER BY id COLLATE \"C\"), '')"
			 "  FROM \"%s\"", table);
	return origin_text(conn, sql);
}

/* insert_offline: ROWS rows into a device's table, transactions of 1,000. */
static void
insert_offline(ofs_db *db, const char *table, const char *prefix, int64_t rows)
{
	char	   *sql = sqlite3_mprintf("INSERT INTO \"%w\" (id, text, done) VALUES (?1, ?2, ?3)", table);
	sqlite3_stmt *ins = sql_prepare(ofs_sqlite(db), sql);

	sqlite3_free(sql);
	for (int64_t i = 0; i < rows; i++)
	{
		char		key[64];

		if (i % 1000 == 0)
			sql_exec(ofs_sqlite(db), "BEGIN");
		snprintf(key, sizeof(key), "%s%lld", prefix, (long long) i);
		insert_row(ofs_sqlite(db), ins, key, (uint64_t) i);
		if (i % 1000 == 999 || i == rows - 1)
			sql_exec(ofs_sqlite(db), "COMMIT");
	}
	sqlite3_finalize(ins);
}

static int
mode_offline(int argc, char **argv)
{
	const char *table;
	ofs_db	   *db;
	PGconn	   *conn;
	Syncer		sy;
	pthread_t	th;
	int64_t		rows, t0, t_origin = 0, t_end, deadline;

	if (argc != 8)
		die("usage: offline PATH URL TOKEN CONNINFO TABLE ROWS");
	table = argv[6];
	rows = atoll(argv[7]);
	conn = origin_connect(argv[5]);
	db = fresh_device(argv[2], argv[3], argv[4], table);
	sync_or_die(db, "first", NULL);
	insert_offline(db, table, "offline-", rows);
	if (sql_count(ofs_sqlite(db), "_ofs_outbox") != rows)
		die("the device has %lld intents in its outbox, not %lld",
			(long long) sql_count(ofs_sqlite(db), "_ofs_outbox"), (long long) rows);

	memset(&sy, 0, sizeof(sy));
	sy.db = db;
	t0 = now_ns();
	if (pthread_create(&th, NULL, SyncMain, &sy) != 0)
		die("pthread_create failed");
	deadline = t0 + 60 * (int64_t) 1000000000;
	while (now_ns() < deadline && !(atomic_load(&sy.end_ns) && sy.rc != OFS_OK))
	{
		if (origin_count(conn, table) >= rows)
		{
			t_origin = now_ns();
			break;
		}
		sleep_ms(2);
	}
	pthread_join(th, NULL);
	t_end = atomic_load(&sy.end_ns);
	if (sy.rc != OFS_OK)
		die("ofs_sync with the offline rows: rc %d: %s", sy.rc, sy.err);
	if (t_origin == 0)
		die("the origin has %lld of %lld rows 60 s after the sync started",
			(long long) origin_count(conn, table), (long long) rows);
	if (sy.st.applied != rows || sy.st.pending != 0)
		die("the sync: %lld applied of %lld pushed, %lld pending", (long long) sy.st.applied,
			(long long) sy.st.pushed, (long long) sy.st.pending);
	if (sql_count(ofs_sqlite(db), table) != rows)
		die("the device holds %lld rows, not %lld", (long long) sql_count(ofs_sqlite(db), table), (long long) rows);
	fprintf(stderr, "offline: the origin had all %lld rows %.3f s after the sync started; the sync took %.3f s and pulled %lld changes\n",
			(long long) rows, (t_origin - t0) / 1e9, (t_end - t0) / 1e9, (long long) sy.st.pulled);
	ofs_close(db);
	PQfinish(conn);
	printf("%.6f %.6f %lld\n", (t_origin - t0) / 1e9, (t_end - t0) / 1e9, (long long) sy.st.pulled);
	return 0;
}

static int
mode_insert(int argc, char **argv)
{
	PGconn	   *conn;
	int64_t		rows;
	double		t0, t1;

	if (argc != 5)
		die("usage: insert CONNINFO TABLE ROWS");
	rows = atoll(argv[4]);
	t0 = now_s();
	conn = origin_connect(argv[2]);
	for (int64_t i = 0; i < rows; i += 1000)
	{
		size_t		cap = 128 * 1024;
		char	   *sql = malloc(cap);
		size_t		len = (size_t) snprintf(sql, cap, "INSERT INTO \"%s\" (id, text, done) VALUES ", argv[3]);

		for (int64_t j = i; j < rows && j < i + 1000; j++)
		{
			char		text[41];

			row_text((uint64_t) j, text);
			len += (size_t) snprintf(sql + len, cap - len, "%s('offline-%lld', '%s', %lld)", j > i ? ", " : "",
									 (long long) j, text, (long long) (j % 2));
		}
		origin_exec(conn, sql);
		free(sql);
	}
	t1 = now_s();
	if (origin_count(conn, argv[3]) != rows)
		die("the table holds %lld rows, not %lld", (long long) origin_count(conn, argv[3]), (long long) rows);
	PQfinish(conn);
	printf("%.6f\n", t1 - t0);
	return 0;
}

/* edit_offline: every row's text becomes "<who>-<id>", one transaction. */
static void
edit_offline(ofs_db *db, const char *table, const char *who)
{
	char	   *sql = sqlite3_mprintf("UPDATE \"%w\" SET text = '%q-' || id", table, who);

	sql_exec(ofs_sqlite(db), "BEGIN");
	sql_exec(ofs_sqlite(db), sql);
	sql_exec(ofs_sqlite(db), "COMMIT");
	sqlite3_free(sql);
}

static int
mode_conflicts(int argc, char **argv)
{
	char		path_a[4096], path_b[4096];
	const char *table;
	ofs_db	   *a, *b;
	PGconn	   *conn;
	int64_t		rows, elapsed = 0, pulled = 0;
	int			rounds = 0, equal = 0;

	if (argc != 9)
		die("usage: conflicts DIR URL TOKEN_A TOKEN_B CONNINFO TABLE ROWS");
	table = argv[7];
	rows = atoll(argv[8]);
	snprintf(path_a, sizeof(path_a), "%s/conflicts_a.db", argv[2]);
	snprintf(path_b, sizeof(path_b), "%s/conflicts_b.db", argv[2]);
	conn = origin_connect(argv[6]);
	a = fresh_device(path_a, argv[3], argv[4], table);
	b = fresh_device(path_b, argv[3], argv[5], table);
	sync_or_die(a, "device A, first", NULL);
	sync_or_die(b, "device B, first", NULL);
	if (sql_count(ofs_sqlite(a), table) != rows || sql_count(ofs_sqlite(b), table) != rows)
		die("the devices do not start with %lld rows", (long long) rows);
	edit_offline(a, table, "a");
	edit_offline(b, table, "b");

	while (!equal && rounds < 10)
	{
		Syncer		sa, sb;
		pthread_t	ta, tb;
		int64_t		t0 = now_ns();
		char	   *o, *da, *db_;

		memset(&sa, 0, sizeof(sa));
		memset(&sb, 0, sizeof(sb));
		sa.db = a;
		sb.db = b;
		if (pthread_create(&ta, NULL, SyncMain, &sa) != 0 || pthread_create(&tb, NULL, SyncMain, &sb) != 0)
			die("pthread_create failed");
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		elapsed += now_ns() - t0;
		rounds++;
		if (sa.rc != OFS_OK || sb.rc != OFS_OK)
			die("round %d: ofs_sync of A: rc %d %s; of B: rc %d %s", rounds, sa.rc, sa.err, sb.rc, sb.err);
		pulled += sa.st.pulled + sb.st.pulled;
		o = origin_rows_text(conn, table);
		da = device_rows_text(ofs_sqlite(a), table);
		db_ = device_rows_text(ofs_sqlite(b), table);
		equal = strcmp(o, da) == 0 && strcmp(o, db_) == 0;
		fprintf(stderr, "conflicts: round %d: A pushed %lld pulled %lld, B pushed %lld pulled %lld; %s\n", rounds,
				(long long) sa.st.pushed, (long long) sa.st.pulled, (long long) sb.st.pushed,
				(long long) sb.st.pulled, equal ? "both equal the origin" : "not yet equal");
		free(o);
		free(da);
		free(db_);
	}
	if (!equal)
		die("the devices do not equal the origin after %d rounds", rounds);
	ofs_close(a);
	ofs_close(b);
	PQfinish(conn);
	printf("%.6f %d %lld\n", elapsed / 1e9, rounds, (long long) pulled);
	return 0;
}

static int
mode_update(int argc, char **argv)
{
	PGconn	   *conn;
	char		sql[512];
	double		t0, t1;

	if (argc != 5)
		die("usage: update CONNINFO TABLE ROWS");
	t0 = now_s();
	conn = origin_connect(argv[2]);
	snprintf(sql, sizeof(sql), "UPDATE \"%s\" SET text = 'a-' || id", argv[3]);
	origin_exec(conn, sql);
	snprintf(sql, sizeof(sql), "UPDATE \"%s\" SET text = 'b-' || id", argv[3]);
	origin_exec(conn, sql);
	t1 = now_s();
	if (origin_count(conn, argv[3]) != atoll(argv[4]))
		die("the table does not hold %s rows", argv[4]);
	PQfinish(conn);
	printf("%.6f\n", t1 - t0);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "initial") == 0)
		return mode_initial(argc, argv);
	if (strcmp(mode, "copy") == 0)
		return mode_copy(argc, argv);
	if (strcmp(mode, "relay") == 0)
		return mode_relay(argc, argv);
	if (strcmp(mode, "latency") == 0)
		return mode_latency(argc, argv);
	if (strcmp(mode, "notify") == 0)
		return mode_notify(argc, argv);
	if (strcmp(mode, "write") == 0)
		return mode_write(argc, argv);
	if (strcmp(mode, "read") == 0)
		return mode_read(argc, argv);
	if (strcmp(mode, "offline") == 0)
		return mode_offline(argc, argv);
	if (strcmp(mode, "insert") == 0)
		return mode_insert(argc, argv);
	if (strcmp(mode, "conflicts") == 0)
		return mode_conflicts(argc, argv);
	if (strcmp(mode, "update") == 0)
		return mode_update(argc, argv);
	fprintf(stderr, "usage: device_bench initial|copy|relay|latency|notify|write|read|offline|insert|conflicts|update ... (see the source)\n");
	return 2;
}

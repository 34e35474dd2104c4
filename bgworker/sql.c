/*
 * sql.c: running the extension's SQL for the sync worker.
 *
 * Each request of a device runs in a transaction of its own, bounded by
 * ofs.statement_timeout.  Every error is caught here, copied out and the
 * transaction aborted: no ERROR may unwind through the frames of
 * libwebsockets, which called us.  Results are copied to malloc'd memory,
 * since the transaction's memory is gone when the answer is written.
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "worker.h"
#include "feed_batch.h"
#include "pull.h"

static char *
Strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A failure that the same request may get past later: transient classes. */
static bool
Transient(const char *sqlstate)
{
	return strncmp(sqlstate, "40", 2) == 0 ||	/* serialization, deadlock */
		strncmp(sqlstate, "53", 2) == 0 ||	/* out of resources */
		strncmp(sqlstate, "57", 2) == 0 ||	/* cancel, timeout, shutdown */
		strncmp(sqlstate, "08", 2) == 0 ||
		strcmp(sqlstate, "55P03") == 0;	/* lock not available */
}

/*
 * WorkerSql runs sql with text arguments (NULL pointers are SQL NULLs) and
 * returns the columns of its first row.
 */
void
WorkerSql(const char *sql, int nargs, const char *const *args, SqlResult *res)
{
	WorkerSqlRows(sql, nargs, args, NULL, NULL, res);
}

/*
 * WorkerSqlRows is WorkerSql that also hands every row's columns to fn,
 * inside the transaction; fn must not raise errors.
 */
void
WorkerSqlRows(const char *sql, int nargs, const char *const *args,
			  SqlRowFn fn, void *arg, SqlResult *res)
{
	WorkerSqlTx(sql, nargs, args, fn, NULL, arg, res);
}

/* What a transaction of the worker does before its check: a statement, or a call of the engine. */
typedef void (*TxWork) (void *warg, SqlRowFn fn, void *arg, SqlResult *res);

/*
 * RunTx runs work in a transaction of its own, with the statement timeout,
 * then "after" in the same transaction; every error is caught and becomes
 * the result.
 */
static void
RunTx(const char *activity, TxWork work, void *warg, SqlRowFn fn, SqlAfterFn after, void *arg,
	  SqlResult *res)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	memset(res, 0, sizeof(*res));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		if (ofs_statement_timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, ofs_statement_timeout_ms);
		work(warg, fn, arg, res);
		if (after)
		{
			/* A statement of its own: it sees what committed meanwhile. */
			PopActiveSnapshot();
			CommandCounterIncrement();
			PushActiveSnapshot(GetTransactionSnapshot());
			after(arg, res);
		}
		disable_timeout(STATEMENT_TIMEOUT, false);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		res->ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		QueryCancelPending = false;
		for (int i = 0; i < res->nvalues; i++)
			free(res->values[i]);
		res->nvalues = 0;
		res->ok = false;
		strlcpy(res->sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(res->sqlstate));
		res->message = Strdup(edata->message ? edata->message : "unknown error");
		res->detail = Strdup(edata->detail);
		res->retry = Transient(res->sqlstate);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

typedef struct SqlWork
{
	const char *sql;
	int			nargs;
	const char *const *args;
} SqlWork;

/*
 * The worker's statements are the code's own, a few dozen texts: each is
 * planned once per worker and kept (PostgreSQL makes a kept plan anew when
 * what it uses changes).  Keyed by the statement's text.
 */
typedef struct WorkerPlan
{
	char	   *sql;			/* key, in TopMemoryContext */
	SPIPlanPtr	plan;
} WorkerPlan;

static HTAB *worker_plans = NULL;

static SPIPlanPtr
WorkerPlanFor(const char *sql, int nargs)
{
	WorkerPlan *p;
	bool		found;
	char	   *key = (char *) sql;

	if (worker_plans == NULL)
		worker_plans = OfsStringHash("ofs worker plans", 64, sizeof(WorkerPlan), TopMemoryContext);
	p = hash_search(worker_plans, &key, HASH_FIND, NULL);
	if (p == NULL)
	{
		Oid			types[8];
		SPIPlanPtr	plan;

		for (int i = 0; i < nargs; i++)
			types[i] = TEXTOID;
		plan = SPI_prepare(sql, nargs, types);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		key = MemoryContextStrdup(TopMemoryContext, sql);
		p = hash_search(worker_plans, &key, HASH_ENTER, &found);
		p->plan = plan;
	}
	return p->plan;
}

/* SqlStatement runs one statement with text arguments, handing its rows on. */
static void
SqlStatement(void *warg, SqlRowFn fn, void *arg, SqlResult *res)
{
	SqlWork    *w = (SqlWork *) warg;
	Datum		values[8];
	char		nulls[8] = {0};
	int			rc;
	int			i;

	for (i = 0; i < w->nargs; i++)
	{
		values[i] = w->args[i] ? CStringGetTextDatum(w->args[i]) : (Datum) 0;
		nulls[i] = w->args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_plan(WorkerPlanFor(w->sql, w->nargs), values, nulls, false, fn ? 0 : 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "%s failed: %s", w->sql, SPI_result_code_string(rc));
	if (fn)
	{
		uint64		row;

		for (row = 0; row < SPI_processed; row++)
		{
			char	   *cols[SQL_MAX_VALUES];
			int			ncols = Min(SPI_tuptable->tupdesc->natts, SQL_MAX_VALUES);

			for (i = 0; i < ncols; i++)
				cols[i] = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, i + 1);
			fn(arg, cols, ncols);
		}
	}
	else if (SPI_processed == 1)
	{
		res->nvalues = Min(SPI_tuptable->tupdesc->natts, SQL_MAX_VALUES);
		for (i = 0; i < res->nvalues; i++)
			res->values[i] = Strdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1));
	}
}

/*
 * WorkerSqlTx is WorkerSqlRows with a check that runs in the same
 * transaction after the statement (with the first row in res): "after" may
 * raise an error, which aborts the transaction and is the result.
 */
void
WorkerSqlTx(const char *sql, int nargs, const char *const *args,
			SqlRowFn fn, SqlAfterFn after, void *arg, SqlResult *res)
{
	SqlWork		w = {sql, nargs, args};

	Assert(nargs <= 8);
	RunTx(sql, SqlStatement, &w, fn, after, arg, res);
}

typedef struct PullWork
{
	const char *device;
	const char *cursor;
	int			max_rows;
	const char *confirmed;
	bool		plain;
} PullWork;

/*
 * PullStatement calls the pull engine (src/pull.c) directly: the answer is
 * built once, as the text the device gets.  An unsealed cursor (kept
 * across the update that brought sealing) counts only if it is at the page
 * the origin last sent this device: its feed position may lag, when live
 * rounds moved on without anything for it.
 */
static void
PullStatement(void *warg, SqlRowFn fn, void *arg, SqlResult *res)
{
	PullWork   *w = (PullWork *) warg;
	const char *since = w->cursor;
	OfsPullAnswer ans;
	char		count[16];

	if (w->plain && since != NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2] = {CStringGetTextDatum(w->device), CStringGetTextDatum(since)};
		bool		isnull;

		if (SPI_execute_with_args("SELECT ($2::jsonb->>'p')::bigint IS NOT DISTINCT FROM"
								  "       (SELECT (d.last_cursor::jsonb->>'p')::bigint FROM ofs.device d WHERE d.device = $1)",
								  2, types, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "checking an unsealed cursor failed");
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			since = NULL;
	}
	OfsPull(w->device, since, w->max_rows, w->confirmed, &ans);
	snprintf(count, sizeof(count), "%d", ans.changes.n);
	res->values[0] = Strdup(OfsPullAnswerJson(&ans, false));
	res->values[1] = Strdup(ans.cursor);
	res->values[2] = Strdup(ans.more ? "t" : "f");
	res->values[3] = Strdup(count);
	res->nvalues = 4;
}

/*
 * WorkerPullTx answers a pull in a transaction of its own: values are the
 * answer without its cursor, the cursor, "t" when more waits, and the
 * number of changes; after runs in the same transaction, as with
 * WorkerSqlTx.
 */
void
WorkerPullTx(const char *device, const char *cursor, int max_rows, const char *confirmed, bool plain,
			 SqlAfterFn after, void *arg, SqlResult *res)
{
	PullWork	w = {device, cursor, max_rows, confirmed, plain};

	RunTx("ofs.pull", PullStatement, &w, NULL, after, arg, res);
}

typedef struct LiveWork
{
	int			n;
	char	  **devices;
	char	  **cursors;
	char	  **acked;
	int			max_rows;
	SqlRowFn	fn;
	void	   *arg;
} LiveWork;

/*
 * LiveRow hands a device's answer on as the row of ofs_internal.pull_live
 * the caller reads: ord, the answer without its cursor, the cursor, the
 * number of changes, more ("t"/"f"), error, sqlstate.
 */
static void
LiveRow(void *arg, int ord, const char *body, const char *cursor, int nchanges, bool more,
		const char *error, const char *sqlstate)
{
	LiveWork   *w = (LiveWork *) arg;
	char		ordtext[16];
	char		count[16];
	char	   *cols[7];

	snprintf(ordtext, sizeof(ordtext), "%d", ord);
	snprintf(count, sizeof(count), "%d", nchanges);
	cols[0] = ordtext;
	cols[1] = (char *) body;
	cols[2] = (char *) cursor;
	cols[3] = count;
	cols[4] = more ? "t" : "f";
	cols[5] = (char *) error;
	cols[6] = (char *) sqlstate;
	w->fn(w->arg, cols, 7);
}

static void
LiveStatement(void *warg, SqlRowFn fn, void *arg, SqlResult *res)
{
	LiveWork   *w = (LiveWork *) warg;

	w->fn = fn;
	w->arg = arg;
	OfsPullLive(w->n, w->devices, w->cursors, w->acked, w->max_rows, LiveRow, w);
}

/*
 * WorkerLiveTx makes a live round for n devices in a transaction of its
 * own, calling the engine directly: fn gets each device's answer as
 * ofs_internal.pull_live's row would give it (see LiveRow); after runs in
 * the same transaction, as with WorkerSqlTx.
 */
void
WorkerLiveTx(int n, char **devices, char **cursors, char **acked, int max_rows,
			 SqlRowFn fn, SqlAfterFn after, void *arg, SqlResult *res)
{
	LiveWork	w = {n, devices, cursors, acked, max_rows, NULL, NULL};

	RunTx("ofs_internal.pull_live", LiveStatement, &w, fn, after, arg, res);
}

void
SqlResultFree(SqlResult *res)
{
	for (int i = 0; i < res->nvalues; i++)
		free(res->values[i]);
	free(res->message);
	free(res->detail);
	memset(res, 0, sizeof(*res));
}

/*
 * The authority a session was opened with (docs/DESIGN.md, "Threat model"):
 * its device, the SHA-256 of its token, and the role hello answered.  It
 * holds while ofs.device still has that token for that device and role,
 * unrevoked and unexpired, and the role may still act as a device: no
 * superuser, no BYPASSRLS, and no owner (or member with the owner's
 * privileges) of a synced table that does not force row-level security,
 * since owners are exempt from its policies.  The plan is kept across
 * transactions: it runs with every request.
 */
#define AUTHORITY_HOLDS \
	"       d.revoked_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > now())" \
	"   AND NOT r.rolsuper AND NOT r.rolbypassrls" \
	"   AND NOT EXISTS (SELECT 1 FROM ofs.synced_table st JOIN pg_catalog.pg_class c ON c.oid = st.tbl" \
	"                    WHERE NOT c.relforcerowsecurity AND pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE'))"

static SPIPlanPtr authority_plan = NULL;
static SPIPlanPtr authorities_plan = NULL;

static SPIPlanPtr
KeptPlan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		*slot = plan;
	}
	return *slot;
}

/*
 * SqlCheckAuthority raises 28000 unless the authority holds; on success
 * *expires_ms is the token's expiry (0: none).  Run it inside a request's
 * transaction, after the request: a change of the device that the request
 * could have seen has committed before this statement began, so it is seen
 * here, and the request's work is rolled back with the error.
 */
void
SqlCheckAuthority(const char *device, const char *token_sha256, const char *role, uint32_t *role_oid,
				  int64_t *expires_ms)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[4];
	SPIPlanPtr	plan;
	bool		isnull;
	int			rc;

	if (device == NULL || token_sha256 == NULL || role == NULL)
		elog(ERROR, "a session without a credential cannot make requests");
	/* The role by its OID once known: a role renamed or made anew is another. */
	plan = KeptPlan(&authority_plan,
					"SELECT coalesce((extract(epoch FROM d.expires_at) * 1000)::int8, 0), r.oid"
					"  FROM ofs.device d JOIN pg_catalog.pg_roles r ON r.rolname = d.role"
					" WHERE d.device = $1 AND d.token_sha256 = pg_catalog.decode($2, 'hex')"
					"   AND d.role = $3::name AND ($4 = 0 OR r.oid = $4) AND" AUTHORITY_HOLDS, 4, types);
	values[0] = CStringGetTextDatum(device);
	values[1] = CStringGetTextDatum(token_sha256);
	values[2] = CStringGetTextDatum(role);
	values[3] = ObjectIdGetDatum(*role_oid);
	rc = SPI_execute_plan(plan, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "checking the authority of device \"%s\" failed: %s", device, SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the credential of device \"%s\" no longer holds", device),
				 errdetail("Its token was replaced, revoked or has expired, its role changed, or the role may no longer act as a device."),
				 errhint("Connect again with the device's current token.")));
	*role_oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (expires_ms)
	{
		int64		unix_ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		/* In the worker's clock (WorkerNowMs): milliseconds since 2000-01-01. */
		*expires_ms = unix_ms == 0 ? 0 :
			unix_ms - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	}
}

/*
 * SqlLostAuthorities is SqlCheckAuthority for many sessions at once: it
 * sets lost[i] for each whose authority no longer holds.  The arrays are
 * JSON arrays of text (devices, token hashes, roles), in session order.
 * Each session is one lookup by the device's key (a subquery per row): as
 * an anti-join, the planner, which cannot count the arrays, compared every
 * device of the table with every session of the batch.
 */
void
SqlLostAuthorities(const char *devices, const char *hashes, const char *roles, const char *oids,
				   int n, bool *lost)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	SPIPlanPtr	plan;
	int			rc;

	plan = KeptPlan(&authorities_plan,
					"SELECT a.i FROM ROWS FROM (pg_catalog.jsonb_array_elements_text($1::jsonb),"
					"                           pg_catalog.jsonb_array_elements_text($2::jsonb),"
					"                           pg_catalog.jsonb_array_elements_text($3::jsonb),"
					"                           pg_catalog.jsonb_array_elements_text($4::jsonb))"
					"       WITH ORDINALITY AS a(device, hash, role, roleid, i)"
					" WHERE NOT coalesce((SELECT true FROM ofs.device d JOIN pg_catalog.pg_roles r ON r.rolname = d.role"
					"                      WHERE d.device = a.device AND d.token_sha256 = pg_catalog.decode(a.hash, 'hex')"
					"                        AND d.role = a.role::name AND r.oid = a.roleid::oid AND" AUTHORITY_HOLDS
					"                      LIMIT 1), false)",
					4, types);
	values[0] = CStringGetTextDatum(devices);
	values[1] = CStringGetTextDatum(hashes);
	values[2] = CStringGetTextDatum(roles);
	values[3] = CStringGetTextDatum(oids);
	rc = SPI_execute_plan(plan, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "checking the authority of devices failed: %s", SPI_result_code_string(rc));
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		int64		i = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && i >= 1 && i <= n)
			lost[i - 1] = true;
	}
}

/* SqlTokenSha256 is the hex SHA-256 of a token, as ofs.device keeps it. */
bool
SqlTokenSha256(const char *token, char out[65])
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	ResourceOwner save = CurrentResourceOwner;
	pg_cryptohash_ctx *ctx;
	bool		ok;

	CurrentResourceOwner = WorkerCryptoOwner();
	ctx = pg_cryptohash_create(PG_SHA256);
	ok = ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) token, strlen(token)) == 0 &&
		pg_cryptohash_final(ctx, digest, sizeof(digest)) == 0;
	pg_cryptohash_free(ctx);
	CurrentResourceOwner = save;
	if (!ok)
		return false;
	hex_encode((const char *) digest, sizeof(digest), out);
	out[64] = '\0';
	return true;
}

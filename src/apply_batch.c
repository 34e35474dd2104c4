/*
 * apply_batch.c: a device's batch of mutations, applied in order
 * (ofs.apply_batch).
 *
 * The push path of the sync worker and psql's way to play a device: check
 * the device once, serialize its batches (an advisory lock on the device),
 * then apply each mutation in its own subtransaction (apply_mutation.c)
 * and return one row per mutation.  The loop is C so that a mutation costs
 * its subtransaction and its statements, not a round through PL/pgSQL; the
 * role is looked up once per batch.  Each mutation runs in a memory context
 * reset after it, so a batch of thousands holds one mutation's garbage.
 *
 * Consecutive mutations with the same "group" are an atomic group: they
 * apply inside one more subtransaction, rolled back whole when one of them
 * is rejected; then each is recorded as rejected (the failing one with its
 * own error, the others with OF021), against the origin without the group.
 */
#include "ofs.h"
#include "hlc.h"
#include "mutation.h"
#include "plan_cache.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(ofs_apply_batch);
PG_FUNCTION_INFO_V1(ofs_retry_batch);

/* A batch of dead letters applied again waits only for earlier open ones. */
typedef struct Retry
{
	bool		is_retry;
	int64		retry_of;		/* the first dead letter retried */
} Retry;

/*
 * OpenBatch checks the device, takes its batch lock, records its contact
 * and says whether it has open dead letters (mutations then check whether
 * they depend on one; otherwise none can).
 */
static bool
OpenBatch(const char *device)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(device)};
	bool		isnull;
	char	   *state;

	SPI_connect();
	OfsPlanExec(OfsFixedPlan("batch device",
						  "SELECT CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked'"
						  "            WHEN d.expires_at < now() THEN 'expired' ELSE 'active' END"
						  "  FROM ofs.device d WHERE d.device = $1", 1, types, false),
				args, NULL, false, 1);
	state = SPI_processed == 0 ? "unknown"
		: SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(state, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("device \"%s\" may not push: it is %s", device, state),
				 errhint("Create a device token with ofs.create_device_token.")));
	/* The batches of one device apply one at a time, each in the device's order. */
	OfsPlanExec(OfsFixedPlan("batch lock",
						  "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('ofs.device'),"
						  " pg_catalog.hashtext($1))", 1, types, false),
				args, NULL, false, 1);
	OfsPlanExec(OfsFixedPlan("batch contact",
						  "UPDATE ofs.device d SET last_contact = now() WHERE d.device = $1", 1, types, false),
				args, NULL, false, 0);
	OfsPlanExec(OfsFixedPlan("batch letters",
						  "SELECT EXISTS (SELECT 1 FROM ofs.dead_letters d"
						  "                WHERE d.device = $1 AND d.status = 'open')", 1, types, false),
				args, NULL, false, 1);
	state = SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	isnull = (state == NULL);
	SPI_finish();
	return !isnull && strcmp(state, "t") == 0;
}

/*
 * Refeed puts the origin's row back into the feed when the device holds
 * values the origin did not take (a conflict, a column that lost).
 */
static void
Refeed(Jsonb *mutation)
{
	Oid			types[2] = {TEXTOID, JSONBOID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	char	   *table = OfsJsonText(OfsJsonGet(mutation, "table"));
	JsonbValue *pk = OfsJsonGet(mutation, "pk");

	args[0] = table ? CStringGetTextDatum(table) : (Datum) 0;
	nulls[0] = table ? ' ' : 'n';
	args[1] = pk ? JsonbPGetDatum(OfsJsonObject(pk)) : (Datum) 0;
	nulls[1] = pk ? ' ' : 'n';
	SPI_connect();
	OfsPlanExec(OfsInternalPlan("batch refeed", "SELECT ofs_internal.refeed_row($1, $2)", 2, types, false),
				args, nulls, false, 1);
	SPI_finish();
}

/* HintKindIs: is the hint an object of that kind? */
static bool
HintKindIs(JsonbValue *hint, const char *kind)
{
	char	   *k;

	if (!OfsJsonIsObject(hint))
		return false;
	k = OfsJsonText(OfsJsonGet(OfsJsonObject(hint), "kind"));
	return k != NULL && strcmp(k, kind) == 0;
}

/* A mutation's group and its position, to sort. */
typedef struct GroupAt
{
	char	   *name;
	int			at;
} GroupAt;

static int
GroupAtCompare(const void *a, const void *b)
{
	const GroupAt *x = a;
	const GroupAt *y = b;
	int			c = strcmp(x->name, y->name);

	return c != 0 ? c : x->at - y->at;
}

/*
 * GroupsOf returns each mutation's group (NULL for none), and refuses a
 * batch whose groups are not strings of 1 to 256 bytes, or whose members
 * are not consecutive: a group must be applied as one, so it must arrive
 * as one.  Sorted by name, then position, a group's positions must follow
 * each other.
 */
static char **
GroupsOf(JsonbValue *ms, int n)
{
	char	  **groups = palloc0(sizeof(char *) * Max(n, 1));
	GroupAt    *g = palloc(sizeof(GroupAt) * Max(n, 1));
	int			ng = 0;

	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = ms[i].type == jbvBinary && JsonContainerIsObject(ms[i].val.binary.data)
			? getKeyJsonValueFromContainer(ms[i].val.binary.data, "group", 5, NULL) : NULL;

		if (v == NULL || v->type == jbvNull)
			continue;
		if (v->type != jbvString || v->val.string.len < 1 || v->val.string.len > 256)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mutation %d has a group that is not a string of 1 to 256 bytes", i + 1)));
		groups[i] = g[ng].name = pnstrdup(v->val.string.val, v->val.string.len);
		g[ng].at = i;
		ng++;
	}
	if (ng > 1)
		qsort(g, ng, sizeof(GroupAt), GroupAtCompare);
	for (int k = 1; k < ng; k++)
		if (strcmp(g[k].name, g[k - 1].name) == 0 && g[k].at != g[k - 1].at + 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the mutations of group \"%s\" are not consecutive", g[k].name),
					 errhint("A group's mutations must follow each other in one push.")));
	pfree(g);
	return groups;
}

/* ResultText: a top-level string field of a result, or NULL. */
static Datum
ResultText(Jsonb *result, const char *key, bool *isnull)
{
	char	   *v = OfsJsonText(OfsJsonGet(result, key));

	*isnull = (v == NULL);
	return v ? CStringGetTextDatum(v) : (Datum) 0;
}

/* Emit returns one mutation's result as a row of the batch. */
static void
Emit(ReturnSetInfo *rsinfo, Jsonb *r)
{
	Datum		values[5];
	bool		nulls[5];
	JsonbValue *hint = OfsJsonGet(r, "hint");

	values[0] = ResultText(r, "operation_id", &nulls[0]);
	values[1] = ResultText(r, "status", &nulls[1]);
	values[2] = ResultText(r, "sqlstate", &nulls[2]);
	values[3] = ResultText(r, "message", &nulls[3]);
	nulls[4] = (hint == NULL);	/* a JSON null stays a JSON null */
	values[4] = nulls[4] ? (Datum) 0 : JsonbPGetDatum(OfsJsonObject(hint));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

static bool
StatusIs(Jsonb *r, const char *status)
{
	char	   *s = OfsJsonText(OfsJsonGet(r, "status"));

	return s != NULL && strcmp(s, status) == 0;
}

/*
 * ApplyOne applies one mutation.  Each mutation sees what the ones before
 * it did (a dead letter, a row), as the statements of a function do: a new
 * command and, in READ COMMITTED, a new snapshot.
 */
static Jsonb *
ApplyOne(const char *device, Oid roleid, const char *rolename, Jsonb *m, bool *open_letters,
		 const Retry *retry)
{
	Jsonb	   *r;

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	r = OfsApplyMutation(device, roleid, rolename, m, retry->is_retry, retry->retry_of, *open_letters);
	*open_letters = *open_letters || StatusIs(r, "rejected");
	/* The origin kept values the device wrote over: its row goes back to it. */
	if (StatusIs(r, "conflict") || HintKindIs(OfsJsonGet(r, "hint"), "lost_columns"))
		Refeed(m);
	PopActiveSnapshot();
	return r;
}

/*
 * ApplyGroup applies the n mutations of an atomic group all or nothing
 * and returns their results.
 */
static void
ApplyGroup(const char *device, Oid roleid, const char *rolename, JsonbValue *ms, int n,
		   const char *group, bool *open_letters, const Retry *retry, ReturnSetInfo *rsinfo)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	  **results = palloc0(sizeof(Jsonb *) * n);
	bool		letters = *open_letters;
	int			failed = -1;
	int			i;
	Jsonb	   *fail;
	JsonbValue *fhint;
	char	   *fop;
	char	   *message;

	int			mark = OfsBatchKeysMark();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	for (i = 0; i < n && failed < 0; i++)
	{
		results[i] = ApplyOne(device, roleid, rolename, JsonbValueToJsonb(&ms[i]), &letters, retry);
		/* A member seen before and rejected then fails the group as it did. */
		if (StatusIs(results[i], "rejected") ||
			(StatusIs(results[i], "duplicate") && OfsJsonGet(results[i], "sqlstate") != NULL))
			failed = i;
	}
	if (failed < 0)
	{
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		*open_letters = letters;
		for (i = 0; i < n; i++)
			Emit(rsinfo, results[i]);
		return;
	}
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	OfsBatchKeysRewind(mark);

	/* Nothing of the group stays: each of its mutations is recorded as rejected. */
	fail = results[failed];
	fhint = OfsJsonGet(fail, "hint");
	fop = OfsJsonText(OfsJsonGet(fail, "operation_id"));
	message = psprintf("rolled back with its group \"%s\": mutation %s was rejected",
					   group, fop ? fop : "(without op_id)");
	for (i = 0; i < n; i++)
	{
		Jsonb	   *m = JsonbValueToJsonb(&ms[i]);
		Jsonb	   *extra;
		Jsonb	   *r;
		StringInfoData b;

		initStringInfo(&b);
		appendStringInfoString(&b, "{\"group\": ");
		escape_json(&b, group);
		appendStringInfoString(&b, ", \"failed\": ");
		if (fop)
			escape_json(&b, fop);
		else
			appendStringInfoString(&b, "null");
		appendStringInfoChar(&b, '}');
		extra = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(b.data)));
		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (i == failed && fop == NULL)
			r = fail;			/* not a mutation at all: nothing to record */
		else if (i == failed)
		{
			char	   *con = NULL;
			char	   *col = NULL;

			if (OfsJsonIsObject(fhint))
			{
				con = OfsJsonText(OfsJsonGet(OfsJsonObject(fhint), "constraint"));
				col = OfsJsonText(OfsJsonGet(OfsJsonObject(fhint), "column"));
			}
			r = OfsRejectInGroup(device, rolename, m, OfsJsonText(OfsJsonGet(fail, "sqlstate")),
								 OfsJsonText(OfsJsonGet(fail, "message")), con, col, extra);
		}
		else
			r = OfsRejectInGroup(device, rolename, m, "OF021", message, NULL, NULL, extra);
		PopActiveSnapshot();
		Emit(rsinfo, r);
	}
	*open_letters = true;
}

/* RecordClockAhead keeps how far the device's clock ran past the bound (ofs.devices). */
static void
RecordClockAhead(const char *device)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		args[2];

	if (ofs_clock_ahead_ms <= 0)
		return;
	args[0] = CStringGetTextDatum(device);
	args[1] = Int64GetDatum(ofs_clock_ahead_ms);
	ofs_clock_ahead_ms = 0;
	SPI_connect();
	OfsPlanExec(OfsFixedPlan("batch clock ahead",
						  "UPDATE ofs.device d SET clock_ahead_ms = $2, clock_ahead_at = now() WHERE d.device = $1",
						  2, types, false), args, NULL, false, 0);
	SPI_finish();
	ereport(LOG,
			(errmsg("ofs: the clock of device \"%s\" ran %lld ms ahead of the origin's, more than ofs.max_clock_skew",
					device, (long long) DatumGetInt64(args[1]))));
}

/*
 * apply_batch(device, mutations) applies a device's mutations in order and
 * returns (operation_id, status, sqlstate, message, hint) per mutation.
 */
static Datum ApplyBatch(FunctionCallInfo fcinfo, const Retry *retry);

Datum
ofs_apply_batch(PG_FUNCTION_ARGS)
{
	Retry		retry = {false, 0};

	return ApplyBatch(fcinfo, &retry);
}

/*
 * retry_batch(device, mutations, retry_of) applies dead letters again as a
 * batch (a group's, ofs.retry_dead_letter): as apply_batch, but a mutation
 * waits only for open dead letters older than retry_of, not for the
 * device's later ones.
 */
Datum
ofs_retry_batch(PG_FUNCTION_ARGS)
{
	Retry		retry = {true, PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2)};

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("retry_of must not be null")));
	return ApplyBatch(fcinfo, &retry);
}

static Datum
ApplyBatch(FunctionCallInfo fcinfo, const Retry *retry)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *device;
	Jsonb	   *mutations;
	char	   *rolename;
	Oid			roleid;
	bool		open_letters;
	MemoryContext per_mutation;
	MemoryContext old;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *ms;
	char	  **groups;
	int			n = 0;
	int			i;
	int			next;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("device must not be null")));
	device = text_to_cstring(PG_GETARG_TEXT_PP(0));
	open_letters = OpenBatch(device);
	mutations = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	if (mutations == NULL || !JB_ROOT_IS_ARRAY(mutations) || JB_ROOT_IS_SCALAR(mutations))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mutations must be a JSON array")));
	roleid = OfsDeviceRole(device, &rolename);

	/* The batch's mutations, as values pointing into it. */
	ms = palloc(sizeof(JsonbValue) * Max(JsonContainerSize(&mutations->root), 1));
	it = JsonbIteratorInit(&mutations->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			ms[n++] = v;
	groups = GroupsOf(ms, n);
	ofs_clock_ahead_ms = 0;
	OfsBatchKeysBegin();

	InitMaterializedSRF(fcinfo, 0);
	per_mutation = AllocSetContextCreate(CurrentMemoryContext, "ofs apply_batch mutation",
										 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < n; i = next)
	{
		char	   *group = groups[i];

		next = i + 1;
		while (group && next < n && groups[next] && strcmp(groups[next], group) == 0)
			next++;
		old = MemoryContextSwitchTo(per_mutation);
		if (next - i > 1)
			ApplyGroup(device, roleid, rolename, ms + i, next - i, group, &open_letters, retry, rsinfo);
		else
			Emit(rsinfo, ApplyOne(device, roleid, rolename, JsonbValueToJsonb(&ms[i]), &open_letters, retry));
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_mutation);
	}
	OfsBatchKeysEnd();
	RecordClockAhead(device);
	MemoryContextDelete(per_mutation);
	return (Datum) 0;
}

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
 */
#include "ofs.h"
#include "mutation.h"
#include "plan_cache.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(ofs_apply_batch);

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

/* ResultText: a top-level string field of a result, or NULL. */
static Datum
ResultText(Jsonb *result, const char *key, bool *isnull)
{
	char	   *v = OfsJsonText(OfsJsonGet(result, key));

	*isnull = (v == NULL);
	return v ? CStringGetTextDatum(v) : (Datum) 0;
}

/*
 * apply_batch(device, mutations) applies a device's mutations in order and
 * returns (operation_id, status, sqlstate, message, hint) per mutation.
 */
Datum
ofs_apply_batch(PG_FUNCTION_ARGS)
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

	InitMaterializedSRF(fcinfo, 0);
	per_mutation = AllocSetContextCreate(CurrentMemoryContext, "ofs apply_batch mutation",
										 ALLOCSET_DEFAULT_SIZES);
	it = JsonbIteratorInit(&mutations->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *m;
		Jsonb	   *r;
		Datum		values[5];
		bool		nulls[5];
		char	   *status;
		JsonbValue *hint;

		if (tok != WJB_ELEM)
			continue;
		old = MemoryContextSwitchTo(per_mutation);
		m = JsonbValueToJsonb(&v);

		/*
		 * Each mutation sees what the ones before it did (a dead letter, a
		 * row), as the statements of a function do: a new command and, in
		 * READ COMMITTED, a new snapshot.
		 */
		CommandCounterIncrement();
		PushActiveSnapshot(GetTransactionSnapshot());
		r = OfsApplyMutation(device, roleid, rolename, m, false, 0, open_letters);
		status = OfsJsonText(OfsJsonGet(r, "status"));
		hint = OfsJsonGet(r, "hint");
		open_letters = open_letters || (status && strcmp(status, "rejected") == 0);
		/* The origin kept values the device wrote over: its row goes back to it. */
		if ((status && strcmp(status, "conflict") == 0) || HintKindIs(hint, "lost_columns"))
			Refeed(m);
		PopActiveSnapshot();
		values[0] = ResultText(r, "operation_id", &nulls[0]);
		values[1] = ResultText(r, "status", &nulls[1]);
		values[2] = ResultText(r, "sqlstate", &nulls[2]);
		values[3] = ResultText(r, "message", &nulls[3]);
		nulls[4] = (hint == NULL);	/* a JSON null stays a JSON null */
		values[4] = nulls[4] ? (Datum) 0 : JsonbPGetDatum(OfsJsonObject(hint));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_mutation);
	}
	MemoryContextDelete(per_mutation);
	return (Datum) 0;
}

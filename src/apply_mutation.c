/*
 * apply_mutation.c: one device mutation, applied (ofs_internal.apply_one).
 *
 * The per-mutation path of the write path, in C so that each mutation costs
 * a subtransaction and a few cached plans rather than a dozen planned
 * statements: claim the operation id (idempotency), validate the mutation
 * against the catalog (apply_target.c), refuse it as dependent when an
 * earlier mutation of the row is an open dead letter, then write it as the
 * device's role (apply_write.c).  A failure rolls back the subtransaction
 * and becomes a dead letter with a compensation hint (ofs_internal.reject_mutation,
 * SQL: rejections are the rare path).  docs/DESIGN.md ("Applying
 * mutations") explains the design; the result is the jsonb object
 * ofs.apply_batch returns per mutation (apply_result.c).
 */
#include "ofs.h"
#include "hlc.h"
#include "internal_tables.h"
#include "mutation.h"
#include "plan_cache.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/memutils.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ofs_apply_one);

/* The longest op_id and key a mutation may carry. */
#define MAX_OP_ID_BYTES		256
#define MAX_KEY_BYTES		1024

/*
 * OfsDeviceRole is the role an active device acts as.  It is looked up here,
 * not taken from the caller, and a role that became a superuser or gained
 * BYPASSRLS since the token was made is refused.
 */
Oid
OfsDeviceRole(const char *device, char **rolename)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(device)};
	Oid			save_uid;
	int			save_sec;
	Oid			roleid;
	HeapTuple	tup;
	bool		refused;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	OfsPlanExec(OfsFixedPlan("device",
						  "SELECT role::text FROM ofs.device WHERE device = $1 AND revoked_at IS NULL"
						  "   AND (expires_at IS NULL OR expires_at > now())",
						  1, types, false), args, NULL, true, 1);
	OfsRestoreUser(save_uid, save_sec);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("device \"%s\" may not push: it is unknown, revoked or expired", device),
				 errhint("Create a device token with ofs.create_device_token.")));
	*rolename = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	roleid = get_role_oid(*rolename, false);
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", roleid);
	refused = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper || ((Form_pg_authid) GETSTRUCT(tup))->rolbypassrls;
	ReleaseSysCache(tup);
	if (refused)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("device \"%s\" may not act as role \"%s\", which is a superuser or bypasses row-level security",
						device, *rolename),
				 errhint("Make the device's role an ordinary role.")));
	return roleid;
}

/* Duplicate returns the first result of an operation seen before. */
static Jsonb *
Duplicate(const char *device, const char *op_id)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(device), CStringGetTextDatum(op_id)};
	bool		isnull;

	OfsPlanExec(OfsFixedPlan("duplicate",
						  "SELECT result || pg_catalog.jsonb_build_object('status', 'duplicate', 'first_status', status)"
						  "  FROM ofs.applied_op WHERE device = $1 AND operation_id = $2",
						  2, types, true), args, NULL, true, 1);
	if (SPI_processed == 0)
		elog(ERROR, "operation %s of device %s vanished", op_id, device);
	return DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * CheckKeyInData refuses an insert or update whose data gives a key column
 * another value than its pk: the row it names is not the row it writes.
 * Values are equal as numbers when both are numbers, else as text ("1"
 * and 1 name the same key of an integer column, as the origin reads them).
 */
static void
CheckKeyInData(OfsMutation *m)
{
	JsonbIterator *it = JsonbIteratorInit(&m->pk->root);
	JsonbIteratorToken tok;
	JsonbValue	k, v;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *d;
		char	   *col;
		bool		same;

		if (tok != WJB_KEY)
			continue;
		col = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		d = OfsJsonGet(m->data, col);
		if (d == NULL)
			continue;
		if (v.type == jbvNumeric && d->type == jbvNumeric)
			same = DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v.val.numeric),
													NumericGetDatum(d->val.numeric)));
		else
		{
			char	   *a = OfsJsonText(&v);
			char	   *b = OfsJsonText(d);

			same = a != NULL && b != NULL && strcmp(a, b) == 0;
		}
		if (!same)
			OfsRejectMutation(m->op_id, psprintf("has data whose key column \"%s\" is not its pk's: a key is changed by a delete and an insert", col));
	}
}

/*
 * ReadMutation validates a mutation into m.  What the rejection path needs
 * (data, the key) is copied into the caller's context, which outlives the
 * subtransaction.
 */
static void
ReadMutation(Jsonb *json, OfsMutation *m, MemoryContext caller)
{
	JsonbValue *v;
	const char *op;
	char	   *text;
	char	   *key;
	OfsTarget	target;

	v = OfsJsonGet(json, "op");
	op = OfsJsonText(v);
	if (op != NULL && strcmp(op, "insert") == 0)
		m->op = OFS_OP_INSERT;
	else if (op != NULL && strcmp(op, "update") == 0)
		m->op = OFS_OP_UPDATE;
	else if (op != NULL && strcmp(op, "delete") == 0)
		m->op = OFS_OP_DELETE;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mutation %s has op %s, not insert, update or delete", m->op_id, op ? op : "NULL")));
	OfsResolveTarget(m->op_id, OfsJsonText(OfsJsonGet(json, "table")), &target);
	m->target = target;
	v = OfsJsonGet(json, "pk");
	if (!OfsJsonIsObject(v))
		OfsRejectMutation(m->op_id, "has a pk that is not a JSON object");
	m->pk = OfsJsonObject(v);
	v = OfsJsonGet(json, "data");
	if (v != NULL && !OfsJsonIsObject(v))
		OfsRejectMutation(m->op_id, "has data or base that is not a JSON object");
	m->data = v ? OfsJsonObject(v) : OfsJsonEmptyObject();
	m->data = memcpy(MemoryContextAlloc(caller, VARSIZE(m->data)), m->data, VARSIZE(m->data));
	v = OfsJsonGet(json, "base");
	if (v != NULL && !OfsJsonIsObject(v))
		OfsRejectMutation(m->op_id, "has data or base that is not a JSON object");
	m->base = v ? OfsJsonObject(v) : NULL;
	OfsCheckColumns(m->op_id, &m->target, m->data);
	OfsCheckColumns(m->op_id, &m->target, m->pk);
	v = OfsJsonGet(json, "hlc");
	if (v == NULL || v->type != jbvNumeric)
		OfsRejectMutation(m->op_id, "has no numeric hlc");
	text = OfsJsonText(v);
	if (strpbrk(text, ".-eEN") != NULL)
		OfsRejectMutation(m->op_id, "has an hlc that is not a non-negative integer");
	m->hlc = ClampHlc(DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric))));
	if (m->op != OFS_OP_DELETE)
		CheckKeyInData(m);
	key = OfsKeyText(m->op_id, &m->target, m->pk);
	if (strlen(key) > MAX_KEY_BYTES)
		OfsRejectMutation(m->op_id, "has a key longer than 1024 bytes");
	m->pktext = MemoryContextStrdup(caller, key);
}

/*
 * CheckDependent refuses a mutation of a row whose earlier mutation by the
 * same device was rejected and is still open: it waits for that one.  A
 * rejection for a row that is gone (a delete won) holds nothing back: the
 * row is gone, and what the device does with its key next (a re-insert) is
 * judged on its own.
 */
static void
CheckDependent(OfsMutation *m, bool is_retry, int64 retry_of)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', is_retry ? ' ' : 'n'};

	args[0] = CStringGetTextDatum(m->device);
	args[1] = CStringGetTextDatum(m->target.qualified);
	args[2] = CStringGetTextDatum(m->pktext);
	args[3] = Int64GetDatum(retry_of);
	OfsPlanExec(OfsFixedPlan("dependent",
						  "SELECT 1 FROM ofs.dead_letters WHERE device = $1 AND status = 'open'"
						  "   AND table_name = $2 AND pk = $3::jsonb AND ($4 IS NULL OR id < $4)"
						  "   AND hint->>'kind' IS DISTINCT FROM 'row_missing' LIMIT 1",
						  4, types, true), args, nulls, true, 1);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OFS_DEPENDENT),
				 errmsg("mutation %s depends on a rejected mutation of the same row", m->op_id),
				 errdetail("An earlier mutation of this device on this row was rejected and is still open in ofs.dead_letters.")));
}

/* RecordConflicts records a write's conflicts in ofs.conflicts and returns its result. */
static Jsonb *
RecordConflicts(OfsMutation *m, OfsWriteOutcome *w)
{
	Oid			types[6] = {TEXTOID, TEXTOID, JSONBOID, INT8OID, TEXTOID, TEXTOID};
	Datum		args[6];
	List	   *ids = NIL;
	List	   *columns = NIL;
	uint64		i;

	args[0] = CStringGetTextDatum(m->target.qualified);
	args[1] = CStringGetTextDatum(m->pktext);
	args[2] = JsonbPGetDatum(OfsConflictsArray(w->conflicts));
	args[3] = Int64GetDatum(m->hlc);
	args[4] = CStringGetTextDatum(m->device);
	args[5] = CStringGetTextDatum(m->op_id);
	OfsPlanExec(OfsFixedPlan("conflicts",
						  "INSERT INTO ofs.conflicts (table_name, pk, column_name, origin_value, device_value, base_value,"
						  "  origin_hlc, origin_site, device_hlc, device, operation_id)"
						  " SELECT $1, $2::jsonb, c->>'column', c->'origin', c->'device', c->'base',"
						  "        (c->'version'->>0)::bigint, c->'version'->>1, $4, $5, $6"
						  "   FROM pg_catalog.jsonb_array_elements($3) c RETURNING id, column_name",
						  6, types, false), args, NULL, false, 0);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		ids = lappend(ids, id);
		columns = lappend(columns, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
	}
	return OfsResultConflict(m->op_id, ids, columns, w->lost_columns);
}

/*
 * The keys whose origin row a rejection of the current batch already
 * carried.  A later rejection of the same key in the batch leaves the row
 * out (the device rolled the row back with the first), so that a push of
 * many mutations of one large row does not store and answer that row once
 * per mutation.  Only within a batch (OfsBatchKeysBegin): the set lives in
 * a context of the batch, and goes with it, also on error.
 */
static List *batch_row_keys = NIL;
static MemoryContext batch_keys_cxt = NULL;

static void
BatchKeysGone(void *arg)
{
	batch_row_keys = NIL;
	batch_keys_cxt = NULL;
}

void
OfsBatchKeysBegin(void)
{
	MemoryContextCallback *cb;

	batch_keys_cxt = AllocSetContextCreate(CurrentMemoryContext, "ofs batch rejected keys",
										   ALLOCSET_SMALL_SIZES);
	batch_row_keys = NIL;
	cb = MemoryContextAllocZero(batch_keys_cxt, sizeof(MemoryContextCallback));
	cb->func = BatchKeysGone;
	MemoryContextRegisterResetCallback(batch_keys_cxt, cb);
}

/* OfsBatchKeysMark and OfsBatchKeysRewind: the set, as a group rolled back leaves it. */
int
OfsBatchKeysMark(void)
{
	return list_length(batch_row_keys);
}

void
OfsBatchKeysRewind(int mark)
{
	if (batch_keys_cxt && mark < list_length(batch_row_keys))
		batch_row_keys = list_truncate(batch_row_keys, mark);
}

void
OfsBatchKeysEnd(void)
{
	if (batch_keys_cxt)
		MemoryContextDelete(batch_keys_cxt);	/* the callback forgets the set */
}

/* RowSentBefore: did a rejection of this batch already carry this key's row? */
static bool
RowSentBefore(OfsMutation *m)
{
	ListCell   *lc;
	char	   *key;
	MemoryContext old;

	if (batch_keys_cxt == NULL || m->pktext == NULL || !OidIsValid(m->target.relid))
		return false;
	key = psprintf("%u %s", m->target.relid, m->pktext);
	foreach(lc, batch_row_keys)
		if (strcmp(lfirst(lc), key) == 0)
			return true;
	old = MemoryContextSwitchTo(batch_keys_cxt);
	batch_row_keys = lappend(batch_row_keys, pstrdup(key));
	MemoryContextSwitchTo(old);
	return false;
}

/*
 * RecordRejection makes a failed mutation a dead letter (ofs_internal.reject_mutation)
 * and returns its result.  m holds what was validated before the failure.
 */
static Jsonb *
RecordRejection(OfsMutation *m, Jsonb *json, const char *rolename, ErrorData *edata, Jsonb *extra)
{
	Oid			types[13] = {TEXTOID, TEXTOID, REGCLASSOID, TEXTOID, JSONBOID, JSONBOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID, JSONBOID};
	Datum		args[13];
	char		nulls[13];
	bool		isnull;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(m->device);
	args[1] = CStringGetTextDatum(m->op_id);
	args[2] = ObjectIdGetDatum(m->target.relid);
	nulls[2] = OidIsValid(m->target.relid) ? ' ' : 'n';
	args[3] = m->pktext ? CStringGetTextDatum(m->pktext) : (Datum) 0;
	nulls[3] = m->pktext ? ' ' : 'n';
	args[4] = JsonbPGetDatum(json);
	args[5] = m->data ? JsonbPGetDatum(m->data) : (Datum) 0;
	nulls[5] = m->data ? ' ' : 'n';
	args[6] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	args[7] = CStringGetTextDatum(edata->message ? edata->message : "missing error text");
	args[8] = edata->constraint_name ? CStringGetTextDatum(edata->constraint_name) : (Datum) 0;
	nulls[8] = edata->constraint_name ? ' ' : 'n';
	args[9] = edata->column_name ? CStringGetTextDatum(edata->column_name) : (Datum) 0;
	nulls[9] = edata->column_name ? ' ' : 'n';
	args[10] = DirectFunctionCall1(namein, CStringGetDatum(rolename));
	args[11] = edata->detail ? CStringGetTextDatum(edata->detail) : (Datum) 0;
	nulls[11] = edata->detail ? ' ' : 'n';
	/*
	 * A dependent rejection, or one rolled back with its group, follows the
	 * key's first rejection in the batch, and nothing of the device's was
	 * written to the row in between: the device has the row from that one.
	 */
	if (RowSentBefore(m) &&
		(edata->sqlerrcode == ERRCODE_OFS_DEPENDENT || edata->sqlerrcode == MAKE_SQLSTATE('O', 'F', '0', '2', '1')))
		extra = extra ? DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(extra),
														   DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"omit_row\": true}"))))
			: DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"omit_row\": true}")));
	args[12] = extra ? JsonbPGetDatum(extra) : (Datum) 0;
	/* The extra hint fields (of a group) exist from 1.1's SQL on; groups are 1.1's. */
	if (extra)
		OfsPlanExec(OfsInternalPlan("reject in group",
							  "SELECT ofs_internal.reject_mutation($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
							  13, types, false), args, nulls, false, 1);
	else
		OfsPlanExec(OfsInternalPlan("reject",
							  "SELECT ofs_internal.reject_mutation($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
							  12, types, false), args, nulls, false, 1);
	return DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * OfsApplyMutation applies one mutation of a device acting as roleid in
 * its own subtransaction and returns its result object, allocated in the
 * caller's memory context.
 */
Jsonb *
OfsApplyMutation(const char *device, Oid roleid, const char *rolename, Jsonb *json,
				 bool is_retry, int64 retry_of, bool check_dependent)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *result = NULL;

	/* In memory, not in registers: the rejection path reads what was validated. */
	OfsMutation *m = palloc0(sizeof(OfsMutation));
	JsonbValue *v;

	m->device = device;
	v = OfsJsonGet(json, "op_id");
	if (v && v->type == jbvString && v->val.string.len > 0)
		m->op_id = OfsJsonText(v);
	if (m->op_id == NULL)
		return OfsResultInvalid("a mutation must be an object with an op_id");
	if (strlen(m->op_id) > MAX_OP_ID_BYTES)
		return OfsResultInvalid("an op_id must not be longer than 256 bytes");

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		Relation	log;
		Datum		row[Natts_applied_op];
		bool		rownulls[Natts_applied_op] = {false, false, false, false, false};
		ItemPointerData claim;
		OfsWriteOutcome written;

		SPI_connect();

		/*
		 * Claim the operation id in ofs.applied_op: its unique index decides
		 * what is a duplicate (a unique violation, caught below), also
		 * against a concurrent push of the same device.
		 */
		log = OfsOpenOwnTable(OFS_APPLIED_OP, RowExclusiveLock);
		row[Anum_applied_op_device - 1] = CStringGetTextDatum(m->device);
		row[Anum_applied_op_operation_id - 1] = CStringGetTextDatum(m->op_id);
		row[Anum_applied_op_status - 1] = CStringGetTextDatum("applying");
		row[Anum_applied_op_result - 1] = JsonbPGetDatum(OfsJsonEmptyObject());
		row[Anum_applied_op_applied_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		claim = OfsInsertDirect(log, row, rownulls);

		ReadMutation(json, m, caller);
		if (check_dependent)
			CheckDependent(m, is_retry, retry_of);
		OfsWriteMutation(m, roleid, &written);
		result = written.conflicts != NIL ? RecordConflicts(m, &written)
			: OfsResultApplied(m->op_id, written.lost_columns, written.nothing_deleted);

		row[Anum_applied_op_status - 1] = CStringGetTextDatum(OfsJsonText(OfsJsonGet(result, "status")));
		row[Anum_applied_op_result - 1] = JsonbPGetDatum(result);
		CommandCounterIncrement();
		OfsUpdateDirect(log, &claim, row, rownulls);
		table_close(log, RowExclusiveLock);
		MemoryContextSwitchTo(caller);
		result = DatumGetJsonbPCopy(JsonbPGetDatum(result));
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();	/* ends the writer (writer.c) */
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		/* A cancel, a timeout, a deadlock: the batch fails, and the device sends it again. */
		if (OfsErrorIsTransient(edata->sqlerrcode))
			ReThrowError(edata);

		SPI_connect();
		if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && edata->constraint_name &&
			strcmp(edata->constraint_name, "applied_op_pkey") == 0)
			result = Duplicate(m->device, m->op_id);	/* applied by a concurrent push */
		else
			result = RecordRejection(m, json, rolename, edata, NULL);
		MemoryContextSwitchTo(caller);
		result = DatumGetJsonbPCopy(JsonbPGetDatum(result));
		SPI_finish();
	}
	PG_END_TRY();
	return result;
}

/*
 * OfsRejectInGroup records a mutation of an atomic group that was rolled
 * back with its group: as rejected with sqlstate and message (the failing
 * member's own, or OF021 for the others), its hint extended by extra.  The
 * caller has rolled the group back; what is recorded is the origin as it
 * is without the group.  A mutation already seen answers as a duplicate.
 */
Jsonb *
OfsRejectInGroup(const char *device, const char *rolename, Jsonb *json, const char *sqlstate,
				 const char *message, const char *constraint, const char *column, Jsonb *extra)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	OfsMutation *m = palloc0(sizeof(OfsMutation));
	ErrorData  *edata = palloc0(sizeof(ErrorData));
	JsonbValue *v;
	Jsonb	   *result;

	m->device = device;
	v = OfsJsonGet(json, "op_id");
	if (v && v->type == jbvString && v->val.string.len > 0)
		m->op_id = OfsJsonText(v);
	if (m->op_id == NULL || strlen(m->op_id) > MAX_OP_ID_BYTES)
		return OfsResultInvalid("a mutation must be an object with an op_id of at most 256 bytes");

	SPI_connect();
	OfsPlanExec(OfsFixedPlan("group seen",
						  "SELECT 1 FROM ofs.applied_op WHERE device = $1 AND operation_id = $2",
						  2, (Oid[]) {TEXTOID, TEXTOID}, true),
				(Datum[]) {CStringGetTextDatum(device), CStringGetTextDatum(m->op_id)}, NULL, true, 1);
	if (SPI_processed > 0)
	{
		result = Duplicate(device, m->op_id);
		MemoryContextSwitchTo(caller);
		result = DatumGetJsonbPCopy(JsonbPGetDatum(result));
		SPI_finish();
		return result;
	}
	SPI_finish();

	/* What of the mutation can be read (its table, key, data) goes with the rejection. */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		SPI_connect();
		ReadMutation(json, m, caller);
		SPI_finish();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;

	edata->sqlerrcode = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]);
	edata->message = pstrdup(message);
	edata->constraint_name = constraint ? pstrdup(constraint) : NULL;
	edata->column_name = column ? pstrdup(column) : NULL;
	SPI_connect();
	result = RecordRejection(m, json, rolename, edata, extra);
	MemoryContextSwitchTo(caller);
	result = DatumGetJsonbPCopy(JsonbPGetDatum(result));
	SPI_finish();
	return result;
}

/*
 * apply_one(device, mutation, retry_of, check_dependent) applies one
 * mutation in its own subtransaction and returns its result object.
 */
Datum
ofs_apply_one(PG_FUNCTION_ARGS)
{
	char	   *device;
	Oid			roleid;
	char	   *rolename;
	bool		is_retry = !PG_ARGISNULL(2);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("device and mutation must not be null")));
	device = text_to_cstring(PG_GETARG_TEXT_PP(0));
	roleid = OfsDeviceRole(device, &rolename);
	/* The caller knows when the device has no open dead letter to depend on. */
	PG_RETURN_JSONB_P(OfsApplyMutation(device, roleid, rolename, PG_GETARG_JSONB_P(1),
									   is_retry, is_retry ? PG_GETARG_INT64(2) : 0,
									   PG_ARGISNULL(3) || PG_GETARG_BOOL(3)));
}

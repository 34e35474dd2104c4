/*
 * apply_write.c: a validated mutation, written as the device's role.
 *
 * The write runs with the device's role as the current user, so grants,
 * row-level security and triggers judge it exactly as they would judge that
 * role in psql; ofs's own tables (the versions of a row) are read as the
 * caller.  An update locks the row, reads the versions of its columns and
 * merges each column the device writes by the table's policy (merge.c);
 * only the columns that win are written.  The writer (writer.c) tells the
 * capture trigger and the transition log whose intent this is.
 */
#include "ofs.h"
#include "hlc.h"
#include "merge.h"
#include "mutation.h"
#include "plan_cache.h"
#include "writer.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

static const Oid jsonb2[2] = {JSONBOID, JSONBOID};

/*
 * TablePlan is the saved plan of a statement on the mutation's table,
 * naming the given columns; the SQL is built (by the caller's format) only
 * when the plan is missing.
 */
#define TablePlan(plan, name, t, columns, nargs, per_exec, ...) \
	do { \
		OfsPlanKey	key_ = {(name), (t)->relid, (columns)}; \
		(plan) = OfsPlanFind(&key_); \
		if ((plan) == NULL) \
			(plan) = OfsPlanSave(&key_, psprintf(__VA_ARGS__), (nargs), (Oid *) jsonb2, (per_exec)); \
	} while (0)

static void
WriteInsert(OfsMutation *m, Datum pk)
{
	OfsTarget  *t = &m->target;
	Jsonb	   *row = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(m->data), pk));
	char	   *cols = OfsColumnList(row, "");
	SPIPlanPtr	plan;
	Datum		args[1];

	OfsWriterSetValues(row);
	TablePlan(plan, "insert", t, cols, 1, false,
			  "INSERT INTO %s (%s) SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r",
			  t->qualified, cols, OfsColumnList(row, "r."), t->qualified);
	args[0] = OfsDecodeJsonColumns(t, JsonbPGetDatum(row));
	OfsPlanExec(plan, args, NULL, false, 0);
}

/*
 * A delete wins over concurrent updates; deleting a row that is gone is a
 * no-op.  A delete that deleted nothing says so: refused when the role sees
 * the row but its policies keep it from deleting it; applied, with a hint
 * that nothing was deleted, when the role sees no such row.  Whether the
 * row is there is read as the role, so that a delete tells nothing of rows
 * the role may not see.
 */
static void
WriteDelete(OfsMutation *m, Datum pk, Oid roleid, OfsWriteOutcome *out)
{
	OfsTarget  *t = &m->target;
	SPIPlanPtr	plan;
	Datum		args[1] = {pk};

	TablePlan(plan, "delete", t, "", 1, true,
			  "DELETE FROM %s t USING pg_catalog.jsonb_populate_record(NULL::%s, $1) k WHERE %s",
			  t->qualified, t->qualified, t->keycond);
	OfsPlanExec(plan, args, NULL, false, 0);
	if (SPI_processed > 0)
		return;
	TablePlan(plan, "visible", t, "", 1, true,
			  "SELECT 1 FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) k WHERE %s",
			  t->qualified, t->qualified, t->keycond);
	OfsPlanExec(plan, args, NULL, true, 1);
	if (SPI_processed == 0)
	{
		out->nothing_deleted = true;
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("row %s of %s was not deleted: the policies of role %s do not let it delete the row",
					m->pktext, t->qualified, GetUserNameFromId(roleid, false)),
			 errhint("Put the row back on the device.")));
}

/* ColumnVersion reads a column's version, [hlc, site], from the row's versions. */
static OfsColumnVersion
ColumnVersion(JsonbValue *ver)
{
	OfsColumnVersion v = {false, 0, NULL};

	if (ver != NULL && ver->type == jbvBinary)
	{
		Jsonb	   *vj = OfsJsonObject(ver);
		JsonbValue *vh = getIthJsonbValueFromContainer(&vj->root, 0);
		JsonbValue *vs = getIthJsonbValueFromContainer(&vj->root, 1);

		v.known = true;
		v.hlc = vh ? DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(vh->val.numeric))) : 0;
		v.site = vs ? OfsJsonText(vs) : "";
	}
	return v;
}

static bool
IsNumber(JsonbValue *v)
{
	return v->type == jbvNumeric || v->type == jbvString;
}

/* CounterSum is origin + (device - base), as numeric. */
static JsonbValue *
CounterSum(JsonbValue *origin, JsonbValue *device, JsonbValue *base)
{
	char	   *o = OfsJsonText(origin);
	Datum		curn = DirectFunctionCall3(numeric_in, CStringGetDatum(o ? o : "0"),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	Datum		newn = DirectFunctionCall3(numeric_in, CStringGetDatum(OfsJsonText(device)),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	Datum		basen = DirectFunctionCall3(numeric_in, CStringGetDatum(OfsJsonText(base)),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	JsonbValue *sum = palloc(sizeof(JsonbValue));

	sum->type = jbvNumeric;
	sum->val.numeric = DatumGetNumeric(DirectFunctionCall2(numeric_add, curn,
														   DirectFunctionCall2(numeric_sub, newn, basen)));
	return sum;
}

/*
 * WriteUpdate locks the row, merges the columns the device writes and
 * writes those that win.  The role is switched back to the caller's for
 * ofs's own tables; uid/sec are the caller's.
 */
static void
WriteUpdate(OfsMutation *m, Datum pk, Oid roleid, Oid save_uid, int save_sec,
			OfsWriteOutcome *out)
{
	OfsTarget  *t = &m->target;
	SPIPlanPtr	plan;
	Datum		args[2];
	bool		isnull;
	Jsonb	   *cur;
	Jsonb	   *versions;
	Jsonb	   *policies;
	Datum		d;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbParseState *kept = NULL;
	List	   *keptcols = NIL;

	TablePlan(plan, "lock", t, "", 1, true,
			  "SELECT ofs.encode_row(t) FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) k"
			  " WHERE %s FOR UPDATE OF t", t->qualified, t->qualified, t->keycond);
	args[0] = pk;
	OfsPlanExec(plan, args, NULL, false, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("row %s of %s does not exist or is not visible to role %s",
						m->pktext, t->qualified, GetUserNameFromId(roleid, false)),
				 errdetail("It was deleted (a delete wins over concurrent updates), or it left the role's scope."),
				 errhint("Remove the row on the device.")));
	cur = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* The row is locked; its versions are ofs's own tables, read as the caller. */
	SetUserIdAndSecContext(save_uid, save_sec);
	{
		Oid			vtypes[2] = {OIDOID, JSONBOID};

		/*
		 * ofs_internal.row_versions inlined: a SQL function with SET is
		 * parsed and planned at every call, once per updated row.
		 */
		plan = OfsInternalPlan("versions",
							   "SELECT (SELECT coalesce(jsonb_object_agg(col, jsonb_build_array(hlc, site)), '{}')"
							   "   FROM (SELECT DISTINCT ON (v.col) v.col, v.hlc, v.site"
							   "           FROM ofs.change_log l"
							   "           CROSS JOIN LATERAL ("
							   "             SELECT c, 1, l.hlc, l.site"
							   "               FROM unnest(coalesce(l.changed, ARRAY(SELECT jsonb_object_keys(l.data)))) AS c"
							   "              WHERE l.op <> 'D'"
							   "             UNION ALL"
							   "             SELECT key, 0, (value->>0)::bigint, value->>1 FROM jsonb_each(coalesce(l.versions, '{}'))"
							   "           ) AS v(col, prio, hlc, site)"
							   "          WHERE l.tbl = $1 AND l.pk = $2"
							   "          ORDER BY v.col, l.seq DESC, v.prio DESC) x),"
							   " (SELECT merge FROM ofs.synced_table WHERE tbl = $1)",
							   2, vtypes, false);
	}
	args[0] = ObjectIdGetDatum(t->relid);
	args[1] = pk;
	/* A fresh snapshot: the versions of the row version just locked. */
	OfsPlanExec(plan, args, NULL, false, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	versions = DatumGetJsonbPCopy(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	policies = isnull ? NULL : DatumGetJsonbPCopy(d);

	pushJsonbValue(&kept, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&m->data->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *col;
		JsonbValue *pol;
		OfsMergePolicy policy;
		OfsColumnMerge cm;
		JsonbValue *b;
		JsonbValue *c;
		JsonbValue *value;
		int			needs;

		if (tok != WJB_KEY)
			continue;
		col = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		pol = OfsJsonGet(policies, col);
		policy = OfsMergePolicyFromName(pol && pol->type == jbvString ? OfsJsonText(pol) : NULL);
		b = OfsJsonGet(m->base, col);
		c = OfsJsonGet(cur, col);

		memset(&cm, 0, sizeof(cm));
		cm.has_base = (b != NULL);
		needs = OfsMergeNeeds(policy, cm.has_base);
		if (needs & OFS_MERGE_NEEDS_NUMBERS)
			cm.numbers = IsNumber(&v) && IsNumber(b);
		if (needs & OFS_MERGE_NEEDS_EQUALITY)
		{
			cm.origin_equals_base = OfsJsonEqual(c, b);
			cm.origin_equals_device = OfsJsonEqual(c, &v);
		}
		cm.origin_version = ColumnVersion(OfsJsonGet(versions, col));

		switch (OfsMergeColumn(policy, &cm, m->hlc, m->device))
		{
			case OFS_MERGE_NOT_A_NUMBER:
				OfsRejectMutation(m->op_id, psprintf("has a value or base of counter column %s that is not a number",
													 quote_identifier(col)));
				break;
			case OFS_MERGE_CONFLICT:
				{
					OfsConflict *conflict = palloc(sizeof(OfsConflict));
					JsonbValue *device = palloc(sizeof(JsonbValue));

					*device = v;
					conflict->column = col;
					conflict->origin = c;
					conflict->device = device;
					conflict->base = b;
					conflict->version = OfsJsonGet(versions, col);
					out->conflicts = lappend(out->conflicts, conflict);
					break;
				}
			case OFS_MERGE_KEEP_ORIGIN:
				out->lost_columns = lappend(out->lost_columns, col);
				break;
			case OFS_MERGE_ADD_DELTA:
			case OFS_MERGE_TAKE_DEVICE:
				value = (policy == OFS_MERGE_COUNTER && cm.has_base) ? CounterSum(c, &v, b) : &v;
				k.type = jbvString;
				k.val.string.val = col;
				k.val.string.len = strlen(col);
				pushJsonbValue(&kept, WJB_KEY, &k);
				pushJsonbValue(&kept, WJB_VALUE, value);
				keptcols = lappend(keptcols, col);
				break;
		}
	}
	if (keptcols != NIL)
	{
		Jsonb	   *keptj = JsonbValueToJsonb(pushJsonbValue(&kept, WJB_END_OBJECT, NULL));
		char	   *cols = OfsColumnList(keptj, "");

		OfsWriterSetColumns(keptcols);
		SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		TablePlan(plan, "update", t, cols, 2, true,
				  "UPDATE %s t SET (%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r)"
				  " FROM pg_catalog.jsonb_populate_record(NULL::%s, $2) k WHERE %s",
				  t->qualified, cols, OfsColumnList(keptj, "r."), t->qualified,
				  t->qualified, t->keycond);
		args[0] = OfsDecodeJsonColumns(t, JsonbPGetDatum(keptj));
		args[1] = pk;
		OfsPlanExec(plan, args, NULL, false, 0);
	}
}

/*
 * OfsWriteMutation writes a validated mutation as the device's role and
 * says what became of its columns.  It runs inside the mutation's
 * subtransaction, connected to SPI.
 */
void
OfsWriteMutation(OfsMutation *m, Oid roleid, OfsWriteOutcome *out)
{
	Oid			save_uid;
	int			save_sec;
	Datum		pk = DirectFunctionCall1(jsonb_in, CStringGetDatum(m->pktext));

	out->lost_columns = NIL;
	out->conflicts = NIL;
	out->nothing_deleted = false;
	OfsWriterBegin(m->device, m->op_id, m->hlc);
	HlcObserve(m->hlc);
	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (m->op == OFS_OP_UPDATE)
		OfsWriterSetValues(m->data);
	switch (m->op)
	{
		case OFS_OP_INSERT:
			WriteInsert(m, pk);
			break;
		case OFS_OP_DELETE:
			WriteDelete(m, pk, roleid, out);
			break;
		case OFS_OP_UPDATE:
			WriteUpdate(m, pk, roleid, save_uid, save_sec, out);
			break;
	}
	SetUserIdAndSecContext(save_uid, save_sec);
	OfsWriterEnd();
}

/*
 * apply_mutation.c: one device mutation, applied (ofs.apply_one).
 *
 * The per-mutation path of the write path, in C so that each mutation costs
 * a subtransaction and a few cached plans rather than a dozen planned
 * statements: claim the operation id (idempotency), validate the mutation
 * against the catalog, refuse it as dependent when an earlier mutation of
 * the row is an open dead letter, then write as the device's role, merging
 * an update per column by the table's policy.  A failure rolls back the
 * subtransaction and becomes a dead letter with a compensation hint
 * (ofs.compensation, SQL: rejections are the rare path).  docs/DESIGN.md
 * ("Applying mutations") explains the design; the result is the JSON object
 * ofs.apply_batch returns per mutation.
 */
#include "ofs.h"
#include "internal_tables.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "catalog/pg_authid.h"
#include "access/htup_details.h"
#include "utils/timestamp.h"
#include "storage/itemptr.h"
#include "storage/proc.h"

PG_FUNCTION_INFO_V1(apply_one);

/*
 * Plans of the statements of the write path, kept for the session, keyed
 * by their whole SQL text (which names the table, its key and the columns).
 */
typedef struct PlanEntry
{
	uint64		hash;			/* hash key: of the SQL text */
	char	   *sql;
	SPIPlanPtr	plan;
} PlanEntry;

static HTAB *plans = NULL;

/*
 * PrepareOnce prepares a statement once per session.  Statements that look
 * rows up in tables that grow (ofs.applied_op, the synced tables) are
 * planned per execution: a generic plan made while a table was empty would
 * scan it whole for ever after, since the session keeps its plans.
 */
static SPIPlanPtr
PrepareOnce(const char *sql, int nargs, Oid *types, bool per_execution)
{
	uint64		hash = hash_bytes_extended((const unsigned char *) sql, strlen(sql), 0);
	PlanEntry  *e;
	bool		found;
	SPIPlanPtr	p;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(PlanEntry);
		ctl.hcxt = TopMemoryContext;
		plans = hash_create("ofs write plans", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(plans, &hash, HASH_ENTER, &found);
	if (found && e->plan != NULL && strcmp(e->sql, sql) == 0)
		return e->plan;
	p = SPI_prepare_cursor(sql, nargs, types, per_execution ? CURSOR_OPT_CUSTOM_PLAN : 0);
	if (p == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (found && e->plan != NULL)
		return p;				/* another statement of the same hash: not kept */
	SPI_keepplan(p);
	e->sql = MemoryContextStrdup(TopMemoryContext, sql);
	e->plan = p;
	return p;
}

#define WritePlan(key, sql, nargs, types) PrepareOnce(sql, nargs, types, false)
#define LookupPlan(key, sql, nargs, types) PrepareOnce(sql, nargs, types, true)

static int
Exec(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only, long count)
{
	int			rc = SPI_execute_plan(plan, args, nulls, read_only, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* JGet is the value of a key of a JSON object, or NULL. */
static JsonbValue *
JGet(Jsonb *j, const char *key)
{
	if (j == NULL || !JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		return NULL;
	return getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
}

static bool
JIsObject(JsonbValue *v)
{
	return v && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* JText is a JSON value as text: strings unquoted, others as JSON. */
static char *
JText(JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	}
}

static Jsonb *
JObject(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

static Datum
JsonbFromText(const char *s)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
}

static void
AppendJsonValue(StringInfo buf, JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		appendStringInfoString(buf, "null");
	else if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		escape_json(buf, s);
	}
	else
		appendStringInfoString(buf, JText(v));
}

/* Reject raises the 22023 error of a malformed mutation. */
static void pg_attribute_noreturn()
Reject(const char *op_id, const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("mutation %s %s", op_id, msg)));
}

/* The target of a mutation, resolved against the catalog. */
typedef struct Target
{
	Oid			relid;
	char	   *qualified;
	int			npk;
	char	  **pkcols;
	char	   *keycond;		/* t.a = k.a AND ... */
	bool		has_json;
} Target;

/*
 * ResolveTarget resolves the table a mutation names as every other message
 * does (ofs.resolve_table: a qualified name, or an unqualified one in
 * public), and insists that it is synced.
 */
static void
ResolveTarget(const char *op_id, const char *table, Target *t)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	Relation	rel;
	TupleDesc	desc;
	Bitmapset  *pkattrs;
	int			attno = -1;
	StringInfoData cond;
	int			i;

	if (table == NULL)
		Reject(op_id, "names no table");
	args[0] = CStringGetTextDatum(table);
	Exec(WritePlan("table",
			  "SELECT s.tbl::oid FROM ofs.synced_table s WHERE s.tbl = ofs.resolve_table($1)",
			  1, types), args, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mutation %s names table %s, which is not synced", op_id, table)));
	t->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	rel = relation_open(t->relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	t->qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel));
	pkattrs = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	t->npk = bms_num_members(pkattrs);
	t->pkcols = palloc(sizeof(char *) * Max(t->npk, 1));
	i = 0;
	initStringInfo(&cond);
	while ((attno = bms_next_member(pkattrs, attno)) >= 0)
	{
		AttrNumber	a = attno + FirstLowInvalidHeapAttributeNumber;
		const char *q = quote_identifier(NameStr(TupleDescAttr(desc, a - 1)->attname));

		t->pkcols[i++] = pstrdup(NameStr(TupleDescAttr(desc, a - 1)->attname));
		appendStringInfo(&cond, "%st.%s = k.%s", cond.len ? " AND " : "", q, q);
	}
	t->keycond = cond.data;
	t->has_json = false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (!a->attisdropped && (a->atttypid == JSONOID || a->atttypid == JSONBOID))
			t->has_json = true;
	}
	relation_close(rel, NoLock);
}

/*
 * ResolveTargetCached resolves a table once per transaction: a batch names
 * the same table over and over, and what sync registration says cannot
 * change under a transaction that holds the table.
 */
static void
ResolveTargetCached(const char *op_id, const char *table, Target *t)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static char *cached_name = NULL;
	static Target cached;

	if (table != NULL && cached_name != NULL && cached_lxid == MyProc->lxid &&
		strcmp(cached_name, table) == 0)
	{
		*t = cached;
		return;
	}
	ResolveTarget(op_id, table, t);
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		int			i;

		cached = *t;
		cached.qualified = pstrdup(t->qualified);
		cached.keycond = pstrdup(t->keycond);
		cached.pkcols = palloc(sizeof(char *) * Max(t->npk, 1));
		for (i = 0; i < t->npk; i++)
			cached.pkcols[i] = pstrdup(t->pkcols[i]);
		cached_name = pstrdup(table);
		cached_lxid = MyProc->lxid;
		MemoryContextSwitchTo(old);
	}
}

/* CheckColumns refuses keys of an object that are not columns of the table. */
static void
CheckColumns(const char *op_id, Target *t, Jsonb *obj)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (obj == NULL)
		return;
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *col = pnstrdup(v.val.string.val, v.val.string.len);

			if (get_attnum(t->relid, col) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("mutation %s names column %s, which table %s does not have",
								op_id, quote_identifier(col), t->qualified)));
		}
	}
}

/*
 * KeyText is the primary key of a mutation as ofs.change_log holds it: each
 * value read through its column's type and rendered as the feed renders it
 * (so "1" and 1 name the same integer key), as jsonb text.
 */
static char *
KeyText(const char *op_id, Target *t, Jsonb *pk)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < t->npk; i++)
	{
		JsonbValue *v = JGet(pk, t->pkcols[i]);
		AttrNumber	att = get_attnum(t->relid, t->pkcols[i]);
		Oid			typid;
		int32		typmod;
		Oid			coll;
		Oid			input;
		Oid			ioparam;
		char	   *text;

		if (v == NULL || v->type == jbvNull || v->type == jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mutation %s has no value for key column %s of %s",
							op_id, quote_identifier(t->pkcols[i]), t->qualified)));
		get_atttypetypmodcoll(t->relid, att, &typid, &typmod, &coll);
		getTypeInputInfo(typid, &input, &ioparam);
		text = JText(v);
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, t->pkcols[i]);
		appendStringInfoString(&buf, ": ");
		RowJsonValue(&buf, OidInputFunctionCall(input, text, ioparam, typmod), false, typid);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetCString(DirectFunctionCall1(jsonb_out, JsonbFromText(buf.data)));
}

/* ColumnList renders the keys of an object: "a, b" or "r.a, r.b". */
static char *
ColumnList(Jsonb *obj, const char *prefix, List **names)
{
	StringInfoData buf;
	JsonbIterator *it = JsonbIteratorInit(&obj->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	initStringInfo(&buf);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *col = pnstrdup(v.val.string.val, v.val.string.len);

			appendStringInfo(&buf, "%s%s%s", buf.len ? ", " : "", prefix, quote_identifier(col));
			if (names)
				*names = lappend(*names, col);
		}
	}
	return buf.data;
}

/* DecodeJson turns json and jsonb columns, carried as strings, back into JSON. */
static Datum
DecodeJson(Target *t, Datum data)
{
	Oid			types[2] = {REGCLASSOID, JSONBOID};
	Datum		args[2];
	bool		isnull;

	Oid			save_uid;
	int			save_sec;
	Datum		decoded;

	if (!t->has_json)
		return data;
	args[0] = ObjectIdGetDatum(t->relid);
	args[1] = data;
	OfsRunAsOwner(&save_uid, &save_sec);	/* an ofs helper, not the device's */
	Exec(WritePlan("decode", "SELECT ofs.decode_json_columns($1, $2)", 2, types), args, NULL, true, 1);
	OfsRestoreUser(save_uid, save_sec);
	decoded = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return decoded;
}

static Jsonb *
Concat(Jsonb *a, Jsonb *b)
{
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(a), JsonbPGetDatum(b)));
}

static bool
JEqual(JsonbValue *a, JsonbValue *b)
{
	if (a == NULL || a->type == jbvNull)
		return b == NULL || b->type == jbvNull;
	if (b == NULL || b->type == jbvNull)
		return false;
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(JObject(a)),
											JsonbPGetDatum(JObject(b))));
}

/*
 * WriteAsRole runs the write of a mutation as the device's role and returns
 * the result object.
 */
static Jsonb *
WriteAsRole(const char *device, Oid roleid, const char *op_id, Target *t, const char *op,
			char *pktext, Jsonb *data, Jsonb *base, int64 hlc)
{
	Oid			save_uid;
	int			save_sec;
	Datum		args[2];
	Oid			types2[2] = {JSONBOID, JSONBOID};
	char		key[1024];
	Datum		pkdatum = JsonbFromText(pktext);
	StringInfoData lost;
	StringInfoData conflicts;
	int			nconflicts = 0;
	StringInfoData res;

	initStringInfo(&lost);
	initStringInfo(&conflicts);
	ofs_sync_device = MemoryContextStrdup(TopTransactionContext, device);
	ofs_sync_operation = MemoryContextStrdup(TopTransactionContext, op_id);
	ofs_sync_hlc = hlc;
	ofs_sync_columns = NIL;
	HlcObserve(hlc);
	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);

	if (strcmp(op, "insert") == 0)
	{
		Jsonb	   *row = Concat(data, DatumGetJsonbP(pkdatum));
		char	   *cols = ColumnList(row, "", NULL);
		char	   *rcols = ColumnList(row, "r.", NULL);

		snprintf(key, sizeof(key), "I:%u:%s", t->relid, cols);
		args[0] = DecodeJson(t, JsonbPGetDatum(row));
		Exec(WritePlan(key, psprintf("INSERT INTO %s (%s) SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r",
								t->qualified, cols, rcols, t->qualified), 1, types2),
			 args, NULL, false, 0);
	}
	else if (strcmp(op, "delete") == 0)
	{
		/* A delete wins over concurrent updates; deleting a row that is gone is a no-op. */
		snprintf(key, sizeof(key), "D:%u", t->relid);
		args[0] = pkdatum;
		Exec(LookupPlan(key, psprintf("DELETE FROM %s t USING pg_catalog.jsonb_populate_record(NULL::%s, $1) k WHERE %s",
								t->qualified, t->qualified, t->keycond), 1, types2),
			 args, NULL, false, 0);
	}
	else
	{
		Jsonb	   *cur;
		Jsonb	   *versions;
		Jsonb	   *policies;
		bool		isnull;
		Datum		d;
		JsonbIterator *it;
		JsonbValue	k;
		JsonbValue	v;
		JsonbIteratorToken tok;
		StringInfoData kept;
		List	   *keptcols = NIL;
		Oid			vtypes[2] = {OIDOID, JSONBOID};

		snprintf(key, sizeof(key), "L:%u", t->relid);
		args[0] = pkdatum;
		Exec(LookupPlan(key, psprintf("SELECT ofs.encode_row(t) FROM %s t, pg_catalog.jsonb_populate_record(NULL::%s, $1) k"
								" WHERE %s FOR UPDATE OF t", t->qualified, t->qualified, t->keycond),
				  1, types2), args, NULL, false, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("row %s of %s does not exist or is not visible to role %s",
							pktext, t->qualified, GetUserNameFromId(roleid, false)),
					 errdetail("It was deleted (a delete wins over concurrent updates), or it left the role's scope."),
					 errhint("Remove the row on the device.")));
		cur = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		/* The row is locked; its versions are ofs's own tables, read as the caller. */
		SetUserIdAndSecContext(save_uid, save_sec);
		args[0] = ObjectIdGetDatum(t->relid);
		args[1] = pkdatum;
		/* A fresh snapshot: the versions of the row version just locked. */
		Exec(WritePlan("versions", "SELECT ofs.row_versions($1, $2), (SELECT merge FROM ofs.synced_table WHERE tbl = $1)",
				  2, vtypes), args, NULL, false, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		versions = DatumGetJsonbPCopy(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		policies = isnull ? NULL : DatumGetJsonbPCopy(d);

		initStringInfo(&kept);
		it = JsonbIteratorInit(&data->root);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *col;
			JsonbValue *pol;
			const char *policy;
			JsonbValue *b;
			JsonbValue *c;

			if (tok != WJB_KEY)
				continue;
			col = pnstrdup(k.val.string.val, k.val.string.len);
			tok = JsonbIteratorNext(&it, &v, true);
			pol = JGet(policies, col);
			policy = (pol && pol->type == jbvString) ? JText(pol) : "lww";
			b = JGet(base, col);
			c = JGet(cur, col);

			if (strcmp(policy, "counter") == 0 && b != NULL)
			{
				Datum		curn;
				Datum		newn;
				Datum		basen;
				Datum		sum;

				if ((v.type != jbvNumeric && v.type != jbvString) ||
					(b->type != jbvNumeric && b->type != jbvString))
					Reject(op_id, psprintf("has a value or base of counter column %s that is not a number",
										   quote_identifier(col)));
				/* Concurrent increments add up: the device's delta on the origin's value. */
				curn = DirectFunctionCall3(numeric_in, CStringGetDatum(JText(c) ? JText(c) : "0"),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				newn = DirectFunctionCall3(numeric_in, CStringGetDatum(JText(&v)),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				basen = DirectFunctionCall3(numeric_in, CStringGetDatum(JText(b)),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				sum = DirectFunctionCall2(numeric_add, curn, DirectFunctionCall2(numeric_sub, newn, basen));

				appendStringInfo(&kept, "%s", kept.len ? ", " : "");
				escape_json(&kept, col);
				appendStringInfo(&kept, ": %s", DatumGetCString(DirectFunctionCall1(numeric_out, sum)));
				keptcols = lappend(keptcols, col);
			}
			else if (strcmp(policy, "manual") == 0 && b != NULL && !JEqual(c, b) && !JEqual(c, &v))
			{
				/* Someone else changed it since the device read it: a person decides. */
				JsonbValue *ver = JGet(versions, col);

				appendStringInfo(&conflicts, "%s{\"column\": ", nconflicts++ ? ", " : "");
				escape_json(&conflicts, col);
				appendStringInfoString(&conflicts, ", \"origin\": ");
				AppendJsonValue(&conflicts, c);
				appendStringInfoString(&conflicts, ", \"device\": ");
				AppendJsonValue(&conflicts, &v);
				appendStringInfoString(&conflicts, ", \"base\": ");
				AppendJsonValue(&conflicts, b);
				appendStringInfoString(&conflicts, ", \"version\": ");
				AppendJsonValue(&conflicts, ver);
				appendStringInfoChar(&conflicts, '}');
			}
			else
			{
				JsonbValue *ver = JGet(versions, col);
				bool		later = true;

				if (ver != NULL && ver->type == jbvBinary)
				{
					Jsonb	   *vj = JObject(ver);
					JsonbValue *vh = getIthJsonbValueFromContainer(&vj->root, 0);
					JsonbValue *vs = getIthJsonbValueFromContainer(&vj->root, 1);
					int64		vhlc = vh ? DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(vh->val.numeric))) : 0;
					char	   *vsite = vs ? JText(vs) : "";

					later = hlc > vhlc || (hlc == vhlc && strcmp(device, vsite) > 0);
				}
				if (later)
				{
					appendStringInfo(&kept, "%s", kept.len ? ", " : "");
					escape_json(&kept, col);
					appendStringInfoString(&kept, ": ");
					AppendJsonValue(&kept, &v);
					keptcols = lappend(keptcols, col);
				}
				else
				{
					appendStringInfo(&lost, "%s", lost.len ? ", " : "");
					escape_json(&lost, col);	/* a later write of this column wins */
				}
			}
		}
		if (kept.len > 0)
		{
			Jsonb	   *keptj = DatumGetJsonbP(JsonbFromText(psprintf("{%s}", kept.data)));
			char	   *cols = ColumnList(keptj, "", NULL);

			ofs_sync_columns = NIL;
			{
				MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
				ListCell   *lc;

				foreach(lc, keptcols)
					ofs_sync_columns = lappend(ofs_sync_columns, pstrdup((char *) lfirst(lc)));
				MemoryContextSwitchTo(old);
			}
			SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
			snprintf(key, sizeof(key), "U:%u:%s", t->relid, cols);
			args[0] = DecodeJson(t, JsonbPGetDatum(keptj));
			args[1] = pkdatum;
			Exec(LookupPlan(key, psprintf("UPDATE %s t SET (%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r)"
									" FROM pg_catalog.jsonb_populate_record(NULL::%s, $2) k WHERE %s",
									t->qualified, cols, ColumnList(keptj, "r.", NULL), t->qualified,
									t->qualified, t->keycond), 2, types2),
				 args, NULL, false, 0);
		}
	}

	SetUserIdAndSecContext(save_uid, save_sec);
	ofs_sync_device = NULL;
	ofs_sync_operation = NULL;
	ofs_sync_hlc = 0;
	ofs_sync_columns = NIL;

	initStringInfo(&res);
	appendStringInfoString(&res, "{\"operation_id\": ");
	escape_json(&res, op_id);
	if (nconflicts > 0)
	{
		Oid			ctypes[6] = {TEXTOID, TEXTOID, JSONBOID, INT8OID, TEXTOID, TEXTOID};
		Datum		cargs[6];
		uint64		i;
		StringInfoData ids;

		cargs[0] = CStringGetTextDatum(t->qualified);
		cargs[1] = CStringGetTextDatum(pktext);
		cargs[2] = JsonbFromText(psprintf("[%s]", conflicts.data));
		cargs[3] = Int64GetDatum(hlc);
		cargs[4] = CStringGetTextDatum(device);
		cargs[5] = CStringGetTextDatum(op_id);
		Exec(WritePlan("conflicts",
				  "INSERT INTO ofs.conflicts (table_name, pk, column_name, origin_value, device_value, base_value,"
				  "  origin_hlc, origin_site, device_hlc, device, operation_id)"
				  " SELECT $1, $2::jsonb, c->>'column', c->'origin', c->'device', c->'base',"
				  "        (c->'version'->>0)::bigint, c->'version'->>1, $4, $5, $6"
				  "   FROM pg_catalog.jsonb_array_elements($3) c RETURNING id, column_name",
				  6, ctypes), cargs, NULL, false, 0);
		initStringInfo(&ids);
		appendStringInfoString(&res, ", \"status\": \"conflict\", \"sqlstate\": null,"
							   " \"message\": \"concurrent change of a manual column\","
							   " \"hint\": {\"kind\": \"conflict\", \"conflicts\": [");
		for (i = 0; i < SPI_processed; i++)
			appendStringInfo(&res, "%s%s", i ? ", " : "", SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		appendStringInfoString(&res, "], \"columns\": [");
		for (i = 0; i < SPI_processed; i++)
		{
			if (i)
				appendStringInfoString(&res, ", ");
			escape_json(&res, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		}
		appendStringInfo(&res, "], \"lost_columns\": [%s]}}", lost.data);
	}
	else if (lost.len > 0)
		appendStringInfo(&res, ", \"status\": \"applied\", \"sqlstate\": null, \"message\": null,"
						 " \"hint\": {\"kind\": \"lost_columns\", \"lost_columns\": [%s]}}", lost.data);
	else
		appendStringInfoString(&res, ", \"status\": \"applied\", \"sqlstate\": null, \"message\": null, \"hint\": null}");
	return DatumGetJsonbP(JsonbFromText(res.data));
}

/*
 * DeviceRole is the role an active device acts as.  It is looked up here,
 * not taken from the caller, and a role that became a superuser or gained
 * BYPASSRLS since the token was made is refused.
 */
static Oid
DeviceRole(const char *device, char **rolename)
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
	Exec(WritePlan("device",
				   "SELECT role::text FROM ofs.device WHERE device = $1 AND revoked_at IS NULL"
				   "   AND (expires_at IS NULL OR expires_at > now())",
				   1, types), args, NULL, true, 1);
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

	Exec(LookupPlan("duplicate",
			  "SELECT result || pg_catalog.jsonb_build_object('status', 'duplicate', 'first_status', status)"
			  "  FROM ofs.applied_op WHERE device = $1 AND operation_id = $2",
			  2, types), args, NULL, true, 1);
	if (SPI_processed == 0)
		elog(ERROR, "operation %s of device %s vanished", op_id, device);
	return DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * apply_one(device, role, mutation, retry_of) applies one mutation in its
 * own subtransaction and returns its result object.
 */
Datum
apply_one(PG_FUNCTION_ARGS)
{
	char	   *device;
	Oid			roleid;
	char	   *rolename;
	Jsonb	   *m;
	bool		is_retry = !PG_ARGISNULL(2);
	int64		retry_of = is_retry ? PG_GETARG_INT64(2) : 0;

	/* The caller knows when the device has no open dead letter to depend on. */
	bool		check_dependent = PG_ARGISNULL(3) || PG_GETARG_BOOL(3);
	char	   *op_id = NULL;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *result = NULL;
	volatile Oid relid = InvalidOid;
	char	   *volatile pktext = NULL;
	Jsonb	   *volatile data = NULL;
	JsonbValue *v;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("device and mutation must not be null")));
	device = text_to_cstring(PG_GETARG_TEXT_PP(0));
	m = PG_GETARG_JSONB_P(1);
	roleid = DeviceRole(device, &rolename);

	if (JB_ROOT_IS_OBJECT(m) && !JB_ROOT_IS_SCALAR(m))
	{
		v = JGet(m, "op_id");
		if (v && v->type == jbvString && v->val.string.len > 0)
			op_id = JText(v);
	}
	if (op_id != NULL && strlen(op_id) > 256)
		PG_RETURN_JSONB_P(DatumGetJsonbP(JsonbFromText(
			"{\"operation_id\": null, \"status\": \"rejected\", \"sqlstate\": \"22023\","
			" \"message\": \"an op_id must not be longer than 256 bytes\","
			" \"hint\": {\"kind\": \"invalid_mutation\"}}")));
	if (op_id == NULL)
		PG_RETURN_JSONB_P(DatumGetJsonbP(JsonbFromText(
			"{\"operation_id\": null, \"status\": \"rejected\", \"sqlstate\": \"22023\","
			" \"message\": \"a mutation must be an object with an op_id\","
			" \"hint\": {\"kind\": \"invalid_mutation\"}}")));

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, INT8OID};
		Datum		args[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};
		Relation	log;
		Datum		row[Natts_applied_op];
		bool		rownulls[Natts_applied_op] = {false, false, false, false, false};
		ItemPointerData claim;
		const char *op;
		Target		t;
		Jsonb	   *pk = NULL;
		Jsonb	   *base = NULL;
		int64		hlc;

		SPI_connect();
		/*
		 * Claim the operation id in ofs.applied_op: its unique index decides
		 * what is a duplicate (a unique violation, caught below), also
		 * against a concurrent push of the same device.
		 */
		log = OfsOpenOwnTable(OFS_APPLIED_OP, RowExclusiveLock);
		row[Anum_applied_op_device - 1] = CStringGetTextDatum(device);
		row[Anum_applied_op_operation_id - 1] = CStringGetTextDatum(op_id);
		row[Anum_applied_op_status - 1] = CStringGetTextDatum("applying");
		row[Anum_applied_op_result - 1] = JsonbFromText("{}");
		row[Anum_applied_op_applied_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		claim = OfsInsertDirect(log, row, rownulls);

		/* Validate the mutation; nothing it says is executed as SQL. */
		v = JGet(m, "op");
		op = JText(v);
		if (op == NULL || (strcmp(op, "insert") != 0 && strcmp(op, "update") != 0 && strcmp(op, "delete") != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mutation %s has op %s, not insert, update or delete", op_id, op ? op : "NULL")));
		ResolveTargetCached(op_id, JText(JGet(m, "table")), &t);
		relid = t.relid;
		v = JGet(m, "pk");
		if (!JIsObject(v))
			Reject(op_id, "has a pk that is not a JSON object");
		pk = JObject(v);
		v = JGet(m, "data");
		if (v != NULL && !JIsObject(v))
			Reject(op_id, "has data or base that is not a JSON object");
		data = v ? JObject(v) : DatumGetJsonbP(JsonbFromText("{}"));
		/* What the rejection path needs must outlive the subtransaction. */
		{
			Jsonb	   *copy = MemoryContextAlloc(caller, VARSIZE(data));

			memcpy(copy, data, VARSIZE(data));
			data = copy;
		}
		v = JGet(m, "base");
		if (v != NULL && !JIsObject(v))
			Reject(op_id, "has data or base that is not a JSON object");
		base = v ? JObject(v) : NULL;
		CheckColumns(op_id, &t, data);
		CheckColumns(op_id, &t, pk);
		v = JGet(m, "hlc");
		if (v == NULL || v->type != jbvNumeric)
			Reject(op_id, "has no numeric hlc");
		{
			char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));

			if (strpbrk(text, ".-eEN") != NULL)
				Reject(op_id, "has an hlc that is not a non-negative integer");
		}
		hlc = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
		{
			char	   *key = KeyText(op_id, &t, pk);

			if (strlen(key) > 1024)
				Reject(op_id, "has a key longer than 1024 bytes");
			pktext = MemoryContextStrdup(caller, key);
		}

		/* A later mutation of a row whose earlier mutation was rejected waits for that one. */
		args[0] = CStringGetTextDatum(device);
		args[1] = CStringGetTextDatum(t.qualified);
		args[2] = CStringGetTextDatum(pktext);
		args[3] = Int64GetDatum(retry_of);
		nulls[3] = is_retry ? ' ' : 'n';
		if (check_dependent)
		Exec(LookupPlan("dependent",
				  "SELECT 1 FROM ofs.dead_letters WHERE device = $1 AND status = 'open'"
				  "   AND table_name = $2 AND pk = $3::jsonb AND ($4 IS NULL OR id < $4) LIMIT 1",
				  4, types), args, nulls, true, 1);
		if (check_dependent && SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OFS_DEPENDENT),
					 errmsg("mutation %s depends on a rejected mutation of the same row", op_id),
					 errdetail("An earlier mutation of this device on this row was rejected and is still open in ofs.dead_letters.")));

		hlc = ClampHlc(hlc);
		result = WriteAsRole(device, roleid, op_id, &t, op, pktext, data, base, hlc);

		row[Anum_applied_op_status - 1] = CStringGetTextDatum(JText(JGet(result, "status")));
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
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		ofs_sync_device = NULL;
		ofs_sync_operation = NULL;
		ofs_sync_hlc = 0;
		ofs_sync_columns = NIL;

		/*
		 * What says nothing about the mutation is not its rejection: a
		 * cancel, a timeout, a deadlock, a serialization failure, running
		 * out of resources.  The batch fails, and the device sends it again.
		 */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_TRANSACTION_ROLLBACK ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
			edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		ofs_sync_operation = NULL;
		ofs_sync_hlc = 0;
		ofs_sync_columns = NIL;

		SPI_connect();
		if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION && edata->constraint_name &&
			strcmp(edata->constraint_name, "applied_op_pkey") == 0)
			result = Duplicate(device, op_id);	/* applied by a concurrent push */
		else
		{
			Oid			types[12] = {TEXTOID, TEXTOID, REGCLASSOID, TEXTOID, JSONBOID, JSONBOID,
			TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID};
			Datum		args[12];
			char		nulls[12];
			bool		isnull;

			memset(nulls, ' ', sizeof(nulls));
			args[0] = CStringGetTextDatum(device);
			args[1] = CStringGetTextDatum(op_id);
			args[2] = ObjectIdGetDatum(relid);
			nulls[2] = OidIsValid(relid) ? ' ' : 'n';
			args[3] = pktext ? CStringGetTextDatum(pktext) : (Datum) 0;
			nulls[3] = pktext ? ' ' : 'n';
			args[4] = JsonbPGetDatum(m);
			args[5] = data ? JsonbPGetDatum(data) : (Datum) 0;
			nulls[5] = data ? ' ' : 'n';
			args[6] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
			args[7] = CStringGetTextDatum(edata->message ? edata->message : "missing error text");
			args[8] = edata->constraint_name ? CStringGetTextDatum(edata->constraint_name) : (Datum) 0;
			nulls[8] = edata->constraint_name ? ' ' : 'n';
			args[9] = edata->column_name ? CStringGetTextDatum(edata->column_name) : (Datum) 0;
			nulls[9] = edata->column_name ? ' ' : 'n';
			args[10] = DirectFunctionCall1(namein, CStringGetDatum(rolename));
			args[11] = edata->detail ? CStringGetTextDatum(edata->detail) : (Datum) 0;
			nulls[11] = edata->detail ? ' ' : 'n';
			Exec(WritePlan("reject",
					  "SELECT ofs.reject_mutation($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
					  12, types), args, nulls, false, 1);
			result = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		MemoryContextSwitchTo(caller);
		result = DatumGetJsonbPCopy(JsonbPGetDatum(result));
		SPI_finish();
	}
	PG_END_TRY();
	PG_RETURN_JSONB_P(result);
}

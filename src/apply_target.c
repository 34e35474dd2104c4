/*
 * apply_target.c: a mutation checked against the catalog.
 *
 * The table a mutation names must be synced, its columns must exist and its
 * key must name every key column; the key is rendered as the changes feed
 * renders it.  Names and values a device sends are looked up and passed as
 * parameters; none of them ever becomes SQL text (the SQL names only what
 * the catalog says, quoted).
 */
#include "ofs.h"
#include "internal_tables.h"
#include "mutation.h"
#include "plan_cache.h"
#include "rowjson.h"

#include "access/relation.h"
#include "access/sysattr.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* OfsRejectMutation raises the 22023 error of a malformed mutation. */
void
OfsRejectMutation(const char *op_id, const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("mutation %s %s", op_id, msg)));
}

/*
 * ResolveTarget resolves the table a mutation names as every other message
 * does (ofs_internal.resolve_table: a qualified name, or an unqualified one in
 * public), and insists that it is synced.
 */
static void
ResolveTarget(const char *op_id, const char *table, OfsTarget *t)
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
		OfsRejectMutation(op_id, "names no table");
	args[0] = CStringGetTextDatum(table);
	OfsPlanExec(OfsInternalPlan("table", "SELECT s.tbl::oid FROM ofs.synced_table s WHERE s.tbl = ofs_internal.resolve_table($1)",
						  1, types, false), args, NULL, true, 1);
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
 * OfsResolveTarget resolves a table once per transaction: a batch names
 * the same table over and over, and what sync registration says cannot
 * change under a transaction that holds the table.
 */
void
OfsResolveTarget(const char *op_id, const char *table, OfsTarget *t)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static char *cached_name = NULL;
	static OfsTarget cached;

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

/* OfsCheckColumns refuses keys of an object that are not columns of the table. */
void
OfsCheckColumns(const char *op_id, OfsTarget *t, Jsonb *obj)
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
 * OfsKeyText is the primary key of a mutation as ofs.change_log holds it: each
 * value read through its column's type and rendered as the feed renders it
 * (so "1" and 1 name the same integer key), as jsonb text.
 */
char *
OfsKeyText(const char *op_id, OfsTarget *t, Jsonb *pk)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < t->npk; i++)
	{
		JsonbValue *v = OfsJsonGet(pk, t->pkcols[i]);
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
		text = OfsJsonText(v);
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, t->pkcols[i]);
		appendStringInfoString(&buf, ": ");
		RowJsonValue(&buf, OidInputFunctionCall(input, text, ioparam, typmod), false, typid);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetCString(DirectFunctionCall1(jsonb_out, DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data))));
}

/* OfsColumnList renders the keys of an object: "a, b" or "r.a, r.b". */
char *
OfsColumnList(Jsonb *obj, const char *prefix)
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
		}
	}
	return buf.data;
}

/* OfsDecodeJsonColumns turns json and jsonb columns, carried as strings, back into JSON. */
Datum
OfsDecodeJsonColumns(OfsTarget *t, Datum data)
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
	OfsPlanExec(OfsInternalPlan("decode", "SELECT ofs_internal.decode_json_columns($1, $2)", 2, types, false), args, NULL, true, 1);
	OfsRestoreUser(save_uid, save_sec);
	decoded = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return decoded;
}


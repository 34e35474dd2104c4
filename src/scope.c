/*
 * scope.c: reading rows as a device's role (ofs_internal.scope_rows, ofs_internal.scope_page).
 *
 * What a device receives is decided by PostgreSQL itself: the rows are
 * read with the device's role as the current user, so GRANTs and row-level
 * security policies apply exactly as they would to that role in psql, and
 * the filter of its shapes (already rewritten by ofs.shape_filter) narrows
 * them further.  The pull engine calls these for the rows a batch of the
 * feed touched (ofs_internal.scope_rows) and for the pages of a snapshot
 * (OfsScopePage, scope.h).  Both return each row's key
 * and the row, encoded like the changes feed.
 */
#include "ofs.h"
#include "capture.h"
#include "internal_tables.h"
#include "plan_cache.h"
#include "rowjson.h"
#include "scope.h"

#include "access/relation.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ofs_scope_rows);
PG_FUNCTION_INFO_V1(ofs_scope_page);
PG_FUNCTION_INFO_V1(ofs_scope_count);

/* KeyList renders the key columns as "a, b" (quoted). */
static char *
KeyList(Relation rel, int npk, AttrNumber *pk, const char *prefix)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < npk; i++)
		appendStringInfo(&buf, "%s%s%s", i ? ", " : "", prefix,
						 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel), pk[i] - 1)->attname)));
	return buf.data;
}

/* Filter is " <joiner> (filter)" for argument argno, or "" when it is NULL (all rows). */
static const char *
Filter(FunctionCallInfo fcinfo, int argno, const char *joiner)
{
	if (PG_ARGISNULL(argno))
		return "";
	return psprintf(" %s (%s)", joiner, text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/*
 * The plans of scoped reads are kept per (statement, table, role, filter):
 * a live round reads the same few shapes of many roles over and over, and
 * a plan is made as its role (row-level security is part of it).  At most
 * MAX_SCOPE_PLANS are kept per statement; beyond, they are made anew.
 */
#define MAX_SCOPE_PLANS 1024
static int	nscope_plans[2];

/*
 * ExecuteAsRole runs a read-only statement in SPI (already connected) with
 * role as the current user, so that its GRANTs and policies apply.  With
 * a name, its plan is kept for the table, role and filter (the statement
 * is then the same for all of them).
 */
static int	ExecutePlanAsRole(const char *name, Oid relid, const char *filter, Oid role, const char *sql,
							  int nargs, Oid *types, Datum *args, const char *argnulls);

static int
ExecuteAsRole(Oid role, const char *sql, int nargs, Oid *types, Datum *args, const char *argnulls)
{
	return ExecutePlanAsRole(NULL, InvalidOid, NULL, role, sql, nargs, types, args, argnulls);
}

static int
ExecutePlanAsRole(const char *name, Oid relid, const char *filter, Oid role, const char *sql,
				  int nargs, Oid *types, Datum *args, const char *argnulls)
{
	Oid			save_uid;
	int			save_sec;
	volatile int rc = 0;

	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (name == NULL)
			rc = SPI_execute_with_args(sql, nargs, types, args, argnulls, true, 0);
		else
		{
			OfsPlanKey	key = {name, relid, psprintf("%u/%s", role, filter ? filter : "")};
			SPIPlanPtr	plan = OfsPlanFind(&key);
			int			which = strcmp(name, "scope rows") == 0 ? 0 : 1;

			if (plan == NULL)
			{
				if (++nscope_plans[which] > MAX_SCOPE_PLANS)
				{
					OfsPlanForget(name);
					nscope_plans[which] = 1;
				}
				plan = OfsPlanSave(&key, sql, nargs, types, false);
			}
			rc = SPI_execute_plan(plan, args, argnulls, true, 0);
		}
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_uid, save_sec);
	}
	PG_END_TRY();
	return rc;
}

/* ResultKey: where the key columns are in SELECT *, which leaves dropped columns out. */
static AttrNumber *
ResultKey(Relation rel, int npk, AttrNumber *pk)
{
	AttrNumber *respk = palloc(sizeof(AttrNumber) * npk);

	for (int k = 0; k < npk; k++)
	{
		respk[k] = 0;
		for (AttrNumber a = 1; a <= pk[k]; a++)
			if (!TupleDescAttr(RelationGetDescr(rel), a - 1)->attisdropped)
				respk[k]++;
	}
	return respk;
}

/*
 * ScopeQuery runs sql (with one or two arguments) as role and returns
 * (pk, row) of each row it yields.
 */
static void
ScopeQuery(FunctionCallInfo fcinfo, const char *name, Oid role, Relation rel, int npk, AttrNumber *pk,
		   const char *sql, int nargs, Oid *types, Datum *args, const char *argnulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			rc;
	uint64		i;
	AttrNumber *respk = ResultKey(rel, npk, pk);

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = ExecutePlanAsRole(name, RelationGetRelid(rel),
						   PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
						   role, sql, nargs, types, args, argnulls);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading %s as a device failed: %s",
			 RelationGetRelationName(rel), SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(RowJsonObject(t, d, npk, respk)));
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(RowJsonObject(t, d, 0, NULL)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
}

static Oid
CheckRole(Oid role)
{
	HeapTuple	tup = OidIsValid(role) ? SearchSysCache1(AUTHOID, ObjectIdGetDatum(role)) : NULL;
	bool		refused = true;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_authid a = (Form_pg_authid) GETSTRUCT(tup);

		/* Row-level security must apply: no superuser, no BYPASSRLS. */
		refused = a->rolsuper || a->rolbypassrls;
		ReleaseSysCache(tup);
	}
	if (refused)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rows are read for devices as an ordinary role")));
	return role;
}

/* PageSql: the statement of a page in key order after $1 (NULL: from the start), $2 rows. */
static char *
PageSql(Relation rel, int npk, AttrNumber *pk, const char *filter)
{
	char	   *name = OfsQualifiedName(RelationGetRelid(rel));
	char	   *tkeys = KeyList(rel, npk, pk, "t.");

	return psprintf("SELECT * FROM ONLY %s t WHERE ($1 IS NULL OR (%s) > (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1)))%s ORDER BY %s LIMIT $2",
					name, tkeys, KeyList(rel, npk, pk, ""), name,
					filter ? psprintf(" AND (%s)", filter) : "", tkeys);
}

/*
 * scope_rows(role oid, tbl oid, filter text, pks jsonb) returns the rows of
 * tbl with a key in pks (a JSON array of key objects) that role may see and
 * that match filter (NULL: all).
 */
Datum
ofs_scope_rows(PG_FUNCTION_ARGS)
{
	Oid			role = CheckRole(PG_GETARG_OID(0));
	Oid			relid = PG_GETARG_OID(1);
	Relation	rel = relation_open(relid, AccessShareLock);
	int			npk;
	AttrNumber *pk = PrimaryKeyAtts(rel, &npk);
	char	   *name = OfsQualifiedName(relid);
	char	   *keys = KeyList(rel, npk, pk, "");
	Oid			types[1] = {JSONBOID};
	Datum		args[1];
	char	   *sql;

	if (npk == 0 || PG_ARGISNULL(3))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("scope_rows needs a keyed table and keys")));
	args[0] = PG_GETARG_DATUM(3);
	sql = psprintf("SELECT * FROM ONLY %s t WHERE (%s) IN (SELECT %s FROM pg_catalog.jsonb_populate_recordset(NULL::%s, $1))%s",
				   name, KeyList(rel, npk, pk, "t."), keys, name, Filter(fcinfo, 2, "AND"));
	ScopeQuery(fcinfo, "scope rows", role, rel, npk, pk, sql, 1, types, args, NULL);
	relation_close(rel, AccessShareLock);
	return (Datum) 0;
}

/*
 * scope_page(role oid, tbl oid, filter text, after jsonb, max int) returns
 * up to max rows of tbl in key order after the key "after" (NULL: from the
 * start) that role may see and that match filter (NULL: all).
 */
Datum
ofs_scope_page(PG_FUNCTION_ARGS)
{
	Oid			role = CheckRole(PG_GETARG_OID(0));
	Oid			relid = PG_GETARG_OID(1);
	Relation	rel = relation_open(relid, AccessShareLock);
	int			npk;
	AttrNumber *pk = PrimaryKeyAtts(rel, &npk);
	Oid			types[2] = {JSONBOID, INT4OID};
	Datum		args[2];
	char		argnulls[2] = {' ', ' '};

	if (npk == 0 || PG_ARGISNULL(4))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("scope_page needs a keyed table and a page size")));
	args[0] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	argnulls[0] = PG_ARGISNULL(3) ? 'n' : ' ';
	args[1] = PG_GETARG_DATUM(4);
	ScopeQuery(fcinfo, "scope page", role, rel, npk, pk,
			   PageSql(rel, npk, pk, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2))),
			   2, types, args, argnulls);
	relation_close(rel, AccessShareLock);
	return (Datum) 0;
}

/*
 * OfsScopePage is scope_page for the engine (SPI connected): the rows
 * come back as JSON texts, each encoded once.
 */
int
OfsScopePage(Oid role, Oid relid, const char *filter, Jsonb *after, int max, OfsScopedRow **rows)
{
	Relation	rel;
	int			npk;
	AttrNumber *pk;
	AttrNumber *respk;
	Oid			types[2] = {JSONBOID, INT4OID};
	Datum		args[2] = {after ? JsonbPGetDatum(after) : (Datum) 0, Int32GetDatum(max)};
	char		argnulls[2] = {after ? ' ' : 'n', ' '};
	int			rc;
	int			n;

	CheckRole(role);
	rel = relation_open(relid, AccessShareLock);
	pk = PrimaryKeyAtts(rel, &npk);
	if (npk == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("table %s has no primary key to page by", RelationGetRelationName(rel))));
	respk = ResultKey(rel, npk, pk);
	rc = ExecutePlanAsRole("scope page", relid, filter, role, PageSql(rel, npk, pk, filter),
						   2, types, args, argnulls);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading %s as a device failed: %s",
			 RelationGetRelationName(rel), SPI_result_code_string(rc));
	n = (int) SPI_processed;
	*rows = palloc(sizeof(OfsScopedRow) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		(*rows)[i].pk = RowJsonObject(t, d, npk, respk);
		(*rows)[i].row = RowJsonObject(t, d, 0, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	relation_close(rel, AccessShareLock);
	return n;
}

/*
 * scope_count(role oid, tbl oid, filter text) counts the rows of tbl that
 * role may see and that match filter (NULL: all): a snapshot's total, for
 * progress.
 */
Datum
ofs_scope_count(PG_FUNCTION_ARGS)
{
	Oid			role = CheckRole(PG_GETARG_OID(0));
	int64		n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = OfsScopeCount(role, PG_GETARG_OID(1), PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	SPI_finish();
	PG_RETURN_INT64(n);
}

/* OfsScopeCount is scope_count for the engine (SPI connected). */
int64
OfsScopeCount(Oid role, Oid relid, const char *filter)
{
	char	   *sql;
	int			rc;
	bool		isnull;

	CheckRole(role);
	sql = psprintf("SELECT count(*) FROM ONLY %s t%s", OfsQualifiedName(relid),
				   filter ? psprintf(" WHERE (%s)", filter) : "");
	rc = ExecuteAsRole(role, sql, 0, NULL, NULL, NULL);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "counting rows as a device failed: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

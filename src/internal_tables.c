/*
 * internal_tables.c: how ofs reads and writes its own tables.
 *
 * ofs's tables belong to the owner of schema ofs.  Work done on behalf of
 * another role (a trigger firing for a rep, a device's push) switches to
 * that owner for the accesses to ofs's tables only, and back.  Tables
 * written for every captured row (the changes log, the transition log) are
 * written directly, heap tuple and index entries, as catalog code does: an
 * executor started per row would cost more than the work itself.  Their
 * indexes must be plain btrees on columns.
 */
#include "ofs.h"
#include "internal_tables.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* OfsRunAsOwner switches to the owner of schema ofs, to read and write its tables. */
void
OfsRunAsOwner(Oid *save_uid, int *save_sec)
{
	Oid			nsp = get_namespace_oid("ofs", false);
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema ofs");
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	GetUserIdAndSecContext(save_uid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
OfsRestoreUser(Oid save_uid, int save_sec)
{
	SetUserIdAndSecContext(save_uid, save_sec);
}

/* OfsRelid is the OID of a relation of schema ofs. */
Oid
OfsRelid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, get_namespace_oid("ofs", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation ofs.%s does not exist", relname),
				 errhint("The ofs extension is damaged; reinstall it.")));
	return relid;
}

/* InsertIndexEntries inserts the index entries of a heap tuple (unique ones checked). */
static void
InsertIndexEntries(Relation rel, HeapTuple tup)
{
	TupleTableSlot *slot;
	List	   *indexes;
	ListCell   *lc;

	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tup, slot, false);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(idx);
		Datum		ivalues[INDEX_MAX_KEYS];
		bool		inulls[INDEX_MAX_KEYS];

		if (!info->ii_ReadyForInserts)
		{
			index_close(idx, RowExclusiveLock);	/* being built concurrently */
			continue;
		}
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
			elog(ERROR, "index \"%s\" on ofs.%s has expressions, which ofs does not maintain",
				 RelationGetRelationName(idx), RelationGetRelationName(rel));
		FormIndexDatum(info, slot, NULL, ivalues, inulls);
		index_insert(idx, ivalues, inulls, &tup->t_self, rel,
					 idx->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, info);
		index_close(idx, RowExclusiveLock);
	}
	list_free(indexes);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * OfsInsertDirect inserts a row into one of ofs's tables (opened with
 * RowExclusiveLock by the caller) with its index entries, and returns its
 * TID.  A unique index raises the usual unique_violation.
 */
ItemPointerData
OfsInsertDirect(Relation rel, Datum *values, bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	ItemPointerData tid;

	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);
	InsertIndexEntries(rel, tup);
	tid = tup->t_self;
	heap_freetuple(tup);
	return tid;
}

/*
 * OfsUpdateDirect replaces a row this transaction inserted, by TID, as
 * catalog code does: a heap update, and index entries unless it was HOT.
 */
void
OfsUpdateDirect(Relation rel, ItemPointer tid, Datum *values, bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);

	simple_heap_update(rel, tid, tup);
	if (!HeapTupleIsHeapOnly(tup))
		InsertIndexEntries(rel, tup);
	heap_freetuple(tup);
}

/* OfsQualifiedName is a relation's schema-qualified, quoted name. */
char *
OfsQualifiedName(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * OfsRequireKeyedTable checks that the caller owns an ordinary table with a
 * primary key: what syncing a table and defining rules on it need.  The
 * details say what the caller wanted the table for.
 */
void
OfsRequireKeyedTable(Oid relid, const char *not_table_detail,
					 const char *no_key_detail, const char *no_key_hint)
{
	Relation	rel;
	bool		has_pk;

	if (get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("%s", not_table_detail)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	rel = relation_open(relid, AccessShareLock);
	has_pk = OidIsValid(RelationGetPrimaryKeyIndex(rel));
	relation_close(rel, NoLock);
	if (!has_pk)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has no primary key", get_rel_name(relid)),
				 errdetail("%s", no_key_detail),
				 errhint("%s", no_key_hint)));
}

/* OfsSpiExec runs a statement through SPI and insists on its result code. */
void
OfsSpiExec(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute failed for \"%s\": %s", sql, SPI_result_code_string(rc));
}

/*
 * The columns of the tables of internal_tables.h, in attribute order, as this
 * library writes them.
 */
typedef struct OwnColumn
{
	const char *name;
	Oid			type;
} OwnColumn;

typedef struct OwnTable
{
	const char *relname;
	int			natts;
	int			min_natts;
	const OwnColumn *columns;
	Oid			checked_relid;	/* its layout was checked; reset by relcache invalidation */
} OwnTable;

static const OwnColumn change_log_columns[Natts_change_log] = {
	{"seq", INT8OID}, {"xid", XID8OID}, {"tbl", OIDOID}, {"pk", JSONBOID},
	{"op", CHAROID}, {"data", JSONBOID}, {"changed", TEXTARRAYOID}, {"hlc", INT8OID},
	{"site", TEXTOID}, {"operation_id", TEXTOID}, {"versions", JSONBOID},
	{"captured_at", TIMESTAMPTZOID}, {"as_sent", BOOLOID},
};
static const OwnColumn applied_op_columns[Natts_applied_op] = {
	{"device", TEXTOID}, {"operation_id", TEXTOID}, {"status", TEXTOID},
	{"result", JSONBOID}, {"applied_at", TIMESTAMPTZOID},
};
static const OwnColumn transition_log_columns[Natts_transition_log] = {
	{"id", INT8OID}, {"table_name", TEXTOID}, {"tbl", OIDOID}, {"pk", JSONBOID},
	{"constraint_name", TEXTOID}, {"col", NAMEOID}, {"from_state", TEXTOID},
	{"to_state", TEXTOID}, {"role", NAMEOID}, {"changed_at", TIMESTAMPTZOID},
	{"xid", XID8OID}, {"device", TEXTOID}, {"operation_id", TEXTOID},
};
static const OwnColumn gapless_issued_columns[Natts_gapless_issued] = {
	{"sequence_name", TEXTOID}, {"sequence_id", INT8OID}, {"period", TEXTOID},
	{"value", INT8OID}, {"formatted", TEXTOID}, {"issued_at", TIMESTAMPTZOID},
	{"xid", XID8OID},
};

static OwnTable own_tables[OFS_OWN_TABLE_COUNT] = {
	[OFS_CHANGE_LOG] = {"change_log", Natts_change_log, Natts_change_log_min, change_log_columns},
	[OFS_APPLIED_OP] = {"applied_op", Natts_applied_op, Natts_applied_op_min, applied_op_columns},
	[OFS_TRANSITION_LOG] = {"transition_log", Natts_transition_log, Natts_transition_log_min,
	transition_log_columns},
	[OFS_GAPLESS_ISSUED] = {"gapless_issued", Natts_gapless_issued, Natts_gapless_issued_min,
	gapless_issued_columns},
};

static bool own_tables_callback_registered = false;

/* OwnTablesInvalidate forgets checked layouts when a relation changes. */
static void
OwnTablesInvalidate(Datum arg, Oid relid)
{
	for (int i = 0; i < OFS_OWN_TABLE_COUNT; i++)
		if (!OidIsValid(relid) || own_tables[i].checked_relid == relid)
			own_tables[i].checked_relid = InvalidOid;
}

/* CheckOwnLayout insists that rel has a known layout of table t. */
static void
CheckOwnLayout(OwnTable *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (desc->natts > t->natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ofs.%s has %d columns, but this ofs library knows only %d",
						t->relname, desc->natts, t->natts),
				 errdetail("The extension's SQL is newer than its shared library."),
				 errhint("Install the ofs shared library of the version shown by \\dx ofs, and restart PostgreSQL.")));
	if (desc->natts < t->min_natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ofs.%s has %d columns, fewer than any version of ofs had (%d)",
						t->relname, desc->natts, t->min_natts),
				 errhint("The ofs extension is damaged; reinstall it.")));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), t->columns[i].name) != 0 ||
			att->atttypid != t->columns[i].type)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column %d of ofs.%s is not \"%s\" of type %s", i + 1, t->relname,
							t->columns[i].name, format_type_be(t->columns[i].type)),
					 errdetail("ofs writes this table directly and depends on its layout."),
					 errhint("The ofs extension is damaged, or its SQL does not match its shared library; run ALTER EXTENSION ofs UPDATE, or reinstall it.")));
	}
}

/*
 * OfsOpenOwnTable opens one of ofs's directly written tables and checks its
 * layout, once per relcache entry (internal_tables.h).
 */
Relation
OfsOpenOwnTable(OfsOwnTable which, LOCKMODE lockmode)
{
	OwnTable   *t = &own_tables[which];
	Relation	rel = table_open(OfsRelid(t->relname), lockmode);

	if (t->checked_relid != RelationGetRelid(rel))
	{
		if (!own_tables_callback_registered)
		{
			CacheRegisterRelcacheCallback(OwnTablesInvalidate, (Datum) 0);
			own_tables_callback_registered = true;
		}
		CheckOwnLayout(t, rel);
		t->checked_relid = RelationGetRelid(rel);
	}
	return rel;
}

/* OfsOwnTableNatts is how many of its known columns an opened table has. */
int
OfsOwnTableNatts(Relation rel)
{
	return RelationGetDescr(rel)->natts;
}

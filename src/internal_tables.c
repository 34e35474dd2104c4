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

#include "access/genam.h"
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
#include "utils/acl.h"
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

/*
 * capture.c: sync registration and the capture of row changes.
 *
 * ofs.sync_table installs two triggers on a table: ofs_capture, an AFTER
 * INSERT OR UPDATE OR DELETE FOR EACH ROW trigger that writes every row
 * change into ofs.change_log in the writing transaction (so psql sessions,
 * other triggers, COPY and the sync worker are all captured, and a rollback
 * captures nothing), and ofs_refuse_truncate, since a TRUNCATE fires no row
 * triggers and devices would never learn which rows went.
 *
 * Each entry carries the full row after the change, the columns an update
 * changed, and their version: the HLC and site (the origin, or the device
 * whose intent the write path is applying) that wrote them.  At commit, a
 * transaction that captured changes wakes the sync workers (shmem.c).
 */
#include "ofs.h"
#include "capture.h"
#include "hlc.h"
#include "internal_tables.h"
#include "plan_cache.h"
#include "rowjson.h"
#include "shmem.h"
#include "writer.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(ofs_capture_trigger);
PG_FUNCTION_INFO_V1(ofs_refuse_truncate);
PG_FUNCTION_INFO_V1(ofs_sync_table);
PG_FUNCTION_INFO_V1(ofs_unsync_table);
PG_FUNCTION_INFO_V1(ofs_rebuild_feed);
PG_FUNCTION_INFO_V1(ofs_feed_commits);

/* Whether the current transaction captured a change (reset at its end). */
static bool captured_in_xact = false;

/* CaptureXactCallback wakes the sync workers when changes commit. */
static void
CaptureXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (captured_in_xact)
				OfsNotifyFeed();
			captured_in_xact = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			captured_in_xact = false;
			break;
		default:
			break;
	}
}

/* CaptureInit registers the commit callback; called from _PG_init. */
void
CaptureInit(void)
{
	RegisterXactCallback(CaptureXactCallback, NULL);
}

/* PrimaryKeyAtts returns the primary key columns of a table, in attnum order. */
AttrNumber *
PrimaryKeyAtts(Relation rel, int *npk)
{
	Bitmapset  *pkattrs = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	AttrNumber *pk = palloc(sizeof(AttrNumber) * Max(bms_num_members(pkattrs), 1));
	int			i = 0;
	int			attno = -1;

	while ((attno = bms_next_member(pkattrs, attno)) >= 0)
		pk[i++] = attno + FirstLowInvalidHeapAttributeNumber;
	*npk = i;
	return pk;
}

/* SentValueText appends a value a device sent, as JSON text. */
static void
SentValueText(StringInfo buf, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		case jbvString:
			escape_json(buf, pnstrdup(v->val.string.val, v->val.string.len));
			break;
		case jbvNumeric:
			appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																		  NumericGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		default:
			(void) JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
			break;
	}
}

/*
 * AsSent: does a change leave the row exactly as the device whose intent
 * is being applied sent it, so that the device already holds it?  A delete
 * does; an insert does when every column of the new row is one the device
 * sent, in the same JSON text; an update does when every column it sent
 * reads back in the same JSON text and no other column changed.  Anything
 * the origin did to the row (a trigger, a default, a normalisation such as
 * 20.5 to 20.50, a merge, a column that lost) makes it false, and the row
 * goes back to the device.  NULL (unknown) for the origin's own writes.
 */
static bool
AsSent(const OfsWriter *w, TupleDesc desc, HeapTuple row, char op, ArrayType *changed)
{
	StringInfoData mine;
	StringInfoData theirs;

	if (op == 'D')
		return true;
	if (w->values == NULL)
		return false;
	initStringInfo(&mine);
	initStringInfo(&theirs);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		const char *name = NameStr(a->attname);
		JsonbValue *sent;
		Datum		value;
		bool		isnull;

		if (a->attisdropped)
			continue;
		sent = getKeyJsonValueFromContainer(&w->values->root, name, strlen(name), NULL);
		if (sent == NULL)
		{
			if (op == 'I')
				return false;	/* a column the device did not send: a default */
			continue;
		}
		value = heap_getattr(row, i + 1, desc, &isnull);
		resetStringInfo(&mine);
		resetStringInfo(&theirs);
		RowJsonValue(&mine, value, isnull, a->atttypid);
		SentValueText(&theirs, sent);
		if (strcmp(mine.data, theirs.data) != 0)
			return false;
	}
	if (op == 'U' && changed != NULL)
	{
		Datum	   *names;
		int			n;

		deconstruct_array(changed, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
		for (int k = 0; k < n; k++)
		{
			char	   *name = TextDatumGetCString(names[k]);

			if (getKeyJsonValueFromContainer(&w->values->root, name, strlen(name), NULL) == NULL)
				return false;	/* changed by someone else: a trigger */
		}
	}
	return true;
}

/*
 * CaptureEntry writes one entry of ofs.change_log.  "row" is the row after
 * the change, or for a delete the deleted row (only its key is kept).
 */
static void
CaptureEntry(Relation rel, Relation log, HeapTuple row, char op,
			 int npk, AttrNumber *pk, ArrayType *changed)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const OfsWriter *w = OfsCurrentWriter();
	Datum		values[Natts_change_log];
	bool		nulls[Natts_change_log];

	memset(nulls, false, sizeof(nulls));
	values[Anum_change_log_seq - 1] = Int64GetDatum(nextval_internal(OfsRelid("change_seq"), false));
	values[Anum_change_log_xid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values[Anum_change_log_tbl - 1] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[Anum_change_log_pk - 1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(RowJsonObject(row, desc, npk, pk)));
	values[Anum_change_log_op - 1] = CharGetDatum(op);
	if (op == 'D')
		nulls[Anum_change_log_data - 1] = true;
	else
		values[Anum_change_log_data - 1] = DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(RowJsonObject(row, desc, 0, NULL)));
	nulls[Anum_change_log_changed - 1] = (changed == NULL);
	values[Anum_change_log_changed - 1] = PointerGetDatum(changed);
	values[Anum_change_log_hlc - 1] = Int64GetDatum(w && w->hlc ? w->hlc : HlcNow());
	values[Anum_change_log_site - 1] = CStringGetTextDatum(w ? w->device : "origin");
	nulls[Anum_change_log_operation_id - 1] = (w == NULL);
	values[Anum_change_log_operation_id - 1] = w ? CStringGetTextDatum(w->operation) : (Datum) 0;
	nulls[Anum_change_log_versions - 1] = true;
	values[Anum_change_log_captured_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	nulls[Anum_change_log_as_sent - 1] = (w == NULL);
	values[Anum_change_log_as_sent - 1] = BoolGetDatum(w != NULL && AsSent(w, desc, row, op, changed));

	OfsInsertDirect(log, values, nulls);
	captured_in_xact = true;
}

static Relation
OpenChangeLog(void)
{
	return OfsOpenOwnTable(OFS_CHANGE_LOG, RowExclusiveLock);
}

/* SyncWritesColumn: does the intent being applied write this column? */
static bool
SyncWritesColumn(const char *name)
{
	const OfsWriter *w = OfsCurrentWriter();
	ListCell   *lc;

	if (w == NULL)
		return false;
	foreach(lc, w->columns)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * ChangedColumns compares two versions of a row.  It returns the names of
 * the changed columns (NULL if none) and whether a key column changed.  The
 * columns a device's intent writes count as changed even when the value
 * stays, since their version changes.
 */
static ArrayType *
ChangedColumns(TupleDesc desc, HeapTuple oldrow, HeapTuple newrow,
			   int npk, AttrNumber *pk, bool *key_changed)
{
	Datum	   *names = palloc(sizeof(Datum) * desc->natts);
	int			n = 0;
	int			i;
	int			k;

	*key_changed = false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		bool		onull;
		bool		nnull;
		Datum		ov;
		Datum		nv;
		bool		differs;

		if (a->attisdropped)
			continue;
		ov = heap_getattr(oldrow, i + 1, desc, &onull);
		nv = heap_getattr(newrow, i + 1, desc, &nnull);
		differs = !(onull == nnull && (onull || datum_image_eq(ov, nv, a->attbyval, a->attlen)));
		if (!differs && !SyncWritesColumn(NameStr(a->attname)))
			continue;
		names[n++] = CStringGetTextDatum(NameStr(a->attname));
		for (k = 0; k < npk && differs; k++)
			if (pk[k] == i + 1)
				*key_changed = true;
	}
	if (n == 0)
		return NULL;
	return construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/* capture_trigger is the AFTER ROW trigger ofs_capture of synced tables. */
Datum
ofs_capture_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Relation	log;
	int			npk;
	AttrNumber *pk;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ofs_internal.capture_trigger must be an AFTER ROW trigger"),
				 errhint("Use ofs.sync_table, which installs it.")));
	rel = td->tg_relation;
	pk = PrimaryKeyAtts(rel, &npk);
	if (npk == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("synced table \"%s\" has no primary key", RelationGetRelationName(rel)),
				 errhint("Add the primary key back, or stop syncing it with ofs.unsync_table.")));

	log = OpenChangeLog();
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		CaptureEntry(rel, log, td->tg_trigtuple, 'I', npk, pk, NULL);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		CaptureEntry(rel, log, td->tg_trigtuple, 'D', npk, pk, NULL);
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		bool		key_changed;
		ArrayType  *changed = ChangedColumns(RelationGetDescr(rel), td->tg_trigtuple,
											 td->tg_newtuple, npk, pk, &key_changed);

		/* A new key is another row for devices: the old one goes, the new one comes. */
		if (key_changed)
		{
			CaptureEntry(rel, log, td->tg_trigtuple, 'D', npk, pk, NULL);
			CaptureEntry(rel, log, td->tg_newtuple, 'I', npk, pk, NULL);
		}
		else if (changed != NULL)
			CaptureEntry(rel, log, td->tg_newtuple, 'U', npk, pk, changed);
	}
	table_close(log, RowExclusiveLock);
	return PointerGetDatum(NULL);
}

/* refuse_truncate is the BEFORE TRUNCATE trigger of synced tables. */
Datum
ofs_refuse_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ofs_internal.refuse_truncate must be called as a trigger");
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot truncate synced table \"%s\"", RelationGetRelationName(td->tg_relation)),
			 errdetail("TRUNCATE removes rows without row triggers, so devices would never learn which rows went."),
			 errhint("Use DELETE, which the feed captures, or stop syncing the table with ofs.unsync_table first.")));
	return PointerGetDatum(NULL);
}

/* CaptureExisting writes an insert entry for every row a table holds now. */
static int64
CaptureExisting(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	log = OpenChangeLog();
	Portal		portal;
	int			npk;
	AttrNumber *pk = PrimaryKeyAtts(rel, &npk);
	int64		count = 0;
	MemoryContext rowcxt;
	char	   *query = psprintf("SELECT * FROM ONLY %s",
								 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															RelationGetRelationName(rel)));

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "ofs capture row", ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			/* A table of any size: what one row allocates goes with it. */
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			CaptureEntry(rel, log, SPI_tuptable->vals[i], 'I', npk, pk, NULL);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		count += SPI_processed;
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	table_close(log, RowExclusiveLock);
	table_close(rel, AccessShareLock);
	return count;
}

/*
 * ValidateMerge checks a merge policy object against the table: each key a
 * column that is not part of the primary key, each value lww, counter (on a
 * numeric column) or manual.
 */
static void
ValidateMerge(Oid relid, Jsonb *merge)
{
	char	   *text = JsonbToCString(NULL, &merge->root, VARSIZE(merge));
	int			rc;
	Oid			types[2] = {OIDOID, JSONBOID};
	Datum		args[2] = {ObjectIdGetDatum(relid), JsonbPGetDatum(merge)};
	uint64		i;

	if (!JB_ROOT_IS_OBJECT(merge) || JB_ROOT_IS_SCALAR(merge))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merge policy %s is not a JSON object", text),
				 errhint("Write e.g. '{\"quantity\": \"counter\", \"notes\": \"manual\"}'.")));

	rc = SPI_execute_with_args(
		"SELECT m.key, jsonb_typeof(m.value), m.value #>> '{}', a.attnum, a.atttypid::regtype::text,"
		"       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1 AND i.indisprimary"
		"               AND a.attnum = ANY (i.indkey))"
		"  FROM jsonb_each($2) m"
		"  LEFT JOIN pg_attribute a ON a.attrelid = $1 AND a.attname = m.key"
		"       AND a.attnum > 0 AND NOT a.attisdropped"
		" ORDER BY m.key",
		2, types, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *key = SPI_getvalue(t, d, 1);
		char	   *kind = SPI_getvalue(t, d, 2);
		char	   *policy = SPI_getvalue(t, d, 3);
		char	   *attnum = SPI_getvalue(t, d, 4);
		char	   *type = SPI_getvalue(t, d, 5);
		bool		is_pk = strcmp(SPI_getvalue(t, d, 6), "t") == 0;

		if (attnum == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("merge policy names column \"%s\", which table %s does not have",
							key, get_rel_name(relid)),
					 errhint("Name columns of the table, as in '{\"quantity\": \"counter\"}'.")));
		if (strcmp(kind, "string") != 0 ||
			(strcmp(policy, "lww") != 0 && strcmp(policy, "counter") != 0 && strcmp(policy, "manual") != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid merge policy %s for column \"%s\"",
							strcmp(kind, "string") == 0 ? quote_literal_cstr(policy) : policy, key),
					 errhint("A column's policy is \"lww\" (the default), \"counter\" or \"manual\".")));
		if (is_pk && strcmp(policy, "lww") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("primary key column \"%s\" cannot be merged as %s", key, policy),
					 errdetail("A row's key identifies it; devices do not change it concurrently."),
					 errhint("Leave key columns out of the merge policy.")));
		if (strcmp(policy, "counter") == 0 &&
			strcmp(type, "smallint") != 0 && strcmp(type, "integer") != 0 &&
			strcmp(type, "bigint") != 0 && strcmp(type, "numeric") != 0 &&
			strcmp(type, "real") != 0 && strcmp(type, "double precision") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of type %s cannot be merged as a counter", key, type),
					 errhint("Counters add up concurrent increments; use them on numeric columns.")));
	}
}

/* sync_table registers a table in the feed and captures the rows it holds. */
Datum
ofs_sync_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Jsonb	   *merge;
	Oid			types[2] = {REGCLASSOID, JSONBOID};
	Datum		args[2];
	Oid			save_uid;
	int			save_sec;
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the table to sync must not be null")));
	relid = PG_GETARG_OID(0);
	merge = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("ofs.sync_table must run in a READ COMMITTED transaction"),
				 errdetail("It captures the rows committed after its trigger is in place, which a transaction snapshot taken earlier would not see."),
				 errhint("Run it in its own transaction, or SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));
	OfsRequireKeyedTable(relid,
						 "Only ordinary tables can be synced; partitioned tables are not supported.",
						 "Devices and the feed identify rows by their primary key.",
						 "Add one with ALTER TABLE ... ADD PRIMARY KEY, then sync the table.");

	SPI_connect();
	if (merge)
		ValidateMerge(relid, merge);

	OfsRunAsOwner(&save_uid, &save_sec);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = merge ? JsonbPGetDatum(merge) : DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	rc = SPI_execute_with_args("INSERT INTO ofs.synced_table (tbl, merge) VALUES ($1, $2)"
							   " ON CONFLICT (tbl) DO UPDATE SET merge = EXCLUDED.merge"
							   " RETURNING (xmax = 0)",
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	OfsRestoreUser(save_uid, save_sec);

	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
	{
		/* Already synced: only the merge policy changed. */
		ereport(NOTICE,
				(errmsg("table \"%s\" is already synced; its merge policy was updated", get_rel_name(relid))));
		SPI_finish();
		PG_RETURN_VOID();
	}

	/*
	 * The trigger's lock waits for writers in progress; the scan then sees
	 * them.  ofs's owner creates the triggers: its trigger functions are not
	 * for PUBLIC, so that nobody attaches them to tables of their own.
	 */
	OfsRunAsOwner(&save_uid, &save_sec);
	OfsSpiExec(psprintf("CREATE TRIGGER ofs_capture AFTER INSERT OR UPDATE OR DELETE ON %s"
					 " FOR EACH ROW EXECUTE FUNCTION %s.capture_trigger()", OfsQualifiedName(relid),
						OfsInternalSchema()),
			SPI_OK_UTILITY);
	OfsSpiExec(psprintf("CREATE TRIGGER ofs_refuse_truncate BEFORE TRUNCATE ON %s"
					 " FOR EACH STATEMENT EXECUTE FUNCTION %s.refuse_truncate()", OfsQualifiedName(relid),
						OfsInternalSchema()),
			SPI_OK_UTILITY);
	OfsRestoreUser(save_uid, save_sec);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	CaptureExisting(relid);
	PopActiveSnapshot();
	SPI_finish();
	PG_RETURN_VOID();
}

/* unsync_table removes a table from the feed. */
Datum
ofs_unsync_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	Oid			save_uid;
	int			save_sec;
	int			rc;

	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	rc = SPI_execute_with_args("DELETE FROM ofs.synced_table WHERE tbl = $1",
							   1, types, args, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not synced", get_rel_name(relid)),
				 errhint("Synced tables are listed in ofs.synced_table.")));
	rc = SPI_execute_with_args("DELETE FROM ofs.change_log WHERE tbl = $1",
							   1, types, args, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	OfsSpiExec(psprintf("DROP TRIGGER IF EXISTS ofs_capture ON %s", OfsQualifiedName(relid)), SPI_OK_UTILITY);
	OfsSpiExec(psprintf("DROP TRIGGER IF EXISTS ofs_refuse_truncate ON %s", OfsQualifiedName(relid)), SPI_OK_UTILITY);
	OfsRestoreUser(save_uid, save_sec);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * rebuild_feed empties the feed, starts a new epoch (every cursor of the
 * old feed is refused from now on) and captures every row of every synced
 * table.  After pg_restore it brings the feed back.
 */
Datum
ofs_rebuild_feed(PG_FUNCTION_ARGS)
{
	Oid			save_uid;
	int			save_sec;
	int64		count = 0;
	uint64		i;
	uint64		n;
	Oid		   *tables;

	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	OfsSpiExec("DELETE FROM ofs.change_log", SPI_OK_DELETE);
	OfsSpiExec("UPDATE ofs.feed_state SET horizon = '0', compacted_at = NULL,"
			" epoch = lpad(to_hex((random() * 4294967295)::bigint), 8, '0')", SPI_OK_UPDATE);
	OfsSpiExec("SELECT tbl::oid FROM ofs.synced_table ORDER BY tbl", SPI_OK_SELECT);
	n = SPI_processed;
	tables = palloc(sizeof(Oid) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		tables[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	OfsRestoreUser(save_uid, save_sec);
	for (i = 0; i < n; i++)
	{
		if (!pg_class_ownercheck(tables[i], GetUserId()))
			aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(tables[i]));
		count += CaptureExisting(tables[i]);
	}
	SPI_finish();
	PG_RETURN_INT64(count);
}

/* feed_commits is the number of commits that captured changes, or NULL without preloading. */
Datum
ofs_feed_commits(PG_FUNCTION_ARGS)
{
	if (ofs_shared == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT64((int64) pg_atomic_read_u64(&ofs_shared->feed_commits));
}

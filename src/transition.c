/*
 * transition.c: transition constraints and checks.
 *
 * A transition constraint is a state machine on one column: an UPDATE that
 * changes the column must follow an edge of its transition list, taken by a
 * member of the edge's role; an INSERT must use an initial state when the
 * constraint names some.  A transition check is a boolean expression over
 * OLD and NEW, judged on every UPDATE.
 *
 * The list is parsed once, when the constraint is defined (transition_dsl.c),
 * and stored as rows of ofs.transition_edge.  Enforcement is an AFTER ROW
 * trigger, ofs_transition, so that it judges the final row, after every
 * BEFORE trigger of the table has run (an origin trigger that replaces a
 * provisional number is seen by the checks).  Each backend caches the rules
 * of a table, with its check expressions planned once, and drops the cache
 * entry on a relcache invalidation of the table, which defining or dropping
 * a rule sends.
 */
#include "ofs.h"
#include "internal_tables.h"
#include "plan_cache.h"
#include "rowjson.h"
#include "transition.h"
#include "writer.h"

#include "access/htup_details.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/index.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_node.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ofs_add_transition_constraint);
PG_FUNCTION_INFO_V1(ofs_drop_transition_constraint);
PG_FUNCTION_INFO_V1(ofs_add_transition_check);
PG_FUNCTION_INFO_V1(ofs_drop_transition_check);
PG_FUNCTION_INFO_V1(ofs_transition_trigger);

#define TRANSITION_TRIGGER_NAME "ofs_transition"

/* A cached edge: states as canonical text, the role resolved to an OID. */
typedef struct CachedEdge
{
	char	   *from;
	char	   *to;
	char	   *role_name;		/* NULL: no role guard */
	Oid			role;			/* InvalidOid if the role no longer exists */
} CachedEdge;

typedef struct CachedConstraint
{
	char	   *name;
	char	   *col;
	AttrNumber	attnum;
	Oid			typoutput;
	int16		typlen;
	bool		typbyval;
	int			nedges;
	CachedEdge *edges;
	int			ninitial;		/* -1: any initial state */
	char	  **initial;
} CachedConstraint;

typedef struct CachedCheck
{
	char	   *name;
	char	   *expr;
	SPIPlanPtr	plan;
} CachedCheck;

/* The rules of one table, as this backend last loaded them. */
typedef struct TableRules
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext cxt;
	char	   *table_name;		/* qualified, for the log */
	int			npk;
	AttrNumber *pk;
	int			ncons;
	CachedConstraint *cons;
	int			nchecks;
	CachedCheck *checks;
} TableRules;

/* What the OLD/NEW column reference hook needs to resolve a column. */
typedef struct CheckParseArg
{
	Oid			relid;
	int			natts;
} CheckParseArg;

static HTAB *rules_cache = NULL;

static void TransitionXactCallback(XactEvent event, void *arg);

/* Bumped by every invalidation, so a load that raced one is not trusted. */
static uint64 inval_generation = 0;

/* pg_catalog alone: what rules and checks are resolved and run with. */
static OverrideSearchPath pinned_path = {NIL, true, false, 0};

/* TransitionInvalidate drops cached rules when their table's relcache entry is invalidated. */
static void
TransitionInvalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TableRules *entry;

	inval_generation++;
	if (rules_cache == NULL)
		return;
	hash_seq_init(&status, rules_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
	}
}

static void
TransitionInitCache(void)
{
	HASHCTL		ctl;

	if (rules_cache != NULL)
		return;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(TableRules);
	ctl.hcxt = CacheMemoryContext;
	rules_cache = hash_create("ofs transition rules", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(TransitionInvalidate, (Datum) 0);
	RegisterXactCallback(TransitionXactCallback, NULL);
}

/*
 * CheckColumnRef resolves OLD.col and NEW.col in a check expression to
 * parameters: $1..$n are OLD's columns by attnum, $n+1..$2n NEW's.
 */
static Node *
CheckColumnRef(ParseState *pstate, ColumnRef *cref, Node *var)
{
	CheckParseArg *arg = pstate->p_ref_hook_state;
	Node	   *f1;
	Node	   *f2;
	const char *colname;
	bool		is_new;
	AttrNumber	attnum;
	Param	   *param;

	if (var != NULL || list_length(cref->fields) != 2)
		return NULL;
	f1 = linitial(cref->fields);
	f2 = lsecond(cref->fields);
	if (!IsA(f1, String) || !IsA(f2, String))
		return NULL;
	if (strcmp(strVal(f1), "old") == 0)
		is_new = false;
	else if (strcmp(strVal(f1), "new") == 0)
		is_new = true;
	else
		return NULL;
	colname = strVal(f2);
	attnum = get_attnum(arg->relid, colname);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column %s.%s does not exist", strVal(f1), colname),
				 parser_errposition(pstate, cref->location)));

	param = makeNode(Param);
	param->paramkind = PARAM_EXTERN;
	param->paramid = (is_new ? arg->natts : 0) + attnum;
	get_atttypetypmodcoll(arg->relid, attnum,
						  &param->paramtype, &param->paramtypmod, &param->paramcollid);
	param->location = cref->location;
	return (Node *) param;
}

static void
CheckParserSetup(ParseState *pstate, void *arg)
{
	pstate->p_post_columnref_hook = CheckColumnRef;
	pstate->p_ref_hook_state = arg;
}

/* The text a check expression is planned as; errors subtract its prefix. */
#define CHECK_QUERY_PREFIX "SELECT "

/*
 * CheckPrepare plans a check expression over OLD and NEW.  Errors (syntax,
 * unknown column, wrong type) name the check and the position within the
 * expression.  The caller must be connected to SPI.
 */
static SPIPlanPtr
CheckPrepare(Oid relid, const char *name, const char *expr, CheckParseArg *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	char	   *query = psprintf(CHECK_QUERY_PREFIX "(%s)", expr);
	SPIPlanPtr	plan = NULL;
	CachedPlanSource *source;
	Oid			restype;

	PG_TRY();
	{
		plan = SPI_prepare_params(query, CheckParserSetup, arg, 0);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare_params failed: %s", SPI_result_code_string(SPI_result));
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			pos;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		pos = (edata->internalpos > 0 ? edata->internalpos : edata->cursorpos)
			- (int) strlen(CHECK_QUERY_PREFIX) - 1;
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid transition check \"%s\" on table %s: %s",
						name, get_rel_name(relid), edata->message),
				 pos > (int) strlen(expr) ? errdetail("The error is at the end of the expression.") :
				 pos > 0 ? errdetail("The error is at position %d of the expression.", pos) : 0,
				 errhint("A transition check is a boolean SQL expression over OLD.column and NEW.column.")));
	}
	PG_END_TRY();

	source = linitial(SPI_plan_get_plan_sources(plan));
	restype = (source->resultDesc && source->resultDesc->natts == 1)
		? TupleDescAttr(source->resultDesc, 0)->atttypid : InvalidOid;
	if (restype != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("transition check \"%s\" on table %s must be boolean, not type %s",
						name, get_rel_name(relid), format_type_be(restype)),
				 errhint("Write a condition, e.g. NEW.amount >= 0.")));
	return plan;
}

static char *
SpiText(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * TransitionLoad reads the rules of a table into a fresh cache entry.  Runs
 * inside the caller's SPI connection.
 */
static void
TransitionLoad(TableRules *entry, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	MemoryContext cxt;
	MemoryContext old;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	Oid			save_uid;
	int			save_sec;
	int			rc;
	int			i;
	Bitmapset  *pkattrs;
	int			attno;
	CheckParseArg *parg;
	uint64		generation;

	generation = inval_generation;
	cxt = AllocSetContextCreate(CacheMemoryContext, "ofs transition rules",
								ALLOCSET_SMALL_SIZES);
	entry->cxt = cxt;
	entry->ncons = 0;
	entry->nchecks = 0;
	entry->checks = NULL;
	entry->cons = NULL;

	old = MemoryContextSwitchTo(cxt);
	entry->table_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel));
	pkattrs = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	entry->npk = bms_num_members(pkattrs);
	entry->pk = palloc(sizeof(AttrNumber) * Max(entry->npk, 1));
	i = 0;
	attno = -1;
	while ((attno = bms_next_member(pkattrs, attno)) >= 0)
		entry->pk[i++] = attno + FirstLowInvalidHeapAttributeNumber;
	MemoryContextSwitchTo(old);

	OfsRunAsOwner(&save_uid, &save_sec);

	rc = SPI_execute_with_args(
		"SELECT d.id, d.name, d.col, d.initial::text[],"
		"       e.from_state, e.to_state, e.role"
		"  FROM ofs.transition_constraint_def d"
		"  LEFT JOIN ofs.transition_edge e ON e.constraint_id = d.id"
		" WHERE d.tbl = $1 ORDER BY d.id, e.ord",
		1, argtypes, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading transition rules failed: %s", SPI_result_code_string(rc));

	old = MemoryContextSwitchTo(cxt);
	entry->cons = palloc0(sizeof(CachedConstraint) * Max(SPI_processed, 1));
	{
		char	   *last_id = NULL;
		CachedConstraint *c = NULL;

		for (i = 0; i < (int) SPI_processed; i++)
		{
			char	   *id = SpiText(i, 1);

			if (last_id == NULL || strcmp(id, last_id) != 0)
			{
				bool		isnull;
				Datum		initial;
				Oid			typid;

				c = &entry->cons[entry->ncons++];
				c->name = SpiText(i, 2);
				c->col = SpiText(i, 3);
				c->attnum = get_attnum(relid, c->col);
				if (c->attnum <= 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column \"%s\" of transition constraint \"%s\" does not exist in table %s",
									c->col, c->name, entry->table_name),
							 errhint("Drop the constraint with ofs.drop_transition_constraint.")));
				typid = get_atttype(relid, c->attnum);
				{
					bool		varlena;

					getTypeOutputInfo(typid, &c->typoutput, &varlena);
				}
				get_typlenbyval(typid, &c->typlen, &c->typbyval);
				c->edges = palloc0(sizeof(CachedEdge) * SPI_processed);
				initial = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
				c->ninitial = -1;
				if (!isnull)
				{
					Datum	   *elems;
					bool	   *nulls;
					int			n;
					int			k;

					deconstruct_array(DatumGetArrayTypeP(initial), TEXTOID, -1, false,
									  TYPALIGN_INT, &elems, &nulls, &n);
					c->initial = palloc(sizeof(char *) * Max(n, 1));
					c->ninitial = n;
					for (k = 0; k < n; k++)
						c->initial[k] = TextDatumGetCString(elems[k]);
				}
				last_id = id;
			}
			if (SpiText(i, 5) != NULL)
			{
				CachedEdge *e = &c->edges[c->nedges++];

				e->from = SpiText(i, 5);
				e->to = SpiText(i, 6);
				e->role_name = SpiText(i, 7);
				e->role = e->role_name ? get_role_oid(e->role_name, true) : InvalidOid;
			}
		}
	}
	MemoryContextSwitchTo(old);

	rc = SPI_execute_with_args(
		"SELECT name, expr FROM ofs.transition_check_def WHERE tbl = $1 ORDER BY name",
		1, argtypes, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading transition checks failed: %s", SPI_result_code_string(rc));
	OfsRestoreUser(save_uid, save_sec);

	if (SPI_processed > 0)
	{
		SPITupleTable *checks = SPI_tuptable;
		int			n = (int) SPI_processed;

		old = MemoryContextSwitchTo(cxt);
		entry->checks = palloc0(sizeof(CachedCheck) * n);
		parg = palloc(sizeof(CheckParseArg));
		parg->relid = relid;
		parg->natts = RelationGetDescr(rel)->natts;
		for (i = 0; i < n; i++)
		{
			entry->checks[i].name = SPI_getvalue(checks->vals[i], checks->tupdesc, 1);
			entry->checks[i].expr = SPI_getvalue(checks->vals[i], checks->tupdesc, 2);
		}
		MemoryContextSwitchTo(old);
		for (i = 0; i < n; i++)
		{
			CachedCheck *ck = &entry->checks[i];

			ck->plan = CheckPrepare(relid, ck->name, ck->expr, parg);
			SPI_keepplan(ck->plan);
			entry->nchecks++;
		}
	}
	entry->valid = (inval_generation == generation);
}

/*
 * Cached rules may be replaced while a trigger further up the stack still
 * uses them (a check that calls a function that updates the same table,
 * with an invalidation in between).  Old rules are then kept as zombies and
 * freed when no trigger runs, or at the end of the transaction.
 */
typedef struct ZombieRules
{
	MemoryContext cxt;
	List	   *plans;
} ZombieRules;

static int	trigger_depth = 0;
static List *zombies = NIL;

static void
TransitionFreeZombies(void)
{
	ListCell   *lc;

	foreach(lc, zombies)
	{
		ZombieRules *z = lfirst(lc);
		ListCell   *pc;

		foreach(pc, z->plans)
			SPI_freeplan((SPIPlanPtr) lfirst(pc));
		MemoryContextDelete(z->cxt);
	}
	list_free_deep(zombies);
	zombies = NIL;
}

static void
TransitionFreeEntry(TableRules *entry)
{
	int			i;
	ZombieRules *z;
	MemoryContext old;

	if (entry->cxt == NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	z = palloc0(sizeof(ZombieRules));
	z->cxt = entry->cxt;
	for (i = 0; i < entry->nchecks; i++)
		if (entry->checks[i].plan)
			z->plans = lappend(z->plans, entry->checks[i].plan);
	zombies = lappend(zombies, z);
	MemoryContextSwitchTo(old);
	entry->cxt = NULL;
	entry->nchecks = 0;
	entry->ncons = 0;
	/* Only the trigger asking for the reload runs: nobody uses the old rules. */
	if (trigger_depth <= 1)
		TransitionFreeZombies();
}

/* At the end of a transaction no trigger runs: free what waited. */
static void
TransitionXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		trigger_depth = 0;
		if (zombies != NIL)
			TransitionFreeZombies();
	}
}

/* TransitionRulesFor returns the valid cached rules of a table, loading them if needed. */
static TableRules *
TransitionRulesFor(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	TableRules *entry;
	bool		found;

	TransitionInitCache();
	entry = hash_search(rules_cache, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found)
		TransitionFreeEntry(entry);
	else
		entry->cxt = NULL;
	entry->valid = false;
	entry->nchecks = 0;
	PG_TRY();
	{
		TransitionLoad(entry, rel);
	}
	PG_CATCH();
	{
		TransitionFreeEntry(entry);
		entry->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return entry;
}

/*
 * AllowedNext describes the edges out of a state, for hints: "approved" (by
 * role manager), "draft".
 */
static char *
AllowedNext(CachedConstraint *c, const char *from)
{
	StringInfoData buf;
	int			i;
	int			n = 0;

	initStringInfo(&buf);
	for (i = 0; i < c->nedges; i++)
	{
		CachedEdge *e = &c->edges[i];

		if (from == NULL || strcmp(e->from, from) != 0)
			continue;
		appendStringInfo(&buf, "%s\"%s\"", n++ ? ", " : "", e->to);
		if (e->role_name)
			appendStringInfo(&buf, " (by role %s)", e->role_name);
	}
	if (n == 0)
		return psprintf("There is no transition out of %s%s%s.",
						from ? "\"" : "", from ? from : "NULL", from ? "\"" : "");
	return psprintf("Allowed next states from \"%s\": %s.", from, buf.data);
}

/* PrimaryKeyJson renders the primary key of a row as a JSON object. */
static char *
PrimaryKeyJson(TableRules *rules, HeapTuple tuple, TupleDesc desc)
{
	return RowJsonObject(tuple, desc, rules->npk, rules->pk);
}

/*
 * TransitionLog writes one row of ofs.transition_log, directly (see
 * internal_tables.c): it is written for every state change.
 */
static void
TransitionLog(TableRules *rules, Relation rel, HeapTuple keytuple,
			  CachedConstraint *c, const char *from, const char *to)
{
	Oid			seqid = OfsRelid("transition_log_id_seq");
	const OfsWriter *w = OfsCurrentWriter();
	Relation	logrel;
	Datum		values[Natts_transition_log];
	bool		nulls[Natts_transition_log];

	memset(nulls, false, sizeof(nulls));
	values[Anum_transition_log_id - 1] = Int64GetDatum(nextval_internal(seqid, false));
	values[Anum_transition_log_table_name - 1] = CStringGetTextDatum(rules->table_name);
	values[Anum_transition_log_tbl - 1] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[Anum_transition_log_pk - 1] = DirectFunctionCall1(jsonb_in,
										 CStringGetDatum(PrimaryKeyJson(rules, keytuple, RelationGetDescr(rel))));
	values[Anum_transition_log_constraint_name - 1] = CStringGetTextDatum(c->name);
	values[Anum_transition_log_col - 1] = DirectFunctionCall1(namein, CStringGetDatum(c->col));
	nulls[Anum_transition_log_from_state - 1] = (from == NULL);
	values[Anum_transition_log_from_state - 1] = from ? CStringGetTextDatum(from) : (Datum) 0;
	nulls[Anum_transition_log_to_state - 1] = (to == NULL);
	values[Anum_transition_log_to_state - 1] = to ? CStringGetTextDatum(to) : (Datum) 0;
	values[Anum_transition_log_role - 1] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[Anum_transition_log_changed_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[Anum_transition_log_xid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
	nulls[Anum_transition_log_device - 1] = (w == NULL);
	values[Anum_transition_log_device - 1] = w ? CStringGetTextDatum(w->device) : (Datum) 0;
	nulls[Anum_transition_log_operation_id - 1] = (w == NULL);
	values[Anum_transition_log_operation_id - 1] = w ? CStringGetTextDatum(w->operation) : (Datum) 0;

	logrel = OfsOpenOwnTable(OFS_TRANSITION_LOG, RowExclusiveLock);
	OfsInsertDirect(logrel, values, nulls);
	table_close(logrel, RowExclusiveLock);
}

static char *
StateText(CachedConstraint *c, HeapTuple tuple, TupleDesc desc, Datum *value, bool *isnull)
{
	*value = heap_getattr(tuple, c->attnum, desc, isnull);
	if (*isnull)
		return NULL;
	return OidOutputFunctionCall(c->typoutput, *value);
}

/* TransitionJudgeInsert enforces the initial states of a new row. */
static void
TransitionJudgeInsert(TableRules *rules, Relation rel, HeapTuple row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < rules->ncons; i++)
	{
		CachedConstraint *c = &rules->cons[i];
		Datum		v;
		bool		isnull;
		char	   *state = StateText(c, row, desc, &v, &isnull);

		if (c->ninitial >= 0)
		{
			bool		ok = false;
			int			k;
			StringInfoData allowed;

			initStringInfo(&allowed);
			for (k = 0; k < c->ninitial; k++)
			{
				if (state && strcmp(state, c->initial[k]) == 0)
					ok = true;
				appendStringInfo(&allowed, "%s\"%s\"", k ? ", " : "", c->initial[k]);
			}
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_OFS_INITIAL_STATE_NOT_ALLOWED),
						 errmsg("initial state %s%s%s of column \"%s\" violates transition constraint \"%s\" on table %s",
								state ? "\"" : "", state ? state : "NULL", state ? "\"" : "",
								c->col, c->name, rules->table_name),
						 errdetail("New rows must start in one of: %s.", allowed.data),
						 errhint("Insert the row in an initial state and move it along the transitions."),
						 errtablecol(rel, c->attnum),
						 err_generic_string(PG_DIAG_CONSTRAINT_NAME, c->name)));
		}
		if (state != NULL)
			TransitionLog(rules, rel, row, c, NULL, state);
	}
}

/* TransitionJudgeUpdate enforces edges, role guards and checks on an update. */
static void
TransitionJudgeUpdate(TableRules *rules, Relation rel, HeapTuple oldrow, HeapTuple newrow)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;
	int			k;

	for (i = 0; i < rules->ncons; i++)
	{
		CachedConstraint *c = &rules->cons[i];
		Datum		ov;
		Datum		nv;
		bool		onull;
		bool		nnull;
		char	   *from;
		char	   *to;
		CachedEdge *edge = NULL;

		ov = heap_getattr(oldrow, c->attnum, desc, &onull);
		nv = heap_getattr(newrow, c->attnum, desc, &nnull);
		if (onull && nnull)
			continue;
		if (!onull && !nnull && datum_image_eq(ov, nv, c->typbyval, c->typlen))
			continue;
		from = onull ? NULL : OidOutputFunctionCall(c->typoutput, ov);
		to = nnull ? NULL : OidOutputFunctionCall(c->typoutput, nv);
		if (from && to && strcmp(from, to) == 0)
			continue;			/* same value, another representation */

		for (k = 0; k < c->nedges && from && to; k++)
			if (strcmp(c->edges[k].from, from) == 0 && strcmp(c->edges[k].to, to) == 0)
				edge = &c->edges[k];

		if (edge == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OFS_TRANSITION_NOT_ALLOWED),
					 errmsg("transition %s%s%s -> %s%s%s of column \"%s\" violates transition constraint \"%s\" on table %s",
							from ? "\"" : "", from ? from : "NULL", from ? "\"" : "",
							to ? "\"" : "", to ? to : "NULL", to ? "\"" : "",
							c->col, c->name, rules->table_name),
					 errdetail("The constraint has no edge from %s%s%s to %s%s%s.",
							   from ? "\"" : "", from ? from : "NULL", from ? "\"" : "",
							   to ? "\"" : "", to ? to : "NULL", to ? "\"" : ""),
					 errhint("%s", AllowedNext(c, from)),
					 errtablecol(rel, c->attnum),
					 err_generic_string(PG_DIAG_CONSTRAINT_NAME, c->name)));

		if (edge->role_name != NULL &&
			(!OidIsValid(edge->role) || !is_member_of_role(GetUserId(), edge->role)))
			ereport(ERROR,
					(errcode(ERRCODE_OFS_TRANSITION_ROLE_REQUIRED),
					 errmsg("transition \"%s\" -> \"%s\" of column \"%s\" requires role \"%s\" under transition constraint \"%s\" on table %s",
							from, to, c->col, edge->role_name, c->name, rules->table_name),
					 errdetail("Role \"%s\" is not a member of role \"%s\".",
							   GetUserNameFromId(GetUserId(), false), edge->role_name),
					 errhint("%s", AllowedNext(c, from)),
					 errtablecol(rel, c->attnum),
					 err_generic_string(PG_DIAG_CONSTRAINT_NAME, c->name)));

		TransitionLog(rules, rel, newrow, c, from, to);
	}

	if (rules->nchecks > 0)
	{
		int			natts = desc->natts;
		ParamListInfo params = makeParamList(2 * natts);
		Datum	   *values = palloc(sizeof(Datum) * natts);
		bool	   *isnull = palloc(sizeof(bool) * natts);
		int			side;

		for (side = 0; side < 2; side++)
		{
			heap_deform_tuple(side == 0 ? oldrow : newrow, desc, values, isnull);
			for (k = 0; k < natts; k++)
			{
				ParamExternData *p = &params->params[side * natts + k];
				Form_pg_attribute a = TupleDescAttr(desc, k);

				p->value = values[k];
				p->isnull = isnull[k] || a->attisdropped;
				p->pflags = PARAM_FLAG_CONST;
				p->ptype = a->attisdropped ? InvalidOid : a->atttypid;
			}
		}
		for (i = 0; i < rules->nchecks; i++)
		{
			CachedCheck *ck = &rules->checks[i];
			int			rc;
			bool		resnull;
			bool		ok;

			rc = SPI_execute_plan_with_paramlist(ck->plan, params, true, 1);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "evaluating transition check \"%s\" failed: %s",
					 ck->name, SPI_result_code_string(rc));
			ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &resnull));
			if (!resnull && !ok)
				ereport(ERROR,
						(errcode(ERRCODE_OFS_TRANSITION_CHECK_FAILED),
						 errmsg("update of table %s violates transition check \"%s\"",
								rules->table_name, ck->name),
						 errdetail("The check (%s) is false for the row with key %s.",
								   ck->expr, PrimaryKeyJson(rules, newrow, desc)),
						 errhint("Change the row so that the check holds, or take another transition."),
						 errtable(rel),
						 err_generic_string(PG_DIAG_CONSTRAINT_NAME, ck->name)));
		}
	}
}

/*
 * transition_trigger is the AFTER INSERT OR UPDATE FOR EACH ROW trigger that
 * add_transition_constraint and add_transition_check install.
 */
Datum
ofs_transition_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TableRules *rules;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ofs_internal.transition_trigger must be an AFTER ROW trigger"),
				 errhint("Use ofs.add_transition_constraint or ofs.add_transition_check, which install it.")));

	/*
	 * Rules are read and checks parsed and run with pg_catalog alone on the
	 * search path (an override, cheap to push per row), so that no operator
	 * or function of the writer's can change what they mean.  An error pops
	 * it with the (sub)transaction.
	 */
	PushOverrideSearchPath(&pinned_path);
	trigger_depth++;
	SPI_connect();
	rules = TransitionRulesFor(td->tg_relation);
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		TransitionJudgeInsert(rules, td->tg_relation, td->tg_trigtuple);
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		TransitionJudgeUpdate(rules, td->tg_relation, td->tg_trigtuple, td->tg_newtuple);
	SPI_finish();
	PopOverrideSearchPath();
	if (--trigger_depth == 0 && zombies != NIL)
		TransitionFreeZombies();
	return PointerGetDatum(NULL);
}

/* TransitionTarget checks that the caller owns a plain table with a primary key. */
static void
TransitionTarget(Oid relid, const char *what)
{
	OfsRequireKeyedTable(relid,
						 psprintf("%s apply to ordinary tables only; partitioned tables are not supported.", what),
						 psprintf("%s identify rows by their primary key in ofs.transition_log and in sync.", what),
						 "Add one with ALTER TABLE ... ADD PRIMARY KEY.");
}

/* TransitionEnsureTrigger installs the ofs_transition trigger once per table. */
static void
TransitionEnsureTrigger(Oid relid)
{
	Oid			save_uid;
	int			save_sec;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	int			rc;

	rc = SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = '"
							   TRANSITION_TRIGGER_NAME "'",
							   1, argtypes, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		return;
	/* ofs's owner creates it: the trigger function is not for PUBLIC. */
	OfsRunAsOwner(&save_uid, &save_sec);
	OfsSpiExec(psprintf("CREATE TRIGGER " TRANSITION_TRIGGER_NAME
						" AFTER INSERT OR UPDATE ON %s FOR EACH ROW"
						" EXECUTE FUNCTION %s.transition_trigger()",
						OfsQualifiedName(relid), OfsInternalSchema()), SPI_OK_UTILITY);
	OfsRestoreUser(save_uid, save_sec);
}

/* TransitionDropTriggerIfUnused removes the trigger when a table has no rule left. */
static void
TransitionDropTriggerIfUnused(Oid relid)
{
	Oid			save_uid;
	int			save_sec;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	int			rc;

	rc = SPI_execute_with_args("SELECT 1 FROM ofs.transition_constraint_def WHERE tbl = $1"
							   " UNION ALL SELECT 1 FROM ofs.transition_check_def WHERE tbl = $1",
							   1, argtypes, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		return;
	OfsRunAsOwner(&save_uid, &save_sec);
	OfsSpiExec(psprintf("DROP TRIGGER IF EXISTS " TRANSITION_TRIGGER_NAME " ON %s",
						OfsQualifiedName(relid)), SPI_OK_UTILITY);
	OfsRestoreUser(save_uid, save_sec);
}

/* State validation context: where in the list the state being checked is. */
typedef struct StateContext
{
	int			position;
	const char *what;
} StateContext;

static void
StateErrorContext(void *arg)
{
	StateContext *sc = arg;

	if (sc->position > 0)
		errcontext("%s at position %d of the transition list", sc->what, sc->position);
	else
		errcontext("%s", sc->what);
}

/*
 * CanonicalState parses a state as a value of the column's type and returns
 * its canonical text, so that '01' on an integer column matches 1 and an
 * unknown enum label is refused at definition time.
 */
static char *
CanonicalState(Oid typid, int32 typmod, const char *state, StateContext *sc)
{
	ErrorContextCallback cb;
	Oid			typinput;
	Oid			typioparam;
	Oid			typoutput;
	bool		varlena;
	Datum		v;
	char	   *out;

	cb.callback = StateErrorContext;
	cb.arg = sc;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	getTypeInputInfo(typid, &typinput, &typioparam);
	getTypeOutputInfo(typid, &typoutput, &varlena);
	v = OidInputFunctionCall(typinput, (char *) state, typioparam, typmod);
	out = OidOutputFunctionCall(typoutput, v);
	error_context_stack = cb.previous;
	return out;
}

/* add_transition_constraint parses, validates and stores a transition constraint. */
Datum
ofs_add_transition_constraint(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *name;
	char	   *col;
	char	   *transitions;
	AttrNumber	attnum;
	Oid			typid;
	int32		typmod;
	Oid			collid;
	List	   *edges;
	ListCell   *lc;
	ListCell   *lc2;
	ArrayType  *initial = NULL;
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			types[5] = {REGCLASSOID, TEXTOID, NAMEOID, TEXTOID, TEXTARRAYOID};
	Oid			save_uid;
	int			save_sec;
	int			rc;
	int64		id;
	int			ord = 0;
	bool		isnull;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table, name, column and transitions of a transition constraint must not be null")));
	relid = PG_GETARG_OID(0);
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	col = NameStr(*PG_GETARG_NAME(2));
	transitions = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the name of a transition constraint must not be empty")));

	TransitionTarget(relid, "Transition constraints");
	attnum = get_attnum(relid, col);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", col, get_rel_name(relid)),
				 errhint("A transition constraint names the column that holds the state.")));
	get_atttypetypmodcoll(relid, attnum, &typid, &typmod, &collid);

	edges = TransitionParseList(transitions);
	foreach(lc, edges)
	{
		TransitionEdge *e = lfirst(lc);
		StateContext sc = {e->position, "state"};

		e->from = CanonicalState(typid, typmod, e->from, &sc);
		e->to = CanonicalState(typid, typmod, e->to, &sc);
		if (strcmp(e->from, e->to) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("edge \"%s\" -> \"%s\" at position %d leads to the same state",
							e->from, e->to, e->position),
					 errhint("An UPDATE that keeps the state is always allowed; remove the edge.")));
		if (e->role && !OidIsValid(get_role_oid(e->role, true)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("role \"%s\" of edge \"%s\" -> \"%s\" at position %d does not exist",
							e->role, e->from, e->to, e->position),
					 errhint("Create the role first with CREATE ROLE.")));
		foreach(lc2, edges)
		{
			TransitionEdge *o = lfirst(lc2);

			if (o == e)
				break;
			if (strcmp(o->from, e->from) == 0 && strcmp(o->to, e->to) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("edge \"%s\" -> \"%s\" at position %d repeats the edge at position %d",
								e->from, e->to, e->position, o->position),
						 errhint("Write each edge once, with the role that may take it.")));
		}
	}

	if (!PG_ARGISNULL(4))
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n;
		int			k;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &n);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("initial states of transition constraint \"%s\" must not be empty", name),
					 errhint("Pass NULL to allow any initial state.")));
		for (k = 0; k < n; k++)
		{
			StateContext sc = {0, "initial state"};

			if (enulls[k])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("initial states of transition constraint \"%s\" must not contain NULL", name)));
			elems[k] = CStringGetTextDatum(CanonicalState(typid, typmod, TextDatumGetCString(elems[k]), &sc));
		}
		initial = construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
	}

	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(name);
	args[2] = PG_GETARG_DATUM(2);
	rc = SPI_execute_with_args("SELECT name FROM ofs.transition_constraint_def"
							   " WHERE tbl = $1 AND (name = $2 OR col = $3)",
							   3, types, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		char	   *other = SpiText(0, 1);

		if (strcmp(other, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("transition constraint \"%s\" on table %s already exists",
							name, get_rel_name(relid)),
					 errhint("Drop it first with ofs.drop_transition_constraint, or choose another name.")));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("column \"%s\" of table %s already has transition constraint \"%s\"",
						col, get_rel_name(relid), other),
				 errhint("Write all edges of a column in one transition list.")));
	}

	args[3] = CStringGetTextDatum(transitions);
	args[4] = initial ? PointerGetDatum(initial) : (Datum) 0;
	nulls[4] = initial ? ' ' : 'n';
	rc = SPI_execute_with_args("INSERT INTO ofs.transition_constraint_def (tbl, name, col, transitions, initial)"
							   " VALUES ($1, $2, $3, $4, $5) RETURNING id",
							   5, types, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	foreach(lc, edges)
	{
		TransitionEdge *e = lfirst(lc);
		Oid			etypes[5] = {INT8OID, INT4OID, TEXTOID, TEXTOID, NAMEOID};
		Datum		eargs[5];
		char		enulls[5] = {' ', ' ', ' ', ' ', ' '};

		eargs[0] = Int64GetDatum(id);
		eargs[1] = Int32GetDatum(++ord);
		eargs[2] = CStringGetTextDatum(e->from);
		eargs[3] = CStringGetTextDatum(e->to);
		eargs[4] = e->role ? DirectFunctionCall1(namein, CStringGetDatum(e->role)) : (Datum) 0;
		enulls[4] = e->role ? ' ' : 'n';
		rc = SPI_execute_with_args("INSERT INTO ofs.transition_edge (constraint_id, ord, from_state, to_state, role)"
								   " VALUES ($1, $2, $3, $4, $5)",
								   5, etypes, eargs, enulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	}
	OfsRestoreUser(save_uid, save_sec);

	TransitionEnsureTrigger(relid);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/* DropRule deletes a named rule of a table from one of the definition tables. */
static void
DropRule(Oid relid, text *name, const char *table, const char *what)
{
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		args[2];
	Oid			save_uid;
	int			save_sec;
	int			rc;

	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	SPI_connect();
	OfsRunAsOwner(&save_uid, &save_sec);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = PointerGetDatum(name);
	rc = SPI_execute_with_args(psprintf("DELETE FROM ofs.%s WHERE tbl = $1 AND name = $2", table),
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s \"%s\" on table %s does not exist", what,
						text_to_cstring(name), get_rel_name(relid)),
				 errhint("Look at ofs.transition_rules and ofs.transition_checks.")));
	OfsRestoreUser(save_uid, save_sec);
	TransitionDropTriggerIfUnused(relid);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
}

/* drop_transition_constraint removes a transition constraint. */
Datum
ofs_drop_transition_constraint(PG_FUNCTION_ARGS)
{
	DropRule(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1), "transition_constraint_def",
			 "transition constraint");
	PG_RETURN_VOID();
}

/* add_transition_check validates and stores a transition check. */
Datum
ofs_add_transition_check(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(2));
	Oid			types[3] = {REGCLASSOID, TEXTOID, TEXTOID};
	Datum		args[3];
	Oid			save_uid;
	int			save_sec;
	int			rc;
	CheckParseArg parg;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the name of a transition check must not be empty")));
	TransitionTarget(relid, "Transition checks");

	SPI_connect();
	parg.relid = relid;
	{
		Relation	rel = relation_open(relid, AccessShareLock);

		parg.natts = RelationGetNumberOfAttributes(rel);
		relation_close(rel, AccessShareLock);
	}
	SPI_freeplan(CheckPrepare(relid, name, expr, &parg));

	OfsRunAsOwner(&save_uid, &save_sec);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(name);
	args[2] = CStringGetTextDatum(expr);
	rc = SPI_execute_with_args("SELECT 1 FROM ofs.transition_check_def WHERE tbl = $1 AND name = $2",
							   2, types, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("transition check \"%s\" on table %s already exists", name, get_rel_name(relid)),
				 errhint("Drop it first with ofs.drop_transition_check, or choose another name.")));
	rc = SPI_execute_with_args("INSERT INTO ofs.transition_check_def (tbl, name, expr) VALUES ($1, $2, $3)",
							   3, types, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	OfsRestoreUser(save_uid, save_sec);

	TransitionEnsureTrigger(relid);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/* drop_transition_check removes a transition check. */
Datum
ofs_drop_transition_check(PG_FUNCTION_ARGS)
{
	DropRule(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1), "transition_check_def", "transition check");
	PG_RETURN_VOID();
}

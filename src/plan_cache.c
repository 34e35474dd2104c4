/*
 * plan_cache.c: the write path's saved SPI plans (plan_cache.h).
 */
#include "plan_cache.h"

#include "catalog/namespace.h"

#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

typedef struct PlanEntry
{
	OfsPlanKey	key;			/* strings in PlanCacheContext */
	SPIPlanPtr	plan;
	bool		stale;			/* its table changed: prepare again */
} PlanEntry;

static HTAB *plan_cache = NULL;
static MemoryContext PlanCacheContext = NULL;

static uint32
PlanKeyHash(const void *key, Size keysize)
{
	const OfsPlanKey *k = key;
	uint32		h = string_hash(k->name, NAMEDATALEN);

	h = hash_combine(h, murmurhash32(k->relid));
	return hash_combine(h, hash_bytes((const unsigned char *) k->columns, strlen(k->columns)));
}

static int
PlanKeyMatch(const void *a, const void *b, Size keysize)
{
	const OfsPlanKey *x = a;
	const OfsPlanKey *y = b;

	if (x->relid != y->relid || strcmp(x->name, y->name) != 0)
		return 1;
	return strcmp(x->columns, y->columns);
}

static void *
PlanKeyCopy(void *dest, const void *src, Size keysize)
{
	OfsPlanKey *d = dest;
	const OfsPlanKey *s = src;

	d->name = MemoryContextStrdup(PlanCacheContext, s->name);
	d->relid = s->relid;
	d->columns = MemoryContextStrdup(PlanCacheContext, s->columns);
	return dest;
}

/*
 * PlanCacheInvalidate marks the plans of a table stale.  It runs inside
 * invalidation processing, where a plan may be executing: plans are freed
 * when they are next asked for, not here.
 */
static void
PlanCacheInvalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	PlanEntry  *e;

	hash_seq_init(&seq, plan_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (OidIsValid(e->key.relid) && (relid == InvalidOid || e->key.relid == relid))
			e->stale = true;
}

static void
PlanCacheInit(void)
{
	HASHCTL		ctl;

	PlanCacheContext = AllocSetContextCreate(TopMemoryContext, "ofs write plans",
											 ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(OfsPlanKey);
	ctl.entrysize = sizeof(PlanEntry);
	ctl.hash = PlanKeyHash;
	ctl.match = PlanKeyMatch;
	ctl.keycopy = PlanKeyCopy;
	ctl.hcxt = PlanCacheContext;
	plan_cache = hash_create("ofs write plans", 64, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_KEYCOPY | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(PlanCacheInvalidate, (Datum) 0);
}

SPIPlanPtr
OfsPlanFind(const OfsPlanKey *key)
{
	PlanEntry  *e;

	if (plan_cache == NULL)
		return NULL;
	e = hash_search(plan_cache, key, HASH_FIND, NULL);
	if (e == NULL)
		return NULL;
	if (e->stale)
	{
		SPI_freeplan(e->plan);
		hash_search(plan_cache, key, HASH_REMOVE, NULL);
		return NULL;
	}
	return e->plan;
}

SPIPlanPtr
OfsPlanSave(const OfsPlanKey *key, const char *sql, int nargs, Oid *types, bool per_execution)
{
	SPIPlanPtr	plan;
	PlanEntry  *e;
	bool		found;

	if (plan_cache == NULL)
		PlanCacheInit();
	plan = SPI_prepare_cursor(sql, nargs, types, per_execution ? CURSOR_OPT_CUSTOM_PLAN : 0);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	e = hash_search(plan_cache, key, HASH_ENTER, &found);
	if (found && e->plan != NULL)
		SPI_freeplan(e->plan);
	e->plan = plan;
	e->stale = false;
	return plan;
}

void
OfsPlanForget(const char *name)
{
	HASH_SEQ_STATUS seq;
	PlanEntry  *e;

	if (plan_cache == NULL)
		return;
	hash_seq_init(&seq, plan_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (strcmp(e->key.name, name) == 0)
		{
			SPI_freeplan(e->plan);
			hash_search(plan_cache, &e->key, HASH_REMOVE, NULL);
		}
}

SPIPlanPtr
OfsFixedPlan(const char *name, const char *sql, int nargs, Oid *types, bool per_execution)
{
	OfsPlanKey	key = {name, InvalidOid, ""};
	SPIPlanPtr	plan = OfsPlanFind(&key);

	return plan ? plan : OfsPlanSave(&key, sql, nargs, types, per_execution);
}

int
OfsPlanExec(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only, long count)
{
	int			rc = SPI_execute_plan(plan, args, nulls, read_only, count);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return rc;
}

const char *
OfsInternalSchema(void)
{
	return OidIsValid(get_namespace_oid("ofs_internal", true)) ? "ofs_internal" : "ofs";
}

SPIPlanPtr
OfsInternalPlan(const char *name, const char *sql, int nargs, Oid *types, bool per_execution)
{
	StringInfoData b;
	const char *p = sql;
	const char *hit;

	if (strcmp(OfsInternalSchema(), "ofs_internal") == 0)
		return OfsFixedPlan(name, sql, nargs, types, per_execution);
	/* 1.0's SQL: the same functions, in ofs; a plan of its own. */
	initStringInfo(&b);
	while ((hit = strstr(p, "ofs_internal.")) != NULL)
	{
		appendBinaryStringInfo(&b, p, hit - p);
		appendStringInfoString(&b, "ofs.");
		p = hit + strlen("ofs_internal.");
	}
	appendStringInfoString(&b, p);
	return OfsFixedPlan(psprintf("%s (1.0)", name), b.data, nargs, types, per_execution);
}

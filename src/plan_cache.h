/*
 * plan_cache.h: the write path's saved SPI plans, in one place.
 *
 * A plan is keyed by what its SQL is made of: the statement's name, the
 * table it writes or reads (or InvalidOid) and the columns it names (or
 * ""), so the SQL text is built only when a plan is missing.  A plan of a
 * table is dropped when the table's relcache entry is invalidated (a
 * rename, a new key, a new column), since its SQL names the table.
 */
#ifndef OFS_PLAN_CACHE_H
#define OFS_PLAN_CACHE_H

#include "postgres.h"
#include "executor/spi.h"

typedef struct OfsPlanKey
{
	const char *name;			/* the statement: "insert", "dependent", ... */
	Oid			relid;			/* its table, or InvalidOid */
	const char *columns;		/* the columns it names, or "" */
} OfsPlanKey;

/* OfsPlanFind returns the saved plan of a key, or NULL. */
extern SPIPlanPtr OfsPlanFind(const OfsPlanKey *key);

/*
 * OfsPlanSave prepares sql and keeps its plan under key for the session.
 * Statements that look rows up in tables that grow are planned per
 * execution (per_execution): a generic plan made while a table was empty
 * would scan it whole for ever after.
 */
extern SPIPlanPtr OfsPlanSave(const OfsPlanKey *key, const char *sql,
							  int nargs, Oid *types, bool per_execution);

/*
 * OfsFixedPlan is the saved plan of a statement that names no table (its
 * SQL is fixed): found by name, prepared the first time.
 */
extern SPIPlanPtr OfsFixedPlan(const char *name, const char *sql, int nargs, Oid *types,
							   bool per_execution);

/*
 * Internal functions are in schema ofs_internal from 1.1 on, in ofs under
 * 1.0's SQL (which the library still serves).  OfsInternalSchema says
 * which; OfsInternalPlan is OfsFixedPlan for a statement that names them
 * as ofs_internal.name, made for the SQL installed.
 */
extern const char *OfsInternalSchema(void);
extern SPIPlanPtr OfsInternalPlan(const char *name, const char *sql, int nargs, Oid *types,
								  bool per_execution);

/* OfsPlanForget frees every saved plan of a statement name (a bound on their number). */
extern void OfsPlanForget(const char *name);

/* OfsPlanExec runs a plan and raises an error naming SPI's failure. */
extern int	OfsPlanExec(SPIPlanPtr plan, Datum *args, const char *nulls,
						bool read_only, long count);

#endif							/* OFS_PLAN_CACHE_H */

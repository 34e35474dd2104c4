/*
 * mutation.h: what the files of the write path share.
 *
 * ofs_internal.apply_one (apply_mutation.c) applies one device mutation: it claims
 * the operation id, validates the mutation against the catalog
 * (apply_target.c), writes it as the device's role with each updated
 * column merged by its policy (apply_write.c, merge.c) and records the
 * result, built as a jsonb value (apply_result.c).
 */
#ifndef OFS_MUTATION_H
#define OFS_MUTATION_H

#include "postgres.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* The table a mutation names, resolved against the catalog. */
typedef struct OfsTarget
{
	Oid			relid;
	char	   *qualified;		/* schema.table, quoted */
	int			npk;
	char	  **pkcols;
	char	   *keycond;		/* t.a = k.a AND ... */
	bool		has_json;		/* json or jsonb columns, carried as strings */
} OfsTarget;

typedef enum OfsMutationOp
{
	OFS_OP_INSERT,
	OFS_OP_UPDATE,
	OFS_OP_DELETE
} OfsMutationOp;

/* A mutation, validated: nothing in it is ever executed as SQL. */
typedef struct OfsMutation
{
	const char *device;
	const char *op_id;
	OfsMutationOp op;
	OfsTarget	target;
	Jsonb	   *pk;
	Jsonb	   *data;			/* never NULL ({} when absent) */
	Jsonb	   *base;			/* NULL when absent */
	char	   *pktext;			/* the key as the feed holds it */
	int64		hlc;			/* clamped */
} OfsMutation;

/* One column a manual policy refused to overwrite (a conflict to record). */
typedef struct OfsConflict
{
	char	   *column;
	JsonbValue *origin;
	JsonbValue *device;
	JsonbValue *base;
	JsonbValue *version;		/* [hlc, site] or NULL */
} OfsConflict;

/* What the write did, for its result. */
typedef struct OfsWriteOutcome
{
	List	   *lost_columns;	/* C strings: a later write won */
	List	   *conflicts;		/* OfsConflict */
	bool		nothing_deleted;	/* a delete found no row the role may see */
} OfsWriteOutcome;

/* apply_mutation.c: one mutation, applied */
extern Oid	OfsDeviceRole(const char *device, char **rolename);
extern Jsonb *OfsApplyMutation(const char *device, Oid roleid, const char *rolename, Jsonb *json,
							   bool is_retry, int64 retry_of, bool check_dependent);
extern void OfsBatchKeysBegin(void);
extern void OfsBatchKeysEnd(void);
extern int	OfsBatchKeysMark(void);
extern void OfsBatchKeysRewind(int mark);
extern Jsonb *OfsRejectInGroup(const char *device, const char *rolename, Jsonb *json, const char *sqlstate,
							   const char *message, const char *constraint, const char *column, Jsonb *extra);

/* apply_target.c: validating a mutation against the catalog */
extern void OfsRejectMutation(const char *op_id, const char *msg) pg_attribute_noreturn();
extern void OfsResolveTarget(const char *op_id, const char *table, OfsTarget *t);
extern void OfsCheckColumns(const char *op_id, OfsTarget *t, Jsonb *obj);
extern char *OfsKeyText(const char *op_id, OfsTarget *t, Jsonb *pk);
extern char *OfsColumnList(Jsonb *obj, const char *prefix);
extern Datum OfsDecodeJsonColumns(OfsTarget *t, Datum data);

/* apply_write.c: the write, as the device's role */
extern void OfsWriteMutation(OfsMutation *m, Oid roleid, OfsWriteOutcome *out);

/* apply_result.c: JSON helpers and the result objects */
extern JsonbValue *OfsJsonGet(Jsonb *j, const char *key);
extern bool OfsJsonIsObject(JsonbValue *v);
extern char *OfsJsonText(JsonbValue *v);
extern Jsonb *OfsJsonObject(JsonbValue *v);
extern Jsonb *OfsJsonEmptyObject(void);
extern bool OfsJsonEqual(JsonbValue *a, JsonbValue *b);
extern Jsonb *OfsResultInvalid(const char *message);
extern Jsonb *OfsResultApplied(const char *op_id, List *lost_columns, bool nothing_deleted);
extern Jsonb *OfsResultConflict(const char *op_id, List *ids, List *columns, List *lost_columns);
extern Jsonb *OfsConflictsArray(List *conflicts);

#endif							/* OFS_MUTATION_H */

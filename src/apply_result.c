/*
 * apply_result.c: reading mutations and building results as jsonb values.
 *
 * A mutation arrives as jsonb and its result (the object ofs.apply_batch
 * returns per mutation, and ofs.applied_op keeps) leaves as jsonb; both are
 * handled as values here, never as text to be parsed again.
 */
#include "mutation.h"

#include "utils/builtins.h"
#include "utils/numeric.h"

/* OfsJsonGet is the value of a key of a JSON object, or NULL. */
JsonbValue *
OfsJsonGet(Jsonb *j, const char *key)
{
	if (j == NULL || !JB_ROOT_IS_OBJECT(j) || JB_ROOT_IS_SCALAR(j))
		return NULL;
	return getKeyJsonValueFromContainer(&j->root, key, strlen(key), NULL);
}

bool
OfsJsonIsObject(JsonbValue *v)
{
	return v && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* OfsJsonText is a JSON value as text: strings unquoted, others as JSON. */
char *
OfsJsonText(JsonbValue *v)
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

Jsonb *
OfsJsonObject(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

Jsonb *
OfsJsonEmptyObject(void)
{
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* OfsJsonEqual compares two values as jsonb does; SQL NULL equals JSON null. */
bool
OfsJsonEqual(JsonbValue *a, JsonbValue *b)
{
	if (a == NULL || a->type == jbvNull)
		return b == NULL || b->type == jbvNull;
	if (b == NULL || b->type == jbvNull)
		return false;
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(OfsJsonObject(a)),
											JsonbPGetDatum(OfsJsonObject(b))));
}

static void
PutKey(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

/* PutValue adds a value (NULL: JSON null) as an object's value or an array's element. */
static void
PutValue(JsonbParseState **st, JsonbIteratorToken seq, JsonbValue *v)
{
	JsonbValue	null;

	if (v == NULL)
	{
		null.type = jbvNull;
		v = &null;
	}
	pushJsonbValue(st, seq, v);
}

static void
PutString(JsonbParseState **st, JsonbIteratorToken seq, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
	{
		PutValue(st, seq, NULL);
		return;
	}
	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(st, seq, &v);
}

static void
PutStrings(JsonbParseState **st, List *strings)
{
	ListCell   *lc;

	pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, strings)
		PutString(st, WJB_ELEM, (char *) lfirst(lc));
	pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

/* BeginResult opens a result object with the fields every result has. */
static void
BeginResult(JsonbParseState **st, const char *op_id, const char *status,
			const char *sqlstate, const char *message)
{
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	PutKey(st, "operation_id");
	PutString(st, WJB_VALUE, op_id);
	PutKey(st, "status");
	PutString(st, WJB_VALUE, status);
	PutKey(st, "sqlstate");
	PutString(st, WJB_VALUE, sqlstate);
	PutKey(st, "message");
	PutString(st, WJB_VALUE, message);
	PutKey(st, "hint");
}

static Jsonb *
EndResult(JsonbParseState **st)
{
	return JsonbValueToJsonb(pushJsonbValue(st, WJB_END_OBJECT, NULL));
}

/* OfsResultInvalid: a mutation too malformed to have an operation id. */
Jsonb *
OfsResultInvalid(const char *message)
{
	JsonbParseState *st = NULL;

	BeginResult(&st, NULL, "rejected", "22023", message);
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PutKey(&st, "kind");
	PutString(&st, WJB_VALUE, "invalid_mutation");
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return EndResult(&st);
}

/*
 * OfsResultApplied: applied, with the columns a later write won, if any, or
 * saying that a delete found no row the role may see.
 */
Jsonb *
OfsResultApplied(const char *op_id, List *lost_columns, bool nothing_deleted)
{
	JsonbParseState *st = NULL;

	BeginResult(&st, op_id, "applied", NULL, NULL);
	if (nothing_deleted)
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PutKey(&st, "kind");
		PutString(&st, WJB_VALUE, "nothing_deleted");
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	else if (lost_columns == NIL)
		PutValue(&st, WJB_VALUE, NULL);
	else
	{
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PutKey(&st, "kind");
		PutString(&st, WJB_VALUE, "lost_columns");
		PutKey(&st, "lost_columns");
		PutStrings(&st, lost_columns);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	return EndResult(&st);
}

/*
 * OfsResultConflict: manual columns in conflict; ids are the ofs.conflicts
 * rows recorded (int64 *), columns their columns.
 */
Jsonb *
OfsResultConflict(const char *op_id, List *ids, List *columns, List *lost_columns)
{
	JsonbParseState *st = NULL;
	ListCell   *lc;

	BeginResult(&st, op_id, "conflict", NULL, "concurrent change of a manual column");
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	PutKey(&st, "kind");
	PutString(&st, WJB_VALUE, "conflict");
	PutKey(&st, "conflicts");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, ids)
	{
		JsonbValue	id;

		id.type = jbvNumeric;
		id.val.numeric = int64_to_numeric(*(int64 *) lfirst(lc));
		pushJsonbValue(&st, WJB_ELEM, &id);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	PutKey(&st, "columns");
	PutStrings(&st, columns);
	PutKey(&st, "lost_columns");
	PutStrings(&st, lost_columns);
	pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return EndResult(&st);
}

/* OfsConflictsArray: the conflicts of a write, as ofs.conflicts records them. */
Jsonb *
OfsConflictsArray(List *conflicts)
{
	JsonbParseState *st = NULL;
	ListCell   *lc;

	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, conflicts)
	{
		OfsConflict *c = lfirst(lc);

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PutKey(&st, "column");
		PutString(&st, WJB_VALUE, c->column);
		PutKey(&st, "origin");
		PutValue(&st, WJB_VALUE, c->origin);
		PutKey(&st, "device");
		PutValue(&st, WJB_VALUE, c->device);
		PutKey(&st, "base");
		PutValue(&st, WJB_VALUE, c->base);
		PutKey(&st, "version");
		PutValue(&st, WJB_VALUE, c->version);
		pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL));
}

/*
 * shape.c: the filters of shape subscriptions (ofs.shape_filter).
 *
 * A device subscribes to a table plus a filter written in a small subset of
 * SQL (docs/PROTOCOL.md, "Filter grammar").  The filter is parsed with
 * PostgreSQL's own parser, every node of the tree is checked against a
 * whitelist (AND, OR, comparisons and IN of a column with literals, IS
 * [NOT] NULL) and the table's columns, and the filter is then written anew
 * from the tree with quoted identifiers and literals.  Only that rewriting
 * is stored and ever executed: the device's text never reaches the
 * executor as written.
 */
#include "ofs.h"
#include "internal_tables.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_attribute.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(ofs_shape_filter);

#define SHAPE_MAX_FILTER_BYTES	4096
#define SHAPE_MAX_NODES			256

typedef struct ShapeWalk
{
	Oid			relid;
	int			nodes;
	StringInfoData out;
} ShapeWalk;

static void Refuse(const char *what) pg_attribute_noreturn();

static void
Refuse(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("filter not allowed: %s", what),
			 errdetail("A filter may only compare columns with literals (= <> != < <= > >=, IN, IS NULL), combined with AND, OR and parentheses."),
			 errhint("See \"Filter grammar\" in docs/PROTOCOL.md.")));
}

/* RefuseNode refuses a node where a column or a literal was expected, naming it. */
static void
RefuseNode(Node *node, const char *otherwise)
{
	if (node && IsA(node, FuncCall))
		Refuse("function calls");
	if (node && IsA(node, TypeCast))
		Refuse("casts (write the literal as a string; it takes the column's type)");
	if (node && IsA(node, SubLink))
		Refuse("subqueries");
	if (node && IsA(node, A_Expr))
		Refuse("expressions inside a comparison (arithmetic, nested operators)");
	if (node && (IsA(node, ParamRef) || IsA(node, A_Indirection)))
		Refuse("parameters and subscripts");
	Refuse(otherwise);
}

/* ShapeColumn appends a column reference, which must name a live column. */
static void
ShapeColumn(ShapeWalk *w, Node *node)
{
	ColumnRef  *ref;
	char	   *name;
	AttrNumber	att;

	if (!IsA(node, ColumnRef))
		RefuseNode(node, "each comparison needs a column on one side and a literal on the other");
	ref = (ColumnRef *) node;
	if (list_length(ref->fields) != 1 || !IsA(linitial(ref->fields), String))
		Refuse("columns are named without a table or schema");
	name = strVal(linitial(ref->fields));
	att = get_attnum(w->relid, name);
	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("filter names column \"%s\", which table %s does not have",
						name, OfsQualifiedName(w->relid)),
				 errhint("A filter may use the table's own columns only.")));
	appendStringInfoString(&w->out, quote_identifier(name));
}

static bool
IsLiteral(Node *node)
{
	return IsA(node, A_Const) && !((A_Const *) node)->isnull;
}

/* ShapeLiteral appends a literal as SQL: numbers as digits, the rest quoted. */
static void
ShapeLiteral(ShapeWalk *w, Node *node)
{
	A_Const    *c;

	if (!IsA(node, A_Const))
		RefuseNode(node, "only literals may be compared with a column");
	c = (A_Const *) node;
	if (c->isnull)
		Refuse("NULL is not a value to compare with; use IS NULL or IS NOT NULL");
	switch (nodeTag(&c->val))
	{
		case T_Integer:
			appendStringInfo(&w->out, "%d", intVal(&c->val));
			break;
		case T_Float:
			/* The parser keeps the digits as written; they are digits only. */
			appendStringInfoString(&w->out, c->val.fval.fval);
			break;
		case T_Boolean:
			appendStringInfoString(&w->out, boolVal(&c->val) ? "TRUE" : "FALSE");
			break;
		case T_String:
			appendStringInfoString(&w->out, quote_literal_cstr(strVal(&c->val)));
			break;
		default:
			Refuse("this kind of literal");
	}
}

static const char *const allowed_ops[] = {"=", "<>", "!=", "<", "<=", ">", ">="};

/* CommutedOp is op with its operands swapped (5 < a is a > 5). */
static const char *
CommutedOp(const char *op)
{
	if (strcmp(op, "<") == 0)
		return ">";
	if (strcmp(op, ">") == 0)
		return "<";
	if (strcmp(op, "<=") == 0)
		return ">=";
	if (strcmp(op, ">=") == 0)
		return "<=";
	if (strcmp(op, "!=") == 0)
		return "<>";
	return op;
}

static void
ShapeNode(ShapeWalk *w, Node *node)
{
	check_stack_depth();
	if (node == NULL)
		Refuse("an empty expression");
	if (++w->nodes > SHAPE_MAX_NODES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("filter is too complex"),
				 errdetail("A filter may have at most %d terms.", SHAPE_MAX_NODES)));

	switch (nodeTag(node))
	{
		case T_BoolExpr:
			{
				BoolExpr   *b = (BoolExpr *) node;
				ListCell   *lc;
				bool		first = true;

				if (b->boolop == NOT_EXPR)
					Refuse("NOT (write the comparison the other way, NOT IN or IS NOT NULL)");
				appendStringInfoChar(&w->out, '(');
				foreach(lc, b->args)
				{
					if (!first)
						appendStringInfoString(&w->out, b->boolop == AND_EXPR ? " AND " : " OR ");
					first = false;
					ShapeNode(w, lfirst(lc));
				}
				appendStringInfoChar(&w->out, ')');
				break;
			}
		case T_A_Expr:
			{
				A_Expr	   *e = (A_Expr *) node;
				const char *op;
				int			i;
				bool		known = false;

				if (list_length(e->name) != 1 || !IsA(linitial(e->name), String))
					Refuse("schema-qualified operators");
				op = strVal(linitial(e->name));
				if (e->kind == AEXPR_OP)
				{
					for (i = 0; i < (int) lengthof(allowed_ops); i++)
						known |= strcmp(op, allowed_ops[i]) == 0;
					if (!known || e->lexpr == NULL)
						Refuse(psprintf("operator %s", op));
					appendStringInfoChar(&w->out, '(');
					if (IsLiteral(e->lexpr) && IsA(e->rexpr, ColumnRef))
					{
						ShapeColumn(w, e->rexpr);
						appendStringInfo(&w->out, " %s ", CommutedOp(op));
						ShapeLiteral(w, e->lexpr);
					}
					else
					{
						ShapeColumn(w, e->lexpr);
						appendStringInfo(&w->out, " %s ", strcmp(op, "!=") == 0 ? "<>" : op);
						ShapeLiteral(w, e->rexpr);
					}
					appendStringInfoChar(&w->out, ')');
				}
				else if (e->kind == AEXPR_IN)
				{
					ListCell   *lc;
					bool		first = true;

					if (!IsA(e->rexpr, List))
						Refuse("IN with a subquery");
					appendStringInfoChar(&w->out, '(');
					ShapeColumn(w, e->lexpr);
					appendStringInfoString(&w->out, strcmp(op, "=") == 0 ? " IN (" : " NOT IN (");
					foreach(lc, (List *) e->rexpr)
					{
						if (!first)
							appendStringInfoString(&w->out, ", ");
						first = false;
						if (++w->nodes > SHAPE_MAX_NODES)
							ereport(ERROR,
									(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
									 errmsg("filter is too complex"),
									 errdetail("A filter may have at most %d terms.", SHAPE_MAX_NODES)));
						ShapeLiteral(w, lfirst(lc));
					}
					appendStringInfoString(&w->out, "))");
				}
				else
					Refuse("this kind of operator expression (LIKE, BETWEEN, IS DISTINCT FROM, ANY, ...)");
				break;
			}
		case T_NullTest:
			{
				NullTest   *n = (NullTest *) node;

				appendStringInfoChar(&w->out, '(');
				ShapeColumn(w, (Node *) n->arg);
				appendStringInfoString(&w->out, n->nulltesttype == IS_NULL ? " IS NULL)" : " IS NOT NULL)");
				break;
			}
		case T_ColumnRef:
			Refuse("a bare column (compare it, e.g. \"done = TRUE\")");
			break;
		case T_A_Const:
			Refuse("a bare literal");
			break;
		case T_FuncCall:
			Refuse("function calls");
			break;
		case T_SubLink:
			Refuse("subqueries");
			break;
		case T_TypeCast:
			Refuse("casts (write the literal as a string; it takes the column's type)");
			break;
		default:
			Refuse("this kind of expression");
	}
}

/*
 * shape_filter(tbl regclass, filter text) returns the filter rewritten from
 * its parse tree, after checking that it is in the grammar, names columns
 * of tbl only and has literals valid for their columns.  NULL or blank: the
 * whole table (NULL).
 */
Datum
ofs_shape_filter(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *filter;
	char	   *p;
	List	   *stmts;
	RawStmt    *raw;
	SelectStmt *sel;
	ShapeWalk	w;
	SPIPlanPtr	plan;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the table of a filter must not be null")));
	/* The table must exist, and stay until the end of the transaction. */
	{
		Relation	rel = try_relation_open(relid, AccessShareLock);

		if (rel == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid)));
		relation_close(rel, NoLock);
	}
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	filter = text_to_cstring(PG_GETARG_TEXT_PP(1));
	for (p = filter; *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++)
		;
	if (*p == '\0')
		PG_RETURN_NULL();
	if (strlen(filter) > SHAPE_MAX_FILTER_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("filter is too long"),
				 errdetail("A filter may have at most %d bytes.", SHAPE_MAX_FILTER_BYTES)));

	stmts = raw_parser(psprintf("SELECT WHERE %s", filter), RAW_PARSE_DEFAULT);
	if (list_length(stmts) != 1)
		Refuse("more than one statement");
	raw = linitial_node(RawStmt, stmts);
	if (!IsA(raw->stmt, SelectStmt))
		Refuse("this is not an expression");
	sel = (SelectStmt *) raw->stmt;
	if (sel->targetList != NIL || sel->fromClause != NIL || sel->groupClause != NIL ||
		sel->havingClause != NULL || sel->windowClause != NIL || sel->sortClause != NIL ||
		sel->limitCount != NULL || sel->limitOffset != NULL || sel->lockingClause != NIL ||
		sel->withClause != NULL || sel->op != SETOP_NONE || sel->valuesLists != NIL ||
		sel->distinctClause != NIL || sel->intoClause != NULL)
		Refuse("clauses after the expression");

	memset(&w, 0, sizeof(w));
	w.relid = relid;
	initStringInfo(&w.out);
	ShapeNode(&w, sel->whereClause);

	/* Type-check the rewriting against the table: planning runs nothing. */
	SPI_connect();
	plan = SPI_prepare(psprintf("SELECT 1 FROM ONLY %s WHERE %s", OfsQualifiedName(relid), w.out.data),
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_freeplan(plan);
	SPI_finish();

	PG_RETURN_TEXT_P(cstring_to_text(w.out.data));
}

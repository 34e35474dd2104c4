/*
 * transition_dsl.c: the parser of transition lists.
 *
 * A transition list is what ofs.add_transition_constraint takes, as in seed
 * 000:
 *
 *     'draft' -> 'submitted',
 *     'submitted' -> 'approved' BY ROLE 'manager'
 *
 * Grammar:
 *     list  := edge { ',' edge }
 *     edge  := state '->' state [ BY ROLE role ]
 *     state := string
 *     role  := string | identifier
 *     string := "'" { any character but "'" | "''" } "'"
 *
 * Keywords are case-insensitive; whitespace and newlines separate tokens.
 * Errors name the 1-based character position, so psql users find the
 * mistake in a long list.  The parser knows nothing of tables or roles;
 * transition.c validates states and roles against the catalog.
 */
#include "ofs.h"
#include "transition.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

typedef struct DslScanner
{
	const char *input;
	const char *p;
} DslScanner;

static int
DslPos(DslScanner *s, const char *at)
{
	return (int) (at - s->input) + 1;
}

static void
DslSkipSpace(DslScanner *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
		s->p++;
}

static void pg_attribute_noreturn()
DslError(DslScanner *s, const char *at, const char *expected)
{
	char		found[24];

	if (*at == '\0')
		snprintf(found, sizeof(found), "end of input");
	else
		snprintf(found, sizeof(found), "\"%.10s\"", at);
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("syntax error in transition list at position %d", DslPos(s, at)),
			 errdetail("Expected %s, found %s.", expected, found),
			 errhint("Write edges as 'from' -> 'to' [BY ROLE 'role'], separated by commas.")));
}

/* DslString reads a single-quoted string, with '' for a quote. */
static char *
DslString(DslScanner *s, const char *what)
{
	StringInfoData buf;
	const char *start;

	DslSkipSpace(s);
	start = s->p;
	if (*s->p != '\'')
		DslError(s, s->p, what);
	s->p++;
	initStringInfo(&buf);
	for (;;)
	{
		if (*s->p == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("syntax error in transition list at position %d", DslPos(s, start)),
					 errdetail("The string that starts here is not closed."),
					 errhint("Close it with a single quote; write '' for a quote inside it.")));
		if (*s->p == '\'')
		{
			if (s->p[1] == '\'')
			{
				appendStringInfoChar(&buf, '\'');
				s->p += 2;
				continue;
			}
			s->p++;
			break;
		}
		appendStringInfoChar(&buf, *s->p);
		s->p++;
	}
	if (buf.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("syntax error in transition list at position %d", DslPos(s, start)),
				 errdetail("A state or role must not be empty.")));
	return buf.data;
}

/* DslKeyword consumes a case-insensitive keyword if it comes next. */
static bool
DslKeyword(DslScanner *s, const char *kw)
{
	size_t		len = strlen(kw);
	char		next;

	DslSkipSpace(s);
	if (pg_strncasecmp(s->p, kw, len) != 0)
		return false;
	next = s->p[len];
	if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
		(next >= '0' && next <= '9') || next == '_')
		return false;
	s->p += len;
	return true;
}

/* DslRole reads a role: a quoted string or a bare identifier (folded to lower case). */
static char *
DslRole(DslScanner *s)
{
	StringInfoData buf;

	DslSkipSpace(s);
	if (*s->p == '\'')
		return DslString(s, "a role");
	if (!((*s->p >= 'a' && *s->p <= 'z') || (*s->p >= 'A' && *s->p <= 'Z') || *s->p == '_'))
		DslError(s, s->p, "a role name");
	initStringInfo(&buf);
	while ((*s->p >= 'a' && *s->p <= 'z') || (*s->p >= 'A' && *s->p <= 'Z') ||
		   (*s->p >= '0' && *s->p <= '9') || *s->p == '_' || *s->p == '$')
	{
		char		c = *s->p++;

		appendStringInfoChar(&buf, (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
	}
	return buf.data;
}

/*
 * TransitionParseList parses a transition list into a List of TransitionEdge
 * (palloc'd in the current context), each with the position of its "from"
 * state for later error messages.
 */
List *
TransitionParseList(const char *input)
{
	DslScanner	s = {input, input};
	List	   *edges = NIL;

	DslSkipSpace(&s);
	if (*s.p == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("transition list is empty"),
				 errhint("Write edges as 'from' -> 'to' [BY ROLE 'role'], separated by commas.")));
	for (;;)
	{
		TransitionEdge *e = palloc0(sizeof(TransitionEdge));

		DslSkipSpace(&s);
		e->position = DslPos(&s, s.p);
		e->from = DslString(&s, "a quoted state");
		DslSkipSpace(&s);
		if (s.p[0] != '-' || s.p[1] != '>')
			DslError(&s, s.p, "\"->\"");
		s.p += 2;
		e->to = DslString(&s, "a quoted state");
		if (DslKeyword(&s, "BY"))
		{
			if (!DslKeyword(&s, "ROLE"))
				DslError(&s, s.p, "ROLE");
			e->role = DslRole(&s);
		}
		edges = lappend(edges, e);

		DslSkipSpace(&s);
		if (*s.p == '\0')
			break;
		if (*s.p != ',')
			DslError(&s, s.p, "\",\", BY ROLE or the end of the list");
		s.p++;
	}
	return edges;
}

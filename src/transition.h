/*
 * transition.h: transition constraints and checks (transition.c) and the
 * parser of their transition lists (transition_dsl.c).
 */
#ifndef OFS_TRANSITION_H
#define OFS_TRANSITION_H

#include "nodes/pg_list.h"

/* One edge of a transition list: from -> to, optionally BY ROLE role. */
typedef struct TransitionEdge
{
	char	   *from;
	char	   *to;
	char	   *role;			/* NULL when any role may take the edge */
	int			position;		/* 1-based position in the list text */
} TransitionEdge;

extern List *TransitionParseList(const char *input);

#endif							/* OFS_TRANSITION_H */

/*
 * send_rule.h: what a device is sent for a row that changed, as a pure
 * function shared by the pull (pull_feed.c) and, as it moves to C, the live
 * round.  Unit-tested without a server (test/unit/test_send_rule.c).
 */
#ifndef OFS_SEND_RULE_H
#define OFS_SEND_RULE_H

#include <stdbool.h>

/* What a batch of the feed says of one row, for one device. */
typedef struct OfsRowFacts
{
	bool		visible;		/* in the device's scope now (its role, its shapes) */
	bool		held;			/* the device holds it (ofs.device_row, not gone) */
	bool		own_all;		/* every change of the row in the batch is the device's own, as sent */
	bool		last_delete;	/* the last change of the row in the batch deleted it */
} OfsRowFacts;

typedef enum OfsSendRule
{
	OFS_SEND_NOTHING,			/* a row the device never saw and may not see */
	OFS_SEND_UPSERT,			/* the row as it is now; held from this page on */
	OFS_SEND_REMOVAL,			/* remove it: gone, or out of scope; marked gone in this page */
	OFS_SEND_HOLD_OWN,			/* its own row: nothing sent, held without a page */
	OFS_SEND_FORGET_OWN			/* its own delete: nothing sent, no longer held */
} OfsSendRule;

/*
 * OfsDecideSend: the send-or-remove rule.  A row in scope is sent as it is
 * now, unless it is the device's own as sent; a row out of scope that the
 * device holds is removed, unless the device itself deleted it; anything
 * else sends nothing, so nothing is ever said of a row outside the scope.
 */
static inline OfsSendRule
OfsDecideSend(const OfsRowFacts *f)
{
	if (f->own_all && f->visible)
		return OFS_SEND_HOLD_OWN;
	if (f->own_all && f->last_delete && !f->visible)
		return f->held ? OFS_SEND_FORGET_OWN : OFS_SEND_NOTHING;
	if (f->visible)
		return OFS_SEND_UPSERT;
	if (f->held)
		return OFS_SEND_REMOVAL;
	return OFS_SEND_NOTHING;
}

#endif							/* OFS_SEND_RULE_H */

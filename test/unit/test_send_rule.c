/*
 * test_send_rule.c: the send-or-remove rule (src/send_rule.h) for every
 * combination of what a batch says of a row: in scope or not, held or not,
 * the device's own as sent or not, deleted last or not.
 */
#include "send_rule.h"
#include "tap.h"

static const char *const names[] = {"nothing", "upsert", "removal", "hold own", "forget own"};

int
main(void)
{
	/* visible, held, own_all, last_delete -> expected */
	static const struct
	{
		bool		visible, held, own, del;
		OfsSendRule want;
		const char *why;
	}			cases[] = {
		{true, false, false, false, OFS_SEND_UPSERT, "a row in scope the device lacks is sent"},
		{true, true, false, false, OFS_SEND_UPSERT, "a row in scope the device holds is sent as it is now"},
		{false, true, false, false, OFS_SEND_REMOVAL, "a held row that left the scope is removed"},
		{false, true, false, true, OFS_SEND_REMOVAL, "a held row someone deleted is removed"},
		{false, false, false, false, OFS_SEND_NOTHING, "a row never seen and out of scope: nothing, not even its key"},
		{false, false, false, true, OFS_SEND_NOTHING, "a deletion of a row never seen: nothing"},
		{true, false, true, false, OFS_SEND_HOLD_OWN, "the device's own row, as sent: not sent back, held"},
		{true, true, true, false, OFS_SEND_HOLD_OWN, "the device's own update of a held row: not sent back"},
		{false, true, true, true, OFS_SEND_FORGET_OWN, "the device's own delete of a held row: forgotten, not sent"},
		{false, false, true, true, OFS_SEND_NOTHING, "the device's own delete of a row it was never sent: nothing"},
		{false, true, true, false, OFS_SEND_REMOVAL, "the device's own write that took the row out of its scope: removed"},
		{false, false, true, false, OFS_SEND_NOTHING, "the device's own write of a row it may not see: nothing"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		OfsRowFacts f = {cases[i].visible, cases[i].held, cases[i].own, cases[i].del};
		OfsSendRule got = OfsDecideSend(&f);

		ok(got == cases[i].want, "%s (%s)", cases[i].why, names[got]);
	}
	return done_testing();
}

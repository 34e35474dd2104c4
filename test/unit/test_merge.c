/*
 * test_merge.c: the merge policies (src/merge.c), without a server.
 *
 * Each policy is checked for every combination of what the write path
 * knows of a column: a base or none, the origin's value equal to the base
 * or to the device's value, numbers or not, and the column's version
 * before, equal to or after the device's write.
 */
#include "merge.h"
#include "tap.h"

static OfsColumnMerge
Column(bool has_base, bool eq_base, bool eq_device, bool numbers,
	   bool known, int64_t vhlc, const char *vsite)
{
	OfsColumnMerge c;

	c.has_base = has_base;
	c.origin_equals_base = eq_base;
	c.origin_equals_device = eq_device;
	c.numbers = numbers;
	c.origin_version.known = known;
	c.origin_version.hlc = vhlc;
	c.origin_version.site = vsite;
	return c;
}

static void
test_policy_names(void)
{
	is_int(OfsMergePolicyFromName("lww"), OFS_MERGE_LWW, "lww is last-writer-wins");
	is_int(OfsMergePolicyFromName("counter"), OFS_MERGE_COUNTER, "counter");
	is_int(OfsMergePolicyFromName("manual"), OFS_MERGE_MANUAL, "manual");
	is_int(OfsMergePolicyFromName(NULL), OFS_MERGE_LWW, "no policy is last-writer-wins");
	is_int(OfsMergePolicyFromName("Counter"), OFS_MERGE_LWW, "names are case-sensitive");
	is_int(OfsMergeNeeds(OFS_MERGE_COUNTER, true), OFS_MERGE_NEEDS_NUMBERS, "counter reads numbers");
	is_int(OfsMergeNeeds(OFS_MERGE_MANUAL, true), OFS_MERGE_NEEDS_EQUALITY, "manual reads equality");
	is_int(OfsMergeNeeds(OFS_MERGE_LWW, true), 0, "lww reads neither");
	is_int(OfsMergeNeeds(OFS_MERGE_MANUAL, false), 0, "without a base nothing is read");
}

static void
test_lww(void)
{
	OfsColumnVersion unknown = {false, 0, NULL};
	OfsColumnVersion v = {true, 100, "dev-b"};
	OfsColumnMerge c;

	ok(OfsWriteIsLater(1, "a", &unknown), "a column never written by a known writer takes any write");
	ok(OfsWriteIsLater(1, "a", NULL), "no version at all takes any write");
	ok(OfsWriteIsLater(101, "dev-a", &v), "a later HLC wins");
	ok(!OfsWriteIsLater(99, "dev-z", &v), "an earlier HLC loses whatever the site");
	ok(OfsWriteIsLater(100, "dev-c", &v), "a tie goes to the greater site");
	ok(!OfsWriteIsLater(100, "dev-a", &v), "a tie is lost by the lesser site");
	ok(!OfsWriteIsLater(100, "dev-b", &v), "the same write again is not later");
	ok(!OfsWriteIsLater(100, "dev-b", &v) && OfsWriteIsLater(100, "origin", &v),
	   "\"origin\" sorts after device names that start with \"dev\"");

	c = Column(false, false, false, false, true, 100, "dev-b");
	is_int(OfsMergeColumn(OFS_MERGE_LWW, &c, 200, "dev-a"), OFS_MERGE_TAKE_DEVICE, "lww: later write taken");
	is_int(OfsMergeColumn(OFS_MERGE_LWW, &c, 50, "dev-a"), OFS_MERGE_KEEP_ORIGIN, "lww: earlier write lost");
	c = Column(true, false, false, false, true, 100, "dev-b");
	is_int(OfsMergeColumn(OFS_MERGE_LWW, &c, 50, "dev-a"), OFS_MERGE_KEEP_ORIGIN,
		   "lww: a base changes nothing");
}

static void
test_counter(void)
{
	OfsColumnMerge c;

	c = Column(true, false, false, true, true, 900, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_COUNTER, &c, 1, "dev-a"), OFS_MERGE_ADD_DELTA,
		   "counter with a base adds the delta, even when older than the origin's write");
	c = Column(true, false, false, false, false, 0, NULL);
	is_int(OfsMergeColumn(OFS_MERGE_COUNTER, &c, 1, "dev-a"), OFS_MERGE_NOT_A_NUMBER,
		   "counter with a value or base that is no number is refused");
	c = Column(false, false, false, false, true, 100, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_COUNTER, &c, 200, "dev-a"), OFS_MERGE_TAKE_DEVICE,
		   "counter without a base is last-writer-wins (later)");
	is_int(OfsMergeColumn(OFS_MERGE_COUNTER, &c, 50, "dev-a"), OFS_MERGE_KEEP_ORIGIN,
		   "counter without a base is last-writer-wins (earlier)");
}

static void
test_manual(void)
{
	OfsColumnMerge c;

	c = Column(true, false, false, false, true, 100, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_MANUAL, &c, 200, "dev-a"), OFS_MERGE_CONFLICT,
		   "manual: the origin changed since the base and differs from the device: a conflict, even for a later write");
	c = Column(true, true, false, false, true, 100, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_MANUAL, &c, 200, "dev-a"), OFS_MERGE_TAKE_DEVICE,
		   "manual: unchanged since the base: the device's later write is taken");
	is_int(OfsMergeColumn(OFS_MERGE_MANUAL, &c, 50, "dev-a"), OFS_MERGE_KEEP_ORIGIN,
		   "manual: unchanged since the base, but an earlier write: lost");
	c = Column(true, false, true, false, true, 100, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_MANUAL, &c, 200, "dev-a"), OFS_MERGE_TAKE_DEVICE,
		   "manual: the origin already has the device's value: no conflict");
	c = Column(false, false, false, false, true, 100, "origin");
	is_int(OfsMergeColumn(OFS_MERGE_MANUAL, &c, 200, "dev-a"), OFS_MERGE_TAKE_DEVICE,
		   "manual without a base is last-writer-wins");
}

int
main(void)
{
	test_policy_names();
	test_lww();
	test_counter();
	test_manual();
	return done_testing();
}

/*
 * merge.c: the merge policies (merge.h).  Pure C: nothing here touches the
 * server, so the unit test links this file alone.
 */
#include "merge.h"

#include <string.h>

OfsMergePolicy
OfsMergePolicyFromName(const char *name)
{
	if (name != NULL && strcmp(name, "counter") == 0)
		return OFS_MERGE_COUNTER;
	if (name != NULL && strcmp(name, "manual") == 0)
		return OFS_MERGE_MANUAL;
	return OFS_MERGE_LWW;
}

int
OfsMergeNeeds(OfsMergePolicy policy, bool has_base)
{
	if (!has_base)
		return 0;				/* without a base every policy is last-writer-wins */
	if (policy == OFS_MERGE_COUNTER)
		return OFS_MERGE_NEEDS_NUMBERS;
	if (policy == OFS_MERGE_MANUAL)
		return OFS_MERGE_NEEDS_EQUALITY;
	return 0;
}

bool
OfsWriteIsLater(int64_t hlc, const char *site, const OfsColumnVersion *version)
{
	if (version == NULL || !version->known)
		return true;
	if (hlc != version->hlc)
		return hlc > version->hlc;
	return strcmp(site, version->site ? version->site : "") > 0;
}

OfsMergeOutcome
OfsMergeColumn(OfsMergePolicy policy, const OfsColumnMerge *column,
			   int64_t hlc, const char *device)
{
	if (policy == OFS_MERGE_COUNTER && column->has_base)
	{
		/* Concurrent increments add up: the device's delta on the origin's value. */
		return column->numbers ? OFS_MERGE_ADD_DELTA : OFS_MERGE_NOT_A_NUMBER;
	}
	if (policy == OFS_MERGE_MANUAL && column->has_base &&
		!column->origin_equals_base && !column->origin_equals_device)
	{
		/* Someone else changed it since the device read it: a person decides. */
		return OFS_MERGE_CONFLICT;
	}
	return OfsWriteIsLater(hlc, device, &column->origin_version)
		? OFS_MERGE_TAKE_DEVICE : OFS_MERGE_KEEP_ORIGIN;
}

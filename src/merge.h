/*
 * merge.h: the merge policies of a synced table's columns, as pure
 * functions.
 *
 * When a device updates a row, each column it writes is merged by the
 * table's policy for that column (ofs.sync_table's merge argument): "lww"
 * (last writer wins, by HLC, ties by site), "counter" (concurrent
 * increments add up) or "manual" (a concurrent change becomes a conflict
 * for a person).  The write path gathers what the decision needs and
 * carries it out; the decision itself is here, free of SPI, catalogs and
 * memory contexts, so that test/unit/test_merge.c checks every policy
 * without a server.  docs/DESIGN.md, "Merging updates", explains them.
 */
#ifndef OFS_MERGE_H
#define OFS_MERGE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum OfsMergePolicy
{
	OFS_MERGE_LWW,
	OFS_MERGE_COUNTER,
	OFS_MERGE_MANUAL
} OfsMergePolicy;

typedef enum OfsMergeOutcome
{
	OFS_MERGE_TAKE_DEVICE,		/* write the device's value */
	OFS_MERGE_ADD_DELTA,		/* write origin + (device - base) */
	OFS_MERGE_CONFLICT,			/* write nothing; record a conflict */
	OFS_MERGE_KEEP_ORIGIN,		/* a later write wins: the column is lost */
	OFS_MERGE_NOT_A_NUMBER		/* a counter's value or base is no number */
} OfsMergeOutcome;

/* The version of a column on the origin: who wrote it last, and when. */
typedef struct OfsColumnVersion
{
	bool		known;			/* false: never written by a known writer */
	int64_t		hlc;
	const char *site;			/* "origin" or a device */
} OfsColumnVersion;

/*
 * What the write path knows of one column when it merges a device's value.
 * The equality fields are read only by the manual policy and the number
 * field only by the counter policy, so the caller may leave them unset for
 * the others (OfsMergeNeeds says which it must fill).
 */
typedef struct OfsColumnMerge
{
	bool		has_base;		/* the device sent the value it started from */
	bool		origin_equals_base; /* the origin's value is the device's base */
	bool		origin_equals_device;	/* the origin already has the device's value */
	bool		numbers;		/* the device's value and base are numbers */
	OfsColumnVersion origin_version;
} OfsColumnMerge;

#define OFS_MERGE_NEEDS_EQUALITY	0x1
#define OFS_MERGE_NEEDS_NUMBERS		0x2

/* OfsMergePolicyFromName reads a policy's name; unknown names are "lww". */
extern OfsMergePolicy OfsMergePolicyFromName(const char *name);

/* OfsMergeNeeds says which fields of OfsColumnMerge a policy reads. */
extern int	OfsMergeNeeds(OfsMergePolicy policy, bool has_base);

/*
 * OfsWriteIsLater: does a write at (hlc, site) come after the column's
 * version?  HLCs decide; equal HLCs are ordered by site name (the greater
 * wins), so every origin and device decides a tie the same way.
 */
extern bool OfsWriteIsLater(int64_t hlc, const char *site, const OfsColumnVersion *version);

/* OfsMergeColumn decides what becomes of one column a device writes. */
extern OfsMergeOutcome OfsMergeColumn(OfsMergePolicy policy, const OfsColumnMerge *column,
									  int64_t hlc, const char *device);

#endif							/* OFS_MERGE_H */

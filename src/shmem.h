/*
 * shmem.h: state shared by all backends and the sync workers (shmem.c),
 * present when ofs is in shared_preload_libraries: the clock's last value,
 * the commit counters that wake the workers, the workers' latches and
 * their counters (ofs.stats).
 */
#ifndef OFS_SHMEM_H
#define OFS_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "metrics.h"

#define OFS_MAX_WORKER_LATCHES 16

/* Counters of the sync workers, shown by ofs.stats. */
typedef enum OfsCounter
{
	OFS_STAT_CONNECTED,			/* open connections (up and down) */
	OFS_STAT_SESSIONS,			/* devices authenticated, ever */
	OFS_STAT_MESSAGES_IN,
	OFS_STAT_MESSAGES_OUT,
	OFS_STAT_BYTES_IN,
	OFS_STAT_BYTES_OUT,
	OFS_STAT_APPLIED,
	OFS_STAT_DUPLICATES,
	OFS_STAT_REJECTED,
	OFS_STAT_CONFLICTS,
	OFS_STAT_ROWS_SENT,
	OFS_STAT_ERRORS,
	OFS_STAT_COUNT
} OfsCounter;

typedef struct OfsShared
{
	slock_t		mutex;			/* protects hlc_last, latches */
	int64		hlc_last;		/* last HLC handed out */
	int64		hlc_reserved;	/* HLCs up to here are covered by the file */
	pg_atomic_uint64 feed_commits;	/* commits that captured changes */
	pg_atomic_uint64 feed_commit_at;	/* the latest of them (TimestampTz), for ofs_delivery_seconds */
	Latch	   *latches[OFS_MAX_WORKER_LATCHES];	/* sync workers to wake */
	pg_atomic_uint64 device_changes;	/* commits that revoked devices */
	pg_atomic_uint64 counters[OFS_STAT_COUNT];
	TimestampTz last_error_at;	/* protected by mutex */
	char		last_error[256];
	OfsMetrics	metrics;		/* for /metrics (metrics.h) */
} OfsShared;

extern OfsShared *ofs_shared;	/* NULL unless preloaded */
extern void OfsShmemInit(void);
extern void OfsNotifyFeed(void);
extern void OfsRegisterLatch(Latch *latch);
extern void OfsUnregisterLatch(Latch *latch);
extern void OfsCount(OfsCounter counter, int64 delta);
extern void OfsRecordError(const char *message);

#endif							/* OFS_SHMEM_H */

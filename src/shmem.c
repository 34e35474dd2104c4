/*
 * shmem.c: the shared memory of ofs.
 *
 * When ofs is in shared_preload_libraries, backends share the hybrid logical
 * clock and a counter of commits that captured changes.  A backend that
 * commits captured changes bumps the counter and sets the latches of the
 * sync workers, so that they learn of new changes at once, without polling
 * SQL, and only for committed work (an aborted transaction wakes nobody).
 * Without preloading, ofs_shared is NULL and each backend keeps its own
 * clock (see hlc.c); nothing else depends on it.
 */
#include "ofs.h"
#include "hlc.h"
#include "shmem.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

OfsShared  *ofs_shared = NULL;

static void WakeWorkers(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
OfsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OfsShared)));
	RequestNamedLWLockTranche("ofs_hlc", 1);
}

static void
OfsShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ofs_shared = ShmemInitStruct("ofs", sizeof(OfsShared), &found);
	if (!found)
	{
		memset(ofs_shared, 0, sizeof(OfsShared));
		SpinLockInit(&ofs_shared->mutex);
		pg_atomic_init_u64(&ofs_shared->feed_commits, 0);
		pg_atomic_init_u64(&ofs_shared->feed_commit_at, 0);
		pg_atomic_init_u64(&ofs_shared->device_changes, 0);
		for (int i = 0; i < OFS_STAT_COUNT; i++)
			pg_atomic_init_u64(&ofs_shared->counters[i], 0);
		OfsMetricsInit(&ofs_shared->metrics);
		HlcShmemStartup();
	}
	LWLockRelease(AddinShmemInitLock);
}

/* OfsShmemInit installs the hooks; called from _PG_init while preloading. */
void
OfsShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = OfsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OfsShmemStartup;
}

/* OfsNotifyFeed counts a commit with captured changes and wakes the workers. */
void
OfsNotifyFeed(void)
{
	if (ofs_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&ofs_shared->feed_commits, 1);
	pg_atomic_write_u64(&ofs_shared->feed_commit_at, (uint64) GetCurrentTimestamp());
	WakeWorkers();
}

/* OfsRegisterLatch asks for a SetLatch on every commit with changes. */
void
OfsRegisterLatch(Latch *latch)
{
	int			i;

	if (ofs_shared == NULL)
		return;
	SpinLockAcquire(&ofs_shared->mutex);
	for (i = 0; i < OFS_MAX_WORKER_LATCHES; i++)
		if (ofs_shared->latches[i] == NULL)
		{
			ofs_shared->latches[i] = latch;
			break;
		}
	SpinLockRelease(&ofs_shared->mutex);
	if (i == OFS_MAX_WORKER_LATCHES)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many ofs sync workers"),
				 errhint("At most %d sync workers can be notified of changes.", OFS_MAX_WORKER_LATCHES)));
}

void
OfsUnregisterLatch(Latch *latch)
{
	int			i;

	if (ofs_shared == NULL)
		return;
	SpinLockAcquire(&ofs_shared->mutex);
	for (i = 0; i < OFS_MAX_WORKER_LATCHES; i++)
		if (ofs_shared->latches[i] == latch)
			ofs_shared->latches[i] = NULL;
	SpinLockRelease(&ofs_shared->mutex);
}

/* WakeWorkers sets the latch of every sync worker. */
static void
WakeWorkers(void)
{
	SpinLockAcquire(&ofs_shared->mutex);
	for (int i = 0; i < OFS_MAX_WORKER_LATCHES; i++)
		if (ofs_shared->latches[i])
			SetLatch(ofs_shared->latches[i]);
	SpinLockRelease(&ofs_shared->mutex);
}

/* OfsCount adds to one of the workers' counters. */
void
OfsCount(OfsCounter counter, int64 delta)
{
	if (ofs_shared == NULL)
		return;
	if (delta >= 0)
		pg_atomic_fetch_add_u64(&ofs_shared->counters[counter], (uint64) delta);
	else
		pg_atomic_fetch_sub_u64(&ofs_shared->counters[counter], (uint64) -delta);
}

/* OfsRecordError counts an error and keeps its message as the last one. */
void
OfsRecordError(const char *message)
{
	if (ofs_shared == NULL)
		return;
	OfsCount(OFS_STAT_ERRORS, 1);
	SpinLockAcquire(&ofs_shared->mutex);
	strlcpy(ofs_shared->last_error, message, sizeof(ofs_shared->last_error));
	ofs_shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&ofs_shared->mutex);
}

static bool devices_changed = false;
static bool feed_changed = false;
static bool devices_callback = false;

static void
DevicesXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && devices_changed && ofs_shared != NULL)
	{
		pg_atomic_fetch_add_u64(&ofs_shared->device_changes, 1);
		WakeWorkers();
	}
	if (event == XACT_EVENT_COMMIT && feed_changed)
		OfsNotifyFeed();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		devices_changed = feed_changed = false;
}

PG_FUNCTION_INFO_V1(ofs_notify_feed_change);

/* notify_feed_change() wakes the sync workers at commit, as a capture does. */
Datum
ofs_notify_feed_change(PG_FUNCTION_ARGS)
{
	if (!devices_callback)
	{
		RegisterXactCallback(DevicesXactCallback, NULL);
		devices_callback = true;
	}
	feed_changed = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(ofs_notify_device_change);
PG_FUNCTION_INFO_V1(ofs_worker_stats);

/*
 * notify_device_change() tells the sync workers, when the current
 * transaction commits, that devices were revoked, so that they close the
 * connections of those devices at once.
 */
Datum
ofs_notify_device_change(PG_FUNCTION_ARGS)
{
	if (!devices_callback)
	{
		RegisterXactCallback(DevicesXactCallback, NULL);
		devices_callback = true;
	}
	devices_changed = true;
	PG_RETURN_VOID();
}

/* worker_stats() returns the workers' counters (zero without preloading). */
Datum
ofs_worker_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[OFS_STAT_COUNT + 2];
	bool		nulls[OFS_STAT_COUNT + 2];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "worker_stats must return a record");
	memset(nulls, false, sizeof(nulls));
	for (int i = 0; i < OFS_STAT_COUNT; i++)
		values[i] = Int64GetDatum(ofs_shared ? (int64) pg_atomic_read_u64(&ofs_shared->counters[i]) : 0);
	nulls[OFS_STAT_COUNT] = nulls[OFS_STAT_COUNT + 1] = true;
	if (ofs_shared)
	{
		char		last[sizeof(ofs_shared->last_error)];
		TimestampTz at;

		SpinLockAcquire(&ofs_shared->mutex);
		memcpy(last, ofs_shared->last_error, sizeof(last));
		at = ofs_shared->last_error_at;
		SpinLockRelease(&ofs_shared->mutex);
		if (at != 0)
		{
			values[OFS_STAT_COUNT] = CStringGetTextDatum(last);
			values[OFS_STAT_COUNT + 1] = TimestampTzGetDatum(at);
			nulls[OFS_STAT_COUNT] = nulls[OFS_STAT_COUNT + 1] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

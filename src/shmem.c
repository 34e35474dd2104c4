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

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

OfsShared  *ofs_shared = NULL;

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
	int			i;

	if (ofs_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&ofs_shared->feed_commits, 1);
	SpinLockAcquire(&ofs_shared->mutex);
	for (i = 0; i < OFS_MAX_WORKER_LATCHES; i++)
		if (ofs_shared->latches[i])
			SetLatch(ofs_shared->latches[i]);
	SpinLockRelease(&ofs_shared->mutex);
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

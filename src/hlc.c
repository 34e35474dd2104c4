/*
 * hlc.c: the origin's hybrid logical clock.
 *
 * An HLC is a bigint: the Unix time in milliseconds shifted left by 16 bits,
 * plus a 16-bit counter that orders events within one millisecond.  HlcNow
 * returns max(wall clock, last HLC + 1), so HLCs only grow even if the wall
 * clock steps back, and HlcObserve moves the clock past an HLC received
 * from a device, so that a later origin write is ordered after it.
 *
 * Across restarts the clock stays monotonic through a reservation file,
 * $PGDATA/pg_ofs_hlc: before handing out an HLC beyond the reserved value,
 * a backend durably writes a new reservation a second ahead (as sequences
 * log values ahead).  After a restart the clock starts from the reservation,
 * so no HLC handed out before a crash is handed out again, whatever the wall
 * clock says.  That costs one fsync per second of clock, and a restart
 * moves the clock at most a second ahead of the wall clock.
 *
 * Without shared_preload_libraries there is no shared state: each backend
 * keeps its own clock, monotonic within the session only.
 */
#include "ofs.h"
#include "hlc.h"
#include "shmem.h"

#include <fcntl.h>
#include <unistd.h>

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(ofs_hlc_now);

#define HLC_LOGICAL_BITS 16
#define HLC_RESERVE_MS 1000
#define HLC_FILE "pg_ofs_hlc"
#define HLC_FILE_TMP "pg_ofs_hlc.tmp"

static int64 local_last = 0;

/* WallHlc is the wall clock as an HLC with a zero counter. */
int64
WallHlc(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		unix_ms = now / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	return unix_ms << HLC_LOGICAL_BITS;
}

static int64
HlcReadFile(void)
{
	int			fd = OpenTransientFile(HLC_FILE, O_RDONLY | PG_BINARY);
	int64		value = 0;

	if (fd < 0)
		return 0;
	if (read(fd, &value, sizeof(value)) != sizeof(value))
		value = 0;
	CloseTransientFile(fd);
	return value;
}

/* HlcShmemStartup seeds the shared clock from the reservation file. */
void
HlcShmemStartup(void)
{
	int64		reserved = HlcReadFile();

	ofs_shared->hlc_last = reserved;
	ofs_shared->hlc_reserved = reserved;
}

/*
 * WriteReservationFile writes value durably to the reservation file; on a
 * failure it reports at elevel and, below ERROR, returns false with the
 * file closed.
 */
static bool
WriteReservationFile(int64 value, int elevel)
{
	int			fd = OpenTransientFile(HLC_FILE_TMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	bool		ok;

	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", HLC_FILE_TMP)));
		return false;
	}
	ok = write(fd, &value, sizeof(value)) == sizeof(value);
	if (!ok)
		ereport(elevel == ERROR ? LOG : elevel,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", HLC_FILE_TMP)));
	else if (pg_fsync(fd) != 0)
	{
		ok = false;
		ereport(elevel == ERROR ? LOG : elevel,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", HLC_FILE_TMP)));
	}
	CloseTransientFile(fd);
	if (!ok)
	{
		if (elevel >= ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("could not reserve the clock in \"%s\"", HLC_FILE_TMP)));
		return false;
	}
	return durable_rename(HLC_FILE_TMP, HLC_FILE, elevel) == 0;
}

/*
 * HlcWriteReservation durably reserves HLCs up to value, unless upto is
 * reserved already.  Below ERROR, a failure is reported at elevel and
 * leaves the reservation as it was.
 */
static void
HlcWriteReservation(int64 upto, int64 value, int elevel)
{
	LWLock	   *lock = &(GetNamedLWLockTranche("ofs_hlc"))->lock;
	int64		reserved;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	SpinLockAcquire(&ofs_shared->mutex);
	reserved = ofs_shared->hlc_reserved;
	SpinLockRelease(&ofs_shared->mutex);
	if (reserved < upto && WriteReservationFile(value, elevel))
	{
		SpinLockAcquire(&ofs_shared->mutex);
		ofs_shared->hlc_reserved = value;
		SpinLockRelease(&ofs_shared->mutex);
	}
	LWLockRelease(lock);
}

/* HlcReserve durably reserves HLCs up to at least "upto", and a second more. */
static void
HlcReserve(int64 upto)
{
	HlcWriteReservation(upto, upto + ((int64) HLC_RESERVE_MS << HLC_LOGICAL_BITS), ERROR);
}

/* HlcNow returns the next HLC of the origin. */
int64
HlcNow(void)
{
	int64		wall = WallHlc();
	int64		next;
	int64		reserved;

	if (ofs_shared == NULL)
	{
		local_last = Max(wall, local_last + 1);
		return local_last;
	}
	SpinLockAcquire(&ofs_shared->mutex);
	next = Max(wall, ofs_shared->hlc_last + 1);
	ofs_shared->hlc_last = next;
	reserved = ofs_shared->hlc_reserved;
	SpinLockRelease(&ofs_shared->mutex);
	if (next > reserved)
		HlcReserve(next);
	return next;
}

/*
 * HlcReserveAhead renews the reservation before writers reach it: when less
 * than three quarters of a second of it are left, it reserves up to a
 * second ahead of the wall clock (as far as a writer would).
 * The sync workers call it about once a second, so that the fsync of a
 * reservation is off the path of pushes and of origin writes.
 */
void
HlcReserveAhead(void)
{
	int64		wall = WallHlc();
	int64		reserved;

	if (ofs_shared == NULL)
		return;
	SpinLockAcquire(&ofs_shared->mutex);
	reserved = ofs_shared->hlc_reserved;
	SpinLockRelease(&ofs_shared->mutex);
	if (reserved < wall + ((int64) (HLC_RESERVE_MS * 3 / 4) << HLC_LOGICAL_BITS))
		HlcWriteReservation(wall + ((int64) (HLC_RESERVE_MS * 3 / 4) << HLC_LOGICAL_BITS),
							wall + ((int64) HLC_RESERVE_MS << HLC_LOGICAL_BITS), LOG);
}

/* HlcObserve moves the clock to at least a received HLC. */
void
HlcObserve(int64 remote)
{
	int64		reserved;
	bool		moved = false;

	if (ofs_shared == NULL)
	{
		local_last = Max(local_last, remote);
		return;
	}
	SpinLockAcquire(&ofs_shared->mutex);
	if (remote > ofs_shared->hlc_last)
	{
		ofs_shared->hlc_last = remote;
		moved = true;
	}
	reserved = ofs_shared->hlc_reserved;
	SpinLockRelease(&ofs_shared->mutex);
	if (moved && remote > reserved)
		HlcReserve(remote);
}

/*
 * HlcCurrent is the origin's clock now, without handing out a new HLC: at
 * least every HLC handed out or observed so far (what a device is sent so
 * that its next write orders after everything it has seen).
 */
int64
HlcCurrent(void)
{
	int64		wall = WallHlc();
	int64		last;

	if (ofs_shared == NULL)
		return Max(wall, local_last);
	SpinLockAcquire(&ofs_shared->mutex);
	last = ofs_shared->hlc_last;
	SpinLockRelease(&ofs_shared->mutex);
	return Max(wall, last);
}

/* hlc_now returns a fresh HLC of the origin, for inspection and tests. */
Datum
ofs_hlc_now(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(HlcNow());
}

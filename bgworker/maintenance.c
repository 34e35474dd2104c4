/*
 * maintenance.c: the ofs maintenance worker, which compacts the changes
 * feed on a schedule (ofs.compact_changes every ofs.compact_interval,
 * keeping ofs.feed_retention).  It is a process of its own so that a long
 * compaction never delays a device.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"

#include "ofs.h"
#include "worker.h"
#include "shmem.h"

int			ofs_compact_interval_s = 600;
char	   *ofs_feed_retention = NULL;

PGDLLEXPORT void ofs_maintenance_main(Datum arg);

void
ofs_maintenance_main(Datum arg)
{
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(ofs_database, NULL, 0);
	pgstat_report_appname("ofs maintenance");
	/* As the sync worker: no schema a role can write on the superuser's path. */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	for (;;)
	{
		long		wait_ms = ofs_compact_interval_s > 0 ? ofs_compact_interval_s * 1000L : 3600 * 1000L;
		SqlResult	res;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ShutdownRequestPending)
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			continue;
		}
		if (ofs_compact_interval_s <= 0)
			continue;
		/* Only SQL this library serves (sqlversion.c logs why not). */
		if (WorkerSqlCheck("ofs maintenance") != WORKER_SQL_READY)
			continue;
		/* Compaction is bounded by nothing but itself: no device waits on it. */
		ofs_statement_timeout_ms = 0;
		WorkerSql("SELECT superseded, purged FROM ofs.compact_changes($1::interval)",
				  1, (const char *[]) {ofs_feed_retention}, &res);
		if (!res.ok)
		{
			ereport(LOG, (errmsg("ofs maintenance: compacting the changes feed failed: %s", res.message)));
			OfsRecordError(res.message);
		}
		else if (res.nvalues == 2)
			ereport(DEBUG1, (errmsg("ofs maintenance: compacted the changes feed: %s superseded, %s purged",
									res.values[0], res.values[1])));
		SqlResultFree(&res);
	}
}

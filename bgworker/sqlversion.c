/*
 * sqlversion.c: which version of the extension's SQL the workers find.
 *
 * Users install a new shared library first and run ALTER EXTENSION ofs
 * UPDATE after, while devices are connected, so a worker of this library
 * may meet the SQL of an older version, of a newer one (a library that was
 * not upgraded), or none at all (ofs.database without the extension, or a
 * DROP EXTENSION).  The workers read extversion when they start, on reload,
 * when a backend tells them (every upgrade script does), and every ten
 * seconds.  While the SQL is not one this library serves they wait, with
 * one log line saying what to do, instead of calling functions that are
 * missing or different or exiting into a restart loop.
 */
#include "postgres.h"

#include "ofs.h"
#include "worker.h"

/* OfsVersionNum of the installed SQL, or -1 while none is usable. */
int			ofs_sql_version = -1;

/* What the last check found, so that each state is logged once. */
static WorkerSqlState last_state = WORKER_SQL_READY;
static char last_version[64] = "";

/*
 * WorkerSqlCheck reads the installed version of ofs in ofs.database and
 * says whether this library can serve it.  "who" names the worker in the
 * log, which gets one line whenever the answer changes.
 */
WorkerSqlState
WorkerSqlCheck(const char *who)
{
	SqlResult	res;
	WorkerSqlState state;
	int			num = -1;
	char		version[64] = "";

	WorkerSql("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'ofs'", 0, NULL, &res);
	if (!res.ok)
		state = WORKER_SQL_UNREADABLE;
	else if (res.nvalues != 1 || res.values[0] == NULL)
		state = WORKER_SQL_ABSENT;
	else
	{
		strlcpy(version, res.values[0], sizeof(version));
		num = OfsVersionNum(version);
		if (num < 0 || num > OfsVersionNum(OFS_LIBRARY_VERSION))
			state = WORKER_SQL_TOO_NEW;
		else if (num < OfsVersionNum(OFS_OLDEST_SQL_VERSION))
			state = WORKER_SQL_TOO_OLD;
		else
			state = WORKER_SQL_READY;
	}
	ofs_sql_version = state == WORKER_SQL_READY ? num : -1;

	if (state != last_state || strcmp(version, last_version) != 0)
	{
		switch (state)
		{
			case WORKER_SQL_READY:
				ereport(LOG,
						(errmsg("%s serves version %s of the ofs extension in database \"%s\"",
								who, version, ofs_database)));
				break;
			case WORKER_SQL_ABSENT:
				ereport(LOG,
						(errmsg("%s is waiting for the ofs extension in database \"%s\"", who, ofs_database),
						 errhint("Run CREATE EXTENSION ofs in that database, or set ofs.database.")));
				break;
			case WORKER_SQL_TOO_OLD:
				ereport(LOG,
						(errmsg("%s is waiting: the ofs extension in database \"%s\" is at version %s, older than this library (%s) serves",
								who, ofs_database, version, OFS_LIBRARY_VERSION),
						 errdetail("This library serves the SQL of version %s and later.", OFS_OLDEST_SQL_VERSION),
						 errhint("Run ALTER EXTENSION ofs UPDATE in database \"%s\".", ofs_database)));
				break;
			case WORKER_SQL_TOO_NEW:
				ereport(LOG,
						(errmsg("%s is waiting: the ofs extension in database \"%s\" is at version %s, newer than this library (%s)",
								who, ofs_database, version, OFS_LIBRARY_VERSION),
						 errhint("Install the ofs shared library of version %s and restart PostgreSQL.", version)));
				break;
			case WORKER_SQL_UNREADABLE:
				ereport(LOG,
						(errmsg("%s could not read the version of the ofs extension in database \"%s\": %s",
								who, ofs_database, res.message ? res.message : "unknown error"),
						 errhint("The worker tries again every second.")));
				break;
		}
		last_state = state;
		strlcpy(last_version, version, sizeof(last_version));
	}
	SqlResultFree(&res);
	return state;
}

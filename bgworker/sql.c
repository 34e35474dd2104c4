/*
 * sql.c: running the extension's SQL for the sync worker.
 *
 * Each request of a device runs in a transaction of its own, bounded by
 * ofs.statement_timeout.  Every error is caught here, copied out and the
 * transaction aborted: no ERROR may unwind through the frames of
 * libwebsockets, which called us.  Results are copied to malloc'd memory,
 * since the transaction's memory is gone when the answer is written.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "worker.h"

static char *
Strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A failure that the same request may get past later: transient classes. */
static bool
Transient(const char *sqlstate)
{
	return strncmp(sqlstate, "40", 2) == 0 ||	/* serialization, deadlock */
		strncmp(sqlstate, "53", 2) == 0 ||	/* out of resources */
		strncmp(sqlstate, "57", 2) == 0 ||	/* cancel, timeout, shutdown */
		strncmp(sqlstate, "08", 2) == 0 ||
		strcmp(sqlstate, "55P03") == 0;	/* lock not available */
}

/*
 * WorkerSql runs sql with text arguments (NULL pointers are SQL NULLs) and
 * returns the columns of its first row.
 */
void
WorkerSql(const char *sql, int nargs, const char *const *args, SqlResult *res)
{
	WorkerSqlRows(sql, nargs, args, NULL, NULL, res);
}

/*
 * WorkerSqlRows is WorkerSql that also hands every row's columns to fn,
 * inside the transaction; fn must not raise errors.
 */
void
WorkerSqlRows(const char *sql, int nargs, const char *const *args,
			  SqlRowFn fn, void *arg, SqlResult *res)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	memset(res, 0, sizeof(*res));
	Assert(nargs <= 8);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Oid			types[8];
		Datum		values[8];
		char		nulls[8];
		int			rc;
		int			i;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
		if (ofs_statement_timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, ofs_statement_timeout_ms);
		for (i = 0; i < nargs; i++)
		{
			types[i] = TEXTOID;
			values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
			nulls[i] = args[i] ? ' ' : 'n';
		}
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, fn ? 0 : 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(rc));
		if (fn)
		{
			uint64		row;

			for (row = 0; row < SPI_processed; row++)
			{
				char	   *cols[SQL_MAX_VALUES];
				int			ncols = Min(SPI_tuptable->tupdesc->natts, SQL_MAX_VALUES);

				for (i = 0; i < ncols; i++)
					cols[i] = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, i + 1);
				fn(arg, cols, ncols);
			}
		}
		else if (SPI_processed == 1)
		{
			res->nvalues = Min(SPI_tuptable->tupdesc->natts, SQL_MAX_VALUES);
			for (i = 0; i < res->nvalues; i++)
				res->values[i] = Strdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1));
		}
		disable_timeout(STATEMENT_TIMEOUT, false);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		res->ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		QueryCancelPending = false;
		for (int i = 0; i < res->nvalues; i++)
			free(res->values[i]);
		res->nvalues = 0;
		res->ok = false;
		strlcpy(res->sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(res->sqlstate));
		res->message = Strdup(edata->message ? edata->message : "unknown error");
		res->detail = Strdup(edata->detail);
		res->retry = Transient(res->sqlstate);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
SqlResultFree(SqlResult *res)
{
	for (int i = 0; i < res->nvalues; i++)
		free(res->values[i]);
	free(res->message);
	free(res->detail);
	memset(res, 0, sizeof(*res));
}

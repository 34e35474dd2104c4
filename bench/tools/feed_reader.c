/*
 * feed_reader: a client that reads the whole changes feed the way a sync
 * consumer does, following the cursor of each page's last row, and prints
 * the number of changes read and the seconds it took.  With "copy" it
 * instead reads a table with COPY ... TO STDOUT, the baseline.
 *
 *   feed_reader CONNINFO PAGE_ROWS
 *   feed_reader CONNINFO copy TABLE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	char	   *cursor = NULL;
	long		total = 0;
	double		start;

	if (argc != 3 && !(argc == 4 && strcmp(argv[2], "copy") == 0))
	{
		fprintf(stderr, "usage: feed_reader CONNINFO PAGE_ROWS | feed_reader CONNINFO copy TABLE\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "feed_reader: %s", PQerrorMessage(conn));
		return 1;
	}
	start = now_seconds();
	if (argc == 4)
	{
		char		sql[256];
		char	   *buf;
		int			len;
		PGresult   *res;

		snprintf(sql, sizeof(sql), "COPY (SELECT * FROM %s) TO STDOUT", argv[3]);
		res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_COPY_OUT)
		{
			fprintf(stderr, "feed_reader: %s", PQerrorMessage(conn));
			return 1;
		}
		PQclear(res);
		while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
		{
			total++;
			PQfreemem(buf);
		}
		PQclear(PQgetResult(conn));
		printf("%ld %.6f\n", total, now_seconds() - start);
		PQfinish(conn);
		return 0;
	}
	for (;;)
	{
		const char *params[2] = {cursor, argv[2]};
		PGresult   *res = PQexecParams(conn, "SELECT * FROM ofs.changes($1, $2::int)",
									   2, NULL, params, NULL, NULL, 0);
		int			n;

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "feed_reader: %s", PQerrorMessage(conn));
			return 1;
		}
		n = PQntuples(res);
		total += n;
		if (n > 0)
		{
			free(cursor);
			cursor = strdup(PQgetvalue(res, n - 1, 0));
		}
		PQclear(res);
		if (n < atoi(argv[2]))
			break;
	}
	printf("%ld %.6f\n", total, now_seconds() - start);
	free(cursor);
	PQfinish(conn);
	return 0;
}

/*
 * ofs-cli: the device tool.  One device database file per device; every
 * command opens it, does one thing, prints JSON and exits with a code that
 * says what happened (see usage below).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "libofs.h"

enum
{
	EXIT_OK = 0,
	EXIT_FAIL = 1,				/* usage, or a local failure */
	EXIT_UNREACHABLE = 2,		/* the origin could not be reached */
	EXIT_UNAUTHORIZED = 3,		/* the token was refused */
	EXIT_REFUSED = 4,			/* the origin refused or sent something unusable */
	EXIT_SQL = 5				/* exec: the statement failed (a forbidden transition, say) */
};

static const char usage[] =
	"usage: ofs-cli --db FILE COMMAND [ARGS]\n"
	"\n"
	"A device of an ofs origin: a local SQLite database that works offline and\n"
	"syncs with PostgreSQL.\n"
	"\n"
	"commands:\n"
	"  init --url URL --token TOKEN  set the origin (ws:// or wss://) and the device token\n"
	"  exec SQL                      run SQL on the local database; rows as JSON lines\n"
	"  subscribe TABLE [FILTER]      subscribe to a shape (applied at the next sync)\n"
	"  unsubscribe TABLE [FILTER]    drop a shape\n"
	"  sync                          push pending intents, pull changes; a JSON summary\n"
	"  live [--seconds N]            stay connected, syncing as changes happen (Ctrl-C stops)\n"
	"  tables                        the tables the device may subscribe to, from the origin (JSON lines)\n"
	"  status                        pending intents, cursor, last sync, rejected count, synced (JSON)\n"
	"  rejected                      rejected intents with their hints and the origin's dead letter\n"
	"                                of each, with its status (JSON lines)\n"
	"  rejected --origin [--refresh] the origin's view: the device's dead letters and conflicts\n"
	"                                with their status (JSON lines, \"kind\" says which), as last\n"
	"                                fetched by sync; --refresh fetches it now\n"
	"  rejected --clear dl:ID|cf:ID...  clear entries of the origin's view (a dead letter still open\n"
	"                                is discarded; an open conflict stays), then print the view\n"
	"\n"
	"exit codes:\n"
	"  0  success\n"
	"  1  usage error or local failure\n"
	"  2  the origin could not be reached (nothing is lost; sync again later)\n"
	"  3  the origin refused the token (unknown, expired or revoked)\n"
	"  4  the origin refused a request or sent something unusable\n"
	"  5  exec: the SQL failed (e.g. a transition the origin's rules forbid)\n"
	"failures are also printed on stderr as {\"error\": message, \"code\": exit code}.\n"
	"\n"
	"environment: OFS_TLS_INSECURE=1 accepts a self-signed certificate for wss://;\n"
	"OFS_PERMESSAGE_DEFLATE=1 offers permessage-deflate to the origin.\n";

static ofs_db *live_db = NULL;

static void
OnSignal(int sig)
{
	(void) sig;
	if (live_db)
		ofs_stop(live_db);
}

static int
ExitFor(ofs_rc rc)
{
	switch (rc)
	{
		case OFS_OK:
			return EXIT_OK;
		case OFS_UNREACHABLE:
			return EXIT_UNREACHABLE;
		case OFS_UNAUTHORIZED:
			return EXIT_UNAUTHORIZED;
		case OFS_REFUSED:
		case OFS_PROTOCOL:
			return EXIT_REFUSED;
		default:
			return EXIT_FAIL;
	}
}

static int
Fail(ofs_db *db, ofs_rc rc)
{
	json_t	   *e = json_pack("{s:s, s:i}", "error", ofs_errmsg(db), "code", ExitFor(rc));
	char	   *t = json_dumps(e, JSON_COMPACT);

	fprintf(stderr, "%s\n", t ? t : ofs_errmsg(db));
	free(t);
	json_decref(e);
	return ExitFor(rc);
}

/*
 * PrintLines prints the elements of a JSON array text (a library answer,
 * NULL when it failed) as JSON lines, each reshaped by shape when given.
 */
static int
PrintLines(ofs_db *db, const char *s, json_t *(*shape) (json_t *))
{
	json_t	   *arr = s ? json_loads(s, 0, NULL) : NULL;
	size_t		k;
	json_t	   *e;

	json_array_foreach(arr, k, e)
	{
		json_t	   *o = shape ? shape(e) : json_incref(e);
		char	   *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

		if (line)
			printf("%s\n", line);
		free(line);
		json_decref(o);
	}
	json_decref(arr);
	return s ? EXIT_OK : Fail(db, OFS_ERROR);
}

/* TableLine: a table the device may subscribe to, as ofs-cli tables prints it. */
static json_t *
TableLine(json_t *t)
{
	return json_pack("{s:O?, s:O?, s:O?, s:O?}", "table", json_object_get(t, "name"),
					 "subscribed", json_object_get(t, "subscribed"), "columns", json_object_get(t, "columns"),
					 "primary_key", json_object_get(t, "primary_key"));
}

/* Exec runs every statement of sql, printing each row as a JSON object line. */
static int
Exec(ofs_db *db, const char *sql)
{
	sqlite3    *s = ofs_sqlite(db);
	const char *tail = sql;

	while (tail && *tail)
	{
		sqlite3_stmt *st = NULL;
		int			rc;

		if (sqlite3_prepare_v2(s, tail, -1, &st, &tail) != SQLITE_OK)
		{
			json_t	   *e = json_pack("{s:s, s:i}", "error", sqlite3_errmsg(s), "code", EXIT_SQL);
			char	   *t = json_dumps(e, JSON_COMPACT);

			fprintf(stderr, "%s\n", t ? t : sqlite3_errmsg(s));
			free(t);
			json_decref(e);
			return EXIT_SQL;
		}
		if (st == NULL)
			break;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		{
			json_t	   *row = json_object();
			char	   *t;

			for (int i = 0; i < sqlite3_column_count(st); i++)
			{
				const char *name = sqlite3_column_name(st, i);
				json_t	   *v;

				switch (sqlite3_column_type(st, i))
				{
					case SQLITE_INTEGER:
						v = json_integer(sqlite3_column_int64(st, i));
						break;
					case SQLITE_FLOAT:
						v = json_real(sqlite3_column_double(st, i));
						break;
					case SQLITE_NULL:
						v = json_null();
						break;
					default:
						v = json_stringn((const char *) sqlite3_column_text(st, i), (size_t) sqlite3_column_bytes(st, i));
						if (v == NULL)
							v = json_string("(not UTF-8)");
				}
				json_object_set_new(row, name ? name : "?", v);
			}
			t = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
			printf("%s\n", t ? t : "{}");
			free(t);
			json_decref(row);
		}
		if (rc != SQLITE_DONE)
		{
			json_t	   *e = json_pack("{s:s, s:i}", "error", sqlite3_errmsg(s), "code", EXIT_SQL);
			char	   *t = json_dumps(e, JSON_COMPACT);

			fprintf(stderr, "%s\n", t);
			free(t);
			json_decref(e);
			sqlite3_finalize(st);
			if (!sqlite3_get_autocommit(s))
				sqlite3_exec(s, "ROLLBACK", NULL, NULL, NULL);
			return EXIT_SQL;
		}
		sqlite3_finalize(st);
	}
	return EXIT_OK;
}

static void
Progress(void *user, const char *table, int64_t done, int64_t total)
{
	int			width = 30;
	int			filled;

	(void) user;
	if (!isatty(2) || total <= 0)
		return;
	filled = (int) (done * width / total);
	fprintf(stderr, "\r%-24.24s [", table ? table : "");
	for (int i = 0; i < width; i++)
		fputc(i < filled ? '#' : ' ', stderr);
	fprintf(stderr, "] %lld/%lld", (long long) done, (long long) total);
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

static void
Rejected(void *user, const char *op_id, const char *table, const char *sqlstate, const char *message,
		 const char *hint)
{
	(void) user;
	(void) hint;
	if (isatty(2))
		fprintf(stderr, "rejected %s on %s: %s (%s)\n", op_id, table, message, sqlstate);
}

static void
RowChanged(void *user, const char *table, const char *op, const char *pk, const char *row)
{
	int			verbose = *(int *) user;

	if (verbose)
	{
		printf("{\"event\":\"%s\",\"table\":\"%s\",\"pk\":%s,\"row\":%s}\n", op, table, pk, row ? row : "null");
		fflush(stdout);
	}
}

/* PrintEntries prints the entries of list as JSON lines, each with "kind" first. */
static void
PrintEntries(json_t *list, const char *kind)
{
	size_t		k;
	json_t	   *e;

	json_array_foreach(list, k, e)
	{
		json_t	   *line = json_pack("{s:s}", "kind", kind);
		char	   *t;

		if (json_is_object(e))
			json_object_update(line, e);
		t = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(line);
	}
}

/*
 * OriginRejections: rejected --origin [--refresh] | --clear dl:ID|cf:ID...
 * (ids may also be given as one comma-separated list).
 */
static int
OriginRejections(ofs_db *db, int argc, char **argv)
{
	int64_t    *dl = calloc((size_t) argc * 64 + 1, sizeof(int64_t));
	int64_t    *cf = calloc((size_t) argc * 64 + 1, sizeof(int64_t));
	size_t		ndl = 0;
	size_t		ncf = 0;
	int			refresh = 0;
	int			clear = 0;
	int			code = EXIT_OK;
	ofs_rc		rc = OFS_OK;

	if (dl == NULL || cf == NULL)
	{
		free(dl);
		free(cf);
		fputs("out of memory\n", stderr);
		return EXIT_FAIL;
	}
	for (int a = 0; a < argc && code == EXIT_OK; a++)
	{
		if (strcmp(argv[a], "--origin") == 0)
			continue;
		if (strcmp(argv[a], "--refresh") == 0)
		{
			refresh = 1;
			continue;
		}
		if (strcmp(argv[a], "--clear") == 0)
		{
			clear = 1;
			continue;
		}
		if (!clear)
		{
			fprintf(stderr, "unknown argument to rejected: %s\n\n%s", argv[a], usage);
			code = EXIT_FAIL;
			break;
		}
		/* dl:12, cf:3, or a comma-separated list of them */
		for (char *item = strtok(argv[a], ","); item; item = strtok(NULL, ","))
		{
			char	   *end = NULL;
			long long	id = -1;

			if ((strncmp(item, "dl:", 3) == 0 || strncmp(item, "cf:", 3) == 0) && item[3] != '\0')
				id = strtoll(item + 3, &end, 10);
			if (id < 0 || end == NULL || *end != '\0' || ndl >= (size_t) argc * 64 || ncf >= (size_t) argc * 64)
			{
				fprintf(stderr, "not an entry to clear: %s (dl:ID for a dead letter, cf:ID for a conflict)\n", item);
				code = EXIT_FAIL;
				break;
			}
			if (item[0] == 'd')
				dl[ndl++] = id;
			else
				cf[ncf++] = id;
		}
	}
	if (code == EXIT_OK && clear && ndl + ncf == 0)
	{
		fprintf(stderr, "--clear needs dl:ID or cf:ID\n");
		code = EXIT_FAIL;
	}
	if (code == EXIT_OK && (clear || refresh))
		rc = ofs_clear_rejections(db, dl, ndl, cf, ncf);
	if (code == EXIT_OK && rc != OFS_OK)
		code = Fail(db, rc);
	if (code == EXIT_OK)
	{
		const char *s = ofs_origin_rejections(db);
		json_t	   *view = s ? json_loads(s, 0, NULL) : NULL;

		if (view == NULL)
			code = Fail(db, OFS_ERROR);
		PrintEntries(json_object_get(view, "dead_letters"), "dead_letter");
		PrintEntries(json_object_get(view, "conflicts"), "conflict");
		json_decref(view);
	}
	free(dl);
	free(cf);
	return code;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	const char *cmd;
	ofs_db	   *db;
	ofs_rc		rc;
	int			i = 1;
	int			code = EXIT_OK;
	int			verbose = 0;
	ofs_callbacks cb = {0};

	while (i < argc && argv[i][0] == '-')
	{
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			fputs(usage, stdout);
			return EXIT_OK;
		}
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			path = argv[i + 1], i += 2;
		else
		{
			fprintf(stderr, "unknown option %s\n\n%s", argv[i], usage);
			return EXIT_FAIL;
		}
	}
	if (path == NULL || i >= argc)
	{
		fputs(usage, stderr);
		return EXIT_FAIL;
	}
	cmd = argv[i++];
	rc = ofs_open(path, &db);
	if (rc != OFS_OK)
	{
		code = Fail(db, rc);
		ofs_close(db);
		return code;
	}
	cb.progress = Progress;
	cb.rejected = Rejected;
	cb.row_changed = RowChanged;
	ofs_set_callbacks(db, &cb, &verbose);

	if (strcmp(cmd, "init") == 0)
	{
		const char *url = NULL;
		const char *token = NULL;

		for (; i + 1 < argc; i += 2)
		{
			if (strcmp(argv[i], "--url") == 0)
				url = argv[i + 1];
			else if (strcmp(argv[i], "--token") == 0)
				token = argv[i + 1];
		}
		rc = ofs_configure(db, url, token);
		code = rc == OFS_OK ? (printf("{\"ok\":true}\n"), EXIT_OK) : Fail(db, rc);
	}
	else if (strcmp(cmd, "exec") == 0 && i < argc)
		code = Exec(db, argv[i]);
	else if ((strcmp(cmd, "subscribe") == 0 || strcmp(cmd, "unsubscribe") == 0) && i < argc)
	{
		rc = cmd[0] == 's' ? ofs_subscribe(db, argv[i], i + 1 < argc ? argv[i + 1] : NULL)
			: ofs_unsubscribe(db, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
		code = rc == OFS_OK ? (printf("{\"ok\":true}\n"), EXIT_OK) : Fail(db, rc);
	}
	else if (strcmp(cmd, "sync") == 0)
	{
		ofs_sync_stats st;

		rc = ofs_sync(db, &st);
		if (rc == OFS_OK)
			printf("{\"ok\":true,\"pushed\":%lld,\"applied\":%lld,\"rejected\":%lld,\"conflicts\":%lld,"
				   "\"pulled\":%lld,\"pending\":%lld}\n",
				   (long long) st.pushed, (long long) st.applied, (long long) st.rejected,
				   (long long) st.conflicts, (long long) st.pulled, (long long) st.pending);
		code = rc == OFS_OK ? EXIT_OK : Fail(db, rc);
	}
	else if (strcmp(cmd, "live") == 0)
	{
		double		seconds = 0;

		for (; i + 1 < argc; i += 2)
			if (strcmp(argv[i], "--seconds") == 0)
				seconds = atof(argv[i + 1]);
		verbose = 1;
		live_db = db;
		signal(SIGINT, OnSignal);
		signal(SIGTERM, OnSignal);
		rc = ofs_live(db, seconds);
		code = rc == OFS_OK ? EXIT_OK : Fail(db, rc);
	}
	else if (strcmp(cmd, "tables") == 0)
		code = PrintLines(db, ofs_available_tables(db), TableLine);
	else if (strcmp(cmd, "status") == 0)
	{
		const char *s = ofs_status(db);

		code = s ? (printf("%s\n", s), EXIT_OK) : Fail(db, OFS_ERROR);
	}
	else if (strcmp(cmd, "rejected") == 0 && i < argc)
		code = OriginRejections(db, argc - i, argv + i);
	else if (strcmp(cmd, "rejected") == 0)
		code = PrintLines(db, ofs_rejected(db), NULL);
	else
	{
		fprintf(stderr, "unknown command or missing argument: %s\n\n%s", cmd, usage);
		code = EXIT_FAIL;
	}
	ofs_close(db);
	return code;
}

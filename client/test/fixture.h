/*
 * fixture.h: what the client's database tests share: a temporary
 * directory, a device database with the origin's schema installed, and
 * small query helpers on its SQLite connection.
 */
#ifndef OFS_FIXTURE_H
#define OFS_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tap.h"

/*
 * The origin's answer to "schema": invoices with a transition rule
 * (draft -> submitted -> approved, the last edge by role manager), and
 * lines with a composite key.
 */
static const char *const fixture_schema_text =
	"{\"type\":\"schema\",\"id\":2,"
	" \"tables\":[{\"name\":\"public.invoices\","
	"   \"columns\":[{\"name\":\"id\",\"type\":\"text\",\"nullable\":false},"
	"               {\"name\":\"status\",\"type\":\"text\",\"nullable\":true},"
	"               {\"name\":\"total\",\"type\":\"numeric\",\"nullable\":true},"
	"               {\"name\":\"note\",\"type\":\"text\",\"nullable\":true},"
	"               {\"name\":\"qty\",\"type\":\"integer\",\"nullable\":true}],"
	"   \"primary_key\":[\"id\"],"
	"   \"merge\":{\"total\":\"lww\",\"note\":\"manual\"},"
	"   \"transitions\":[{\"name\":\"invoice_flow\",\"column\":\"status\",\"initial\":[\"draft\"],"
	"     \"edges\":[{\"from\":\"draft\",\"to\":\"submitted\",\"role\":null},"
	"                {\"from\":\"submitted\",\"to\":\"draft\",\"role\":null},"
	"                {\"from\":\"submitted\",\"to\":\"approved\",\"role\":\"manager\"}]}]},"
	"  {\"name\":\"public.lines\","
	"   \"columns\":[{\"name\":\"invoice\",\"type\":\"text\",\"nullable\":false},"
	"               {\"name\":\"n\",\"type\":\"integer\",\"nullable\":false},"
	"               {\"name\":\"amount\",\"type\":\"numeric\",\"nullable\":true}],"
	"   \"primary_key\":[\"invoice\",\"n\"],\"merge\":{},\"transitions\":[]}],"
	" \"roles\":[\"rep\",\"rep_alice\"]}";

typedef struct fixture
{
	char		dir[256];
	char		path[300];
	ofs_db	   *db;
} fixture;

static inline json_t *
fixture_json(const char *text)
{
	json_error_t err;
	json_t	   *j = json_loads(text, JSON_DECODE_ANY, &err);

	if (j == NULL)
	{
		fprintf(stderr, "bad JSON in a test: %s at line %d: %s\n", err.text, err.line, text);
		abort();
	}
	return j;
}

/* fixture_open: a temporary directory and a database in it (schema installed unless bare). */
static inline void
fixture_open(fixture *f, const char *name, int bare)
{
	json_t	   *schema;
	ofs_rc		rc;

	snprintf(f->dir, sizeof(f->dir), "%s/ofs-%s-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
	if (mkdtemp(f->dir) == NULL)
	{
		perror("mkdtemp");
		exit(2);
	}
	snprintf(f->path, sizeof(f->path), "%s/device.db", f->dir);
	rc = ofs_open(f->path, &f->db);
	if (rc != OFS_OK)
	{
		fprintf(stderr, "ofs_open %s: %s\n", f->path, ofs_errmsg(f->db));
		exit(2);
	}
	if (bare)
		return;
	schema = fixture_json(fixture_schema_text);
	rc = ofs_install_schema(f->db, schema);
	json_decref(schema);
	if (rc != OFS_OK)
	{
		fprintf(stderr, "ofs_install_schema: %s\n", ofs_errmsg(f->db));
		exit(2);
	}
}

/* fixture_reopen: ofs_close and ofs_open the same file. */
static inline void
fixture_reopen(fixture *f)
{
	ofs_close(f->db);
	if (ofs_open(f->path, &f->db) != OFS_OK)
	{
		fprintf(stderr, "ofs_open again: %s\n", ofs_errmsg(f->db));
		exit(2);
	}
}

/* fixture_close: close the database and remove the directory and everything in it. */
static inline void
fixture_close(fixture *f)
{
	DIR		   *d;
	struct dirent *e;
	char		p[600];

	ofs_close(f->db);
	f->db = NULL;
	d = opendir(f->dir);
	if (d)
	{
		while ((e = readdir(d)) != NULL)
		{
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	if (rmdir(f->dir) != 0)
		perror("rmdir");
}

/* sql_exec: run SQL on a connection; the SQLite result code, the message in *errmsg (sqlite3_free it). */
static inline int
sql_exec(sqlite3 *s, const char *sql, char **errmsg)
{
	char	   *msg = NULL;
	int			rc = sqlite3_exec(s, sql, NULL, NULL, &msg);

	if (errmsg)
		*errmsg = msg;
	else
		sqlite3_free(msg);
	return rc;
}

/* The first column of the first row as an integer (-999 when there is no row or on error). */
static inline int64_t
sql_int(sqlite3 *s, const char *sql)
{
	sqlite3_stmt *st;
	int64_t		v = -999;

	if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
	{
		diag("query failed: %s: %s", sql, sqlite3_errmsg(s));
		return v;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The first column of the first row as text, into buf ("(null)" for NULL, "(none)" without a row). */
static inline const char *
sql_text(sqlite3 *s, const char *sql, char *buf, size_t size)
{
	sqlite3_stmt *st;

	snprintf(buf, size, "(none)");
	if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
	{
		diag("query failed: %s: %s", sql, sqlite3_errmsg(s));
		snprintf(buf, size, "(error)");
		return buf;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(buf, size, "%s", sqlite3_column_type(st, 0) == SQLITE_NULL ? "(null)"
				 : (const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

/* The first column of the first row as malloc'd text, whatever its length ("(none)" without a row or on error). */
static inline char *
sql_strdup(sqlite3 *s, const char *sql)
{
	sqlite3_stmt *st;
	char	   *v = NULL;

	if (sqlite3_prepare_v2(s, sql, -1, &st, NULL) != SQLITE_OK)
	{
		diag("query failed: %s: %s", sql, sqlite3_errmsg(s));
		return strdup("(error)");
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = strdup(sqlite3_column_type(st, 0) == SQLITE_NULL ? "(null)" : (const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v ? v : strdup("(none)");
}

/* The outbox as one text: every intent, in order (to compare before and after). */
static inline char *
outbox_snapshot(ofs_db *db)
{
	return sql_strdup(ofs_sqlite(db),
					  "SELECT coalesce(group_concat(x, char(10)), '') FROM (SELECT seq || '|' || op_id || '|' || tbl"
					  " || '|' || op || '|' || pk || '|' || coalesce(data, '-') || '|' || coalesce(base, '-')"
					  " || '|' || hlc AS x FROM _ofs_outbox ORDER BY seq)");
}

#endif							/* OFS_FIXTURE_H */

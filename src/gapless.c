/*
 * gapless.c: gap-free sequences for legal document numbering.
 *
 * A native sequence hands out numbers outside transactions, so a rollback
 * leaves a gap.  Here a number is an UPDATE of a counter row: the row lock
 * serializes the callers of one sequence and period through commit, and a
 * rollback (of the transaction or of a savepoint) undoes the increment with
 * everything else.  The committed numbers are therefore exactly
 * start..N for each period, whatever rolls back, crashes or interleaves.
 *
 * The price is that a caller holds the counter's row lock from the moment it
 * takes a number until it commits; taking the number as late as possible in
 * the transaction keeps that window to the commit itself.  Sequences never
 * share a counter row, so callers of different sequences never wait for each
 * other.
 */
#include "ofs.h"
#include "internal_tables.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
#include "access/table.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(ofs_create_gapless_sequence);
PG_FUNCTION_INFO_V1(ofs_drop_gapless_sequence);
PG_FUNCTION_INFO_V1(ofs_gapless_nextval);
PG_FUNCTION_INFO_V1(ofs_gapless_nextval_at);
PG_FUNCTION_INFO_V1(ofs_gapless_next);
PG_FUNCTION_INFO_V1(ofs_gapless_next_at);

/* The widest {n:W}: a bigint has at most 19 digits. */
#define GAPLESS_MAX_WIDTH 19

typedef enum GaplessTokenKind
{
	GT_LITERAL,
	GT_YEAR4,
	GT_YEAR2,
	GT_MONTH,
	GT_DAY,
	GT_NUMBER
} GaplessTokenKind;

typedef enum GaplessReset
{
	GR_NEVER,
	GR_YEARLY,
	GR_MONTHLY,
	GR_DAILY
} GaplessReset;

/*
 * GaplessFormatInfo is what parsing a format tells the caller: which date
 * parts it shows, so that create can refuse a reset whose periods would
 * print the same text twice.
 */
typedef struct GaplessFormatInfo
{
	bool		has_number;
	bool		has_year;
	bool		has_month;
	bool		has_day;
} GaplessFormatInfo;

/* A number taken from a sequence, with what is needed to format it. */
typedef struct GaplessTaken
{
	int64		value;
	char	   *formatted;
} GaplessTaken;

static SPIPlanPtr plan_lookup = NULL;
static SPIPlanPtr plan_advance = NULL;
static SPIPlanPtr plan_first = NULL;

/*
 * GaplessWalkFormat parses a format string.  With out == NULL it only
 * validates (raising an error that names the position); with out it appends
 * the formatted number for the given date and value.
 */
static void
GaplessWalkFormat(const char *fmt, GaplessFormatInfo *info,
				  StringInfo out, const struct pg_tm *tm, int64 value)
{
	const char *p = fmt;

	memset(info, 0, sizeof(*info));
	while (*p)
	{
		const char *close;
		size_t		len;
		int			pos = (int) (p - fmt) + 1;

		if (p[0] == '{' && p[1] == '{')
		{
			if (out)
				appendStringInfoChar(out, '{');
			p += 2;
			continue;
		}
		if (p[0] == '}' && p[1] == '}')
		{
			if (out)
				appendStringInfoChar(out, '}');
			p += 2;
			continue;
		}
		if (*p == '}')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid gap-free sequence format \"%s\"", fmt),
					 errdetail("Unmatched \"}\" at position %d.", pos),
					 errhint("Write \"}}\" for a literal brace.")));
		if (*p != '{')
		{
			if (out)
				appendStringInfoChar(out, *p);
			p++;
			continue;
		}

		close = strchr(p, '}');
		if (close == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid gap-free sequence format \"%s\"", fmt),
					 errdetail("Unterminated token at position %d.", pos),
					 errhint("Tokens are {YYYY} {YY} {MM} {DD} {n} and {n:W}; write \"{{\" for a literal brace.")));
		len = close - p - 1;

		if (len == 4 && strncmp(p + 1, "YYYY", 4) == 0)
		{
			info->has_year = true;
			if (out)
				appendStringInfo(out, "%04d", tm->tm_year);
		}
		else if (len == 2 && strncmp(p + 1, "YY", 2) == 0)
		{
			info->has_year = true;
			if (out)
				appendStringInfo(out, "%02d", tm->tm_year % 100);
		}
		else if (len == 2 && strncmp(p + 1, "MM", 2) == 0)
		{
			info->has_month = true;
			if (out)
				appendStringInfo(out, "%02d", tm->tm_mon);
		}
		else if (len == 2 && strncmp(p + 1, "DD", 2) == 0)
		{
			info->has_day = true;
			if (out)
				appendStringInfo(out, "%02d", tm->tm_mday);
		}
		else if (len == 1 && p[1] == 'n')
		{
			info->has_number = true;
			if (out)
				appendStringInfo(out, INT64_FORMAT, value);
		}
		else if (len >= 3 && strncmp(p + 1, "n:", 2) == 0)
		{
			int			width = 0;
			const char *d;

			for (d = p + 3; d < close; d++)
			{
				if (*d < '0' || *d > '9' || width > GAPLESS_MAX_WIDTH)
				{
					width = -1;
					break;
				}
				width = width * 10 + (*d - '0');
			}
			if (width < 1 || width > GAPLESS_MAX_WIDTH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid width in gap-free sequence format \"%s\"", fmt),
						 errdetail("The token \"%.*s\" at position %d has a width outside 1..%d.",
								   (int) len + 2, p, pos, GAPLESS_MAX_WIDTH),
						 errhint("Write {n:W} with W between 1 and %d, e.g. {n:5}.",
								 GAPLESS_MAX_WIDTH)));
			info->has_number = true;
			if (out)
			{
				char		buf[32];

				snprintf(buf, sizeof(buf), "%0*" INT64_MODIFIER "d", width, value);
				appendStringInfoString(out, buf);
			}
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown token \"%.*s\" in gap-free sequence format \"%s\"",
							(int) len + 2, p, fmt),
					 errdetail("The token starts at position %d.", pos),
					 errhint("Tokens are {YYYY} {YY} {MM} {DD} {n} and {n:W}; write \"{{\" for a literal brace.")));
		p = close + 1;
	}
}

static GaplessReset
GaplessParseReset(const char *reset)
{
	if (strcmp(reset, "never") == 0)
		return GR_NEVER;
	if (strcmp(reset, "yearly") == 0)
		return GR_YEARLY;
	if (strcmp(reset, "monthly") == 0)
		return GR_MONTHLY;
	if (strcmp(reset, "daily") == 0)
		return GR_DAILY;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid reset \"%s\" for a gap-free sequence", reset),
			 errdetail("The reset decides when the counter starts again."),
			 errhint("Use never, yearly, monthly or daily.")));
	return GR_NEVER;			/* keep compiler quiet */
}

/*
 * GaplessPeriod names the period a timestamp falls in, as text that sorts in
 * time order: "all", "2026", "2026-04" or "2026-04-17".
 */
static char *
GaplessPeriod(GaplessReset reset, const struct pg_tm *tm)
{
	switch (reset)
	{
		case GR_NEVER:
			return pstrdup("all");
		case GR_YEARLY:
			return psprintf("%04d", tm->tm_year);
		case GR_MONTHLY:
			return psprintf("%04d-%02d", tm->tm_year, tm->tm_mon);
		case GR_DAILY:
			return psprintf("%04d-%02d-%02d", tm->tm_year, tm->tm_mon, tm->tm_mday);
	}
	return NULL;				/* keep compiler quiet */
}

static pg_tz *
GaplessTimeZone(const char *name)
{
	pg_tz	   *tz = pg_tzset(name);

	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" not recognized", name),
				 errdetail("The time zone of a gap-free sequence decides where its periods begin."),
				 errhint("Use a name from pg_timezone_names, such as UTC or Europe/Madrid.")));
	return tz;
}

static void
GaplessPrepare(void)
{
	if (plan_lookup == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan_lookup = SPI_prepare(
			"SELECT id, format, reset, time_zone, start_value"
			"  FROM ofs.gapless_sequence_config WHERE name = $1",
			1, types);
		if (plan_lookup == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan_lookup);
	}
	if (plan_advance == NULL)
	{
		Oid			types[2] = {INT8OID, TEXTOID};

		plan_advance = SPI_prepare(
			"UPDATE ofs.gapless_counter SET last_value = last_value + 1"
			" WHERE sequence_id = $1 AND period = $2"
			" RETURNING last_value",
			2, types);
		if (plan_advance == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan_advance);
	}
	if (plan_first == NULL)
	{
		Oid			types[3] = {INT8OID, TEXTOID, INT8OID};

		/* Two first callers of a period: the second waits and increments. */
		plan_first = SPI_prepare(
			"INSERT INTO ofs.gapless_counter AS k (sequence_id, period, last_value)"
			" VALUES ($1, $2, $3)"
			" ON CONFLICT (sequence_id, period)"
			" DO UPDATE SET last_value = k.last_value + 1"
			" RETURNING last_value",
			3, types);
		if (plan_first == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan_first);
	}
}

/*
 * GaplessTake takes the next number of a sequence for the period containing
 * "at", records it in the audit, and returns it with its formatted text
 * (allocated in the caller's memory context).
 */
static GaplessTaken
GaplessTake(text *name_t, TimestampTz at)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *name = text_to_cstring(name_t);
	Datum		args[6];
	bool		isnull;
	int			rc;
	int64		seq_id;
	int64		start_value;
	char	   *format;
	char	   *period;
	GaplessReset reset;
	GaplessFormatInfo info;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	StringInfoData buf;
	GaplessTaken taken;

	SPI_connect();
	GaplessPrepare();

	args[0] = PointerGetDatum(name_t);
	rc = SPI_execute_plan(plan_lookup, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("gap-free sequence \"%s\" does not exist", name),
				 errhint("Create it with ofs.create_gapless_sequence, or look at ofs.gapless_sequences.")));

	seq_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	format = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	reset = GaplessParseReset(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
	if (timestamp2tm(at, &tzoff, &tm, &fsec, NULL,
					 GaplessTimeZone(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4))) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for gap-free sequence \"%s\"", name)));
	start_value = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	period = GaplessPeriod(reset, &tm);

	/*
	 * The row lock taken here is held until commit.  A plain UPDATE is the
	 * common, cheaper path; only the first number of a period inserts.
	 */
	args[0] = Int64GetDatum(seq_id);
	args[1] = CStringGetTextDatum(period);
	args[2] = Int64GetDatum(start_value);
	rc = SPI_execute_plan(plan_advance, args, NULL, false, 0);
	if (rc == SPI_OK_UPDATE_RETURNING && SPI_processed == 0)
		rc = SPI_execute_plan(plan_first, args, NULL, false, 0);
	if ((rc != SPI_OK_UPDATE_RETURNING && rc != SPI_OK_INSERT_RETURNING) ||
		SPI_processed != 1)
		elog(ERROR, "advancing gap-free sequence \"%s\" failed: %s",
			 name, SPI_result_code_string(rc));
	taken.value = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	initStringInfo(&buf);
	GaplessWalkFormat(format, &info, &buf, &tm, taken.value);

	/*
	 * The audit row is written directly (internal_tables.c): it is written
	 * while the counter's lock is held, so every microsecond here is one
	 * every other caller of this sequence waits for.
	 */
	{
		Relation	audit = OfsOpenOwnTable(OFS_GAPLESS_ISSUED, RowExclusiveLock);
		Datum		values[Natts_gapless_issued];
		bool		nulls[Natts_gapless_issued];

		memset(nulls, false, sizeof(nulls));
		values[Anum_gapless_issued_sequence_name - 1] = PointerGetDatum(name_t);
		values[Anum_gapless_issued_sequence_id - 1] = Int64GetDatum(seq_id);
		values[Anum_gapless_issued_period - 1] = CStringGetTextDatum(period);
		values[Anum_gapless_issued_value - 1] = Int64GetDatum(taken.value);
		values[Anum_gapless_issued_formatted - 1] = CStringGetTextDatum(buf.data);
		values[Anum_gapless_issued_issued_at - 1] = TimestampTzGetDatum(at);
		values[Anum_gapless_issued_xid - 1] = FullTransactionIdGetDatum(GetTopFullTransactionId());
		OfsInsertDirect(audit, values, nulls);
		table_close(audit, RowExclusiveLock);
	}

	taken.formatted = MemoryContextStrdup(caller, buf.data);
	SPI_finish();
	return taken;
}

/* gapless_nextval takes a number for the period of the transaction timestamp. */
Datum
ofs_gapless_nextval(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(GaplessTake(PG_GETARG_TEXT_PP(0), GetCurrentTransactionStartTimestamp()).value);
}

/* gapless_nextval_at takes a number for the period containing a given timestamp. */
Datum
ofs_gapless_nextval_at(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(GaplessTake(PG_GETARG_TEXT_PP(0), PG_GETARG_TIMESTAMPTZ(1)).value);
}

/* gapless_next is gapless_nextval returning the formatted number. */
Datum
ofs_gapless_next(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GaplessTake(PG_GETARG_TEXT_PP(0), GetCurrentTransactionStartTimestamp()).formatted));
}

/* gapless_next_at is gapless_nextval_at returning the formatted number. */
Datum
ofs_gapless_next_at(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GaplessTake(PG_GETARG_TEXT_PP(0), PG_GETARG_TIMESTAMPTZ(1)).formatted));
}

static char *
GaplessRequiredArg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of a gap-free sequence must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* create_gapless_sequence validates a definition and stores it. */
Datum
ofs_create_gapless_sequence(PG_FUNCTION_ARGS)
{
	char	   *name = GaplessRequiredArg(fcinfo, 0, "the name");
	char	   *format = GaplessRequiredArg(fcinfo, 1, "the format");
	char	   *reset_s = GaplessRequiredArg(fcinfo, 2, "the reset");
	char	   *tzname = GaplessRequiredArg(fcinfo, 4, "the time zone");
	int64		start;
	GaplessReset reset;
	GaplessFormatInfo info;
	Datum		args[5];
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID};
	int			rc;

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the start of a gap-free sequence must not be null")));
	start = PG_GETARG_INT64(3);

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the name of a gap-free sequence must not be empty")));
	if (start < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start value " INT64_FORMAT " of gap-free sequence \"%s\" is negative", start, name),
				 errdetail("Document numbers count up from zero or more."),
				 errhint("Use a start of 0 or more; the default is 1.")));

	reset = GaplessParseReset(reset_s);
	GaplessWalkFormat(format, &info, NULL, NULL, 0);
	if (!info.has_number)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gap-free sequence format \"%s\" has no number", format),
				 errdetail("Every formatted number would be the same text."),
				 errhint("Add {n} or {n:W}, e.g. 'INV-{YYYY}-{n:5}'.")));
	if ((reset >= GR_YEARLY && !info.has_year) ||
		(reset >= GR_MONTHLY && !info.has_month) ||
		(reset >= GR_DAILY && !info.has_day))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("gap-free sequence format \"%s\" does not show the %s period it resets in",
						format, reset_s),
				 errdetail("Numbers of different periods would print as the same text."),
				 errhint("A yearly reset needs {YYYY} or {YY}, a monthly one also {MM}, a daily one also {DD}.")));
	GaplessTimeZone(tzname);

	SPI_connect();
	args[0] = CStringGetTextDatum(name);
	rc = SPI_execute_with_args("SELECT 1 FROM ofs.gapless_sequence_config WHERE name = $1",
							   1, types, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("gap-free sequence \"%s\" already exists", name),
				 errhint("Choose another name, or drop the existing one with ofs.drop_gapless_sequence.")));

	args[1] = CStringGetTextDatum(format);
	args[2] = CStringGetTextDatum(reset_s);
	args[3] = Int64GetDatum(start);
	args[4] = CStringGetTextDatum(tzname);
	rc = SPI_execute_with_args("INSERT INTO ofs.gapless_sequence_config"
							   " (name, format, reset, start_value, time_zone)"
							   " VALUES ($1, $2, $3, $4, $5)",
							   5, types, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	PG_RETURN_VOID();
}

/* drop_gapless_sequence removes a definition and its counters. */
Datum
ofs_drop_gapless_sequence(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Datum		args[1];
	Oid			types[1] = {TEXTOID};
	int			rc;

	SPI_connect();
	args[0] = PG_GETARG_DATUM(0);
	rc = SPI_execute_with_args("DELETE FROM ofs.gapless_sequence_config WHERE name = $1",
							   1, types, args, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("gap-free sequence \"%s\" does not exist", name),
				 errhint("Look at ofs.gapless_sequences for the existing ones.")));
	SPI_finish();
	PG_RETURN_VOID();
}

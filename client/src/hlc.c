/*
 * hlc.c: the device's clock and reconnection backoff.
 *
 * The hybrid logical clock has the origin's layout: milliseconds since 1970
 * shifted left 16 bits, plus a counter, so that the origin can compare a
 * device's intents with its own versions (last writer wins).  It never
 * goes backwards, even when the wall clock does: the last value is kept in
 * the database.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int64_t
ofs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ofs_hlc_next(int64_t last, int64_t now_ms)
{
	int64_t		wall = now_ms << 16;

	if (last >= INT64_MAX)		/* only a corrupted clock gets here; never overflow */
		return INT64_MAX;
	return wall > last ? wall : last + 1;
}

int
ofs_hlc_valid(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= OFS_HLC_MAX;
}

/*
 * ofs_hlc_save writes the clock to _ofs_meta.  Several connections (an
 * ofs-cli live and an ofs-cli exec, say) share the file: the larger value
 * stays, so that none of them moves the stored clock back.
 */
ofs_rc
ofs_hlc_save(ofs_db *db)
{
	int			rc;

	/* Stored already: the stored clock only grows. */
	if (db->hlc_last <= 0 || db->hlc_last == db->hlc_saved)
		return OFS_OK;
	if (db->hlc_save == NULL &&
		sqlite3_prepare_v3(db->sql, "INSERT INTO _ofs_meta (key, value) VALUES ('hlc', ?1)"
						   " ON CONFLICT (key) DO UPDATE SET value = CASE"
						   " WHEN CAST(value AS INTEGER) > CAST(excluded.value AS INTEGER) THEN value"
						   " ELSE excluded.value END", -1, SQLITE_PREPARE_PERSISTENT, &db->hlc_save, NULL) != SQLITE_OK)
		return ofs_sqlfail(db, "storing the clock");
	sqlite3_bind_text(db->hlc_save, 1, sqlite3_mprintf("%lld", (long long) db->hlc_last), -1, sqlite3_free);
	rc = sqlite3_step(db->hlc_save);
	sqlite3_reset(db->hlc_save);
	if (rc != SQLITE_DONE)
		return ofs_sqlfail(db, "storing the clock");
	db->hlc_saved = db->hlc_last;
	return OFS_OK;
}

/*
 * ofs_hlc_observe follows a clock the origin sent (docs/PROTOCOL.md,
 * "Clocks"): the device's clock becomes at least that value, so that a
 * write made after seeing a value is stamped later than it, however far
 * behind the device's wall clock is.  Called inside the transaction that
 * applies the message, the stored clock commits with it.
 */
ofs_rc
ofs_hlc_observe(ofs_db *db, int64_t received)
{
	if (received < 0 || received > OFS_HLC_MAX)
		return ofs_fail(db, OFS_PROTOCOL, "the origin's clock %lld is out of range", (long long) received);
	if (received > db->hlc_last)
		db->hlc_last = received;
	return ofs_hlc_save(db);
}

int64_t
ofs_backoff_ms(int attempt, double r)
{
	int64_t		base = 100;
	int64_t		cap = 30000;
	int64_t		ceiling;

	if (attempt < 0)
		attempt = 0;
	ceiling = attempt >= 20 ? cap : base << attempt;
	if (ceiling > cap)
		ceiling = cap;
	if (!(r >= 0))				/* negative, or NaN */
		r = 0;
	if (r >= 1)
		r = 0.999999;
	/* "Equal jitter": half fixed, half random, so waits stay spread and bounded below. */
	return ceiling / 2 + (int64_t) ((double) (ceiling - ceiling / 2) * r);
}

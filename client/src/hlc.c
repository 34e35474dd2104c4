/*
 * hlc.c: the device's clock, operation ids and reconnection backoff.
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

	return wall > last ? wall : last + 1;
}

/* ofs_op_id: 32 hex digits, time first so that ids sort by creation. */
void
ofs_op_id(char out[33])
{
	unsigned char rnd[10];

	sqlite3_randomness(sizeof(rnd), rnd);
	snprintf(out, 33, "%012llx%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x",
			 (unsigned long long) (ofs_now_ms() & 0xffffffffffffLL),
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9]);
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

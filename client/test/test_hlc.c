/*
 * test_hlc.c: the hybrid logical clock (ofs_hlc_next) and the reconnection
 * backoff (ofs_backoff_ms).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "tap.h"
#include "internal.h"

static void
test_hlc_layout(void)
{
	int64_t		now = 1764700000123LL;	/* 2025-12-02, in ms */
	int64_t		h = ofs_hlc_next(0, now);

	is_int(h, now << 16, "a fresh clock is the wall time shifted left 16 bits");
	is_int(h >> 16, now, "its milliseconds are the wall time");
	is_int(h & 0xffff, 0, "its counter starts at 0");
	is_int(ofs_hlc_next(h, now + 1), (now + 1) << 16, "a later millisecond resets the counter");
	ok(ofs_hlc_next(0, ofs_now_ms()) >> 16 >= 1700000000000LL, "ofs_now_ms is milliseconds since 1970");
}

static void
test_hlc_monotonic(void)
{
	int64_t		now = 1764700000000LL;
	int64_t		h = ofs_hlc_next(0, now);
	int64_t		prev;
	int			i;
	int			monotonic = 1;

	/* Same millisecond: the counter grows. */
	prev = h;
	for (i = 1; i <= 1000; i++)
	{
		int64_t		n = ofs_hlc_next(prev, now);

		if (n != prev + 1)
			monotonic = 0;
		prev = n;
	}
	ok(monotonic, "within one millisecond every value is the previous plus one");
	is_int(prev >> 16, now, "1000 values in one millisecond keep its milliseconds");
	is_int(prev & 0xffff, 1000, "... and count to 1000");

	/* The counter may spill into the next millisecond's bits; it never goes back. */
	prev = h;
	for (i = 0; i < 70000; i++)
	{
		int64_t		n = ofs_hlc_next(prev, now);

		if (n <= prev)
			monotonic = 0;
		prev = n;
	}
	ok(monotonic, "70000 values in one millisecond still increase");
	ok(ofs_hlc_next(prev, now + 1) > prev, "the next millisecond after an overflowed counter is still later");

	/* The wall clock going backwards. */
	h = ofs_hlc_next(0, now);
	is_int(ofs_hlc_next(h, now - 1), h + 1, "a wall clock one ms back: last plus one");
	is_int(ofs_hlc_next(h, now - 3600 * 1000), h + 1, "a wall clock an hour back: last plus one");
	is_int(ofs_hlc_next(h, 0), h + 1, "a wall clock at 1970: last plus one");

	/* A long run with a jumping wall clock. */
	prev = 0;
	monotonic = 1;
	for (i = 0; i < 100000; i++)
	{
		int64_t		wall = now + (i % 7 == 0 ? -(i % 5000) : (i % 13));
		int64_t		n = ofs_hlc_next(prev, wall);

		if (n <= prev || n < (wall << 16))
			monotonic = 0;
		prev = n;
	}
	ok(monotonic, "with the wall clock jumping back and forth, every value is later than the last and than the wall time");

	/* A clock ahead (the origin's, from welcome.hlc) is followed. */
	h = (now + 60000) << 16;
	is_int(ofs_hlc_next(h, now), h + 1, "a last value ahead of the wall clock is followed, not reset");
}

static void
test_backoff(void)
{
	int64_t		prev_ceiling = 0;
	int			a;
	int			in_bounds = 1;
	int			grows = 1;

	ok(ofs_backoff_ms(0, 0.0) >= 50 && ofs_backoff_ms(0, 0.999) < 100, "attempt 0 waits between 50 and 100 ms");
	is_int(ofs_backoff_ms(0, 0.0), 50, "attempt 0 with r = 0: half the 100 ms ceiling");
	is_int(ofs_backoff_ms(1, 0.0), 100, "attempt 1 with r = 0: half of 200 ms");
	is_int(ofs_backoff_ms(2, 0.0), 200, "attempt 2 with r = 0: half of 400 ms");
	is_int(ofs_backoff_ms(3, 0.5), 600, "attempt 3 with r = 0.5: 400 + 200");

	for (a = 0; a < 40; a++)
	{
		int64_t		ceiling = a >= 20 ? 30000 : (100LL << a) > 30000 ? 30000 : 100LL << a;
		double		r;

		for (r = 0.0; r < 1.0; r += 0.0625)
		{
			int64_t		w = ofs_backoff_ms(a, r);

			if (w < ceiling / 2 || w >= ceiling)
			{
				in_bounds = 0;
				diag("attempt %d r %g: %lld outside [%lld, %lld)", a, r, (long long) w,
					 (long long) ceiling / 2, (long long) ceiling);
			}
		}
		if (ofs_backoff_ms(a, 0.999999) >= ceiling || ofs_backoff_ms(a, nextafter(1.0, 0.0)) >= ceiling)
			in_bounds = 0;
		if (ceiling < 30000 && ceiling != 2 * prev_ceiling && a > 0)
			grows = 0;
		if (ofs_backoff_ms(a, 0.0) != ceiling / 2)
			grows = 0;
		prev_ceiling = ceiling;
	}
	ok(in_bounds, "every wait is within [ceiling/2, ceiling)");
	ok(grows, "the ceiling doubles with each attempt until the cap");
	ok(ofs_backoff_ms(8, 0.0) == 12800 && ofs_backoff_ms(9, 0.0) == 15000, "the ceiling reaches its 30 s cap at attempt 9");
	ok(ofs_backoff_ms(9, 0.999999) < 30000 && ofs_backoff_ms(9, 0.999999) >= 29990, "the largest wait is just under 30 s");
	ok(ofs_backoff_ms(19, 0.5) == 22500 && ofs_backoff_ms(20, 0.5) == 22500 && ofs_backoff_ms(63, 0.5) == 22500 &&
	   ofs_backoff_ms(64, 0.5) == 22500 && ofs_backoff_ms(1000, 0.5) == 22500 && ofs_backoff_ms(INT_MAX, 0.5) == 22500,
	   "huge attempts (19, 20, 63, 64, 1000, INT_MAX) stay capped");

	is_int(ofs_backoff_ms(-1, 0.0), 50, "a negative attempt counts as attempt 0");
	is_int(ofs_backoff_ms(INT_MIN, 0.0), 50, "INT_MIN counts as attempt 0");
	ok(ofs_backoff_ms(-5, 0.999) < 100, "a negative attempt stays under attempt 0's ceiling");

	{
		const double odd[] = {-0.5, -1e300, -DBL_MAX, 1.0, 1.5, 1e300, DBL_MAX, INFINITY, -INFINITY, NAN, -NAN,
		DBL_MIN, -DBL_MIN};
		size_t		i;

		for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		{
			int64_t		w0 = ofs_backoff_ms(0, odd[i]);
			int64_t		w9 = ofs_backoff_ms(9, odd[i]);

			ok(w0 >= 50 && w0 < 100 && w9 >= 15000 && w9 < 30000,
			   "r = %g (outside [0, 1)) still gives a wait within bounds (%lld, %lld)", odd[i],
			   (long long) w0, (long long) w9);
		}
	}
}

int
main(void)
{
	test_hlc_layout();
	test_hlc_monotonic();
	test_backoff();
	return done_testing();
}

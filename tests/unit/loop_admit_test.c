// SPDX-License-Identifier: MIT
/*
 * --max-handshakes-per-second's bucket (loop/admit.c hs_rate_*): the worker's share, the
 * 100 ms burst, the pause it asks for and that an idle bucket refills only to full.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "admit.h"

#define MS 1000000ull

static void interval_split(void **state)
{
	assert_int_equal(hs_rate_interval(0, 4), 0); /* off */
	assert_int_equal(hs_rate_interval(20, 1), 50 * MS);
	assert_int_equal(hs_rate_interval(20, 4), 200 * MS); /* 5/s in each of 4 workers */
	assert_int_equal(hs_rate_interval(1000, 0), 1 * MS);
}

static void burst_then_pause(void **state)
{
	struct hs_rate r = { 0 };
	uint64_t t = 1000 * MS, iv = hs_rate_interval(20, 1);

	/* 100 ms of a 50 ms interval: two at once, then the third waits. */
	assert_int_equal(hs_rate_take(&r, t, iv), 0);
	assert_int_equal(hs_rate_take(&r, t, iv), 50 * MS);
	assert_int_equal(hs_rate_wait(&r, t + 20 * MS, iv), 30 * MS);
	assert_int_equal(hs_rate_wait(&r, t + 50 * MS, iv), 0);
	/* Sockets taken while paused move the bucket on: the pause grows. */
	assert_int_equal(hs_rate_take(&r, t + 50 * MS, iv), 50 * MS);
	assert_int_equal(hs_rate_take(&r, t + 50 * MS, iv), 100 * MS);
	/* Steady state: one per interval. */
	assert_int_equal(hs_rate_wait(&r, t + 150 * MS, iv), 0);
	assert_int_equal(hs_rate_take(&r, t + 150 * MS, iv), 50 * MS);
}

static void idle_refills_to_full(void **state)
{
	struct hs_rate r = { 0 };
	uint64_t t = 1000 * MS, iv = hs_rate_interval(20, 1);

	hs_rate_take(&r, t, iv);
	/* An hour idle holds no more than the burst. */
	t += 3600 * 1000 * MS;
	assert_int_equal(hs_rate_take(&r, t, iv), 0);
	assert_int_equal(hs_rate_take(&r, t, iv), 50 * MS);
}

static void slow_rate_one_at_a_time(void **state)
{
	struct hs_rate r = { 0 };
	uint64_t t = 1000 * MS, iv = hs_rate_interval(1, 2); /* one per 2 s per worker */

	/* An interval longer than the burst: the bucket still holds one. */
	assert_int_equal(hs_rate_take(&r, t, iv), 2000 * MS);
	assert_int_equal(hs_rate_wait(&r, t + 1999 * MS, iv), 1 * MS);
	assert_int_equal(hs_rate_wait(&r, t + 2000 * MS, iv), 0);
}

static void unlimited(void **state)
{
	struct hs_rate r = { 0 };

	for (int i = 0; i < 1000; i++)
		assert_int_equal(hs_rate_take(&r, 5, 0), 0);
	assert_int_equal(hs_rate_wait(&r, 5, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(interval_split),
		cmocka_unit_test(burst_then_pause),
		cmocka_unit_test(idle_refills_to_full),
		cmocka_unit_test(slow_rate_one_at_a_time),
		cmocka_unit_test(unlimited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: MIT
/*
 * libktls's slab for the TLS 1.3 secrets kept for rekey (conn.c): slots in DONTDUMP |
 * WIPEONFORK pages, zeroed when handed out, a free list per thread (no lock on the
 * install path), a dead thread's free slots reused rather than stranded, and slots moving
 * between threads without a race (run this under -DKTLSD_TSAN=ON too).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../ktls/ktls_internal.h" /* white box: the slab is internal */
#include "smaps_util.h"

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void test_slot_dontdump_zeroed(void **state)
{
	struct ktls_secret_slot *s = ktls_slot_alloc(), *again;

	assert_non_null(s);
	assert_true(smaps_has_flag(s, "dd"));
	assert_true(smaps_has_flag(s, "wf"));
	assert_true(all_zero(s, sizeof(*s)));
	memset(s->tx, 0xa5, sizeof(s->tx));
	memset(s->rx, 0x5a, sizeof(s->rx));
	ktls_slot_free(s);
	/* the same thread gets its last freed slot back, wiped */
	again = ktls_slot_alloc();
	assert_ptr_equal(again, s);
	assert_true(all_zero(again, sizeof(*again)));
	ktls_slot_free(again);
	ktls_slot_free(NULL);
}

/* --- per-thread lists ------------------------------------------------------------------ */

static pthread_barrier_t bar;
static struct ktls_secret_slot *freed_by_a;

static void *free_one_then_wait(void *arg)
{
	freed_by_a = ktls_slot_alloc();
	ktls_slot_free(freed_by_a);
	pthread_barrier_wait(&bar); /* freed */
	pthread_barrier_wait(&bar); /* the main thread allocated: exit */
	return NULL;
}

/* A slot another live thread freed is on that thread's list, not handed out here. */
static void test_free_list_per_thread(void **state)
{
	struct ktls_secret_slot *mine;
	pthread_t a;

	assert_int_equal(pthread_barrier_init(&bar, NULL, 2), 0);
	assert_int_equal(pthread_create(&a, NULL, free_one_then_wait, NULL), 0);
	pthread_barrier_wait(&bar);
	assert_non_null(freed_by_a);
	mine = ktls_slot_alloc();
	assert_non_null(mine);
	assert_ptr_not_equal(mine, freed_by_a);
	pthread_barrier_wait(&bar);
	assert_int_equal(pthread_join(a, NULL), 0);
	pthread_barrier_destroy(&bar);
	ktls_slot_free(mine);
}

#define CHURN 200 /* more than one page of slots */

static struct ktls_secret_slot *churned[CHURN];

static void *alloc_all_free_all(void *arg)
{
	bool *ok = arg;

	*ok = true;
	for (int i = 0; i < CHURN; i++)
		*ok &= (churned[i] = ktls_slot_alloc()) != NULL;
	for (int i = 0; i < CHURN; i++)
		ktls_slot_free(churned[i]);
	return NULL;
}

static bool was_churned(const struct ktls_secret_slot *s)
{
	for (int i = 0; i < CHURN; i++)
		if (churned[i] == s)
			return true;
	return s == freed_by_a; /* an earlier test's thread left this one behind */
}

static void *alloc_from_orphans(void *arg)
{
	struct ktls_secret_slot *got[CHURN];
	bool *ok = arg;

	*ok = true;
	for (int i = 0; i < CHURN; i++) {
		got[i] = ktls_slot_alloc();
		if (!got[i] || !was_churned(got[i]))
			*ok = false;
	}
	for (int i = 0; i < CHURN; i++)
		ktls_slot_free(got[i]);
	return NULL;
}

/* A thread's free slots outlive it: the next thread with an empty list takes them. */
static void test_thread_exit_slots_reused(void **state)
{
	pthread_t t;
	bool ok = false;

	assert_int_equal(pthread_create(&t, NULL, alloc_all_free_all, &ok), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(ok);
	assert_int_equal(pthread_create(&t, NULL, alloc_from_orphans, &ok), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(ok); /* no new page: every slot came from the dead thread */
}

/* --- concurrency (the point of a TSan run) ---------------------------------------------- */

#define NTHREADS 4
#define ROUNDS	 2000
#define HELD	 8

/* One mailbox per thread: slots another thread allocated and this one must free. */
static struct mailbox {
	pthread_mutex_t lock;
	struct ktls_secret_slot *slot[HELD];
	int n;
} box[NTHREADS];

static void *churn(void *arg)
{
	int me = (int)(intptr_t)arg, next = (me + 1) % NTHREADS;
	struct ktls_secret_slot *held[HELD];
	bool ok = true;

	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < HELD; i++) {
			held[i] = ktls_slot_alloc();
			if (!held[i])
				return (void *)0;
			ok &= all_zero(held[i], sizeof(*held[i]));
			memset(held[i]->tx, me + 1, sizeof(held[i]->tx));
		}
		for (int i = 0; i < HELD; i++) /* nobody else was handed our slots */
			ok &= held[i]->tx[0] == me + 1 &&
			      held[i]->tx[KTLS_SECRET_MAX - 1] == me + 1;
		/* half freed here, half by the next thread */
		for (int i = 0; i < HELD / 2; i++)
			ktls_slot_free(held[i]);
		pthread_mutex_lock(&box[next].lock);
		for (int i = HELD / 2; i < HELD; i++) {
			if (box[next].n < HELD)
				box[next].slot[box[next].n++] = held[i];
			else
				ktls_slot_free(held[i]);
		}
		pthread_mutex_unlock(&box[next].lock);
		pthread_mutex_lock(&box[me].lock);
		while (box[me].n)
			ktls_slot_free(box[me].slot[--box[me].n]);
		pthread_mutex_unlock(&box[me].lock);
	}
	return (void *)(intptr_t)ok;
}

static void test_threads_share_nothing(void **state)
{
	pthread_t t[NTHREADS];
	void *ok;

	for (int i = 0; i < NTHREADS; i++) {
		pthread_mutex_init(&box[i].lock, NULL);
		box[i].n = 0;
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(intptr_t)i), 0);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(t[i], &ok), 0);
		assert_true(ok);
	}
	for (int i = 0; i < NTHREADS; i++) {
		while (box[i].n)
			ktls_slot_free(box[i].slot[--box[i].n]);
		pthread_mutex_destroy(&box[i].lock);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot_dontdump_zeroed),
		cmocka_unit_test(test_free_list_per_thread),
		cmocka_unit_test(test_thread_exit_slots_reused),
		cmocka_unit_test(test_threads_share_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

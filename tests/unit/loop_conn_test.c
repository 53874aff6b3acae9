// SPDX-License-Identifier: MIT
/*
 * conn_fail cancels everything a connection has in flight, whatever the op: by user_data
 * for ops the connection's mask names, by fd for a relay op beyond it. The ops here poll
 * pipes, which shutdown() cannot wake: only the cancels end them. And the kTLS relay's
 * pipe pool hands out only empty pipes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker.h"

#define OP_WIDE 70 /* a relay op the 64-bit mask cannot name */

/* Completions for c until none comes for 1 s: how many, and whether all were cancelled. */
static unsigned reap(struct worker *w, struct conn *c, bool *all_cancelled)
{
	struct __kernel_timespec ts = { .tv_sec = 1 };
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	*all_cancelled = true;
	io_uring_submit(&w->ring);
	while (io_uring_wait_cqe_timeout(&w->ring, &cqe, &ts) == 0) {
		if (ring_ud_op(cqe->user_data) != OP_IGNORE) {
			assert_int_equal(ring_ud_idx(cqe->user_data), c->idx);
			*all_cancelled &= cqe->res == -ECANCELED;
			c->pending--;
			n++;
		}
		io_uring_cqe_seen(&w->ring, cqe);
	}
	return n;
}

static void fail_cancels(bool wide)
{
	struct worker w = { 0 };
	int a[2], b[2];
	bool cancelled;
	struct conn *c;

	assert_int_equal(io_uring_queue_init(64, &w.ring, 0), 0);
	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	c = conn_new(&w);
	assert_non_null(c);
	c->tfd = a[0];
	c->pfd = b[0];
	conn_poll(&w, c, OP_HS_POLL, a[0], POLLIN);
	conn_poll(&w, c, OP_RELAY, b[0], POLLIN);
	conn_poll(&w, c, OP_RELAY + 1, a[0], POLLIN);
	conn_poll(&w, c, OP_RELAY + 1, b[0], POLLIN); /* the same op twice: ALL takes both */
	if (wide)
		conn_poll(&w, c, OP_WIDE, b[0], POLLIN);
	assert_int_equal(reap(&w, c, &cancelled), 0); /* nothing ends by itself */

	conn_fail(&w, c, "test %d", 1);
	assert_int_equal(reap(&w, c, &cancelled), wide ? 5 : 4);
	assert_true(cancelled);
	assert_int_equal(c->pending, 0);

	free(c->reason);
	w.slots[c->idx] = NULL;
	free(c);
	free(w.slots);
	free(w.free_idx);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	io_uring_queue_exit(&w.ring);
}

static void test_fail_cancels_by_user_data(void **state)
{
	fail_cancels(false);
}

static void test_fail_cancels_wide_op_by_fd(void **state)
{
	fail_cancels(true);
}

/*
 * The pipe pool: an empty pipe goes back and is handed out again; one with bytes in it is
 * closed, even where the relay's count says empty (another connection would read them).
 */
static void test_pipe_pool(void **state)
{
	struct worker w = { 0 };
	struct dir d = { .pipe = { -1, -1 } };
	int r0, w0;

	assert_int_equal(conn_pipe_get(&w, &d), 0);
	assert_true(d.pipe[0] >= 0 && d.pipe_sz > 0);
	r0 = d.pipe[0];
	w0 = d.pipe[1];
	conn_pipe_put(&w, &d);
	assert_int_equal(d.pipe[0], -1);
	assert_int_equal(w.n_pipes, 1);
	assert_int_equal(conn_pipe_get(&w, &d), 0);
	assert_int_equal(d.pipe[0], r0); /* the pooled one */
	assert_int_equal(w.n_pipes, 0);

	assert_int_equal(write(w0, "x", 1), 1); /* bytes the count missed */
	conn_pipe_put(&w, &d);
	assert_int_equal(w.n_pipes, 0);
	assert_int_equal(fcntl(r0, F_GETFD), -1); /* closed */

	assert_int_equal(conn_pipe_get(&w, &d), 0);
	d.in_pipe = 1; /* the count says bytes are in flight */
	conn_pipe_put(&w, &d);
	assert_int_equal(w.n_pipes, 0);
	conn_pipe_pool_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fail_cancels_by_user_data),
		cmocka_unit_test(test_fail_cancels_wide_op_by_fd),
		cmocka_unit_test(test_pipe_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

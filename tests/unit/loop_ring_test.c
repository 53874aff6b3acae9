// SPDX-License-Identifier: MIT
/*
 * A worker's ring does only the loop's operations (ring_restrict): seccomp sees
 * io_uring_enter and nothing of what the kernel does for it, so code running in a worker
 * must not get a socket of another family, a file or a send through the ring.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "ring.h"

/* One operation on ring, its result. */
static int one(struct io_uring *ring, void (*prep)(struct io_uring_sqe *sqe, void *arg), void *arg)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int res;

	assert_non_null(sqe);
	prep(sqe, arg);
	assert_true(io_uring_submit(ring) == 1);
	assert_int_equal(io_uring_wait_cqe(ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

static void prep_poll(struct io_uring_sqe *sqe, void *arg)
{
	io_uring_prep_poll_add(sqe, *(int *)arg, POLLOUT);
}

static void prep_socket(struct io_uring_sqe *sqe, void *arg)
{
	io_uring_prep_socket(sqe, *(int *)arg, SOCK_STREAM, 0, 0);
}

static void prep_openat(struct io_uring_sqe *sqe, void *arg)
{
	io_uring_prep_openat(sqe, AT_FDCWD, arg, O_RDONLY, 0);
}

static void prep_write(struct io_uring_sqe *sqe, void *arg)
{
	io_uring_prep_write(sqe, *(int *)arg, "x", 1, 0);
}

static void test_only_loop_ops(void **state)
{
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	struct io_uring ring;
	int fds[2], fam = AF_INET, alg = AF_ALG, res;

	(void)state;
	res = io_uring_queue_init_params(8, &ring, &p);
	if (res) {
		fprintf(stderr, "io_uring unavailable here (%s): skipped\n", strerror(-res));
		exit(77);
	}
	assert_int_equal(ring_restrict(&ring), 0);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	/* What the loop does works. */
	assert_true(one(&ring, prep_poll, &fds[1]) > 0);
	/* What it does not is refused by the kernel, whatever seccomp would say. */
	res = one(&ring, prep_socket, &fam);
	assert_true(res < 0);
	if (res >= 0)
		close(res);
	assert_int_equal(one(&ring, prep_socket, &alg), -EACCES);
	assert_int_equal(one(&ring, prep_openat, "/proc/self/status"), -EACCES);
	assert_int_equal(one(&ring, prep_write, &fds[1]), -EACCES);
	/* And the restrictions cannot be lifted or added to. */
	assert_true(ring_restrict(&ring) < 0);
	close(fds[0]);
	close(fds[1]);
	io_uring_queue_exit(&ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_loop_ops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

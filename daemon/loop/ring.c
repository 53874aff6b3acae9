// SPDX-License-Identifier: MIT
/* Submission entries and user_data for one worker's ring (ring.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "worker.h"

/*
 * Every operation the loop and the relays submit, and nothing else: seccomp sees only
 * io_uring_enter, so a worker taken over through a parser bug could otherwise have the
 * kernel open files, create sockets of any family or send anywhere (OPENAT, SOCKET,
 * SENDMSG...) behind the filter's back.
 */
static const uint8_t ring_ops[] = {
	IORING_OP_ACCEPT,	IORING_OP_CONNECT,	  IORING_OP_POLL_ADD,
	IORING_OP_READ,		IORING_OP_RECV,		  IORING_OP_SPLICE,
	IORING_OP_TIMEOUT,	IORING_OP_TIMEOUT_REMOVE, IORING_OP_LINK_TIMEOUT,
	IORING_OP_ASYNC_CANCEL,
};

int ring_restrict(struct io_uring *ring)
{
	struct io_uring_restriction res[sizeof(ring_ops) + 1];
	size_t n = 0;
	int rc;

	memset(res, 0, sizeof(res));
	for (size_t i = 0; i < sizeof(ring_ops); i++) {
		res[n].opcode = IORING_RESTRICTION_SQE_OP;
		res[n++].sqe_op = ring_ops[i];
	}
	res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	res[n++].sqe_flags = IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_IO_DRAIN | IOSQE_ASYNC |
			     IOSQE_CQE_SKIP_SUCCESS;
	/* No register opcode is allowed once enabled: none is used after this. Raw syscalls:
	 * Debian 12's liburing 2.3 declares the two helpers but does not export them. */
	rc = (int)syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
			  (unsigned)n);
	if (!rc)
		rc = (int)syscall(__NR_io_uring_register, ring->ring_fd,
				  IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	return rc ? -errno : 0;
}

uint64_t ring_ud(unsigned op, const struct conn *c)
{
	uint64_t gen = c ? c->gen & 0xffffff : 0, idx = c ? c->idx : 0;

	return (uint64_t)op << 56 | gen << 32 | idx;
}

uint64_t ring_ud_raw(unsigned op, uint32_t idx)
{
	return (uint64_t)op << 56 | idx;
}

struct io_uring_sqe *ring_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	/* SQ full: hand the batch to the kernel and take a fresh entry. */
	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c, unsigned op)
{
	struct io_uring_sqe *sqe = ring_sqe(w);

	io_uring_sqe_set_data64(sqe, ring_ud(op, c));
	if (op < 64)
		c->ops_used |= 1ull << op;
	else
		c->ops_wide = true;
	c->pending++;
	return sqe;
}

struct io_uring_sqe *ring_ignore_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(w);

	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_IGNORE, 0));
	return sqe;
}

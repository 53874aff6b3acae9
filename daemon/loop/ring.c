// SPDX-License-Identifier: MIT
/* Submission entries and user_data for one worker's ring (ring.h). */
#include "worker.h"

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

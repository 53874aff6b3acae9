/* SPDX-License-Identifier: MIT */
/*
 * One worker's io_uring: the operations it queues and how a completion finds its way
 * back. user_data packs {op (8 bits), generation (24 bits), slot index (32 bits)}, so a
 * completion finds its connection without a lookup and a reused slot is never mistaken
 * for the connection that had it before. Ops below OP_RELAY are the loop's own; the relays
 * number theirs from OP_RELAY up and get their completions through relay_ops.on_cqe.
 */
#ifndef KTLSD_DAEMON_RING_H
#define KTLSD_DAEMON_RING_H

#include <liburing.h>
#include <stdint.h>
#include <time.h>

#define NS 1000000000ull

enum op {
	OP_IGNORE = 0,	 /* cancel / timeout-remove completions */
	OP_ACCEPT,	 /* idx = service */
	OP_EVENT,	 /* eventfd: a command from the main thread */
	OP_DRAIN,	 /* drain deadline */
	OP_ACCEPT_RETRY, /* idx = service: back off after an accept error (EMFILE...) */
	OP_SWEEP,	 /* idle sweep timer */
	OP_HS_POLL,	 /* handshake: the TLS socket is ready for what OpenSSL wants */
	OP_HS_TIMEOUT,	 /* handshake + connect deadline */
	OP_CONNECT,	 /* target connect */
	OP_OCSP_POLL,	 /* peer's OCSP check: the responder's socket is ready */
	OP_RATE_RESUME,	 /* idx = service: a max-handshakes-per-second pause is over */
	OP_HS_DONE,	 /* eventfd: the handshake thread has finished steps (hs_thread.c) */
	OP_LOOP_MAX,
	OP_RELAY = 32, /* first op a relay may use (relay.h) */
	OP_MAX = 256,
};

struct worker;
struct conn;

/* A ring created with IORING_SETUP_R_DISABLED: limited to the loop's operations, enabled. */
int ring_restrict(struct io_uring *ring);

static inline uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* user_data for op on c (c NULL: index 0, generation 0). */
uint64_t ring_ud(unsigned op, const struct conn *c);
/* user_data for op on something that is not a connection (idx: a service, or 0). */
uint64_t ring_ud_raw(unsigned op, uint32_t idx);
static inline unsigned ring_ud_op(uint64_t ud)
{
	return (unsigned)(ud >> 56);
}
static inline uint32_t ring_ud_idx(uint64_t ud)
{
	return (uint32_t)ud;
}
static inline uint32_t ring_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffff;
}

/* A free submission entry; a full submission queue is submitted to make room. */
struct io_uring_sqe *ring_sqe(struct worker *w);
/* An entry whose completion is ignored (cancels, timeout removals). */
struct io_uring_sqe *ring_ignore_sqe(struct worker *w);
/* An entry for an operation of c: counted in c->pending until its completion. */
struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c, unsigned op);

#endif

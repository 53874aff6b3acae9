/* SPDX-License-Identifier: MIT */
/*
 * Admission bookkeeping of one worker: handshakes in progress per client address (a
 * keyed open-addressing table, no lock: each worker has its own) and log rate limits, so a
 * flood of refusals is counted rather than logged line by line.
 */
#ifndef KTLSD_DAEMON_ADMIT_H
#define KTLSD_DAEMON_ADMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* At most one log line per interval for a recurring event; the rest are counted. */
struct ratelim {
	uint64_t last_ns;
	unsigned suppressed;
};

enum { RL_ACCEPT, RL_MAX_CONNS, RL_HANDSHAKES, RL_PER_SOURCE, RL_OCSP, RL_RATE, RL_N };

#define RL_INTERVAL (10 * 1000000000ull) /* one line per limit kind, worker and service */

/*
 * A recurring event may log now (true, with how many were not logged since the last line
 * in *ret_suppressed) or only be counted (false).
 */
bool ratelim_pass(struct ratelim *r, uint64_t now, unsigned *ret_suppressed);

/*
 * --max-handshakes-per-second, one worker's share: a token bucket kept as GCRA (one
 * timestamp, no refill arithmetic). Each accepted connection moves tat on by the interval;
 * while tat runs more than the burst ahead of now, accepting pauses. Nothing is refused:
 * sockets accepted in the same batch as the one that used up the bucket are only counted
 * (the pause then lasts longer), the rest wait in the listen backlog.
 */
struct hs_rate {
	uint64_t tat; /* the theoretical arrival time of the next handshake, ns */
};

/* Burst: 100 ms of the worker's share, at least one handshake. */
#define HS_RATE_BURST_NS (100 * 1000000ull)

/* Per worker: threads * 1 s / per_second ns between two handshakes; 0: unlimited. */
uint64_t hs_rate_interval(unsigned per_second, unsigned threads);
/* Counts one handshake at now; the ns accepting must pause from now (0: keep accepting). */
uint64_t hs_rate_take(struct hs_rate *r, uint64_t now, uint64_t interval);
/* The ns still to wait at now before one more handshake fits (0: it fits now). */
uint64_t hs_rate_wait(const struct hs_rate *r, uint64_t now, uint64_t interval);

/* Handshakes in progress per client address (one worker, one service). */
struct src_entry {
	uint8_t addr[16];
	uint32_t n; /* 0: empty slot */
};

struct src_table {
	struct src_entry *e;
	uint32_t mask, used; /* capacity - 1 (power of two), entries with n > 0 */
	uint64_t seed;	     /* keyed hash: a peer cannot aim its addresses at one chain */
};

uint32_t src_count(const struct src_table *t, const uint8_t addr[16]);
int src_add(struct src_table *t, const uint8_t addr[16]);
void src_del(struct src_table *t, const uint8_t addr[16]);
void src_table_free(struct src_table *t);
/*
 * The key a client is limited under: its IPv4 address (as ::ffff:a.b.c.d) or its IPv6
 * /64. False for other families (unix sockets).
 */
bool src_key(const struct sockaddr_storage *ss, uint8_t ret_key[16]);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Event loop internals shared by the loop (worker.c), the userspace relay and the kTLS
 * relay (relay_ktls.c). Not a public API: everything here runs on one worker thread.
 */
#ifndef KTLSD_DAEMON_WORKER_H
#define KTLSD_DAEMON_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "config.h"
#include "service.h"
#include "ktlsd/probe.h"
#include "tlsctx.h"

struct ktls_conn;

struct runtime {
	struct run_config *cfg;
	struct service **svc; /* the current service of each slot; connections hold theirs */
	size_t n_svc;
	bool kernel_ktls;
	struct ktls_caps caps;
};

/* io_uring operations; the op travels in the top byte of user_data. */
enum op {
	OP_IGNORE = 0,	 /* cancel / timeout-remove completions */
	OP_ACCEPT,	 /* idx = service */
	OP_EVENT,	 /* eventfd: a command from the main thread */
	OP_DRAIN,	 /* drain deadline */
	OP_ACCEPT_RETRY, /* idx = service: back off after an accept error (EMFILE...) */
	OP_HS_POLL,
	OP_HS_TIMEOUT,
	OP_CONNECT,
	OP_US_T2P,	 /* userspace relay: poll for the TLS peer -> plaintext direction */
	OP_US_P2T,	 /* ... and plaintext -> TLS peer */
	OP_SPLICE_T_IN,	 /* kTLS relay: TLS socket -> pipe (kernel decrypts) */
	OP_SPLICE_P_OUT, /* pipe -> plaintext socket */
	OP_SPLICE_P_IN,	 /* plaintext socket -> pipe */
	OP_SPLICE_T_OUT, /* pipe -> TLS socket (kernel encrypts) */
	OP_KPOLL_T2P,	 /* kTLS relay: a splice of this direction hit EAGAIN, wait */
	OP_KPOLL_P2T,
	OP_KPOLL_SPLIT, /* kTLS TX only so far: wait for the server's tickets / first data */
	OP_SWEEP,	/* periodic: end established connections idle past idle_timeout_s */
};

/* One direction of a relay. */
struct dir {
	uint8_t *buf; /* userspace: pooled, held only while bytes are in flight */
	uint32_t len, off;
	int pipe[2]; /* kTLS: socket -> pipe -> socket */
	uint32_t in_pipe, pipe_sz;
	bool eof;     /* source finished */
	bool shut;    /* destination's write side shut (close_notify / FIN sent) */
	bool busy;    /* an operation of this direction is in flight */
	bool writing; /* kTLS: that operation is a splice into the destination socket */
	uint64_t bytes;
};

struct conn {
	uint32_t idx, gen;
	uint16_t pending; /* operations in flight: the slot lives until they all completed */
	bool hs_done, connected, closing, timeout_armed, ktls, counted, fin_without_close_notify,
		cancels_queued, resumed;
	bool in_hs;	  /* counted in svc->handshakes (and the source table where src_counted) */
	bool src_counted; /* counted under src in the worker's per-source table */
	bool relaying;	  /* past the handshake: the idle sweep watches last_io_ns */
	uint8_t src[16];  /* the client's address (IPv6, or IPv4-mapped) for per-source limits */
	uint64_t last_io_ns; /* when bytes last moved either way (the worker's coarse clock) */
	uint8_t addr_i;	     /* which of the target's resolved addresses is being tried */
	struct service *svc; /* held: the service this connection started with */
	uint16_t si;	     /* its slot in the runtime's services (per-worker state) */
	/*
	 * Server mode: tfd is the accepted client, pfd the backend. Client mode mirrors it:
	 * pfd is the accepted local app, tfd the connection to the remote TLS server. All
	 * code past the handshake only knows "TLS side" and "plaintext side".
	 */
	int tfd, pfd;
	SSL *ssl;
	struct ktls_conn *kc;
	struct __kernel_timespec deadline;
	struct dir t2p, p2t; /* TLS peer -> plaintext side, and back */
	uint64_t t_start_ns;
	const char *version, *cipher; /* OpenSSL's static strings */
	char peer[56];		      /* "[v6addr]:port" at most */
	char *reason;		      /* set once, when the connection ends */
	const char *note;	      /* why kTLS was not used (static text) */
	struct tls_peer id;
};

/* At most one log line per interval for a recurring event; the rest are counted. */
struct ratelim {
	uint64_t last_ns;
	unsigned suppressed;
};

enum { RL_ACCEPT, RL_MAX_CONNS, RL_HANDSHAKES, RL_PER_SOURCE, RL_N };

/* Handshakes in progress per client address (one worker, one service); open addressing. */
struct src_entry {
	uint8_t addr[16];
	uint32_t n; /* 0: empty slot */
};

struct src_table {
	struct src_entry *e;
	uint32_t mask, used; /* capacity - 1 (power of two), entries with n > 0 */
	uint64_t seed;	     /* keyed hash: a peer cannot aim its addresses at one chain */
};

/* What a worker keeps per service. */
struct worker_svc {
	struct src_table src;
	struct ratelim rl[RL_N];
};

struct worker {
	unsigned id;
	struct runtime *rt;
	struct io_uring ring;
	int *listen_fd; /* one per service */
	int evfd;
	uint64_t evval;
	atomic_int cmd; /* CMD_* from the main thread */
	struct conn **slots;
	uint32_t n_slots, *free_idx, n_free, live, next_gen;
	struct sess_cache *sess; /* per service: client tickets (cap 0 = not kept) */
	struct worker_svc *svcs; /* per service: handshake sources, log rate limits */
	uint64_t now_ns;	 /* CLOCK_MONOTONIC, taken once per batch of completions */
	struct __kernel_timespec sweep_ts; /* idle sweep period; 0: no service times out */
	void *pool;			   /* free relay buffers, singly linked */
	unsigned n_pool;
	bool draining, stop;
	struct __kernel_timespec drain_ts, accept_backoff;
	int init_rc;
	pthread_t thread;
	pthread_barrier_t *ready;
};

enum { CMD_NONE, CMD_DRAIN, CMD_STOP };

#define RELAY_BUF (64 * 1024)

/* Words for log lines: who is on each side of c. */
static inline const char *conn_tls_side(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER ? "client" : "server";
}

static inline const char *conn_plain_side(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER ? "backend" : "app";
}

/*
 * Bytes moved on c (either way): the idle sweep measures from here. The worker's clock of
 * this batch of completions is precise enough for a timeout counted in seconds.
 */
static inline void conn_touch(const struct worker *w, struct conn *c)
{
	c->last_io_ns = w->now_ns;
}

uint64_t worker_ud(enum op op, const struct conn *c);
struct io_uring_sqe *worker_sqe(struct worker *w);
/* Queue an operation for c: counts it in c->pending. */
struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c, enum op op);
/* Ends c with reason (first one wins); safe to call repeatedly. */
void conn_fail(struct worker *w, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Both directions finished cleanly. */
void conn_maybe_done(struct worker *w, struct conn *c);
/*
 * SSL_read on c failed with neither WANT_* nor close_notify (errno zeroed before the
 * call). True: the peer just closed TCP (FIN without close_notify), which ends the TLS ->
 * plaintext direction (c->t2p.eof) and is noted in the log; false: c has been failed.
 */
bool conn_tls_read_ended(struct worker *w, struct conn *c, int ret);

/* This worker's ticket cache for c's service, or NULL (server, or resumption off). */
struct sess_cache *conn_sess_cache(struct worker *w, const struct conn *c);

/* kTLS relay (relay_ktls.c). */
/* After the backend connected: install keys. 0: relay started; <0: c was not touched
 * (fallback possible if ktls_fallback_ok(rc)) or has been failed. */
int relay_ktls_start(struct worker *w, struct conn *c);
/* relay_ktls_start failed with err: may c go on in userspace (logs why where it matters)? */
bool relay_ktls_fallback_ok(struct worker *w, struct conn *c, int err);
void relay_ktls_cqe(struct worker *w, struct conn *c, enum op op, int res);
void relay_ktls_close_notify(struct conn *c);
void relay_ktls_release(struct conn *c);

int worker_start(struct worker *w);

#endif

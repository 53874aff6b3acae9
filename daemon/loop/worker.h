/* SPDX-License-Identifier: MIT */
/*
 * A worker: one thread, one io_uring, per service one listener, and the table of its
 * connections. The loop's own modules (listener, handshake, conn, ring) share this; the
 * relays see only conn.h and ring.h. Everything here runs on the worker's thread but cmd
 * and hs (shared with the worker's handshake thread, under hs.lock).
 */
#ifndef KTLSD_DAEMON_WORKER_H
#define KTLSD_DAEMON_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "admit.h"
#include "config.h"
#include "conn.h"
#include "ktlsd/probe.h"
#include "ring.h"
#include "service.h"

struct runtime {
	struct run_config *cfg;
	struct service **svc; /* the current service of each slot (NULL: removed by a reload);
			       * connections hold theirs */
	size_t n_svc;
	/* svc and n_svc between the reload (the only writer, after start) and readers on other
	 * threads than the workers (the admin endpoint); workers see changes by worker_call. */
	pthread_mutex_t svc_lock;
	/* Hands a connection whose handshake and connect are done to a relay (the runtime's
	 * choice: the loop never names one). */
	void (*relay_begin)(struct worker *w, struct conn *c);
	/* Called on each worker's thread once its ring exists (or failed to), before the
	 * barrier: the sandbox drops CAP_IPC_LOCK there, which is per thread. May be NULL. */
	void (*ring_ready)(void);
	bool kernel_ktls;
	struct ktls_caps caps;
	/* For /readyz: every listener armed (set once the workers are up), and draining. */
	atomic_bool ready, draining;
};

/* What a worker keeps per service. */
struct worker_svc {
	struct service *cur; /* held: new connections of this slot start on it */
	struct src_table src;
	struct ratelim rl[RL_N];
	struct ocsp_cache *ocsp; /* peers' OCSP answers; made at the first check */
	struct hs_rate rate;	 /* max-handshakes-per-second, this worker's share */
	uint64_t paused_ns;	 /* when its pause began; 0: not paused */
	struct __kernel_timespec pause_ts;
	bool accept_armed;     /* an accept is in flight (its last CQE not seen) */
	bool accept_multishot; /* that accept is multishot (no rate limit when armed) */
};

/*
 * A worker's handshake thread (hs_thread.c): runs the handshake steps the worker queues, at
 * SCHED_IDLE, and hands them back through the done list and evfd (the worker's ring reads
 * it). lock guards the lists and the flags; a connection on either list, or in the step
 * being run, is the thread's (conn.h: hs_out).
 */
struct hs_thread {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work;		   /* a step was queued, or stop (and, once, ready) */
	struct conn *in_head, **in_tail;   /* steps to run, oldest first */
	struct conn *out_head, **out_tail; /* steps run, for the worker */
	int evfd;			   /* written when out_head becomes non-empty */
	uint64_t evval;			   /* where the ring's read of evfd lands */
	bool stop, started, ready;	   /* ready: the thread has set its priority */
	/* No thread (--handshake-thread off, the default): the worker runs one queued step
	 * per batch of completions itself (hs_thread_run_inline). */
	bool inline_steps;
};

/* A function run on a worker's thread for another thread (worker_call). */
struct worker_msg {
	void (*fn)(struct worker *w, void *arg);
	void *arg;
	bool done;
	struct worker_msg *next;
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
	int (*pipes)[2];   /* free, empty splice pipes (kTLS relay), PIPE_POOL_MAX at most */
	uint32_t *pipe_sz; /* their sizes */
	unsigned n_pipes;
	bool draining, stop;
	struct hs_thread hs; /* the public-key work of handshakes, off this thread */
	struct __kernel_timespec drain_ts, accept_backoff;
	int init_rc;
	bool init_hs; /* init_rc is the handshake thread's (else the ring's, or memory) */
	pthread_t thread;
	pthread_barrier_t *ready;
	/* Mailbox for worker_call: the one lock in the loop, taken only when woken by evfd. */
	pthread_mutex_t mb_lock;
	pthread_cond_t mb_cond;
	struct worker_msg *mb_head, **mb_tail;
	bool mb_closed;
};

enum { CMD_NONE, CMD_DRAIN, CMD_STOP };

int worker_start(struct worker *w);

/*
 * Runs fn(w, arg) on w's thread, between two batches of completions, and waits until it
 * has run: how other threads (reload, the admin endpoint) reach a worker's connections
 * and per-service state without any lock on the data path. Calls run in the order made.
 * Returns 0 once fn ran, or -ESRCH if the worker has stopped (fn did not run). Never call
 * it from a worker thread.
 */
int worker_call(struct worker *w, void (*fn)(struct worker *w, void *arg), void *arg);

/* The service new connections of slot si start on, as this worker sees it. */
static inline struct service *worker_service(const struct worker *w, size_t si)
{
	return w->svcs[si].cur;
}

/*
 * Reload (reeval.c). n: the slots after it, the runtime's n_svc or more where services were
 * added (at the end: slots are never reused, an old connection's si stays its own).
 */
struct worker_swap {
	size_t n;
	struct service **svc; /* [n]: each slot's new service; NULL: unchanged or removed */
	const bool *removed;  /* [n] or NULL: the slot stops (listener closed, service dropped) */
	int *listen_fd;	      /* [n_workers * n] or NULL: the added slots' listeners, taken */
	unsigned closed;      /* out: connections the new services no longer admit, closed */
	int err;	      /* out, worker_grow: -ENOMEM or -EIO */
};

/*
 * For worker_call before worker_swap_services when sw->n grows: the worker's per-slot
 * arrays to sw->n (the only step that can fail: sw->err; nothing changes in use).
 */
void worker_grow(struct worker *w, void *arg);

/*
 * For worker_call(w, worker_swap_services, sw): new connections of each slot start on its
 * new service (added slots start accepting, removed ones stop: their connections run on),
 * and every established connection of a changed slot is judged again by the new service
 * (worker_conn_recheck), in this worker. Cannot fail. The caller sets the runtime's n_svc
 * to sw->n once every worker has run it.
 */
void worker_swap_services(struct worker *w, void *arg);

/*
 * Does s (trust store, CRLs, rules) still admit c's peer? 0 if so; otherwise c is closed
 * (conn_fail: close_notify, the reason on its conn_end line) and counted, and the reason's
 * -errno returned (tls_peer_recheck's, -ENOENT: no peer certificate was kept).
 */
int worker_conn_recheck(struct worker *w, struct conn *c, struct service *s);

/* The loop's modules (listener.c, handshake.c), for the dispatcher in worker.c. */
void listener_arm(struct worker *w, size_t si);
void listener_on_accept(struct worker *w, uint32_t si, int res, unsigned flags);
void listener_on_retry(struct worker *w, uint32_t si);
void listener_on_resume(struct worker *w, uint32_t si);
/* A connection was accepted on its service: the handshake (server) or connect (client). */
void handshake_begin(struct worker *w, struct conn *c);
/*
 * The handshake thread (hs_thread.c). start: its lock, evfd and thread (0 or -errno, nothing
 * left behind on failure); stop: it finishes the step it is running and exits (safe when
 * never started). push: c's next step goes to it (the caller counted c->pending and set
 * c->hs_out). take: the steps it has run, linked by hs_next, oldest first.
 */
int hs_thread_start(struct worker *w);
void hs_thread_stop(struct worker *w);
void hs_thread_push(struct worker *w, struct conn *c);
struct conn *hs_thread_take(struct worker *w);
/* Inline mode: run the oldest queued step, if any, onto the done list. True if one ran. */
bool hs_thread_run_inline(struct worker *w);
/* On the handshake thread: c's step (make the SSL, then SSL_do_handshake), its result in c. */
void handshake_step_run(struct conn *c);
/* On the worker: steps came back from the handshake thread (OP_HS_DONE). */
void handshake_on_steps(struct worker *w);
void handshake_on_poll(struct worker *w, struct conn *c, int res);
void handshake_on_timeout(struct worker *w, struct conn *c, int res);
void handshake_on_connect(struct worker *w, struct conn *c, int res);
/* The handshake is done and the peer admitted: connect (server) or relay (client). */
void handshake_peer_ok(struct worker *w, struct conn *c);
/* ocsp_check.c: with an ocsp-url, the peer's certificate is checked before
 * handshake_peer_ok; otherwise that follows at once. */
void ocsp_check_begin(struct worker *w, struct conn *c);
void ocsp_check_on_poll(struct worker *w, struct conn *c, int res);
/*
 * TCP_NODELAY and keepalive (TCP's own probes find a vanished peer) on a TCP socket we
 * connect, or on a listener: the sockets it accepts inherit both (no calls per connection).
 */
void conn_tcp_opts(int fd);

#endif

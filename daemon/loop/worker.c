// SPDX-License-Identifier: MIT
/*
 * The event loop: one per worker thread, nothing shared and mutable between them.
 *
 * Each worker owns an io_uring (SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them)
 * and, per service, its own SO_REUSEPORT listening socket with a multishot accept: the
 * kernel spreads connections over the workers and no lock sits on the accept, handshake
 * or relay path. A connection lives in a slot of the worker's table; user_data packs
 * {op, slot index, generation} so a completion finds its connection without a lookup,
 * and a slot is reused only after every operation queued for it has completed.
 *
 * Per connection: OpenSSL does its own non-blocking I/O on the socket while io_uring
 * polls for the readiness it asks for (handshake, and the userspace relay), a timeout
 * bounds handshake + backend connect, the backend is reached with an io_uring connect,
 * then a relay takes the connection: kTLS + IORING_OP_SPLICE or SSL_read/SSL_write
 * (daemon/relay/, behind struct relay_ops: this room never names one).
 *
 * Files: ring (user_data, SQEs), conn (table, end of a connection, the relays' API),
 * listener (accept and admission), handshake (TLS, connect, hand-off), admit (per-source
 * counts, log rate limits), and here the thread, the dispatcher and drain.
 *
 * Limits a peer can push against, each counted and logged at most once per 10 s per
 * worker: max_conns and max_handshakes (service-wide, per-worker gauges summed), per client
 * address (a table per worker: no lock on accept), running out of descriptors (accepting
 * pauses 100 ms, the connections wait in the listen backlog), max-handshakes-per-second
 * (a token bucket per worker; past it accepting pauses, the backlog holds the rest), and
 * idle established connections (one sweep timer per worker compares each one's last-I/O
 * time, no timer per connection). Handshake steps wait in a queue and run one per batch
 * of completions, so a flood of handshakes delays a relay by one step; with
 * --handshake-thread they run on the worker's handshake thread at SCHED_IDLE
 * (hs_thread.c), and take the CPU only when this thread has nothing to do.
 *
 * Minimum: Linux 5.19 (multishot accept, IORING_ASYNC_CANCEL_FD|ALL), liburing 2.3.
 * DEFER_TASKRUN needs 6.1 and is used when present.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "ocsp.h"
#include "log.h"
#include "relay.h"
#include "sess_cache.h"
#include "worker.h"

#define RING_ENTRIES 4096

static void arm_sweep(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (!w->sweep_ts.tv_sec && !w->sweep_ts.tv_nsec)
		return;
	sqe = ring_sqe(w);
	io_uring_prep_timeout(sqe, &w->sweep_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_SWEEP, 0));
}

/* Established connections with no byte either way for their service's idle_timeout_s end. */
static void idle_sweep(struct worker *w)
{
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];
		uint64_t limit;

		if (!c || !c->relaying || c->closing)
			continue;
		limit = (uint64_t)c->svc->cfg->idle_timeout_s * NS;
		if (!limit || w->now_ns - c->last_io_ns < limit)
			continue;
		if (c->relay && c->relay->refresh_idle) {
			c->relay->refresh_idle(w, c);
			if (w->now_ns - c->last_io_ns < limit)
				continue;
		}
		conn_count(w, c, STAT_IDLE_TIMEOUTS);
		conn_fail(w, c, "idle timeout");
		conn_check_free(w, c);
	}
	arm_sweep(w);
}

/*
 * A quarter of the shortest idle timeout (an idle connection ends within 1.25 times its
 * timeout), between 250 ms and 10 s: one cheap wakeup per worker, whatever the load.
 */
static void sweep_period(struct worker *w)
{
	uint64_t ms = 0;

	for (size_t i = 0; i < w->rt->n_svc; i++) {
		uint64_t t = (uint64_t)w->rt->svc[i]->cfg->idle_timeout_s * 1000 / 4;

		if (t && (!ms || t < ms))
			ms = t;
	}
	if (ms && ms < 250)
		ms = 250;
	if (ms > 10000)
		ms = 10000;
	w->sweep_ts.tv_sec = (long long)(ms / 1000);
	w->sweep_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
}

static void arm_event(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(w);

	io_uring_prep_read(sqe, w->evfd, &w->evval, sizeof(w->evval), 0);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_EVENT, 0));
}

/* The handshake thread's wake-up: steps are back (hs_thread.c). */
static void arm_hs_done(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(w);

	io_uring_prep_read(sqe, w->hs.evfd, &w->hs.evval, sizeof(w->hs.evval), 0);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_HS_DONE, 0));
}

static void start_drain(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->draining)
		return;
	w->draining = true;
	/* Stop accepting: the multishot accepts hold the listeners open until cancelled. */
	for (size_t i = 0; i < w->rt->n_svc; i++) {
		if (w->listen_fd[i] < 0)
			continue;
		io_uring_prep_cancel_fd(ring_ignore_sqe(w), w->listen_fd[i],
					IORING_ASYNC_CANCEL_ALL);
		/* The cancel looks the fd up when it runs: submit before closing. */
		io_uring_submit(&w->ring);
		close(w->listen_fd[i]);
		w->listen_fd[i] = -1;
	}
	sqe = ring_sqe(w);
	io_uring_prep_timeout(sqe, &w->drain_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_DRAIN, 0));
}

/* --- dispatch: one handler per op, as liburing's examples/proxy.c does ------------------ */

static void on_ignore(struct worker *w, const struct io_uring_cqe *cqe)
{
}

static void on_accept(struct worker *w, const struct io_uring_cqe *cqe)
{
	listener_on_accept(w, ring_ud_idx(cqe->user_data), cqe->res, cqe->flags);
}

static void on_accept_retry(struct worker *w, const struct io_uring_cqe *cqe)
{
	listener_on_retry(w, ring_ud_idx(cqe->user_data));
}

static void on_rate_resume(struct worker *w, const struct io_uring_cqe *cqe)
{
	listener_on_resume(w, ring_ud_idx(cqe->user_data));
}

/* Runs what other threads queued with worker_call; closed: none may be queued after. */
static void mailbox_run(struct worker *w, bool close)
{
	struct worker_msg *m;

	pthread_mutex_lock(&w->mb_lock);
	w->mb_closed |= close;
	while ((m = w->mb_head)) {
		w->mb_head = m->next;
		if (!w->mb_head)
			w->mb_tail = &w->mb_head;
		pthread_mutex_unlock(&w->mb_lock);
		m->fn(w, m->arg);
		pthread_mutex_lock(&w->mb_lock);
		m->done = true;
		pthread_cond_broadcast(&w->mb_cond);
	}
	pthread_mutex_unlock(&w->mb_lock);
}

int worker_call(struct worker *w, void (*fn)(struct worker *w, void *arg), void *arg)
{
	struct worker_msg m = { .fn = fn, .arg = arg };
	uint64_t one = 1;

	pthread_mutex_lock(&w->mb_lock);
	if (w->mb_closed) {
		pthread_mutex_unlock(&w->mb_lock);
		return -ESRCH;
	}
	*w->mb_tail = &m;
	w->mb_tail = &m.next;
	pthread_mutex_unlock(&w->mb_lock);
	if (write(w->evfd, &one, sizeof(one)) < 0) {
		/* Only on counter overflow: the worker is awake anyway. */
	}
	pthread_mutex_lock(&w->mb_lock);
	while (!m.done)
		pthread_cond_wait(&w->mb_cond, &w->mb_lock);
	pthread_mutex_unlock(&w->mb_lock);
	return 0;
}

static void on_event(struct worker *w, const struct io_uring_cqe *cqe)
{
	mailbox_run(w, false);
	if (atomic_load(&w->cmd) == CMD_STOP)
		w->stop = true;
	else if (atomic_load(&w->cmd) == CMD_DRAIN)
		start_drain(w);
	if (!w->stop)
		arm_event(w);
}

static void on_hs_done(struct worker *w, const struct io_uring_cqe *cqe)
{
	handshake_on_steps(w);
	if (!w->stop)
		arm_hs_done(w);
}

static void on_drain(struct worker *w, const struct io_uring_cqe *cqe)
{
	w->stop = true;
}

static void on_sweep(struct worker *w, const struct io_uring_cqe *cqe)
{
	idle_sweep(w);
}

/* Completions of a connection's operations: the loop's own, or its relay's. */
static void on_conn(struct worker *w, const struct io_uring_cqe *cqe)
{
	static void (*const handlers[OP_LOOP_MAX])(struct worker *, struct conn *, int) = {
		[OP_HS_POLL] = handshake_on_poll,
		[OP_HS_TIMEOUT] = handshake_on_timeout,
		[OP_CONNECT] = handshake_on_connect,
		[OP_OCSP_POLL] = ocsp_check_on_poll,
	};
	uint64_t ud = cqe->user_data;
	unsigned op = ring_ud_op(ud);
	uint32_t idx = ring_ud_idx(ud);
	struct conn *c;

	if (idx >= w->n_slots || !(c = w->slots[idx]) || (c->gen & 0xffffff) != ring_ud_gen(ud))
		return; /* cannot happen: slots outlive their operations */
	c->pending--;
	if (op >= OP_RELAY) {
		if (c->relay)
			c->relay->on_cqe(w, c, op, cqe->res);
	} else if (handlers[op]) {
		handlers[op](w, c, cqe->res);
	}
	conn_check_free(w, c);
}

static void handle_cqe(struct worker *w, const struct io_uring_cqe *cqe)
{
	static void (*const handlers[OP_LOOP_MAX])(struct worker *, const struct io_uring_cqe *) = {
		[OP_IGNORE] = on_ignore,
		[OP_ACCEPT] = on_accept,
		[OP_EVENT] = on_event,
		[OP_DRAIN] = on_drain,
		[OP_ACCEPT_RETRY] = on_accept_retry,
		[OP_SWEEP] = on_sweep,
		[OP_RATE_RESUME] = on_rate_resume,
		[OP_HS_DONE] = on_hs_done,
		[OP_HS_POLL] = on_conn,
		[OP_HS_TIMEOUT] = on_conn,
		[OP_CONNECT] = on_conn,
		[OP_OCSP_POLL] = on_conn,
	};
	unsigned op = ring_ud_op(cqe->user_data);

	if (op >= OP_RELAY)
		on_conn(w, cqe);
	else if (op < OP_LOOP_MAX && handlers[op])
		handlers[op](w, cqe);
}

/* Per-source tables and log rate limits per service; a table's seed is its own secret. */
static int svcs_init(struct worker *w)
{
	w->svcs = calloc(w->rt->n_svc, sizeof(*w->svcs));
	if (!w->svcs)
		return -ENOMEM;
	for (size_t i = 0; i < w->rt->n_svc; i++)
		w->svcs[i].cur = service_get(w->rt->svc[i]);
	for (size_t i = 0; i < w->rt->n_svc; i++)
		if (RAND_bytes((unsigned char *)&w->svcs[i].src.seed, sizeof(uint64_t)) != 1)
			return -EIO;
	return 0;
}

/* Client services that resume get a ticket cache in each worker: no lock between them. */
static int sess_init(struct worker *w)
{
	w->sess = calloc(w->rt->n_svc, sizeof(*w->sess));
	if (!w->sess)
		return -ENOMEM;
	for (size_t i = 0; i < w->rt->n_svc; i++) {
		const struct service_config *sc = worker_service(w, i)->cfg;

		if (sc->role == ROLE_CLIENT && sc->resumption && sc->session_cache &&
		    sess_cache_init(&w->sess[i], sc->session_cache))
			return -ENOMEM;
	}
	return 0;
}

static int ring_init(struct worker *w)
{
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	/* Disabled until ring_restrict has limited what it may do. */
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
		  IORING_SETUP_R_DISABLED;
	p.cq_entries = RING_ENTRIES * 4;
	rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (rc == -EINVAL) {
		/* Kernels before 6.1 lack DEFER_TASKRUN: same loop, default task work. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
		p.cq_entries = RING_ENTRIES * 4;
		rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (rc)
		return rc;
	rc = ring_restrict(&w->ring);
	if (rc)
		io_uring_queue_exit(&w->ring);
	return rc;
}

/*
 * The loop has ended (drain finished, drain deadline, or SIGINT). Tearing the ring down
 * first cancels whatever is still in flight, so every remaining connection can be released
 * (and logged, with the reason it was cut) without a completion racing it.
 */
static void worker_cleanup(struct worker *w)
{
	/* Callers waiting in worker_call see their function run, on a live table, one last time. */
	mailbox_run(w, true);
	io_uring_queue_exit(&w->ring);
	/* Its step done, the handshake thread is gone: every connection is this thread's. */
	hs_thread_stop(w);
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];

		if (!c)
			continue;
		conn_release_now(w, c, w->draining ? "drain deadline" : "stopped");
	}
	conn_buf_pool_free(w);
	conn_pipe_pool_free(w);
	free(w->slots);
	free(w->free_idx);
	w->slots = NULL;
	w->free_idx = NULL;
	for (size_t i = 0; w->sess && i < w->rt->n_svc; i++)
		sess_cache_clear(&w->sess[i]);
	free(w->sess);
	w->sess = NULL;
	for (size_t i = 0; w->svcs && i < w->rt->n_svc; i++) {
		src_table_free(&w->svcs[i].src);
		ocsp_cache_free(w->svcs[i].ocsp);
		service_put(w->svcs[i].cur);
	}
	free(w->svcs);
	w->svcs = NULL;
}

/* One turn of the loop: submit and wait, the batch of completions, then one inline
 * handshake step. -EIO: the ring failed (the process is told to stop). */
static int worker_turn(struct worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	/* Steps queued for this thread: collect what completed, do not wait for more. */
	/* inline_steps first: with the thread, in_head is the thread's, under its lock. */
	int rc = w->hs.inline_steps && w->hs.in_head ? io_uring_submit_and_get_events(&w->ring)
						     : io_uring_submit_and_wait(&w->ring, 1);

	w->now_ns = loop_now_ns();

	if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
		struct log_kv kv[] = { { "error", strerror(-rc) } };

		log_kv(w->rt->cfg->log_format, "error", "ring_failed", kv, 1);
		kill(getpid(), SIGTERM);
		return -EIO;
	}
	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		handle_cqe(w, cqe);
		n++;
		if (w->stop)
			break;
	}
	io_uring_cq_advance(&w->ring, n);
	/* Inline steps: one per batch, after the batch's relays and timers. */
	if (!w->stop && w->hs.inline_steps && hs_thread_run_inline(w))
		handshake_on_steps(w);
	if (w->draining && !w->live)
		w->stop = true;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->init_rc = svcs_init(w);
	if (!w->init_rc)
		w->init_rc = sess_init(w);
	if (!w->init_rc)
		w->init_rc = ring_init(w);
	/* Whatever only the ring's creation needed goes now, on this thread (the runtime's). */
	if (w->rt->ring_ready)
		w->rt->ring_ready();
	/* Made here, it inherits this thread's capabilities: what ring_ready left. */
	if (!w->init_rc && (w->init_rc = hs_thread_start(w)))
		w->init_hs = true;
	if (!w->init_rc) {
		w->now_ns = loop_now_ns();
		for (size_t i = 0; i < w->rt->n_svc; i++)
			listener_arm(w, i);
		arm_event(w);
		if (!w->hs.inline_steps)
			arm_hs_done(w);
		arm_sweep(w);
		w->init_rc = io_uring_submit(&w->ring) < 0 ? -EIO : 0;
	}
	pthread_barrier_wait(w->ready);
	if (w->init_rc) {
		mailbox_run(w, true);
		hs_thread_stop(w);
		return NULL;
	}

	while (!w->stop && !worker_turn(w))
		;
	worker_cleanup(w);
	return NULL;
}

int worker_start(struct worker *w)
{
	w->drain_ts.tv_sec = w->rt->cfg->drain_timeout_ms / 1000;
	w->drain_ts.tv_nsec = (long long)(w->rt->cfg->drain_timeout_ms % 1000) * 1000000;
	w->accept_backoff.tv_nsec = 100 * 1000000;
	sweep_period(w);
	pthread_mutex_init(&w->mb_lock, NULL);
	pthread_cond_init(&w->mb_cond, NULL);
	w->mb_tail = &w->mb_head;
	w->evfd = eventfd(0, EFD_CLOEXEC);
	if (w->evfd < 0)
		return -errno;
	return -pthread_create(&w->thread, NULL, worker_main, w);
}

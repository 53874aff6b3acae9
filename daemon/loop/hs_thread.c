// SPDX-License-Identifier: MIT
/*
 * Each worker's handshake thread: the public-key work of its TLS handshakes (SSL_new and
 * every SSL_do_handshake step: X25519, the ECDSA signature, the chain's verification, 0.3 to
 * 1 ms each) runs here, at SCHED_IDLE, so that the kernel preempts it the moment the worker
 * has a completion to serve: an established connection no longer waits behind a step
 * (issue #15, docs/admission.md).
 *
 * The worker keeps everything else: the ring, the sockets, polls, timeouts, relays and all
 * connection state. A step goes out on a queue (mutex + condvar: this thread sleeps in a
 * futex) and comes back on a done list; the first step back after the worker last looked
 * writes an eventfd, which the worker's ring reads (OP_HS_DONE), so the worker never blocks
 * on this thread. A connection is on exactly one thread at a time: while out (c->hs_out,
 * counted in c->pending) the worker touches neither its SSL nor its identity, and does not
 * free it; conn_fail only raises c->hs_cancel, which makes a step not yet begun a no-op.
 *
 * What a step reaches besides c: the service's SSL_CTX (refcounted, held by c; OpenSSL's
 * own locks), its callbacks (verify_cb and the policy: read-only; the server's ticket keys:
 * their own mutex; the server's session cache: OpenSSL's lock; the OCSP staple: an atomic
 * flag and one log line; libktls's keylog capture: per SSL), and nothing of the worker: no
 * counter, no cache, no ring. The client's ticket cache is the worker's alone: it takes the
 * ticket before the step and hands the SSL its cache when the handshake is done.
 *
 * Why SCHED_IDLE rather than nice 19: a SCHED_IDLE task is preempted on every wakeup of a
 * normal one (nice 19 under EEVDF can keep the CPU to the end of its slice, the very wait
 * this thread exists to remove; bench/flood in docs/admission.md). The price: on a CPU busy
 * with other normal work it gets next to nothing. The kernel moves it to any idle CPU, and
 * the handshake deadline bounds what a starved step can cost, but a host saturated by
 * other work slows ktlsd's handshakes before its established connections.
 *
 * Syscalls: futex, eventfd2, write, sched_setscheduler (SCHED_IDLE only: sandbox/seccomp.c).
 *
 * The thread is opt-in (--handshake-thread): handing each step over costs context switches,
 * ~12 % more CPU per full handshake and ~30 % per resumed one on this machine class
 * (docs/admission.md). Without it (inline_steps) the same queue is run by the worker
 * itself, one step per batch of completions, so an established connection waits behind at
 * most one step.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static void lower_priority(struct worker *w)
{
	struct sched_param p = { .sched_priority = 0 };

	/* Lowering one's own priority needs no privilege: only a filter could refuse it. */
	if (sched_setscheduler(0, SCHED_IDLE, &p)) {
		struct log_kv kv[] = {
			{ "error", strerror(errno) },
			{ "effect", "handshakes compete with relaying at the worker's priority" },
		};

		log_kv(w->rt->cfg->log_format, "warn", "handshake_thread_priority", kv, 2);
	}
}

/* Tells the worker a step is back (the ring reads the counter back to 0 each time). */
static void wake_worker(struct hs_thread *hs)
{
	uint64_t one = 1;

	if (write(hs->evfd, &one, sizeof(one)) < 0) {
		/* Only on counter overflow: the worker has a wake-up pending anyway. */
	}
}

static void *hs_main(void *arg)
{
	struct worker *w = arg;
	struct hs_thread *hs = &w->hs;
	struct conn *c;

	lower_priority(w);
	pthread_mutex_lock(&hs->lock);
	hs->ready = true;
	pthread_cond_signal(&hs->work);
	for (;;) {
		bool first;

		while (!hs->in_head && !hs->stop)
			pthread_cond_wait(&hs->work, &hs->lock);
		if (hs->stop)
			break;
		c = hs->in_head;
		hs->in_head = c->hs_next;
		if (!hs->in_head)
			hs->in_tail = &hs->in_head;
		pthread_mutex_unlock(&hs->lock);

		handshake_step_run(c);

		pthread_mutex_lock(&hs->lock);
		first = !hs->out_head;
		c->hs_next = NULL;
		*hs->out_tail = c;
		hs->out_tail = &c->hs_next;
		if (first) {
			pthread_mutex_unlock(&hs->lock);
			wake_worker(hs);
			pthread_mutex_lock(&hs->lock);
		}
	}
	pthread_mutex_unlock(&hs->lock);
	return NULL;
}

int hs_thread_start(struct worker *w)
{
	struct hs_thread *hs = &w->hs;
	int rc;

	hs->in_tail = &hs->in_head;
	hs->out_tail = &hs->out_head;
	hs->evfd = -1;
	if (!w->rt->cfg->handshake_thread) {
		hs->inline_steps = true; /* the lists only, this thread's alone */
		return 0;
	}
	hs->evfd = eventfd(0, EFD_CLOEXEC);
	if (hs->evfd < 0)
		return -errno;
	rc = pthread_mutex_init(&hs->lock, NULL);
	if (rc)
		goto out_close;
	rc = pthread_cond_init(&hs->work, NULL);
	if (rc)
		goto out_mutex;
	rc = pthread_create(&hs->thread, NULL, hs_main, w);
	if (rc)
		goto out_cond;
	hs->started = true;
	/* Its priority is set before the worker serves anything (and before "listening"). */
	pthread_mutex_lock(&hs->lock);
	while (!hs->ready)
		pthread_cond_wait(&hs->work, &hs->lock);
	pthread_mutex_unlock(&hs->lock);
	return 0;

out_cond:
	pthread_cond_destroy(&hs->work);
out_mutex:
	pthread_mutex_destroy(&hs->lock);
out_close:
	close(hs->evfd);
	hs->evfd = -1;
	return -rc;
}

void hs_thread_stop(struct worker *w)
{
	struct hs_thread *hs = &w->hs;

	if (hs->inline_steps) {
		hs->in_head = hs->out_head = NULL; /* their slots free them */
		hs->in_tail = &hs->in_head;
		hs->out_tail = &hs->out_head;
		return;
	}
	if (!hs->started)
		return;
	pthread_mutex_lock(&hs->lock);
	hs->stop = true;
	pthread_cond_signal(&hs->work);
	pthread_mutex_unlock(&hs->lock);
	pthread_join(hs->thread, NULL);
	hs->started = false;
	/* What is still queued or done belongs to the worker again (its slots free it). */
	hs->in_head = hs->out_head = NULL;
	hs->in_tail = &hs->in_head;
	hs->out_tail = &hs->out_head;
	pthread_cond_destroy(&hs->work);
	pthread_mutex_destroy(&hs->lock);
	close(hs->evfd);
	hs->evfd = -1;
}

void hs_thread_push(struct worker *w, struct conn *c)
{
	struct hs_thread *hs = &w->hs;

	c->hs_next = NULL;
	if (hs->inline_steps) {
		*hs->in_tail = c;
		hs->in_tail = &c->hs_next;
		return;
	}
	pthread_mutex_lock(&hs->lock);
	*hs->in_tail = c;
	hs->in_tail = &c->hs_next;
	pthread_cond_signal(&hs->work);
	pthread_mutex_unlock(&hs->lock);
}

bool hs_thread_run_inline(struct worker *w)
{
	struct hs_thread *hs = &w->hs;
	struct conn *c = hs->in_head;

	if (!c)
		return false;
	hs->in_head = c->hs_next;
	if (!hs->in_head)
		hs->in_tail = &hs->in_head;
	handshake_step_run(c);
	c->hs_next = NULL;
	*hs->out_tail = c;
	hs->out_tail = &c->hs_next;
	return true;
}

struct conn *hs_thread_take(struct worker *w)
{
	struct hs_thread *hs = &w->hs;
	struct conn *c;

	if (!hs->inline_steps)
		pthread_mutex_lock(&hs->lock);
	c = hs->out_head;
	hs->out_head = NULL;
	hs->out_tail = &hs->out_head;
	if (!hs->inline_steps)
		pthread_mutex_unlock(&hs->lock);
	return c;
}

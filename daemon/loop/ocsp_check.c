// SPDX-License-Identifier: MIT
/*
 * The peer's OCSP check (--ocsp-url), between a completed handshake and the connect (server)
 * or relay (client). The worker never waits on the responder: the fetch's non-blocking
 * socket is polled with io_uring like the handshake's, each poll linked to a timeout that
 * ends at the check's deadline (--ocsp-timeout-ms); the handshake deadline still covers
 * all of it. Answers are cached per worker until their nextUpdate (tls/ocsp.c), so a peer
 * costs one fetch per worker and hour at most. Needs IORING_OP_LINK_TIMEOUT (5.5).
 *
 * Why after the handshake and not inside the verify callback: OpenSSL 3.0 can suspend
 * verification only on a client (SSL_set_retry_verify), and ktlsd checks clients. Nothing
 * reaches the backend before the answer; a refused peer's connection is closed without
 * close_notify.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "ocsp.h"
#include "worker.h"

#define OCSP_CACHE_CAP 1024

static void ocsp_poll(struct worker *w, struct conn *c, unsigned mask)
{
	uint64_t now = loop_now_ns();
	uint64_t left = c->ocsp_deadline_ns > now ? c->ocsp_deadline_ns - now : 1;
	struct io_uring_sqe *sqe;

	/* The poll and its timeout must reach the kernel together, in one submission. */
	if (io_uring_sq_space_left(&w->ring) < 2)
		io_uring_submit(&w->ring);
	c->ofd = ocsp_fetch_fd(c->ocsp);
	sqe = conn_sqe(w, c, OP_OCSP_POLL);
	io_uring_prep_poll_add(sqe, c->ofd, mask);
	sqe->flags |= IOSQE_IO_LINK;
	c->ocsp_ts.tv_sec = (long long)(left / NS);
	c->ocsp_ts.tv_nsec = (long long)(left % NS);
	io_uring_prep_link_timeout(ring_ignore_sqe(w), &c->ocsp_ts, 0);
}

/* Admitted without an answer: one line per 10 s per worker and service, the rest counted. */
static void log_no_answer(struct worker *w, struct conn *c, const char *why)
{
	char n[16];
	unsigned suppressed;
	struct log_kv kv[] = {
		{ "service", c->svc->cfg->name },
		{ "peer", c->peer },
		{ policy_kind_name(c->id.id_kind), c->id.id },
		{ "result", "admitted (ocsp-fail open)" },
		{ "reason", why },
		{ "suppressed", n },
	};

	if (!ratelim_pass(&w->svcs[c->si].rl[RL_OCSP], loop_now_ns(), &suppressed))
		return;
	snprintf(n, sizeof(n), "%u", suppressed);
	if (!suppressed)
		kv[5].val = NULL;
	conn_log(w, "warn", "ocsp_no_answer", kv, (int)(sizeof(kv) / sizeof(kv[0])));
}

/* The answer decides: on to the connect/relay, or the end of the connection. */
static void ocsp_decide(struct worker *w, struct conn *c, const struct ocsp_answer *a)
{
	ocsp_fetch_free(c->ocsp);
	c->ocsp = NULL;
	c->ofd = -1;
	switch (a->v) {
	case OCSP_GOOD:
		conn_count(w, c, STAT_OCSP_GOOD);
		handshake_peer_ok(w, c);
		return;
	case OCSP_REVOKED:
		conn_count(w, c, STAT_OCSP_REVOKED);
		conn_fail(w, c, "certificate revoked");
		return;
	case OCSP_NO_ANSWER:
		conn_count(w, c, STAT_OCSP_NO_ANSWER);
		if (c->svc->cfg->ocsp_fail_closed) {
			conn_fail(w, c, "ocsp check failed: %s", a->why);
			return;
		}
		log_no_answer(w, c, a->why);
		handshake_peer_ok(w, c);
		return;
	}
}

static struct ocsp_cache *worker_cache(struct worker *w, const struct conn *c)
{
	struct worker_svc *ws = &w->svcs[c->si];

	if (!ws->ocsp)
		ws->ocsp = ocsp_cache_new(OCSP_CACHE_CAP);
	return ws->ocsp;
}

/* After ocsp_decide, remembers what the responder said (not "no answer"). */
static void decide_fetched(struct worker *w, struct conn *c, const struct ocsp_answer *a)
{
	X509 *cert = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;

	if (cert)
		ocsp_cache_put(worker_cache(w, c), cert, time(NULL), a);
	ocsp_decide(w, c, a);
}

void ocsp_check_begin(struct worker *w, struct conn *c)
{
	const struct service_config *sc = c->svc->cfg;
	X509 *cert = SSL_get0_peer_certificate(c->ssl), *issuer;
	struct ocsp_answer a;

	if (!sc->ocsp_url || !cert) {
		handshake_peer_ok(w, c);
		return;
	}
	if (ocsp_cache_get(worker_cache(w, c), cert, time(NULL), &a)) {
		conn_count(w, c, STAT_OCSP_CACHED);
		ocsp_decide(w, c, &a);
		return;
	}
	issuer = ocsp_peer_issuer(c->ssl, cert);
	if (!issuer) {
		a.v = OCSP_NO_ANSWER;
		snprintf(a.why, sizeof(a.why), "issuer of the certificate not found");
		ocsp_decide(w, c, &a);
		return;
	}
	if (ocsp_fetch_start(sc, cert, issuer, &c->ocsp, &c->ofd, &a)) {
		X509_free(issuer);
		ocsp_decide(w, c, &a);
		return;
	}
	X509_free(issuer);
	c->ocsp_deadline_ns = loop_now_ns() + (uint64_t)sc->ocsp_timeout_ms * 1000000u;
	ocsp_poll(w, c, POLLOUT);
}

void ocsp_check_on_poll(struct worker *w, struct conn *c, int res)
{
	struct ocsp_answer a;

	if (c->closing || !c->ocsp)
		return;
	if (res == -ECANCELED) {
		/* Only the linked timeout cancels it while the connection lives. */
		a.v = OCSP_NO_ANSWER;
		snprintf(a.why, sizeof(a.why), "no answer from %s within %u ms",
			 c->svc->cfg->ocsp_url, c->svc->cfg->ocsp_timeout_ms);
		ocsp_decide(w, c, &a);
		return;
	}
	switch (ocsp_fetch_step(c->ocsp, res, time(NULL), &a)) {
	case OCSP_STEP_READ:
		ocsp_poll(w, c, POLLIN);
		return;
	case OCSP_STEP_WRITE:
		ocsp_poll(w, c, POLLOUT);
		return;
	case OCSP_STEP_DONE:
		decide_fetched(w, c, &a);
		return;
	}
}

// SPDX-License-Identifier: MIT
/*
 * From accept to relay: the TLS handshake driven by io_uring polls (OpenSSL does its own
 * non-blocking I/O, hs_want says what to wait for), the target connect (server mode after
 * the handshake, client mode before it), one deadline over both, and the hand-off to the
 * relay the runtime chose.
 *
 * Handshake steps (the first, which makes the SSL, and each SSL_do_handshake after a poll)
 * are queued and run after the batch of completions that asked for them, at most HS_BUDGET
 * per batch, oldest first: under a flood of handshakes the relays' completions of every
 * batch are still served after at most HS_BUDGET steps' worth of public-key work.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>

#include "peer_chain.h"
#include "sess_cache.h"
#include "worker.h"

/*
 * Steps per batch of completions. One: an established connection waits at most one step
 * (~0.5-2 ms of public-key work) behind handshakes. bench/flood, flood p99 by budget
 * (bench/results/20261202-flood-budget): 8.4 ms at 1, 14.6 at 2, 22.8 at 4, 29.5 at 8,
 * 84 unbounded, 122 before the queue.
 */
#define HS_BUDGET 1

static void tls_start(struct worker *w, struct conn *c);
static void hs_done(struct worker *w, struct conn *c);
static void hs_again(struct worker *w, struct conn *c, int r, int saved);

/* Server mode connects to the plaintext backend, client mode to the remote TLS server. */
static void target_connect(struct worker *w, struct conn *c)
{
	const struct daemon_addr *t = &c->svc->cfg->target_addr;
	const struct sockaddr_storage *ss = &t->alt[c->addr_i].ss;
	int one = 1, fd;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_count(w, c, STAT_TARGET_CONNECT_FAILURES);
		conn_fail(w, c, "%s socket: %s", conn_plain_side(c), strerror(errno));
		return;
	}
	if (conn_is_server(c))
		c->pfd = fd;
	else
		c->tfd = fd;
	if (ss->ss_family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_keepalive(fd);
	}
	io_uring_prep_connect(conn_sqe(w, c, OP_CONNECT), fd, (const struct sockaddr *)ss,
			      t->alt[c->addr_i].len);
}

static void deadline_cancel(struct worker *w, struct conn *c)
{
	if (c->timeout_armed)
		io_uring_prep_timeout_remove(ring_ignore_sqe(w), ring_ud(OP_HS_TIMEOUT, c), 0);
}

/* Handshake and connect done: the connection leaves the handshake phase for a relay. */
static void relay_handoff(struct worker *w, struct conn *c)
{
	conn_hs_end(w, c);
	c->relaying = true;
	conn_touch(w, c);
	w->rt->relay_begin(w, c);
}

/*
 * The peer's chain is kept for reloads to judge again. A reload that came during this
 * handshake (or its OCSP check) swapped the slot's service: the new one (trust, CRLs, rules) judges it now,
 * or it would escape a revocation that was already in force when it finished.
 */
static bool hs_keep_peer(struct worker *w, struct conn *c)
{
	struct service *cur = worker_service(w, c->si);

	if (tls_peer_chain_der(c->ssl, &c->peer_der, &c->peer_der_len)) {
		conn_fail(w, c, "out of memory keeping the peer's certificate");
		return false;
	}
	return !cur || cur == c->svc || worker_conn_recheck(w, c, cur) == 0;
}

static void hs_step(struct worker *w, struct conn *c)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1)
		hs_done(w, c);
	else
		hs_again(w, c, r, errno);
}

/* The handshake completed: resumption's policy check, then the target or the relay. */
static void hs_done(struct worker *w, struct conn *c)
{
	c->version = SSL_get_version(c->ssl);
	c->cipher = SSL_get_cipher_name(c->ssl);
	if (SSL_session_reused(c->ssl)) {
		/* No certificate this time: the peer is the one in the ticket. */
		c->resumed = true;
		conn_count(w, c, STAT_RESUMED);
		if (tls_peer_from_session(c->ssl, c->svc->cfg->policy, &c->id)) {
			conn_count(w, c, STAT_DENIED);
			service_count_hs_fail(c->svc, w->id, HS_IDENTITY);
			conn_fail(w, c, "resumed session: %s", policy_verdict_str(c->id.verdict));
			return;
		}
	}
	ocsp_check_begin(w, c);
}

/* Not done yet (wait for what OpenSSL wants), or failed: counted with its reason. */
static void hs_again(struct worker *w, struct conn *c, int r, int saved)
{
	int e = SSL_get_error(c->ssl, r);

	switch (tls_want_from_error(e)) {
	case TLS_WANT_READ:
		conn_poll(w, c, OP_HS_POLL, c->tfd, POLLIN);
		return;
	case TLS_WANT_WRITE:
		conn_poll(w, c, OP_HS_POLL, c->tfd, POLLOUT);
		return;
	default: {
		char why[160];

		service_count_hs_fail(c->svc, w->id,
				      tls_fail_class(c->id.denied, ERR_peek_error(),
						     SSL_get_verify_result(c->ssl), e, saved));
		tls_fail_reason(c->ssl, e, saved, &c->id, why, sizeof(why));
		conn_count(w, c, c->id.denied ? STAT_DENIED : STAT_HANDSHAKE_FAILURES);
		conn_fail(w, c, "%s", why);
	}
	}
}

void handshake_peer_ok(struct worker *w, struct conn *c)
{
	c->hs_done = true;
	if (!hs_keep_peer(w, c))
		return;
	service_count_hs_ok(c->svc, w->id, (loop_now_ns() - c->hs_start_ns) / 1000);
	if (conn_is_server(c)) {
		target_connect(w, c);
	} else {
		deadline_cancel(w, c);
		relay_handoff(w, c);
	}
}

/* c's next handshake step waits its turn; the queue holds c's slot through pending. */
static void hs_queue(struct worker *w, struct conn *c)
{
	if (!w->hs_head)
		w->hs_tail = &w->hs_head;
	c->hs_next = NULL;
	*w->hs_tail = c;
	w->hs_tail = &c->hs_next;
	c->pending++;
}

bool handshake_run(struct worker *w)
{
	unsigned budget = HS_BUDGET;
	struct conn *c;

	while (budget && (c = w->hs_head)) {
		w->hs_head = c->hs_next;
		c->pending--;
		if (!c->closing) {
			if (c->ssl)
				hs_step(w, c);
			else
				tls_start(w, c);
			budget--;
		}
		conn_check_free(w, c);
	}
	return w->hs_head != NULL;
}

/* The TLS side's socket is connected: start the handshake in the service's role. */
static void tls_start(struct worker *w, struct conn *c)
{
	const struct service_config *sc = c->svc->cfg;

	c->ssl = SSL_new(c->svc->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->tfd) != 1) {
		conn_fail(w, c, "cannot create TLS session");
		return;
	}
	SSL_set_app_data(c->ssl, &c->id);
	c->hs_start_ns = loop_now_ns();
	if (conn_is_server(c)) {
		SSL_set_accept_state(c->ssl);
	} else {
		struct sess_cache *cache = conn_sess_cache(w, c);

		SSL_set_connect_state(c->ssl);
		if (sc->server_name)
			SSL_set_tlsext_host_name(c->ssl, sc->server_name);
		if (cache) {
			/* A ticket is used once (RFC 8446 C.4); this connection brings new ones. */
			SSL_SESSION *sess = sess_cache_take(cache, time(NULL));

			if (sess) {
				SSL_set_session(c->ssl, sess);
				SSL_SESSION_free(sess);
			}
			tls_set_session_cache(c->ssl, cache);
		}
	}
	hs_step(w, c);
}

void handshake_begin(struct worker *w, struct conn *c)
{
	if (conn_is_server(c))
		hs_queue(w, c);
	else
		target_connect(w, c);
}

void handshake_on_poll(struct worker *w, struct conn *c, int res)
{
	if (!c->closing)
		hs_queue(w, c);
}

void handshake_on_timeout(struct worker *w, struct conn *c, int res)
{
	c->timeout_armed = false;
	if (res != -ETIME || c->closing)
		return;
	conn_count(w, c, STAT_HANDSHAKE_TIMEOUTS);
	/* Only a handshake under way (or its OCSP check) is a failed handshake; a slow
	 * backend is not. */
	if (c->ssl && !c->hs_done)
		service_count_hs_fail(c->svc, w->id, HS_TIMEOUT);
	if (c->ocsp)
		conn_fail(w, c, "handshake timeout (waiting for the OCSP responder)");
	else if (conn_is_server(c))
		conn_fail(w, c, c->hs_done ? "backend connect timeout" : "handshake timeout");
	else
		conn_fail(w, c, c->connected ? "handshake timeout" : "connect timeout");
}

void handshake_on_connect(struct worker *w, struct conn *c, int res)
{
	if (c->closing)
		return;
	if (res < 0 && c->addr_i + 1u < c->svc->cfg->target_addr.n) {
		/* A name with several addresses (localhost: ::1 and 127.0.0.1): the next one,
		 * within the same connect deadline. */
		int *fd = conn_is_server(c) ? &c->pfd : &c->tfd;

		close(*fd);
		*fd = -1;
		c->addr_i++;
		target_connect(w, c);
		return;
	}
	if (res < 0) {
		conn_count(w, c, STAT_TARGET_CONNECT_FAILURES);
		conn_fail(w, c, "%s connect failed: %s", conn_is_server(c) ? "backend" : "server",
			  strerror(-res));
		return;
	}
	c->connected = true;
	if (conn_is_server(c)) {
		deadline_cancel(w, c);
		relay_handoff(w, c);
	} else {
		hs_queue(w, c);
	}
}

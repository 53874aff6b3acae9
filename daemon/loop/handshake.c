// SPDX-License-Identifier: MIT
/*
 * From accept to relay: the TLS handshake driven by io_uring polls (OpenSSL does its own
 * non-blocking I/O, hs_want says what to wait for), the target connect (server mode after
 * the handshake, client mode before it), one deadline over both, and the hand-off to the
 * relay the runtime chose.
 *
 * Handshake steps (the first, which makes the SSL, and each SSL_do_handshake after a poll)
 * run on the worker's handshake thread (hs_thread.c) at a priority the kernel preempts for
 * the worker: handshake_step_run there, what the step came to (hs_result) handled here on
 * the worker's thread (handshake_on_steps), which keeps the polls, the deadline, counters
 * and logs. Only the step itself crosses: the thread's OpenSSL error queue is its own, so
 * a failure's class and reason are read there.
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

/* What a step on the handshake thread came to (c->hs_res). */
enum hs_result {
	HS_R_SKIPPED, /* c had ended before the step began */
	HS_R_DONE,    /* the handshake completed */
	HS_R_READ,    /* OpenSSL waits for the socket to be readable */
	HS_R_WRITE,   /* ... writable */
	HS_R_FAILED,  /* c->hs_class, c->hs_why */
	HS_R_NO_SSL,  /* the SSL could not be made (out of memory) */
};

static void hs_done(struct worker *w, struct conn *c);

/* Server mode connects to the plaintext backend, client mode to the remote TLS server. */
static void target_connect(struct worker *w, struct conn *c)
{
	const struct daemon_addr *t = &c->svc->cfg->target_addr;
	const struct sockaddr_storage *ss = &t->alt[c->addr_i].ss;
	int fd;

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
	if (ss->ss_family != AF_UNIX)
		conn_tcp_opts(fd);
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

/*
 * Client: tickets go to this worker's cache, on this thread. TLS 1.3 sends them after the
 * handshake, to the relay's reads: the SSL gets the cache now. A TLS 1.2 session is made
 * during the handshake, on the handshake thread, which never touches the cache: it goes in
 * here, as OpenSSL's new-session callback would have put it (after a full handshake only).
 */
static void hs_client_cache(struct worker *w, struct conn *c)
{
	struct sess_cache *cache = conn_is_server(c) ? NULL : conn_sess_cache(w, c);
	SSL_SESSION *sess;

	if (!cache)
		return;
	tls_set_session_cache(c->ssl, cache);
	if (SSL_version(c->ssl) >= TLS1_3_VERSION || SSL_session_reused(c->ssl))
		return;
	sess = SSL_get1_session(c->ssl);
	if (sess && SSL_SESSION_is_resumable(sess) && c->id.tickets < UINT8_MAX)
		c->id.tickets++;
	sess_cache_put(cache, sess);
}

/* The handshake completed: resumption's policy check, then the target or the relay. */
static void hs_done(struct worker *w, struct conn *c)
{
	c->version = SSL_get_version(c->ssl);
	c->cipher = SSL_get_cipher_name(c->ssl);
	hs_client_cache(w, c);
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

/* --- on the handshake thread: c, its SSL and its identity only ----------------------- */

/* The TLS side's socket is connected: the SSL, in the service's role. */
static int tls_new(struct conn *c)
{
	const struct service_config *sc = c->svc->cfg;

	c->ssl = SSL_new(c->svc->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->tfd) != 1)
		return -ENOMEM;
	SSL_set_app_data(c->ssl, &c->id);
	c->hs_start_ns = loop_now_ns();
	if (conn_is_server(c)) {
		SSL_set_accept_state(c->ssl);
		return 0;
	}
	SSL_set_connect_state(c->ssl);
	if (sc->server_name)
		SSL_set_tlsext_host_name(c->ssl, sc->server_name);
	if (c->hs_sess) {
		SSL_set_session(c->ssl, c->hs_sess);
		SSL_SESSION_free(c->hs_sess);
		c->hs_sess = NULL;
	}
	return 0;
}

/* Not done: what OpenSSL waits for, or the failure's class and reason (this thread's). */
static void step_again(struct conn *c, int r, int saved)
{
	int e = SSL_get_error(c->ssl, r);
	char why[160];

	switch (tls_want_from_error(e)) {
	case TLS_WANT_READ:
		c->hs_res = HS_R_READ;
		return;
	case TLS_WANT_WRITE:
		c->hs_res = HS_R_WRITE;
		return;
	default:
		c->hs_res = HS_R_FAILED;
		c->hs_class = (uint8_t)tls_fail_class(c->id.denied, ERR_peek_error(),
						      SSL_get_verify_result(c->ssl), e, saved);
		tls_fail_reason(c->ssl, e, saved, &c->id, why, sizeof(why));
		c->hs_why = strdup(why);
	}
}

void handshake_step_run(struct conn *c)
{
	int r;

	if (atomic_load_explicit(&c->hs_cancel, memory_order_relaxed)) {
		c->hs_res = HS_R_SKIPPED;
		return;
	}
	ERR_clear_error();
	if (!c->ssl && tls_new(c)) {
		c->hs_res = HS_R_NO_SSL;
		return;
	}
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1)
		c->hs_res = HS_R_DONE;
	else
		step_again(c, r, errno);
	ERR_clear_error();
}

/* --- back on the worker ----------------------------------------------------------------- */

/* c's next handshake step goes to the handshake thread; pending holds c's slot meanwhile. */
static void hs_queue(struct worker *w, struct conn *c)
{
	struct sess_cache *cache = conn_is_server(c) ? NULL : conn_sess_cache(w, c);

	/* A ticket is used once (RFC 8446 C.4); this connection brings new ones. */
	if (!c->ssl && cache)
		c->hs_sess = sess_cache_take(cache, time(NULL));
	c->pending++;
	c->hs_out = true;
	hs_thread_push(w, c);
}

static void hs_failed(struct worker *w, struct conn *c)
{
	service_count_hs_fail(c->svc, w->id, (enum hs_reason)c->hs_class);
	conn_count(w, c, c->id.denied ? STAT_DENIED : STAT_HANDSHAKE_FAILURES);
	conn_fail(w, c, "%s", c->hs_why ? c->hs_why : "handshake failed");
}

static void hs_result(struct worker *w, struct conn *c)
{
	switch (c->hs_res) {
	case HS_R_DONE:
		hs_done(w, c);
		break;
	case HS_R_READ:
		conn_poll(w, c, OP_HS_POLL, c->tfd, POLLIN);
		break;
	case HS_R_WRITE:
		conn_poll(w, c, OP_HS_POLL, c->tfd, POLLOUT);
		break;
	case HS_R_FAILED:
		hs_failed(w, c);
		break;
	default:
		conn_fail(w, c, "cannot create TLS session");
	}
	free(c->hs_why);
	c->hs_why = NULL;
}

void handshake_on_steps(struct worker *w)
{
	struct conn *c = hs_thread_take(w), *next;

	for (; c; c = next) {
		next = c->hs_next;
		c->hs_next = NULL;
		c->hs_out = false;
		c->pending--;
		if (!c->closing)
			hs_result(w, c);
		conn_check_free(w, c);
	}
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
	if ((c->hs_out || c->ssl) && !c->hs_done)
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

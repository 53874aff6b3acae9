// SPDX-License-Identifier: MIT
/*
 * The agent's loop: one thread, one io_uring (Linux 6.5+ anyway for the upcall), limited
 * to the operations it uses: POLL_ADD, TIMEOUT, ASYNC_CANCEL (ring_limit). Sources of completions:
 *   OP_NL    the netlink event socket is readable: READY notifications; ACCEPT follows
 *   OP_SIG   signalfd: SIGINT/SIGTERM stop the agent
 *   OP_TICK  a 100 ms timer: handshakes past their deadline are ended
 *   OP_HS    a handshake socket is readable/writable: OpenSSL runs one more step
 *   OP_WATCH, OP_DEBOUNCE  a watched file changed / its debounce ran out: reload
 * A slot holds one accepted request from ACCEPT to DONE. It is reused only when no poll of
 * it is pending (user_data carries {op, generation, index}, stale completions are dropped),
 * because a pending poll holds a reference on the consumer's socket file.
 *
 * One handshake: ACCEPT gives the consumer's socket -> non-blocking, SSL on it -> polls until
 * OpenSSL is done -> peer certificate into a kernel key (server role) -> libktls installs
 * TLS_TX/TLS_RX -> the socket's flags restored -> DONE(status, REMOTE_AUTH) -> close our fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "agent.h"
#include "filewatch.h"
#include "hs_want.h"
#include "ktlsd/ktls.h"
#include "peer_key.h"
#include "psk.h"
#include "tlsctx.h"

enum { OP_NL = 1, OP_SIG, OP_TICK, OP_HS, OP_CANCEL, OP_WATCH, OP_DEBOUNCE };
#define TICK_NS	     100000000ull
#define RING_ENTRIES 256

struct hs_slot {
	bool used;
	bool poll_pending;
	bool expired; /* deadline passed while a poll was pending: end when it returns */
	uint32_t gen;
	int fd;
	int saved_flags; /* the consumer's file flags, given back before DONE */
	SSL *ssl;
	struct tls_peer peer;
	struct psk psk; /* auth=psk: the key agreed on (len 0 until then) */
	struct upcall_req req;
	bool server;
	uint64_t start_ns, deadline_ns;
	char addr[INET6_ADDRSTRLEN + 8];
	const char *consumer;
};

struct agent {
	struct io_uring ring;
	struct upcall_nl *nl;
	const struct agent_tls *tls;
	const struct agent_opts *o;
	struct agent_stats *st;
	struct hs_slot *slots;
	unsigned n_used;
	int sigfd;
	bool stop;
	bool want_accept;
	struct __kernel_timespec tick;
	int watch_fd;	    /* the inotify fd a poll is armed on, or -1 */
	uint32_t watch_gen; /* that poll's generation: one on a replaced fd is dropped */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ud_make(unsigned op, uint32_t gen, uint32_t idx)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | idx;
}

static struct io_uring_sqe *sqe_get(struct agent *a)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);

	if (!sqe) {
		io_uring_submit(&a->ring);
		sqe = io_uring_get_sqe(&a->ring);
	}
	return sqe; /* never NULL after a submit: the ring has RING_ENTRIES free slots */
}

static void poll_arm(struct agent *a, int fd, unsigned events, uint64_t ud)
{
	struct io_uring_sqe *sqe = sqe_get(a);

	io_uring_prep_poll_add(sqe, fd, events);
	io_uring_sqe_set_data64(sqe, ud);
}

static void tick_arm(struct agent *a)
{
	struct io_uring_sqe *sqe = sqe_get(a);

	a->tick.tv_sec = 0;
	a->tick.tv_nsec = (long long)TICK_NS;
	io_uring_prep_timeout(sqe, &a->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_TICK, 0, 0));
}

static uint32_t slot_idx(const struct agent *a, const struct hs_slot *s)
{
	return (uint32_t)(s - a->slots);
}

static void hs_poll(struct agent *a, struct hs_slot *s, unsigned events)
{
	s->poll_pending = true;
	poll_arm(a, s->fd, events, ud_make(OP_HS, s->gen, slot_idx(a, s)));
}

/* --- the end of a request: DONE, close, one log line ------------------------------------ */

struct hs_result {
	int status; /* 0 or a positive errno, as DONE carries it */
	const char *outcome;
	const char *reason;
	int32_t remote_auth; /* 0: none */
	const char *version, *cipher;
	enum hs_reason cls; /* a failed one's, for /metrics */
};

static void hs_log(struct agent *a, const struct hs_slot *s, const struct hs_result *r, int done_rc)
{
	char ms[24], serial[16], st[16], timeout[16];
	const struct tls_peer *p = &s->peer;
	const char *id = p->id ? p->id : NULL;

	snprintf(ms, sizeof(ms), "%.1f", (double)(now_ns() - s->start_ns) / 1e6);
	snprintf(serial, sizeof(serial), "%d", r->remote_auth);
	snprintf(st, sizeof(st), "%d", r->status);
	/* The timeout in force: the kernel's TIMEOUT, or ours where it gave none or more. */
	snprintf(timeout, sizeof(timeout), "%llu",
		 (unsigned long long)((s->deadline_ns - s->start_ns) / 1000000ull));
	struct log_kv kv[] = {
		{ "consumer", s->consumer },
		{ "role", s->server ? "server" : "client" },
		{ "auth", upcall_auth_name(s->req.auth) },
		{ "peer", s->addr },
		{ "peername", s->req.peername },
		{ "peer_id", id },
		{ "claimed_uri", id ? NULL : p->claimed_uri },
		{ "claimed_cn", id ? NULL : p->claimed_cn },
		{ "outcome", r->outcome },
		{ "status", st },
		{ "reason", r->reason },
		{ "version", r->version },
		{ "cipher", r->cipher },
		{ "remote_auth", r->remote_auth ? serial : NULL },
		{ "timeout_ms", timeout },
		{ "ms", ms },
		{ "done_error", done_rc ? strerror(-done_rc) : NULL },
	};
	log_kv(a->o->log_format, r->status ? "warn" : "info", "agent_handshake", kv,
	       (int)(sizeof(kv) / sizeof(kv[0])));
}

static void hs_count(struct agent *a, const struct hs_slot *s, const struct hs_result *r,
		     int done_rc)
{
	struct agent_end e = {
		.consumer = s->consumer,
		.server = s->server,
		.outcome = r->outcome,
		.reason = r->cls,
		.us = (now_ns() - s->start_ns) / 1000,
		.done_rc = done_rc,
	};

	agent_stats_end(a->st, &e);
}

/* Exactly once per accepted request; the slot must have no poll pending. */
static void hs_end(struct agent *a, struct hs_slot *s, const struct hs_result *r)
{
	int32_t auth = r->remote_auth;
	int rc;

	if (s->saved_flags >= 0)
		fcntl(s->fd, F_SETFL, s->saved_flags);
	rc = upcall_nl_done(a->nl, s->fd, r->status, auth ? &auth : NULL, auth ? 1 : 0);
	close(s->fd);
	/* Counted first: a scraper that sees the log line sees the count. */
	hs_count(a, s, r, rc);
	hs_log(a, s, r, rc);
	SSL_free(s->ssl);
	tls_peer_clear(&s->peer);
	psk_clear(&s->psk);
	uint32_t gen = s->gen + 1;

	memset(s, 0, sizeof(*s));
	s->gen = gen;
	s->fd = -1;
	a->n_used--;
	a->want_accept = true;
}

static void hs_fail(struct agent *a, struct hs_slot *s, int status, const char *outcome,
		    const char *reason)
{
	struct hs_result r = { .status = status, .outcome = outcome, .reason = reason };

	r.cls = status == ETIMEDOUT ? HS_TIMEOUT : HS_OTHER;
	hs_end(a, s, &r);
}

/* --- a handshake that completed ---------------------------------------------------------- */

/*
 * Server role with a verified client certificate: its kernel key is what tells nfsd the
 * client authenticated. Without one (xprtsec=tls clients) REMOTE_AUTH stays empty.
 */
static int hs_remote_auth(struct agent *a, struct hs_slot *s, int32_t *ret_serial, char *reason,
			  size_t len)
{
	X509 *x = SSL_get0_peer_certificate(s->ssl);
	const char *type = NULL;
	int rc;

	*ret_serial = 0;
	if (!x || SSL_get_verify_result(s->ssl) != X509_V_OK)
		return 0;
	rc = peer_key_add(x, ret_serial, &type);
	if (rc) {
		snprintf(reason, len, "peer certificate into a kernel key: %s", strerror(-rc));
		return rc;
	}
	agent_stats_peer_key(a->st);
	if (strcmp(type, "asymmetric"))
		snprintf(reason, len, "peer key stored as a \"%s\" key", type);
	return 0;
}

static int hs_psk_auth(struct hs_slot *s, int32_t *ret_serial, char *reason, size_t len)
{
	if (!s->psk.len || !SSL_session_reused(s->ssl)) {
		snprintf(reason, len, "no PSK was agreed on");
		return -EACCES;
	}
	*ret_serial = s->psk.serial;
	return 0;
}

static void hs_complete(struct agent *a, struct hs_slot *s)
{
	struct hs_result r = { .outcome = "ok" };
	struct ktls_conn *kc = NULL;
	char reason[160] = "";
	int rc = 0;

	r.version = SSL_get_version(s->ssl);
	r.cipher = SSL_get_cipher_name(s->ssl);
	if (s->req.auth == UPCALL_AUTH_PSK)
		/* NVMe wants the serial of the PSK the handshake used, on both sides. */
		rc = hs_psk_auth(s, &r.remote_auth, reason, sizeof(reason));
	else if (s->server)
		rc = hs_remote_auth(a, s, &r.remote_auth, reason, sizeof(reason));
	if (!rc) {
		rc = ktls_install(s->ssl, s->fd, &kc);
		agent_stats_ktls(a->st, !rc);
		if (rc)
			snprintf(reason, sizeof(reason), "kTLS install: %s", ktls_strerror(rc));
	}
	/* The kernel owns the session now; nothing of it stays here. */
	ktls_conn_free(kc);
	if (rc) {
		r.status = rc == -EACCES ? EACCES : EIO;
		r.outcome = rc == -EACCES ? "refused" : "failed";
		/* EACCES here: no PSK was agreed on, the peer's identity is unknown. */
		r.cls = rc == -EACCES ? HS_IDENTITY : HS_OTHER;
		r.remote_auth = 0;
	}
	r.reason = reason[0] ? reason : NULL;
	hs_end(a, s, &r);
}

/* --- a handshake in progress -------------------------------------------------------------- */

static void hs_failed(struct agent *a, struct hs_slot *s, int ssl_err, int saved_errno)
{
	char reason[256];
	long verify = SSL_get_verify_result(s->ssl);
	bool untrusted = s->peer.denied || verify != X509_V_OK;
	struct hs_result r = { .status = untrusted ? EACCES : EIO,
			       .outcome = untrusted ? "refused" : "failed",
			       .reason = reason };

	/* Classified before tls_fail_reason, which empties the error queue. */
	r.cls = tls_fail_class(s->peer.denied, ERR_peek_error(), verify, ssl_err, saved_errno);
	tls_fail_reason(s->ssl, ssl_err, saved_errno, &s->peer, reason, sizeof(reason));
	hs_end(a, s, &r);
}

static void hs_step(struct agent *a, struct hs_slot *s)
{
	int ret, err;

	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(s->ssl);
	err = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, ret);
	switch (tls_want_from_error(err)) {
	case TLS_WANT_DONE:
		hs_complete(a, s);
		return;
	case TLS_WANT_READ:
		hs_poll(a, s, POLLIN);
		return;
	case TLS_WANT_WRITE:
		hs_poll(a, s, POLLOUT);
		return;
	default:
		hs_failed(a, s, err, errno);
	}
}

/* --- a new request ------------------------------------------------------------------------ */

static void slot_describe(struct hs_slot *s)
{
	struct sockaddr_storage ss = { 0 }, ls = { 0 };
	socklen_t len = sizeof(ss), llen = sizeof(ls);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0, lport = 0;

	if (!getpeername(s->fd, (struct sockaddr *)&ss, &len) && ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	if (!getsockname(s->fd, (struct sockaddr *)&ls, &llen) &&
	    (ls.ss_family == AF_INET || ls.ss_family == AF_INET6))
		/* sin_port and sin6_port sit at the same offset. */
		lport = ntohs(((struct sockaddr_in *)&ls)->sin_port);
	snprintf(s->addr, sizeof(s->addr), "%s:%u", host, port);
	/* The handler class is tlshd for both: the well-known port names the consumer. */
	if (port == 2049 || lport == 2049)
		s->consumer = "nfs";
	else if (port == 4420 || lport == 4420)
		s->consumer = "nvme";
	else
		s->consumer = "tlshd";
}

/* Client role: the server's certificate must name what the consumer asked for. */
static int client_setup(struct agent *a, struct hs_slot *s, const char **reason)
{
	const char *name = s->req.peername;
	X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
	unsigned char bin[16];
	bool ip;

	if (!name[0]) {
		/* No PEERNAME: the address the consumer connected to must be in an IP SAN. */
		snprintf(s->req.peername, sizeof(s->req.peername), "%s", s->addr);
		char *colon = strrchr(s->req.peername, ':');

		if (colon)
			*colon = '\0';
	}
	ip = inet_pton(AF_INET, name, bin) == 1 || inet_pton(AF_INET6, name, bin) == 1;
	if (!ip && SSL_set_tlsext_host_name(s->ssl, name) != 1)
		return *reason = "PEERNAME is no valid server name", -EINVAL;
	if (a->tls->verify_peername && (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
					   : X509_VERIFY_PARAM_set1_host(vp, name, 0)) != 1)
		return *reason = "PEERNAME is no valid host name or address", -EINVAL;
	if (s->req.auth != UPCALL_AUTH_X509 || !a->tls->client_cert)
		/* xprtsec=tls: the consumer asked for no client authentication. */
		SSL_certs_clear(s->ssl);
	return 0;
}

/* --- TLS 1.3 external PSK (NVMe/TCP) ------------------------------------------------------ */

static struct hs_slot *slot_of(SSL *ssl)
{
	return (struct hs_slot *)((char *)SSL_get_app_data(ssl) - offsetof(struct hs_slot, peer));
}

/* Client: offer the PSK the consumer named; after a HelloRetryRequest only if its hash fits. */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		      SSL_SESSION **sess)
{
	struct hs_slot *s = slot_of(ssl);
	SSL_SESSION *ps = NULL;

	*sess = NULL;
	if (psk_session(ssl, &s->psk, &ps))
		return 0;
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(ps))) {
		SSL_SESSION_free(ps);
		return 1;
	}
	*id = (const unsigned char *)s->psk.identity;
	*idlen = strlen(s->psk.identity);
	*sess = ps;
	return 1;
}

/* Server: the identity the client offered, looked up in the consumer's keyring. */
static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct hs_slot *s = slot_of(ssl);
	int rc;

	*sess = NULL;
	rc = psk_find((int32_t)s->req.keyring, id, idlen, &s->psk);
	if (rc == -ENOKEY || rc == -EINVAL)
		return 1; /* unknown identity: no PSK, and hs_psk_auth refuses */
	if (rc || psk_session(ssl, &s->psk, sess))
		return 0;
	return 1;
}

static int psk_client_key(struct hs_slot *s)
{
	int rc = -ENOKEY;

	for (size_t i = 0; i < s->req.n_peerids && rc; i++)
		rc = psk_read(s->req.peerids[i], &s->psk);
	return rc;
}

static int psk_setup(struct agent *a, struct hs_slot *s, const char **reason)
{
	int32_t ring = (int32_t)s->req.keyring;

	/* Kernels that name no keyring: the one configured (--psk-keyring, ".nvme"). */
	if (!ring && psk_keyring_by_name(a->tls->psk_keyring, &ring))
		return *reason = "no KEYRING given and --psk-keyring not found", -ENOKEY;
	s->req.keyring = (uint32_t)ring;
	/* Possessing the keyring is what lets us search it and read its keys. */
	psk_keyring_link(ring);
	SSL_certs_clear(s->ssl);
	if (s->server) {
		SSL_set_psk_find_session_callback(s->ssl, psk_find_cb);
		SSL_set_verify(s->ssl, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	if (psk_client_key(s))
		return *reason = "no PSK readable among the PEER_IDENTITY key serials", -ENOKEY;
	SSL_set_psk_use_session_callback(s->ssl, psk_use_cb);
	return 0;
}

static int hs_setup(struct agent *a, struct hs_slot *s, const char **reason)
{
	SSL_CTX *ctx;
	if (s->req.msg_type != UPCALL_MSG_CLIENTHELLO && s->req.msg_type != UPCALL_MSG_SERVERHELLO)
		return *reason = "unknown MESSAGE_TYPE", -EINVAL;
	s->server = s->req.msg_type == UPCALL_MSG_SERVERHELLO;
	ctx = s->server ? a->tls->server : a->tls->client;
	if (!ctx)
		return *reason = s->server ? "no --cert/--key: cannot serve a kernel TLS server"
					   : "no --cacert client context",
		       -EOPNOTSUPP;
	s->ssl = SSL_new(ctx);
	if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1)
		return *reason = "out of memory", -ENOMEM;
	SSL_set_app_data(s->ssl, &s->peer);
	if (s->server)
		SSL_set_accept_state(s->ssl);
	else
		SSL_set_connect_state(s->ssl);
	if (s->req.auth == UPCALL_AUTH_PSK)
		return psk_setup(a, s, reason);
	if (!s->server)
		return client_setup(a, s, reason);
	return 0;
}

static void hs_start(struct agent *a, struct hs_slot *s, const struct upcall_req *req)
{
	uint64_t timeout = req->timeout_ms && req->timeout_ms < a->o->timeout_ms ? req->timeout_ms
										 : a->o->timeout_ms;
	const char *reason = NULL;
	int rc;

	s->used = true;
	s->req = *req;
	s->fd = req->fd;
	s->start_ns = now_ns();
	s->deadline_ns = s->start_ns + timeout * 1000000ull;
	a->n_used++;
	agent_stats_begin(a->st);
	slot_describe(s);
	s->saved_flags = fcntl(s->fd, F_GETFL);
	if (s->saved_flags < 0 || fcntl(s->fd, F_SETFL, s->saved_flags | O_NONBLOCK) < 0) {
		hs_fail(a, s, EIO, "failed", "cannot make the socket non-blocking");
		return;
	}
	rc = hs_setup(a, s, &reason);
	if (rc) {
		hs_fail(a, s, -rc, rc == -EOPNOTSUPP ? "unsupported" : "failed", reason);
		return;
	}
	hs_step(a, s);
}

static struct hs_slot *slot_free(struct agent *a)
{
	for (unsigned i = 0; i < a->o->max_handshakes; i++)
		if (!a->slots[i].used && !a->slots[i].poll_pending)
			return &a->slots[i];
	return NULL;
}

/* Takes pending requests while a slot is free; the rest wait in the kernel's queue. */
static void accept_more(struct agent *a)
{
	a->want_accept = false;
	while (!a->stop) {
		struct hs_slot *s = slot_free(a);
		struct upcall_req req;
		int rc;

		if (!s)
			return;
		rc = upcall_nl_accept(a->nl, &req);
		if (rc == -EAGAIN)
			return;
		if (rc) {
			struct log_kv kv[] = { { "error", strerror(-rc) } };

			log_kv(a->o->log_format, "warn", "agent_accept_failed", kv, 1);
			return;
		}
		hs_start(a, s, &req);
	}
}

/* --- completions -------------------------------------------------------------------------- */

static void on_hs(struct agent *a, uint32_t gen, uint32_t idx, int res)
{
	struct hs_slot *s = idx < a->o->max_handshakes ? &a->slots[idx] : NULL;

	if (!s || (s->gen & 0xffffff) != gen || !s->used)
		return;
	s->poll_pending = false;
	if (s->expired) {
		hs_fail(a, s, ETIMEDOUT, "timeout", "handshake took longer than its TIMEOUT");
		return;
	}
	if (a->stop) {
		hs_fail(a, s, ESHUTDOWN, "failed", "agent stopping");
		return;
	}
	if (res < 0) {
		hs_fail(a, s, EIO, "failed", strerror(-res));
		return;
	}
	hs_step(a, s);
}

/* Ends handshakes past their deadline (or all, when stopping) by cancelling their poll. */
static void expire(struct agent *a, bool all)
{
	uint64_t now = now_ns();

	for (unsigned i = 0; i < a->o->max_handshakes; i++) {
		struct hs_slot *s = &a->slots[i];
		struct io_uring_sqe *sqe;

		if (!s->used || !s->poll_pending || s->expired || (!all && now < s->deadline_ns))
			continue;
		s->expired = !all;
		sqe = sqe_get(a);
		io_uring_prep_cancel64(sqe, ud_make(OP_HS, s->gen, i), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, 0, 0));
	}
}

static void on_nl(struct agent *a, int res)
{
	int n = upcall_nl_read_events(a->nl);

	if (n < 0 && n != -ENOBUFS) {
		struct log_kv kv[] = { { "error", strerror(-n) } };

		log_kv(a->o->log_format, "warn", "agent_netlink_error", kv, 1);
	}
	(void)res;
	a->want_accept = true;
	poll_arm(a, upcall_nl_event_fd(a->nl), POLLIN, ud_make(OP_NL, 0, 0));
}

/* --- reload ------------------------------------------------------------------------------- */

static struct filewatch *watch_of(const struct agent *a)
{
	return a->o->reload ? a->o->reload->watch : NULL;
}

/* The poll on the watch's inotify fd, moved over when a reload made a new one. */
static void watch_arm(struct agent *a)
{
	struct filewatch *w = watch_of(a);
	struct io_uring_sqe *sqe;

	if (!w || w->ifd == a->watch_fd)
		return;
	if (a->watch_fd >= 0) {
		/* The old fd is closed already; its poll holds the file until cancelled. */
		sqe = sqe_get(a);
		io_uring_prep_cancel64(sqe, ud_make(OP_WATCH, a->watch_gen, 0), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, 0, 0));
	}
	a->watch_gen = (a->watch_gen + 1) & 0xffffff;
	a->watch_fd = w->ifd;
	if (w->ifd >= 0)
		poll_arm(a, w->ifd, POLLIN, ud_make(OP_WATCH, a->watch_gen, 0));
}

static void reload_now(struct agent *a, const char *why)
{
	a->o->reload->fn(a->o->reload->arg, why);
	watch_arm(a);
}

static void on_watch(struct agent *a, uint32_t gen)
{
	struct filewatch *w = watch_of(a);

	if (gen != a->watch_gen || a->stop)
		return;
	filewatch_on_events(w);
	poll_arm(a, w->ifd, POLLIN, ud_make(OP_WATCH, a->watch_gen, 0));
}

static void on_debounce(struct agent *a)
{
	struct filewatch *w = watch_of(a);

	if (a->stop)
		return;
	if (filewatch_on_timer(w))
		reload_now(a, "file change");
	poll_arm(a, w->tfd, POLLIN, ud_make(OP_DEBOUNCE, 0, 0));
}

static void on_sig(struct agent *a)
{
	struct signalfd_siginfo si;

	while (read(a->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
			a->stop = true;
		else if (si.ssi_signo == SIGHUP && a->o->reload && !a->stop)
			reload_now(a, "SIGHUP");
	}
	if (a->stop)
		expire(a, true);
	else
		poll_arm(a, a->sigfd, POLLIN, ud_make(OP_SIG, 0, 0));
}

static void dispatch(struct agent *a, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned op = (unsigned)(ud >> 56);

	switch (op) {
	case OP_NL:
		on_nl(a, cqe->res);
		break;
	case OP_SIG:
		on_sig(a);
		break;
	case OP_TICK:
		expire(a, false);
		if (!a->stop)
			tick_arm(a);
		break;
	case OP_HS:
		on_hs(a, (uint32_t)(ud >> 32) & 0xffffff, (uint32_t)ud, cqe->res);
		break;
	case OP_WATCH:
		on_watch(a, (uint32_t)(ud >> 32) & 0xffffff);
		break;
	case OP_DEBOUNCE:
		on_debounce(a);
		break;
	default: /* OP_CANCEL: the cancelled poll reports itself */
		break;
	}
}

static int signals_open(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static void loop(struct agent *a)
{
	accept_more(a); /* requests queued before we joined the group */
	while (!a->stop || a->n_used) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc = io_uring_submit_and_wait(&a->ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -ETIME)
			break;
		io_uring_for_each_cqe(&a->ring, head, cqe)
		{
			dispatch(a, cqe);
			n++;
		}
		io_uring_cq_advance(&a->ring, n);
		if (a->want_accept)
			accept_more(a);
	}
}

/*
 * The ring may do only what the loop submits (the same guard as the server's rings,
 * loop/ring.c): code running in the agent cannot have the kernel open, send or read for
 * it past the seccomp allowlist. Raw syscalls: Debian 12's liburing 2.3 does not export
 * its helpers.
 */
static int ring_limit(struct io_uring *ring)
{
	static const uint8_t ops[] = { IORING_OP_POLL_ADD, IORING_OP_TIMEOUT,
				       IORING_OP_ASYNC_CANCEL };
	struct io_uring_restriction res[sizeof(ops)];

	memset(res, 0, sizeof(res));
	for (size_t i = 0; i < sizeof(ops); i++) {
		res[i].opcode = IORING_RESTRICTION_SQE_OP;
		res[i].sqe_op = ops[i];
	}
	if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, res,
		    (unsigned)sizeof(ops)) ||
	    syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0))
		return -errno;
	return 0;
}

static int ring_open(struct agent *a)
{
	int rc = io_uring_queue_init(RING_ENTRIES, &a->ring, IORING_SETUP_R_DISABLED);

	if (rc)
		return rc;
	rc = ring_limit(&a->ring);
	if (!rc && a->o->ring_ready)
		rc = a->o->ring_ready(a->o->ring_arg);
	if (rc)
		io_uring_queue_exit(&a->ring);
	return rc;
}

static void sources_arm(struct agent *a)
{
	struct filewatch *w = watch_of(a);

	poll_arm(a, upcall_nl_event_fd(a->nl), POLLIN, ud_make(OP_NL, 0, 0));
	poll_arm(a, a->sigfd, POLLIN, ud_make(OP_SIG, 0, 0));
	tick_arm(a);
	watch_arm(a);
	if (w && w->tfd >= 0)
		poll_arm(a, w->tfd, POLLIN, ud_make(OP_DEBOUNCE, 0, 0));
}

int agent_run(const struct agent_opts *o, const struct agent_tls *tls, struct upcall_nl *nl,
	      struct agent_stats *stats)
{
	struct agent a = { .nl = nl, .tls = tls, .o = o, .st = stats, .watch_fd = -1 };
	int rc;

	a.slots = calloc(o->max_handshakes, sizeof(*a.slots));
	if (!a.slots)
		return -ENOMEM;
	for (unsigned i = 0; i < o->max_handshakes; i++)
		a.slots[i].fd = -1;
	a.sigfd = signals_open();
	if (a.sigfd < 0) {
		rc = a.sigfd;
		goto out_free;
	}
	rc = ring_open(&a);
	if (rc)
		goto out_close;
	sources_arm(&a);
	loop(&a);
	io_uring_queue_exit(&a.ring);
out_close:
	close(a.sigfd);
out_free:
	free(a.slots);
	return rc;
}

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
 * then bytes move either through kTLS + IORING_OP_SPLICE (relay_ktls.c) or through
 * SSL_read/SSL_write in large chunks (below).
 *
 * Limits a peer can push against, each counted and logged at most once per 10 s per
 * worker: max_conns and max_handshakes (service-wide atomics), handshakes per client
 * address (a table per worker: no lock on accept), running out of descriptors (accepting
 * pauses 100 ms, the connections wait in the listen backlog), and idle established
 * connections (one sweep timer per worker compares each one's last-I/O time, no timer per
 * connection).
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

#include "ktlsd/ktls.h"
#include "log.h"
#include "proxy_v2.h"
#include "secmem.h"
#include "sess_cache.h"
#include "worker.h"

#define RING_ENTRIES 4096
#define POOL_MAX     64
#define NS	     1000000000ull
#define RL_INTERVAL  (10 * NS) /* one line per limit kind, worker and service */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t worker_ud(enum op op, const struct conn *c)
{
	uint64_t gen = c ? c->gen & 0xffffff : 0, idx = c ? c->idx : 0;

	return (uint64_t)op << 56 | gen << 32 | idx;
}

static uint64_t ud_raw(enum op op, uint32_t idx)
{
	return (uint64_t)op << 56 | idx;
}

struct io_uring_sqe *worker_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	/* SQ full: hand the batch to the kernel and take a fresh entry. */
	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c, enum op op)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_sqe_set_data64(sqe, worker_ud(op, c));
	c->pending++;
	return sqe;
}

static void ignore_sqe(struct worker *w, struct io_uring_sqe **ret)
{
	*ret = worker_sqe(w);
	io_uring_sqe_set_data64(*ret, ud_raw(OP_IGNORE, 0));
}

/*
 * A recurring event may log now (true, with how many were not logged since the last line
 * in *ret_suppressed) or only be counted (false): a flood of refusals cannot flood the log.
 */
static bool ratelim_pass(struct ratelim *r, uint64_t now, unsigned *ret_suppressed)
{
	if (r->last_ns && now - r->last_ns < RL_INTERVAL) {
		r->suppressed++;
		return false;
	}
	*ret_suppressed = r->suppressed;
	r->suppressed = 0;
	r->last_ns = now;
	return true;
}

/* --- handshakes per client address: one table per worker and service --------------- */

/* The 16 address bytes mixed under the worker's random seed (splitmix64 finalizers). */
static uint32_t src_hash(const struct src_table *t, const uint8_t addr[16])
{
	uint64_t a, b, h;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	h = (a ^ t->seed) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	h = (h ^ b ^ (t->seed >> 7)) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	h *= 0x94d049bb133111ebull;
	return (uint32_t)(h ^ (h >> 31));
}

/* The slot holding addr, or the empty slot where it would go (the table is never full). */
static struct src_entry *src_slot(const struct src_table *t, const uint8_t addr[16])
{
	uint32_t i = src_hash(t, addr) & t->mask;

	while (t->e[i].n && memcmp(t->e[i].addr, addr, 16))
		i = (i + 1) & t->mask;
	return &t->e[i];
}

/* Doubles the table; it never shrinks, so its size follows the peak of handshakes. */
static int src_grow(struct src_table *t)
{
	uint32_t cap = t->e ? (t->mask + 1) * 2 : 64;
	struct src_table n = { .mask = cap - 1, .used = t->used, .seed = t->seed };

	n.e = calloc(cap, sizeof(*n.e));
	if (!n.e)
		return -ENOMEM;
	for (uint32_t i = 0; t->e && i <= t->mask; i++)
		if (t->e[i].n)
			*src_slot(&n, t->e[i].addr) = t->e[i];
	free(t->e);
	*t = n;
	return 0;
}

static uint32_t src_count(const struct src_table *t, const uint8_t addr[16])
{
	return t->e ? src_slot(t, addr)->n : 0;
}

static int src_add(struct src_table *t, const uint8_t addr[16])
{
	struct src_entry *e;
	int rc;

	if (!t->e || (t->used + 1) * 2 > t->mask + 1) {
		rc = src_grow(t);
		if (rc)
			return rc;
	}
	e = src_slot(t, addr);
	if (!e->n) {
		memcpy(e->addr, addr, 16);
		t->used++;
	}
	e->n++;
	return 0;
}

/* Linear probing without tombstones: close the gap by moving later entries back. */
static void src_del(struct src_table *t, const uint8_t addr[16])
{
	struct src_entry *e = src_slot(t, addr);
	uint32_t i = (uint32_t)(e - t->e), j = i;

	if (!e->n || --e->n)
		return;
	t->used--;
	for (;;) {
		uint32_t home;

		j = (j + 1) & t->mask;
		if (!t->e[j].n)
			break;
		home = src_hash(t, t->e[j].addr) & t->mask;
		/* Entry j may fill the hole at i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->e[i] = t->e[j];
		i = j;
	}
	t->e[i].n = 0;
}

/*
 * The key a client is limited under: its IPv4 address (as ::ffff:a.b.c.d, so a dual-stack
 * listener agrees) or its IPv6 /64, the smallest block a site is given: one host with a
 * /64 would otherwise be 2^64 sources.
 */
static bool src_key(const struct sockaddr_storage *ss, uint8_t ret_key[16])
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (ss->ss_family == AF_INET) {
		memcpy(ret_key, mapped, 12);
		memcpy(ret_key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;

		memcpy(ret_key, a, 16);
		if (memcmp(a, mapped, 12))
			memset(ret_key + 8, 0, 8);
		return true;
	}
	return false;
}

/* --- relay buffers: a small per-worker free list, no locks ------------------------- */

/*
 * These buffers hold plaintext between SSL_read/SSL_write and the backend: secmem pages
 * (never in a core file, zero in a forked child), wiped every time they go back to the
 * pool so a buffer handed to the next connection carries nothing of the last one. The
 * wipe is a 64 KiB memset when a direction goes idle, not per record.
 */
static uint8_t *buf_get(struct worker *w)
{
	void *b = w->pool;

	if (b) {
		w->pool = *(void **)b;
		w->n_pool--;
		*(void **)b = NULL;
		return b;
	}
	return secmem_alloc(RELAY_BUF, &b) ? NULL : b;
}

static void buf_put(struct worker *w, uint8_t **slot)
{
	void *b = *slot;

	if (!b)
		return;
	*slot = NULL;
	if (w->n_pool >= POOL_MAX) {
		secmem_free(b, RELAY_BUF);
		return;
	}
	OPENSSL_cleanse(b, RELAY_BUF);
	*(void **)b = w->pool;
	w->pool = b;
	w->n_pool++;
}

/* --- connection table ----------------------------------------------------------------- */

static struct conn *conn_new(struct worker *w)
{
	struct conn *c = calloc(1, sizeof(*c));
	uint32_t idx;

	if (!c)
		return NULL;
	if (!w->n_free) {
		uint32_t n = w->n_slots ? w->n_slots * 2 : 256;
		struct conn **slots = realloc(w->slots, n * sizeof(*slots));
		uint32_t *fr;

		if (!slots)
			goto out_free;
		w->slots = slots;
		fr = realloc(w->free_idx, n * sizeof(*fr));
		if (!fr)
			goto out_free;
		w->free_idx = fr;
		for (uint32_t i = n; i > w->n_slots; i--)
			w->free_idx[w->n_free++] = i - 1;
		memset(w->slots + w->n_slots, 0, (n - w->n_slots) * sizeof(*slots));
		w->n_slots = n;
	}
	idx = w->free_idx[--w->n_free];
	c->idx = idx;
	c->gen = ++w->next_gen;
	c->tfd = c->pfd = -1;
	c->t2p.pipe[0] = c->t2p.pipe[1] = c->p2t.pipe[0] = c->p2t.pipe[1] = -1;
	w->slots[idx] = c;
	w->live++;
	return c;

out_free:
	free(c);
	return NULL;
}

static void conn_log_end(struct worker *w, struct conn *c)
{
	const struct service *s = c->svc;
	char in[24], out[24], dur[24];
	bool ok = c->reason && !strcmp(c->reason, "closed");
	struct log_kv kv[] = {
		{ "service", s->cfg->name },
		{ "peer", c->peer },
		{ "reason", c->reason ? c->reason : "(out of memory)" },
		/* The verified identity under its kind's name, or what an unadmitted peer claimed. */
		{ policy_kind_name(c->id.id_kind), c->hs_done ? c->id.id : NULL },
		{ "claimed_uri", c->hs_done ? NULL : c->id.claimed_uri },
		{ "claimed_dns", c->hs_done ? NULL : c->id.claimed_dns },
		{ "claimed_cn", c->hs_done ? NULL : c->id.claimed_cn },
		{ "claimed_id", c->hs_done ? NULL : c->id.id },
		{ "tls", c->version },
		{ "cipher", c->cipher },
		{ "resumed", !c->hs_done  ? NULL
			     : c->resumed ? "yes"
					  : "no" },
		/* kTLS with the SSL still held: RX never reached the kernel (split install) */
		{ "ktls", !c->hs_done ? NULL
			  : !c->ktls  ? "off"
			  : c->ssl    ? "tx"
				      : "tx+rx" },
		{ "ktls_note", c->note },
		/* the TLS peer's FIN came without close_notify (either relay) */
		{ "bytes_in", in },
		{ "bytes_out", out },
		{ "duration_ms", dur },
	};

	snprintf(in, sizeof(in), "%llu", (unsigned long long)c->t2p.bytes);
	snprintf(out, sizeof(out), "%llu", (unsigned long long)c->p2t.bytes);
	snprintf(dur, sizeof(dur), "%.3f", (double)(now_ns() - c->t_start_ns) / 1e6);
	log_kv(w->rt->cfg->log_format, ok ? "info" : "warn", "conn_end", kv,
	       (int)(sizeof(kv) / sizeof(kv[0])));
}

static struct worker_svc *conn_wsvc(struct worker *w, const struct conn *c)
{
	return &w->svcs[c->si];
}

/* c leaves the handshake phase (its relay started, or it ended): room for the next one. */
static void hs_end(struct worker *w, struct conn *c)
{
	if (!c->in_hs)
		return;
	c->in_hs = false;
	service_gauge_add(c->svc, w->id, GAUGE_HANDSHAKES, -1);
	if (c->src_counted) {
		src_del(&conn_wsvc(w, c)->src, c->src);
		c->src_counted = false;
	}
}

static int set_reason(struct conn *c, const char *reason)
{
	c->reason = strdup(reason);
	return c->reason ? 0 : -ENOMEM;
}

static void conn_release_nosubmit(struct worker *w, struct conn *c)
{
	conn_log_end(w, c);
	hs_end(w, c);
	free(c->reason);
	tls_peer_clear(&c->id);
	SSL_free(c->ssl);
	relay_ktls_release(c);
	if (c->tfd >= 0)
		close(c->tfd);
	if (c->pfd >= 0)
		close(c->pfd);
	buf_put(w, &c->t2p.buf);
	buf_put(w, &c->p2t.buf);
	if (c->counted)
		service_gauge_add(c->svc, w->id, GAUGE_LIVE, -1);
	service_put(c->svc);
	w->slots[c->idx] = NULL;
	w->free_idx[w->n_free++] = c->idx;
	w->live--;
	free(c);
}

static void conn_release(struct worker *w, struct conn *c)
{
	/* Cancels find their target by fd number: let them run before the number can be
	 * reused by the next accept. */
	if (c->cancels_queued)
		io_uring_submit(&w->ring);
	conn_release_nosubmit(w, c);
}

static void conn_check_free(struct worker *w, struct conn *c)
{
	if (c->closing && !c->pending)
		conn_release(w, c);
}

void conn_fail(struct worker *w, struct conn *c, const char *fmt, ...)
{
	struct io_uring_sqe *sqe;
	va_list ap;

	if (c->closing)
		return;
	c->closing = true;
	va_start(ap, fmt);
	if (vasprintf(&c->reason, fmt, ap) < 0)
		c->reason = NULL;
	va_end(ap);
	/* The client hears a clean close_notify where the TLS session is up. */
	if (c->hs_done && !c->p2t.shut) {
		if (c->kc) {
			relay_ktls_close_notify(c);
		} else if (c->ssl) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
			ERR_clear_error();
		}
	}
	/* Wake whatever is blocked on the sockets (io-wq splices), then cancel the rest. */
	if (c->tfd >= 0) {
		shutdown(c->tfd, SHUT_RDWR);
		ignore_sqe(w, &sqe);
		io_uring_prep_cancel_fd(sqe, c->tfd, IORING_ASYNC_CANCEL_ALL);
	}
	if (c->pfd >= 0) {
		shutdown(c->pfd, SHUT_RDWR);
		ignore_sqe(w, &sqe);
		io_uring_prep_cancel_fd(sqe, c->pfd, IORING_ASYNC_CANCEL_ALL);
	}
	if (c->timeout_armed) {
		ignore_sqe(w, &sqe);
		io_uring_prep_timeout_remove(sqe, worker_ud(OP_HS_TIMEOUT, c), 0);
	}
	c->cancels_queued = true;
	/* Not freed here: callers up the stack still hold c. The loop frees it once
	 * pending reaches zero (conn_check_free at the end of each entry point). */
}

void conn_maybe_done(struct worker *w, struct conn *c)
{
	if (c->t2p.shut && c->p2t.shut)
		conn_fail(w, c,
			  c->fin_without_close_notify ? "truncated: no close_notify" : "closed");
}

static void arm_poll(struct worker *w, struct conn *c, enum op op, int fd, unsigned mask)
{
	io_uring_prep_poll_add(conn_sqe(w, c, op), fd, mask);
}

/* --- userspace relay: SSL_read/SSL_write in up to 64 KiB chunks ---------------------- */

static void tls_io_failed(struct worker *w, struct conn *c, const char *what, int ret)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long err = ERR_peek_error();
	const char *side = conn_tls_side(c);

	/* OpenSSL 3 answered the bare FIN with a fatal alert: the session carries nothing
	 * more, and the truncation is why. */
	if (c->fin_without_close_notify)
		conn_fail(w, c, "truncated: no close_notify");
	else if (err)
		conn_fail(w, c, "%s %s: %s", side, what, ERR_reason_error_string(err));
	else if (e == SSL_ERROR_SYSCALL && errno)
		conn_fail(w, c, "%s %s: %s", side, what, strerror(errno));
	else
		conn_fail(w, c, "%s %s: unexpected EOF (no close_notify)", side, what);
	ERR_clear_error();
}

bool conn_tls_read_ended(struct worker *w, struct conn *c, int ret)
{
	if (tls_fin_without_close_notify(c->ssl, ret)) {
		/*
		 * FIN without close_notify (many HTTP clients): the end of the stream all the
		 * same, so the bytes and the half-close still reach the other side; but an
		 * attacker can cut a stream short this way, so the end is logged as a warning
		 * with its own reason and counted. (OpenSSL 3 has already sent the peer a
		 * decode_error alert: nothing more goes back to it.)
		 */
		ERR_clear_error();
		if (!c->fin_without_close_notify)
			service_count(c->svc, w->id, STAT_TRUNCATED);
		c->fin_without_close_notify = true;
		c->t2p.eof = true;
		return true;
	}
	tls_io_failed(w, c, "read", ret);
	return false;
}

static void shut_plain(struct conn *c)
{
	shutdown(c->pfd, SHUT_WR);
}

static void shut_tls(struct conn *c)
{
	ERR_clear_error();
	SSL_shutdown(c->ssl); /* close_notify */
	ERR_clear_error();
	shutdown(c->tfd, SHUT_WR);
}

/*
 * The destination has taken everything buffered for d. At the source's EOF: shut the
 * destination's write side once (shut_dst) and see whether the connection is done;
 * otherwise make sure a buffer is there for the next read. False: stop pumping.
 */
static bool dir_drained(struct worker *w, struct conn *c, struct dir *d,
			void (*shut_dst)(struct conn *c))
{
	d->off = d->len = 0;
	if (d->eof) {
		buf_put(w, &d->buf);
		if (!d->shut) {
			shut_dst(c);
			d->shut = true;
		}
		conn_maybe_done(w, c);
		return false;
	}
	if (!d->buf && !(d->buf = buf_get(w))) {
		conn_fail(w, c, "out of memory");
		return false;
	}
	return true;
}

static void us_pump_t2p(struct worker *w, struct conn *c)
{
	struct dir *d = &c->t2p;

	while (!c->closing) {
		if (d->off < d->len) {
			ssize_t n = send(c->pfd, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EAGAIN) {
					d->busy = true;
					arm_poll(w, c, OP_US_T2P, c->pfd, POLLOUT);
					return;
				}
				conn_fail(w, c, "%s send: %s", conn_plain_side(c), strerror(errno));
				return;
			}
			d->off += (uint32_t)n;
			d->bytes += (uint64_t)n;
			conn_touch(w, c);
			continue;
		}
		if (!dir_drained(w, c, d, shut_plain))
			return;
		/* Drain what OpenSSL can give without blocking, record by record. */
		for (;;) {
			int r;

			ERR_clear_error();
			errno = 0;
			r = SSL_read(c->ssl, d->buf + d->len, (int)(RELAY_BUF - d->len));
			if (r > 0) {
				d->len += (uint32_t)r;
				conn_touch(w, c);
				if (d->len == RELAY_BUF)
					break;
				continue;
			}
			switch (tls_want(c->ssl, r)) {
			case TLS_WANT_READ:
			case TLS_WANT_WRITE:
				if (d->len)
					break;
				buf_put(w, &d->buf);
				d->busy = true;
				arm_poll(w, c, OP_US_T2P, c->tfd,
					 tls_want(c->ssl, r) == TLS_WANT_READ ? POLLIN : POLLOUT);
				return;
			case TLS_WANT_CLOSED:
				d->eof = true;
				break;
			default:
				if (conn_tls_read_ended(w, c, r))
					break;
				return;
			}
			break;
		}
	}
}

static void us_pump_p2t(struct worker *w, struct conn *c)
{
	struct dir *d = &c->p2t;

	while (!c->closing) {
		if (d->off < d->len) {
			int r;

			ERR_clear_error();
			errno = 0;
			r = SSL_write(c->ssl, d->buf + d->off, (int)(d->len - d->off));
			if (r > 0) {
				d->off += (uint32_t)r;
				d->bytes += (uint64_t)r;
				conn_touch(w, c);
				continue;
			}
			switch (tls_want(c->ssl, r)) {
			case TLS_WANT_READ:
			case TLS_WANT_WRITE:
				d->busy = true;
				arm_poll(w, c, OP_US_P2T, c->tfd,
					 tls_want(c->ssl, r) == TLS_WANT_READ ? POLLIN : POLLOUT);
				return;
			default:
				tls_io_failed(w, c, "write", r);
				return;
			}
		}
		if (!dir_drained(w, c, d, shut_tls))
			return;
		ssize_t n = recv(c->pfd, d->buf, RELAY_BUF, 0);

		if (n > 0) {
			d->len = (uint32_t)n;
			conn_touch(w, c);
		} else if (n == 0) {
			d->eof = true;
		} else if (errno == EAGAIN) {
			buf_put(w, &d->buf);
			d->busy = true;
			arm_poll(w, c, OP_US_P2T, c->pfd, POLLIN);
			return;
		} else {
			conn_fail(w, c, "%s recv: %s", conn_plain_side(c), strerror(errno));
			return;
		}
	}
}

/* --- target connect and handshake -------------------------------------------------------- */

static bool is_server(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER;
}

/* Dead peers on idle connections are found after KEEPIDLE + KEEPCNT * KEEPINTVL = 2 min. */
#define KEEPIDLE_S  60
#define KEEPINTVL_S 10
#define KEEPCNT	    6

/*
 * Idle peers must not hold sockets for ever: the kernel probes a silent connection and
 * resets it when the peer is gone (a live peer answers probes, idle_timeout_s ends it).
 */
static void keepalive_on(int fd)
{
	int one = 1, idle = KEEPIDLE_S, intvl = KEEPINTVL_S, cnt = KEEPCNT;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Server mode connects to the plaintext backend, client mode to the remote TLS server. */
static void target_connect(struct worker *w, struct conn *c)
{
	const struct daemon_addr *t = &c->svc->cfg->target_addr;
	const struct sockaddr_storage *ss = &t->alt[c->addr_i].ss;
	int one = 1, fd;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		service_count(c->svc, w->id, STAT_TARGET_CONNECT_FAILURES);
		conn_fail(w, c, "%s socket: %s", conn_plain_side(c), strerror(errno));
		return;
	}
	if (is_server(c))
		c->pfd = fd;
	else
		c->tfd = fd;
	if (ss->ss_family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		keepalive_on(fd);
	}
	io_uring_prep_connect(conn_sqe(w, c, OP_CONNECT), fd, (const struct sockaddr *)ss,
			      t->alt[c->addr_i].len);
}

static void deadline_cancel(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->timeout_armed)
		return;
	ignore_sqe(w, &sqe);
	io_uring_prep_timeout_remove(sqe, worker_ud(OP_HS_TIMEOUT, c), 0);
}

static void relay_start(struct worker *w, struct conn *c);

/*
 * PROXY v2 header with the client's addresses and verified identity, sent to the backend
 * before any relayed byte. The backend socket was just connected, so its empty send buffer
 * takes the whole header (<= PROXY_V2_MAX_LEN) in one send: a short write is an error.
 * An identity too long for the header fails the connection rather than being cut.
 */
static int proxy_header_send(struct conn *c)
{
	/* The verified identity, under the TLV its kind has; the SPIFFE TLV only for an ID. */
	const char *id = c->id.id;
	const char *id_cn = c->id.id_kind == POLICY_CN ? id : NULL;
	const char *id_uri =
		c->id.id_kind == POLICY_URI && id && policy_spiffe_id_valid(id, strlen(id)) ? id
											    : NULL;
	struct proxy_v2_info pi;
	uint8_t hdr[PROXY_V2_MAX_LEN];
	size_t len;
	ssize_t n;
	int rc;

	rc = proxy_v2_info_from_ssl(c->ssl, c->tfd, id_cn, id_uri, &pi);
	if (rc)
		return rc;
	rc = proxy_v2_encode(&pi, hdr, sizeof(hdr), &len);
	if (rc)
		return rc;
	n = send(c->pfd, hdr, len, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

static void hs_step(struct worker *w, struct conn *c)
{
	int r, e, saved;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->version = SSL_get_version(c->ssl);
		c->cipher = SSL_get_cipher_name(c->ssl);
		if (SSL_session_reused(c->ssl)) {
			/* No certificate this time: the peer is the one in the ticket. */
			c->resumed = true;
			service_count(c->svc, w->id, STAT_RESUMED);
			if (!tls_peer_from_session(c->ssl, c->svc->cfg->policy, &c->id)) {
				service_count(c->svc, w->id, STAT_DENIED);
				conn_fail(w, c, "resumed session: %s",
					  policy_verdict_str(c->id.verdict));
				return;
			}
		}
		c->hs_done = true;
		if (is_server(c)) {
			target_connect(w, c);
		} else {
			deadline_cancel(w, c);
			relay_start(w, c);
		}
		return;
	}
	saved = errno;
	e = SSL_get_error(c->ssl, r);
	switch (tls_want_from_error(e)) {
	case TLS_WANT_READ:
		arm_poll(w, c, OP_HS_POLL, c->tfd, POLLIN);
		return;
	case TLS_WANT_WRITE:
		arm_poll(w, c, OP_HS_POLL, c->tfd, POLLOUT);
		return;
	default: {
		char why[160];

		tls_fail_reason(c->ssl, e, saved, &c->id, why, sizeof(why));
		service_count(c->svc, w->id, c->id.denied ? STAT_DENIED : STAT_HANDSHAKE_FAILURES);
		conn_fail(w, c, "%s", why);
	}
	}
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
	if (is_server(c)) {
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

static void relay_start(struct worker *w, struct conn *c)
{
	hs_end(w, c);
	c->relaying = true;
	conn_touch(w, c);
	if (c->svc->use_ktls) {
		int rc = relay_ktls_start(w, c);

		if (!rc || c->closing)
			return;
		if (!relay_ktls_fallback_ok(w, c, rc)) {
			conn_fail(w, c, "ktls install failed: %s", ktls_strerror(rc));
			return;
		}
		service_count(c->svc, w->id, STAT_KTLS_FALLBACKS);
		c->note = ktls_strerror(rc);
	}
	us_pump_t2p(w, c);
	if (!c->closing)
		us_pump_p2t(w, c);
}

static void peer_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	}
}

/* Closed at once: a refused socket holds nothing, and its log line is rate-limited. */
static void accept_refuse(struct worker *w, size_t si, int fd, const char *peer, int kind,
			  const char *why)
{
	const struct service *s = w->rt->svc[si];
	struct ratelim *rl = &w->svcs[si].rl[kind];
	unsigned suppressed;
	char sup[16];

	close(fd);
	if (!ratelim_pass(rl, w->now_ns, &suppressed))
		return;
	snprintf(sup, sizeof(sup), "%u", suppressed);
	struct log_kv kv[] = {
		{ "service", s->cfg->name },
		{ "peer", peer },
		{ "reason", why },
		{ "suppressed", suppressed ? sup : NULL }, /* refused since the last such line */
	};
	log_kv(w->rt->cfg->log_format, "warn", "conn_refused", kv, 4);
}

/*
 * Room for one more connection and handshake of s from src (NULL: unknown address): true
 * with it counted, false with the refusal counted and *ret_kind / *ret_why saying which.
 * Handshakes have their own limit below max_conns, and per source, so that sockets that
 * stall their handshake (from one address above all) cannot take every place.
 */
static bool accept_admit(struct worker *w, size_t si, const uint8_t *src, int *ret_kind,
			 const char **ret_why)
{
	struct service *s = w->rt->svc[si];
	struct src_table *t = &w->svcs[si].src;
	unsigned per_src = s->cfg->role == ROLE_SERVER ? s->cfg->max_handshakes_per_source : 0;

	if (service_gauge_sum(s, GAUGE_LIVE) >= s->cfg->max_conns) {
		service_count(s, w->id, STAT_REFUSED_MAX_CONNS);
		*ret_kind = RL_MAX_CONNS;
		*ret_why = "max-conns reached";
		return false;
	}
	if (service_gauge_sum(s, GAUGE_HANDSHAKES) >= s->max_handshakes) {
		service_count(s, w->id, STAT_REFUSED_HANDSHAKES);
		*ret_kind = RL_HANDSHAKES;
		*ret_why = "max-handshakes reached";
		return false;
	}
	if (per_src && src && src_count(t, src) >= per_src) {
		service_count(s, w->id, STAT_REFUSED_PER_SOURCE);
		*ret_kind = RL_PER_SOURCE;
		*ret_why = "max-handshakes-per-source reached";
		return false;
	}
	service_gauge_add(s, w->id, GAUGE_LIVE, 1);
	service_gauge_add(s, w->id, GAUGE_HANDSHAKES, 1);
	return true;
}

static void accept_one(struct worker *w, size_t si, int fd)
{
	struct service *s = w->rt->svc[si];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint8_t src[16];
	bool have_src = false;
	char peer[sizeof(((struct conn *)0)->peer)] = "";
	const char *why;
	struct conn *c;
	int one = 1, kind;
	unsigned ms;
	bool per_src = s->cfg->role == ROLE_SERVER && s->cfg->max_handshakes_per_source;

	if (!getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		peer_format(&ss, peer, sizeof(peer));
		have_src = src_key(&ss, src);
	}
	if (!accept_admit(w, si, have_src ? src : NULL, &kind, &why)) {
		accept_refuse(w, si, fd, peer, kind, why);
		return;
	}
	service_count(s, w->id, STAT_ACCEPTED);
	c = conn_new(w);
	if (!c) {
		service_gauge_add(s, w->id, GAUGE_HANDSHAKES, -1);
		service_gauge_add(s, w->id, GAUGE_LIVE, -1);
		close(fd);
		return;
	}
	c->counted = true;
	c->in_hs = true;
	c->svc = service_get(s);
	c->si = (uint16_t)si;
	c->t_start_ns = now_ns();
	memcpy(c->peer, peer, sizeof(c->peer));
	if (per_src && have_src) {
		if (src_add(&conn_wsvc(w, c)->src, src)) {
			close(fd);
			conn_fail(w, c, "out of memory");
			conn_check_free(w, c);
			return;
		}
		memcpy(c->src, src, sizeof(c->src));
		c->src_counted = true;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	keepalive_on(fd);
	/* One deadline covers everything before the relay: handshake and connect. */
	ms = s->cfg->handshake_timeout_ms + (is_server(c) ? 0 : s->cfg->connect_timeout_ms);
	c->deadline.tv_sec = ms / 1000;
	c->deadline.tv_nsec = (long long)(ms % 1000) * 1000000;
	io_uring_prep_timeout(conn_sqe(w, c, OP_HS_TIMEOUT), &c->deadline, 0, 0);
	c->timeout_armed = true;
	if (is_server(c)) {
		c->tfd = fd;
		tls_start(w, c);
	} else {
		c->pfd = fd;
		target_connect(w, c);
	}
	conn_check_free(w, c);
}

/* --- loop -------------------------------------------------------------------------------- */

static void arm_accept(struct worker *w, size_t si)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_multishot_accept(sqe, w->listen_fd[si], NULL, NULL,
				       SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_raw(OP_ACCEPT, (uint32_t)si));
}

/*
 * Accepting failed, typically out of descriptors (EMFILE/ENFILE) or memory: the connection
 * stays in the listen backlog, so pause 100 ms rather than spin on the error, and say so
 * at most once per 10 s.
 */
static void accept_failed(struct worker *w, uint32_t si, int err, bool more)
{
	struct ratelim *rl = &w->svcs[si].rl[RL_ACCEPT];
	unsigned suppressed;
	char sup[16];
	struct io_uring_sqe *sqe;

	if (!more) {
		service_count(w->rt->svc[si], w->id, STAT_ACCEPT_PAUSES);
		sqe = worker_sqe(w);
		io_uring_prep_timeout(sqe, &w->accept_backoff, 0, 0);
		io_uring_sqe_set_data64(sqe, ud_raw(OP_ACCEPT_RETRY, si));
	}
	if (!ratelim_pass(rl, w->now_ns, &suppressed))
		return;
	snprintf(sup, sizeof(sup), "%u", suppressed);
	struct log_kv kv[] = {
		{ "service", w->rt->svc[si]->cfg->name },
		{ "error", strerror(-err) },
		{ "action", more ? NULL : "accepting paused 100 ms" },
		{ "suppressed", suppressed ? sup : NULL }, /* failures since the last line */
	};
	log_kv(w->rt->cfg->log_format, "warn", "accept_failed", kv, 4);
}

static void arm_sweep(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (!w->sweep_ts.tv_sec && !w->sweep_ts.tv_nsec)
		return;
	sqe = worker_sqe(w);
	io_uring_prep_timeout(sqe, &w->sweep_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_raw(OP_SWEEP, 0));
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
		service_count(c->svc, w->id, STAT_IDLE_TIMEOUTS);
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
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_read(sqe, w->evfd, &w->evval, sizeof(w->evval), 0);
	io_uring_sqe_set_data64(sqe, ud_raw(OP_EVENT, 0));
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
		ignore_sqe(w, &sqe);
		io_uring_prep_cancel_fd(sqe, w->listen_fd[i], IORING_ASYNC_CANCEL_ALL);
		/* The cancel looks the fd up when it runs: submit before closing. */
		io_uring_submit(&w->ring);
		close(w->listen_fd[i]);
		w->listen_fd[i] = -1;
	}
	sqe = worker_sqe(w);
	io_uring_prep_timeout(sqe, &w->drain_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_raw(OP_DRAIN, 0));
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(ud >> 56);
	uint32_t idx = (uint32_t)ud, gen = (uint32_t)(ud >> 32) & 0xffffff;
	int res = cqe->res;
	struct conn *c;

	switch (op) {
	case OP_IGNORE:
		return;
	case OP_ACCEPT:
		if (res >= 0) {
			accept_one(w, idx, res);
		} else if (res != -ECANCELED && !w->draining) {
			accept_failed(w, idx, res, cqe->flags & IORING_CQE_F_MORE);
			return;
		}
		if (!(cqe->flags & IORING_CQE_F_MORE) && !w->draining)
			arm_accept(w, idx);
		return;
	case OP_ACCEPT_RETRY:
		if (!w->draining)
			arm_accept(w, idx);
		return;
	case OP_EVENT:
		if (atomic_load(&w->cmd) == CMD_STOP)
			w->stop = true;
		else if (atomic_load(&w->cmd) == CMD_DRAIN)
			start_drain(w);
		if (!w->stop)
			arm_event(w);
		return;
	case OP_DRAIN:
		w->stop = true;
		return;
	case OP_SWEEP:
		idle_sweep(w);
		return;
	default:
		break;
	}

	if (idx >= w->n_slots || !(c = w->slots[idx]) || (c->gen & 0xffffff) != gen)
		return; /* cannot happen: slots outlive their operations */
	c->pending--;
	switch (op) {
	case OP_HS_TIMEOUT:
		c->timeout_armed = false;
		if (res == -ETIME && !c->closing) {
			service_count(c->svc, w->id, STAT_HANDSHAKE_TIMEOUTS);
			if (is_server(c))
				conn_fail(w, c,
					  c->hs_done ? "backend connect timeout"
						     : "handshake timeout");
			else
				conn_fail(w, c,
					  c->connected ? "handshake timeout" : "connect timeout");
		}
		break;
	case OP_HS_POLL:
		if (!c->closing)
			hs_step(w, c);
		break;
	case OP_CONNECT:
		if (c->closing)
			break;
		if (res < 0 && c->addr_i + 1u < c->svc->cfg->target_addr.n) {
			/* A name with several addresses (localhost: ::1 and 127.0.0.1): the
			 * next one, within the same connect deadline. */
			int *fd = is_server(c) ? &c->pfd : &c->tfd;

			close(*fd);
			*fd = -1;
			c->addr_i++;
			target_connect(w, c);
			break;
		}
		if (res < 0) {
			service_count(c->svc, w->id, STAT_TARGET_CONNECT_FAILURES);
			conn_fail(w, c, "%s connect failed: %s",
				  is_server(c) ? "backend" : "server", strerror(-res));
			break;
		}
		c->connected = true;
		if (is_server(c)) {
			deadline_cancel(w, c);
			if (c->svc->cfg->proxy_protocol) {
				int prc = proxy_header_send(c);

				if (prc) {
					service_count(c->svc, w->id, STAT_PROXY_HEADER_FAILURES);
					conn_fail(w, c, "proxy header failed: %s", strerror(-prc));
					break;
				}
			}
			relay_start(w, c);
		} else {
			tls_start(w, c);
		}
		break;
	case OP_US_T2P:
		c->t2p.busy = false;
		if (!c->closing)
			us_pump_t2p(w, c);
		break;
	case OP_US_P2T:
		c->p2t.busy = false;
		if (!c->closing)
			us_pump_p2t(w, c);
		break;
	case OP_SPLICE_T_IN:
	case OP_SPLICE_P_OUT:
	case OP_SPLICE_P_IN:
	case OP_SPLICE_T_OUT:
	case OP_KPOLL_T2P:
	case OP_KPOLL_P2T:
	case OP_KPOLL_SPLIT:
		/* Bytes through a splice are the kTLS relay's activity, for the idle sweep. */
		if (res > 0 && op != OP_KPOLL_T2P && op != OP_KPOLL_P2T && op != OP_KPOLL_SPLIT)
			conn_touch(w, c);
		relay_ktls_cqe(w, c, op, res);
		break;
	default:
		break;
	}
	conn_check_free(w, c);
}

struct sess_cache *conn_sess_cache(struct worker *w, const struct conn *c)
{
	struct sess_cache *sc;

	if (!w->sess)
		return NULL;
	sc = &w->sess[c->si];
	return sc->cap ? sc : NULL;
}

/* Per-source tables and log rate limits per service; a table's seed is its own secret. */
static int svcs_init(struct worker *w)
{
	w->svcs = calloc(w->rt->n_svc, sizeof(*w->svcs));
	if (!w->svcs)
		return -ENOMEM;
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
		const struct service_config *sc = w->rt->svc[i]->cfg;

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
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = RING_ENTRIES * 4;
	rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (rc == -EINVAL) {
		/* Kernels before 6.1 lack DEFER_TASKRUN: same loop, default task work. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = RING_ENTRIES * 4;
		rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	return rc;
}

/*
 * The loop has ended (drain finished, drain deadline, or SIGINT). Tearing the ring down
 * first cancels whatever is still in flight, so every remaining connection can be released
 * (and logged, with the reason it was cut) without a completion racing it.
 */
static void worker_cleanup(struct worker *w)
{
	io_uring_queue_exit(&w->ring);
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];

		if (!c)
			continue;
		if (!c->reason)
			set_reason(c, w->draining ? "drain deadline" : "stopped");
		conn_release_nosubmit(w, c);
	}
	while (w->pool) {
		void *b = w->pool;

		w->pool = *(void **)b;
		secmem_free(b, RELAY_BUF);
	}
	free(w->slots);
	free(w->free_idx);
	w->slots = NULL;
	w->free_idx = NULL;
	for (size_t i = 0; w->sess && i < w->rt->n_svc; i++)
		sess_cache_clear(&w->sess[i]);
	free(w->sess);
	w->sess = NULL;
	for (size_t i = 0; w->svcs && i < w->rt->n_svc; i++)
		free(w->svcs[i].src.e);
	free(w->svcs);
	w->svcs = NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->init_rc = svcs_init(w);
	if (!w->init_rc)
		w->init_rc = sess_init(w);
	if (!w->init_rc)
		w->init_rc = ring_init(w);
	if (!w->init_rc) {
		w->now_ns = now_ns();
		for (size_t i = 0; i < w->rt->n_svc; i++)
			arm_accept(w, i);
		arm_event(w);
		arm_sweep(w);
		w->init_rc = io_uring_submit(&w->ring) < 0 ? -EIO : 0;
	}
	pthread_barrier_wait(w->ready);
	if (w->init_rc)
		return NULL;

	while (!w->stop) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc = io_uring_submit_and_wait(&w->ring, 1);

		w->now_ns = now_ns();

		if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
			struct log_kv kv[] = { { "error", strerror(-rc) } };

			log_kv(w->rt->cfg->log_format, "error", "ring_failed", kv, 1);
			kill(getpid(), SIGTERM);
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
			if (w->stop)
				break;
		}
		io_uring_cq_advance(&w->ring, n);
		if (w->draining && !w->live)
			w->stop = true;
	}
	worker_cleanup(w);
	return NULL;
}

int worker_start(struct worker *w)
{
	w->drain_ts.tv_sec = w->rt->cfg->drain_timeout_ms / 1000;
	w->drain_ts.tv_nsec = (long long)(w->rt->cfg->drain_timeout_ms % 1000) * 1000000;
	w->accept_backoff.tv_nsec = 100 * 1000000;
	sweep_period(w);
	w->evfd = eventfd(0, EFD_CLOEXEC);
	if (w->evfd < 0)
		return -errno;
	return -pthread_create(&w->thread, NULL, worker_main, w);
}

// SPDX-License-Identifier: MIT
/*
 * Connections of one worker: the slot table, relay buffers, the end of a connection (its
 * one log line, its counters, freeing it once nothing is pending), and the small API the
 * relays use (conn.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>

#include "ocsp.h"
#include "relay.h"
#include "secmem.h"
#include "sess_cache.h"
#include "worker.h"

#define POOL_MAX 64

/*
 * These buffers hold plaintext between SSL_read/SSL_write and the backend: secmem pages
 * (never in a core file, zero in a forked child), wiped every time they go back to the
 * pool so a buffer handed to the next connection carries nothing of the last one. The
 * wipe covers what the relay wrote (d->dirty), when a direction goes idle: a 1-byte echo
 * costs a 1-byte wipe, not 64 KiB (which was 2% of a full handshake's instructions).
 */
uint8_t *conn_buf_get(struct worker *w)
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

void conn_buf_put(struct worker *w, struct dir *d)
{
	void *b = d->buf;
	uint32_t dirty = d->dirty;

	if (!b)
		return;
	d->buf = NULL;
	d->dirty = 0;
	if (w->n_pool >= POOL_MAX) {
		secmem_free(b, RELAY_BUF); /* wipes it all */
		return;
	}
	OPENSSL_cleanse(b, dirty);
	*(void **)b = w->pool;
	w->pool = b;
	w->n_pool++;
}

/*
 * Non-blocking (the loop writes it: a blocking write into a full pipe would wait for the
 * very loop that drains it), and PIPE_SZ asked for rather than assumed: past the per-user
 * soft limit the kernel refuses to grow a pipe (EPERM) and makes new ones 8 KiB. The
 * relay works with whatever size it got.
 */
static int pipe_open(int fd[2], uint32_t *ret_sz)
{
	int sz;

	if (pipe2(fd, O_CLOEXEC | O_NONBLOCK))
		return -errno;
	sz = fcntl(fd[1], F_SETPIPE_SZ, (int)PIPE_SZ);
	if (sz < 0)
		sz = fcntl(fd[1], F_GETPIPE_SZ);
	if (sz <= 0) {
		int err = sz < 0 ? -errno : -EIO;

		close(fd[0]);
		close(fd[1]);
		return err;
	}
	*ret_sz = (uint32_t)sz;
	return 0;
}

int conn_pipe_get(struct worker *w, struct dir *d)
{
	if (d->pipe[0] >= 0)
		return 0;
	if (w->n_pipes) {
		w->n_pipes--;
		d->pipe[0] = w->pipes[w->n_pipes][0];
		d->pipe[1] = w->pipes[w->n_pipes][1];
		d->pipe_sz = w->pipe_sz[w->n_pipes];
		return 0;
	}
	return pipe_open(d->pipe, &d->pipe_sz);
}

/* Empty by the relay's count and by the kernel's: pipes reach other connections. */
static bool pipe_empty(const struct dir *d)
{
	int n = -1;

	return !d->in_pipe && !ioctl(d->pipe[0], FIONREAD, &n) && n == 0;
}

void conn_pipe_put(struct worker *w, struct dir *d)
{
	bool empty;

	if (d->pipe[0] < 0)
		return;
	empty = pipe_empty(d);
	if (empty && !w->pipes) {
		w->pipes = calloc(PIPE_POOL_MAX, sizeof(*w->pipes));
		w->pipe_sz = calloc(PIPE_POOL_MAX, sizeof(*w->pipe_sz));
		if (!w->pipes || !w->pipe_sz)
			conn_pipe_pool_free(w);
	}
	if (empty && w->pipes && w->n_pipes < PIPE_POOL_MAX) {
		w->pipes[w->n_pipes][0] = d->pipe[0];
		w->pipes[w->n_pipes][1] = d->pipe[1];
		w->pipe_sz[w->n_pipes++] = d->pipe_sz;
	} else {
		close(d->pipe[0]);
		close(d->pipe[1]);
	}
	d->pipe[0] = d->pipe[1] = -1;
	d->in_pipe = 0;
}

void conn_pipe_pool_free(struct worker *w)
{
	for (unsigned i = 0; w->pipes && i < w->n_pipes; i++) {
		close(w->pipes[i][0]);
		close(w->pipes[i][1]);
	}
	free(w->pipes);
	free(w->pipe_sz);
	w->pipes = NULL;
	w->pipe_sz = NULL;
	w->n_pipes = 0;
}

struct conn *conn_new(struct worker *w)
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
	c->tfd = c->pfd = c->ofd = -1;
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
		{ "dst", c->dst[0] ? c->dst : NULL },
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
		{ "relay", c->relay ? c->relay->kind : NULL },
		{ "records", c->relay ? c->relay->records : NULL },
		/* the TLS peer's FIN came without close_notify (either relay) */
		{ "bytes_in", in },
		{ "bytes_out", out },
		{ "duration_ms", dur },
	};

	snprintf(in, sizeof(in), "%llu", (unsigned long long)c->t2p.bytes);
	snprintf(out, sizeof(out), "%llu", (unsigned long long)c->p2t.bytes);
	snprintf(dur, sizeof(dur), "%.3f", (double)(loop_now_ns() - c->t_start_ns) / 1e6);
	log_kv(w->rt->cfg->log_format, ok ? "info" : "warn", "conn_end", kv,
	       (int)(sizeof(kv) / sizeof(kv[0])));
}

/* A relay that names no gauge of its own (0 is GAUGE_LIVE) must not count there twice. */
static bool relay_gauge_ok(const struct relay_ops *ops)
{
	return ops->gauge >= GAUGE_RELAY_SPLICE && ops->gauge < GAUGE_MAX;
}

static struct worker_svc *conn_wsvc(struct worker *w, const struct conn *c)
{
	return &w->svcs[c->si];
}

void conn_hs_end(struct worker *w, struct conn *c)
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
	conn_hs_end(w, c);
	free(c->reason);
	tls_peer_clear(&c->id);
	free(c->peer_der);
	ocsp_fetch_free(c->ocsp); /* closes ofd */
	SSL_free(c->ssl);
	SSL_SESSION_free(c->hs_sess);
	free(c->hs_why);
	if (c->relay) {
		c->relay->release(w, c);
		if (relay_gauge_ok(c->relay))
			service_gauge_add(c->svc, w->id, (enum service_gauge)c->relay->gauge, -1);
	}
	if (c->tfd >= 0)
		close(c->tfd);
	if (c->pfd >= 0)
		close(c->pfd);
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
	/* Cancels by fd find their target by its number: let them run before the number can
	 * be reused by the next accept (cancels by user_data name the slot's generation). */
	if (c->cancels_queued)
		io_uring_submit(&w->ring);
	conn_release_nosubmit(w, c);
}

void conn_check_free(struct worker *w, struct conn *c)
{
	if (c->closing && !c->pending)
		conn_release(w, c);
}

/*
 * Cancels what c has in flight, by user_data: the kernel finds a poll by its user_data in
 * one bucket of its hash, where a cancel by fd (IORING_ASYNC_CANCEL_FD) walks every poll
 * pending on the ring (io_cancel_req_match: ~40% of the CPU with 9,900 idle connections
 * open, bench/README.md). One cancel per op c ever queued: a user_data names c's slot,
 * generation and op, and CANCEL_ALL takes every request that carries it; an op that has
 * completed since costs one -ENOENT. The deadline has its own timeout_remove.
 */
static void conn_cancel_pending(struct worker *w, struct conn *c)
{
	uint64_t ops = c->ops_used & ~(1ull << OP_HS_TIMEOUT);

	if (!c->pending)
		return;
	while (ops) {
		unsigned op = (unsigned)__builtin_ctzll(ops);

		ops &= ops - 1;
		io_uring_prep_cancel64(ring_ignore_sqe(w), ring_ud(op, c), IORING_ASYNC_CANCEL_ALL);
	}
	if (!c->ops_wide)
		return;
	/* A relay's op beyond the mask's reach: by fd, as a last resort. */
	if (c->tfd >= 0)
		io_uring_prep_cancel_fd(ring_ignore_sqe(w), c->tfd, IORING_ASYNC_CANCEL_ALL);
	if (c->pfd >= 0)
		io_uring_prep_cancel_fd(ring_ignore_sqe(w), c->pfd, IORING_ASYNC_CANCEL_ALL);
	c->cancels_queued = true;
}

void conn_fail(struct worker *w, struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->closing)
		return;
	c->closing = true;
	/* A step queued on the handshake thread need not run (one running ends on the
	 * shutdown below); c stays until it is back (pending). */
	if (c->hs_out)
		atomic_store_explicit(&c->hs_cancel, true, memory_order_relaxed);
	va_start(ap, fmt);
	if (vasprintf(&c->reason, fmt, ap) < 0)
		c->reason = NULL;
	va_end(ap);
	/* The client hears a clean close_notify where the TLS session is up. */
	if (c->hs_done && !c->p2t.shut) {
		if (c->relay) {
			c->relay->close_notify(w, c);
		} else if (c->ssl) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
			ERR_clear_error();
		}
	}
	/* Wake whatever is blocked on the sockets (io-wq splices), then cancel the rest. */
	if (c->tfd >= 0)
		shutdown(c->tfd, SHUT_RDWR);
	if (c->pfd >= 0)
		shutdown(c->pfd, SHUT_RDWR);
	if (c->timeout_armed)
		io_uring_prep_timeout_remove(ring_ignore_sqe(w), ring_ud(OP_HS_TIMEOUT, c), 0);
	conn_cancel_pending(w, c);
	/* Not freed here: callers up the stack still hold c. The loop frees it once
	 * pending reaches zero (conn_check_free at the end of each entry point). */
}

void conn_maybe_done(struct worker *w, struct conn *c)
{
	if (c->t2p.shut && c->p2t.shut)
		conn_fail(w, c,
			  c->fin_without_close_notify ? "truncated: no close_notify" : "closed");
}

void conn_poll(struct worker *w, struct conn *c, unsigned op, int fd, unsigned mask)
{
	io_uring_prep_poll_add(conn_sqe(w, c, op), fd, mask);
}

struct sess_cache *conn_sess_cache(struct worker *w, const struct conn *c)
{
	struct sess_cache *sc;

	if (!w->sess)
		return NULL;
	sc = &w->sess[c->si];
	return sc->cap ? sc : NULL;
}

void conn_release_now(struct worker *w, struct conn *c, const char *reason)
{
	if (!c->reason)
		set_reason(c, reason);
	conn_release_nosubmit(w, c);
}

void conn_touch(const struct worker *w, struct conn *c)
{
	c->last_io_ns = w->now_ns;
}

void conn_set_relay(struct worker *w, struct conn *c, const struct relay_ops *ops)
{
	c->relay = ops;
	if (relay_gauge_ok(ops))
		service_gauge_add(c->svc, w->id, (enum service_gauge)ops->gauge, 1);
}

void conn_moved(const struct worker *w, struct conn *c, struct dir *d, uint64_t n)
{
	d->bytes += n;
	service_add(c->svc, w->id, d == &c->t2p ? STAT_BYTES_IN : STAT_BYTES_OUT, n);
}

void conn_count(const struct worker *w, struct conn *c, enum service_stat k)
{
	service_count(c->svc, w->id, k);
}

void conn_log(const struct worker *w, const char *level, const char *event, const struct log_kv *kv,
	      int n)
{
	log_kv(w->rt->cfg->log_format, level, event, kv, n);
}

void conn_buf_pool_free(struct worker *w)
{
	while (w->pool) {
		void *b = w->pool;

		w->pool = *(void **)b;
		secmem_free(b, RELAY_BUF);
	}
	w->n_pool = 0;
}

/* Dead peers on idle connections are found after KEEPIDLE + KEEPCNT * KEEPINTVL = 2 min. */
#define KEEPIDLE_S  60
#define KEEPINTVL_S 10
#define KEEPCNT	    6

/*
 * Idle peers must not hold sockets for ever: the kernel probes a silent connection and
 * resets it when the peer is gone (a live peer answers probes, idle_timeout_s ends it).
 */
void conn_tcp_opts(int fd)
{
	int one = 1, idle = KEEPIDLE_S, intvl = KEEPINTVL_S, cnt = KEEPCNT;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

// SPDX-License-Identifier: MIT
/*
 * The kTLS relay: after the handshake the keys go to the kernel (libktls), the SSL object
 * is freed, and each direction moves socket -> pipe -> socket with IORING_OP_SPLICE; the
 * kernel decrypts into and encrypts out of the pipe, so plaintext never enters userspace.
 * A control record stops a splice from the kTLS socket with EINVAL/EIO: libktls reads
 * it and says what it was. Everything kTLS-specific in the daemon lives in this file.
 *
 * A client that resumes wants the TLS 1.3 tickets the server sends right after the
 * handshake, and only OpenSSL can turn one into a session. So there TX goes to the kernel
 * at once (the app's bytes flow immediately) while OpenSSL reads on until a ticket or the
 * first data record is through; then RX goes to the kernel at the counted sequence and
 * the SSL is freed. Tickets that come later are consumed on kTLS RX and dropped.
 *
 * A direction holds a pipe only while bytes are in flight: it takes one from the worker's
 * pool (conn_pipe_get) to splice in and gives it back once it is empty and the direction
 * waits for its source again, so an idle connection holds its two sockets and no pipe.
 *
 * Nothing here blocks the worker thread: the pipes are O_NONBLOCK (an unprivileged user
 * past fs.pipe-user-pages-soft gets 8 KiB pipes, and a full pipe written with a blocking
 * write would wait for the very loop that drains it), splices carry SPLICE_F_NONBLOCK and
 * wait for readiness with a poll, and the few direct sends (close_notify, KeyUpdate) are
 * retried on POLLOUT when the socket's buffer is full.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "ktlsd/ktls.h"
#include "relay_sockmap.h"
#include "relays.h"

#define SPLICE_CHUNK (1u << 20)

bool relay_ktls_fallback_ok(struct worker *w, struct conn *c, int err)
{
	if (!ktls_err_fallback_safe(err))
		return false;
	if (c->svc->cfg->ktls != KTLS_MODE_REQUIRE)
		return true;
	if (err != -KTLS_E_NOT_ESTABLISHED)
		return false;
	/*
	 * --ktls require, and the peer sent its last bytes and FIN before the install (a client
	 * that writes its request, close_notify and FIN back to back). The kernel attaches TLS
	 * only to an ESTABLISHED socket, so no kTLS is possible on this connection at all, and
	 * refusing would drop a request the peer already sent in full. require is there so the
	 * service never runs in userspace because this host or this handshake can't do kTLS;
	 * here it is the peer's timing, and all that is left to relay is its last bytes and
	 * the answer. So the connection finishes in userspace, loudly: a warn line now, counted
	 * in ktls_fallbacks, ktls=off with the reason on its conn_end line.
	 */
	struct log_kv kv[] = {
		{ "service", c->svc->cfg->name },
		{ "peer", c->peer },
		{ "reason", "peer half-closed before kTLS install: finishing in userspace" },
	};

	conn_log(w, "warn", "ktls_fallback", kv, 3);
	return true;
}

static void splice_in(struct worker *w, struct conn *c, struct dir *d, int src, unsigned op)
{
	int rc = conn_pipe_get(w, d);

	if (rc) {
		conn_fail(w, c, "pipe: %s", strerror(-rc));
		return;
	}
	d->busy = true;
	io_uring_prep_splice(conn_sqe(w, c, op), src, -1, d->pipe[1], -1, SPLICE_CHUNK,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

static void splice_out(struct worker *w, struct conn *c, struct dir *d, int dst, unsigned op)
{
	d->busy = true;
	d->writing = true;
	io_uring_prep_splice(conn_sqe(w, c, op), d->pipe[0], -1, dst, -1, d->in_pipe,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

/* The TLS socket's send buffer is full: retry the direct send when it drains. */
static void wait_tls_writable(struct worker *w, struct conn *c)
{
	c->p2t.busy = true;
	io_uring_prep_poll_add(conn_sqe(w, c, OP_KPOLL_P2T), c->tfd, POLLOUT);
}

/*
 * Our KeyUpdate, owed since the peer asked for one. Called only while no splice of ours
 * writes the TLS socket: the kernel does not hold TX back across a rekey, and a record
 * written between our KeyUpdate and the new TLS_TX would go out under the old key after we
 * announced the new one. RFC 8446 4.6.3 wants it before our next application data, and
 * pump() calls this before every splice into the TLS socket. 0 or -EAGAIN (socket full,
 * still owed); any other error has failed c.
 */
static int key_update_send(struct worker *w, struct conn *c)
{
	int rc;

	if (!ktls_conn_key_update_owed(c->kc))
		return 0;
	rc = ktls_conn_update_tx(c->kc, false);
	if (rc && rc != -EAGAIN) {
		if (rc == -KTLS_E_REKEY_UNSUPPORTED)
			conn_count(w, c, STAT_REKEY_CLOSES);
		conn_fail(w, c, "KeyUpdate to %s: %s", conn_tls_side(c), ktls_strerror(rc));
	}
	return rc;
}

static void split_read(struct worker *w, struct conn *c);

/*
 * The sockmap forwards plaintext -> TLS in the kernel: ktlsd only waits for that side's
 * end. Then the forwarding queue may still hold bytes the TLS layer has not taken (it
 * outlives the source's FIN, docs/bpf.md "eof_flush"): close_notify must wait for them.
 * Returns true while this direction is not yet at its half-close.
 */
static bool pump_kernel(struct worker *w, struct conn *c, struct dir *d)
{
	uint64_t fwd = 0;

	if (!d->eof) {
		d->busy = true;
		io_uring_prep_poll_add(conn_sqe(w, c, OP_SM_POLL), c->pfd, POLLRDHUP);
		return true;
	}
	if (d->shut)
		return false;
	if (!sockmap_conn_drained(c->svc->sockmap, c, &fwd)) {
		/*
		 * A slow TLS peer can leave megabytes queued (the backend's receive buffer):
		 * check at 1, 2, 4 ... 256 ms, so a long drain costs ktlsd ~4 wake-ups a second,
		 * not one per chunk. The handshake deadline's timespec is free once relaying.
		 */
		long long ns = c->deadline.tv_nsec ? c->deadline.tv_nsec * 2 : 1000000;

		c->deadline =
			(struct __kernel_timespec){ .tv_nsec = ns > 256000000 ? 256000000 : ns };
		d->busy = true;
		io_uring_prep_timeout(conn_sqe(w, c, OP_SM_DRAIN), &c->deadline, 0, 0);
		return true;
	}
	/* The kernel's count, known once drained: the metrics get it now, all at once. */
	if (fwd > d->bytes)
		conn_moved(w, c, d, fwd - d->bytes);
	return false;
}

static void pump(struct worker *w, struct conn *c, bool t2p)
{
	struct dir *d = t2p ? &c->t2p : &c->p2t;
	int src = t2p ? c->tfd : c->pfd, dst = t2p ? c->pfd : c->tfd;

	if (c->closing || d->busy)
		return;
	if (d->kernel && pump_kernel(w, c, d))
		return;
	if (!t2p) {
		int rc = key_update_send(w, c);

		if (rc == -EAGAIN)
			wait_tls_writable(w, c);
		if (rc)
			return;
	}
	if (d->in_pipe) {
		splice_out(w, c, d, dst, t2p ? OP_SPLICE_P_OUT : OP_SPLICE_T_OUT);
		return;
	}
	if (t2p && c->ssl && !d->eof) {
		/* Split install: RX is still OpenSSL's; the pipe has just drained. */
		split_read(w, c);
		return;
	}
	if (!d->eof) {
		splice_in(w, c, d, src, t2p ? OP_SPLICE_T_IN : OP_SPLICE_P_IN);
		return;
	}
	conn_pipe_put(w, d); /* drained, and nothing more comes this way */
	if (!d->shut) {
		/* Half-close: TLS peer's close_notify -> FIN on the plaintext side; FIN
		 * from the plaintext side -> close_notify alert (through the kernel) then
		 * FIN to the TLS peer. A close_notify that finds the send buffer full waits
		 * for room: a FIN without it would read as truncation. */
		if (!t2p && ktls_conn_send_close_notify(c->kc) == -EAGAIN) {
			wait_tls_writable(w, c);
			return;
		}
		shutdown(dst, SHUT_WR);
		d->shut = true;
	}
	conn_maybe_done(w, c);
}

/* RX is in the kernel now: the SSL goes, and splicing takes the TLS -> plaintext side. */
static int split_finish(struct worker *w, struct conn *c)
{
	int rc = ktls_conn_install_rx(c->kc, c->ssl);

	if (rc)
		return rc;
	relay_ssl_handed_over(c);
	pump(w, c, true);
	return 0;
}

/*
 * Plaintext OpenSSL decrypted, into the empty pipe. Peeked, not read: only what the pipe
 * took is then consumed, the rest stays in OpenSSL for the next round (its install_rx says
 * PENDING meanwhile), so a small pipe or a short write loses nothing.
 */
static int split_to_pipe(struct dir *d, SSL *ssl, int peeked, uint8_t *buf)
{
	ssize_t n = write(d->pipe[1], buf, (size_t)peeked);
	int r;

	if (n < 0)
		return errno == EAGAIN ? -ENOSPC : -errno; /* EAGAIN: no room in an empty pipe */
	if (n == 0)
		return -ENOSPC;
	r = SSL_read(ssl, buf, (int)n); /* the same bytes, already in OpenSSL: no I/O */
	if (r != (int)n)
		return -EIO;
	d->in_pipe += (uint32_t)n;
	return 0;
}

/* Split install: read through OpenSSL until a ticket or the first data record is through. */
static void split_read(struct worker *w, struct conn *c)
{
	struct dir *d = &c->t2p;
	uint8_t buf[16384]; /* one record's plaintext at most */
	int r, rc;

	for (;;) {
		if (d->in_pipe) {
			/* The relay drains the pipe first; pump() comes back here. */
			pump(w, c, true);
			return;
		}
		rc = conn_pipe_get(w, d);
		if (rc) {
			conn_fail(w, c, "pipe: %s", strerror(-rc));
			return;
		}
		ERR_clear_error();
		errno = 0;
		r = SSL_peek(c->ssl, buf,
			     (int)(d->pipe_sz < sizeof(buf) ? d->pipe_sz : sizeof(buf)));
		if (r > 0) {
			rc = split_to_pipe(d, c->ssl, r, buf);
			OPENSSL_cleanse(buf, (size_t)r);
			if (rc) {
				conn_fail(w, c, "pipe: %s", strerror(-rc));
				return;
			}
			rc = split_finish(w, c);
			if (rc == -KTLS_E_PENDING)
				continue;
			break;
		}
		switch (tls_want(c->ssl, r)) {
		case TLS_WANT_READ:
			rc = c->id.tickets ? split_finish(w, c) : -KTLS_E_PENDING;
			if (rc == -KTLS_E_PENDING) {
				conn_pipe_put(w, d); /* empty: an idle connection holds none */
				d->busy = true;
				io_uring_prep_poll_add(conn_sqe(w, c, OP_KPOLL_SPLIT), c->tfd,
						       POLLIN);
				return;
			}
			break;
		case TLS_WANT_CLOSED:
			/* close_notify before anything else: nothing left to hand over */
			d->eof = true;
			pump(w, c, true);
			return;
		default:
			if (!relay_tls_read_end(w, c, r))
				pump(w, c, true);
			return;
		}
		break;
	}
	if (rc)
		conn_fail(w, c, "ktls rx install failed: %s", ktls_strerror(rc));
}

/* The sockmap relay could not take c: this connection splices, said and counted. */
static void sockmap_fallback(struct worker *w, struct conn *c, const char *step, int err)
{
	char why[160];

	snprintf(why, sizeof(why), "%s: %s: splicing this connection", step, sockmap_strerror(err));
	struct log_kv kv[] = {
		{ "service", c->svc->cfg->name },
		{ "peer", c->peer },
		{ "reason", why },
	};

	sockmap_conn_unlink(c->svc->sockmap, c);
	conn_count(w, c, STAT_SOCKMAP_FALLBACKS);
	conn_log(w, "warn", "sockmap_fallback", kv, 3);
}

/* Before TCP_ULP: the TLS socket must be in the map already (the kernel refuses later). */
static void sockmap_pre(struct worker *w, struct conn *c)
{
	int err;

	if (!c->svc->sockmap)
		return;
	err = sockmap_conn_pre(c->svc->sockmap, c);
	if (err)
		sockmap_fallback(w, c, "joining the map", err);
}

/* After the install: true where the kernel now forwards plaintext -> TLS for c. */
static bool sockmap_post(struct worker *w, struct conn *c)
{
	int err;

	if (!c->smc)
		return false;
	err = sockmap_conn_link(c->svc->sockmap, c);
	if (err) {
		c->p2t.kernel = false;
		sockmap_fallback(w, c, "linking the backend socket", err);
		return false;
	}
	return true;
}

static int ktls_start(struct worker *w, struct conn *c)
{
	struct ktls_conn *kc = NULL;
	/* TLS 1.2 tickets came inside the handshake: only 1.3 needs to read on for them. */
	bool split = conn_sess_cache(w, c) && SSL_version(c->ssl) == TLS1_3_VERSION;
	int rc;

	sockmap_pre(w, c);
	rc = split ? ktls_install_tx(c->ssl, c->tfd, &kc) : ktls_install(c->ssl, c->tfd, &kc);
	if (rc) {
		if (c->smc)
			sockmap_conn_unlink(c->svc->sockmap, c);
		return rc;
	}
	conn_set_relay(w, c, sockmap_post(w, c) ? &relay_sockmap_ops : &relay_ktls_ops);
	c->kc = kc;
	c->ktls = true;
	if (!split)
		relay_ssl_handed_over(c);
	/* No pipes yet: each direction takes one from the worker's pool when bytes come. */
	if (split)
		split_read(w, c);
	else
		pump(w, c, true);
	pump(w, c, false);
	return 0;
}

static void on_control(struct worker *w, struct conn *c)
{
	enum ktls_control ctrl;
	uint8_t alert = 0;
	int rc = ktls_conn_recv_control(c->kc, &ctrl, &alert);

	if (rc == -EAGAIN)
		return;
	if (rc == -KTLS_E_REKEY_UNSUPPORTED) {
		conn_count(w, c, STAT_REKEY_CLOSES);
		conn_fail(w, c, "peer sent KeyUpdate: this kernel cannot rekey kTLS (needs 6.14+)");
		return;
	}
	if (rc) {
		conn_fail(w, c, "%s record: %s", conn_tls_side(c), ktls_strerror(rc));
		return;
	}
	switch (ctrl) {
	case KTLS_CTRL_CLOSE_NOTIFY:
		c->t2p.eof = true;
		break;
	case KTLS_CTRL_ALERT:
		conn_fail(w, c, "%s sent alert %u", conn_tls_side(c), alert);
		break;
	default: /* ticket, key update followed, or data after all: keep relaying */
		/* An owed KeyUpdate goes out now unless a splice of ours is writing the
		 * socket; else (or if the socket is full) pump() sends it before the next. */
		if (!c->p2t.writing)
			key_update_send(w, c);
		break;
	}
}

/*
 * A splice from the TLS socket returned 0: the end of the peer's stream, or only an empty
 * application-data record (libktls tells which). An end without close_notify first is
 * truncation: relayed as an end all the same (what the userspace path does), and flagged
 * for the conn_end line and counted.
 */
static void tls_read_zero(struct worker *w, struct conn *c)
{
	int rc = ktls_conn_zero_read(c->kc);

	if (rc == 0)
		return; /* read again */
	if (rc < 0) {
		conn_fail(w, c, "%s read: %s", conn_tls_side(c),
			  rc == -KTLS_E_PROTOCOL ? "too many empty records in a row"
						 : ktls_strerror(rc));
		return;
	}
	c->fin_without_close_notify = true;
	conn_count(w, c, STAT_TRUNCATED);
	c->t2p.eof = true;
}

/*
 * The sockets stay non-blocking (OpenSSL needed that for the handshake), so a splice that
 * would block comes back -EAGAIN instead of parking an io-wq thread per connection: wait
 * for readiness, then splice again.
 */
static void splice_wait(struct worker *w, struct conn *c, struct dir *d, bool t2p, bool in)
{
	int fd = in ? (t2p ? c->tfd : c->pfd) : (t2p ? c->pfd : c->tfd);

	if (in)
		conn_pipe_put(w, d); /* empty (a splice in runs only then): idle holds none */
	d->busy = true;
	io_uring_prep_poll_add(conn_sqe(w, c, t2p ? OP_KPOLL_T2P : OP_KPOLL_P2T), fd,
			       in ? POLLIN : POLLOUT);
}

/*
 * What a splice moved through d's pipe, counted even once c is closing: a pipe goes back
 * to the pool only if in_pipe says it is empty.
 */
static void pipe_account(const struct worker *w, struct conn *c, struct dir *d, unsigned op,
			 int res)
{
	if (res <= 0)
		return;
	if (op == OP_SPLICE_T_IN || op == OP_SPLICE_P_IN) {
		d->in_pipe += (uint32_t)res;
	} else if (op == OP_SPLICE_P_OUT || op == OP_SPLICE_T_OUT) {
		d->in_pipe -= (uint32_t)res;
		conn_moved(w, c, d, (uint64_t)res);
	}
}

/* The plaintext side's end came (POLLRDHUP), or it failed; or a drain wait is over. */
static void sockmap_on_cqe(struct worker *w, struct conn *c, unsigned op, int res)
{
	if (op == OP_SM_POLL) {
		if (res < 0 || (res & POLLERR)) {
			int err = 0;
			socklen_t l = sizeof(err);

			getsockopt(c->pfd, SOL_SOCKET, SO_ERROR, &err, &l);
			conn_fail(w, c, "%s read: %s", conn_plain_side(c),
				  strerror(res < 0 ? -res
					   : err   ? err
						   : EPIPE));
			return;
		}
		c->p2t.eof = true;
		c->deadline = (struct __kernel_timespec){ 0 }; /* the drain's first step: 1 ms */
	}
	pump(w, c, false);
}

static void ktls_on_cqe(struct worker *w, struct conn *c, unsigned op, int res)
{
	bool t2p = op == OP_SPLICE_T_IN || op == OP_SPLICE_P_OUT || op == OP_KPOLL_T2P ||
		   op == OP_KPOLL_SPLIT;
	struct dir *d = t2p ? &c->t2p : &c->p2t;
	bool in = op == OP_SPLICE_T_IN || op == OP_SPLICE_P_IN;

	d->busy = false;
	if (op == OP_SPLICE_P_OUT || op == OP_SPLICE_T_OUT)
		d->writing = false;
	pipe_account(w, c, d, op, res);
	if (c->closing)
		return;
	/* Bytes through a splice are this relay's activity, for the idle sweep. */
	if (res > 0 && op != OP_KPOLL_T2P && op != OP_KPOLL_P2T && op != OP_KPOLL_SPLIT)
		conn_touch(w, c);
	if (op == OP_KPOLL_SPLIT) {
		split_read(w, c);
		return;
	}
	if (op == OP_SM_POLL || op == OP_SM_DRAIN) {
		sockmap_on_cqe(w, c, op, res);
		return;
	}
	if (res == -EAGAIN && op != OP_KPOLL_T2P && op != OP_KPOLL_P2T) {
		splice_wait(w, c, d, t2p, in);
		return;
	}
	switch (op) {
	case OP_KPOLL_T2P:
	case OP_KPOLL_P2T:
		break; /* ready (or an error the next splice will report) */
	case OP_SPLICE_T_IN:
	case OP_SPLICE_P_IN:
		if (res > 0)
			break;
		if (res == 0 && t2p)
			tls_read_zero(w, c);
		else if (res == 0)
			d->eof = true;
		else if (t2p && (res == -EINVAL || res == -EIO))
			on_control(w, c); /* a non-data record is next */
		else
			conn_fail(w, c, "%s read: %s", t2p ? conn_tls_side(c) : conn_plain_side(c),
				  strerror(-res));
		break;
	default:
		if (res <= 0)
			conn_fail(w, c, "%s write: %s", t2p ? conn_plain_side(c) : conn_tls_side(c),
				  strerror(res ? -res : EPIPE));
		break;
	}
	pump(w, c, t2p);
}

static void ktls_close_notify(struct worker *w, struct conn *c)
{
	if (c->kc)
		ktls_conn_send_close_notify(c->kc);
}

/* The kernel moves this direction's bytes: its last data time stands for the loop's. */
static void sockmap_refresh_idle(struct worker *w, struct conn *c)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	uint64_t since_ns, fwd = 0;

	if (!c->smc || getsockopt(c->pfd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return;
	since_ns = (uint64_t)ti.tcpi_last_data_recv * 1000000u;
	if (since_ns < loop_now_ns() - c->last_io_ns)
		c->last_io_ns = loop_now_ns() - since_ns;
	sockmap_conn_drained(c->svc->sockmap, c, &fwd);
	c->p2t.bytes = fwd;
}

static void ktls_release(struct worker *w, struct conn *c)
{
	if (c->smc) {
		uint64_t fwd = 0;

		sockmap_conn_drained(c->svc->sockmap, c, &fwd);
		c->p2t.bytes = fwd;
		sockmap_conn_unlink(c->svc->sockmap, c);
	}
	ktls_conn_free(c->kc);
	c->kc = NULL;
	/* Back to the pool if empty; a pipe with bytes left in it is closed. */
	conn_pipe_put(w, &c->t2p);
	conn_pipe_put(w, &c->p2t);
}

const struct relay_ops relay_ktls_ops = {
	.kind = "splice",
	.gauge = GAUGE_RELAY_SPLICE,
	.records = "kernel",
	.start = ktls_start,
	.on_cqe = ktls_on_cqe,
	.close_notify = ktls_close_notify,
	.release = ktls_release,
};

/* The same relay with plaintext -> TLS forwarded by the kernel (c->p2t.kernel). */
const struct relay_ops relay_sockmap_ops = {
	.kind = "sockmap",
	.gauge = GAUGE_RELAY_SOCKMAP,
	.records = "kernel",
	.start = ktls_start,
	.on_cqe = ktls_on_cqe,
	.close_notify = ktls_close_notify,
	.release = ktls_release,
	.refresh_idle = sockmap_refresh_idle,
};

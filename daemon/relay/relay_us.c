// SPDX-License-Identifier: MIT
/*
 * The userspace relay, where kTLS is not used: SSL_read/SSL_write in chunks of up to
 * 64 KiB, each direction pumped until it would block, then one io_uring poll for the
 * readiness OpenSSL or the plaintext socket asks for. A buffer is held only while bytes
 * are in flight: an idle connection holds none (conn_buf_get/put).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/err.h>

#include "ktlsd/ktls.h"
#include "relays.h"

static void tls_io_failed(struct worker *w, struct conn *c, const char *what, int ret)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long err = ERR_peek_error();
	const char *side = conn_tls_side(c);

	/*
	 * A client reading its tickets through OpenSSL while libktls holds TX (relay_rec.c's
	 * records, or the kernel's in relay_ktls.c's split install): the fatal alert OpenSSL
	 * sent for this went to its discarding BIO, and nothing may follow one; conn_fail's
	 * close_notify would tell the peer that all was well.
	 */
	if (c->kc)
		ktls_rec_stop_tx(c->kc);
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

int relay_tls_read_end(struct worker *w, struct conn *c, int ret)
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
			conn_count(w, c, STAT_TRUNCATED);
		c->fin_without_close_notify = true;
		c->t2p.eof = true;
		return 0;
	}
	tls_io_failed(w, c, "read", ret);
	return -EPIPE;
}

int relay_send_some(struct worker *w, struct conn *c, struct dir *d, unsigned op)
{
	bool plain = d == &c->t2p; /* t2p writes the plaintext side; p2t the TLS side */
	int fd = plain ? c->pfd : c->tfd;
	ssize_t n = send(fd, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno == EAGAIN) {
			d->busy = true;
			conn_poll(w, c, op, fd, POLLOUT);
		} else {
			conn_fail(w, c, "%s send: %s",
				  plain ? conn_plain_side(c) : conn_tls_side(c), strerror(errno));
		}
		return -EAGAIN;
	}
	d->off += (uint32_t)n;
	if (plain)
		conn_moved(w, c, d, (uint64_t)n);
	conn_touch(w, c);
	return 0;
}

void relay_shut_plain(struct conn *c)
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

int relay_dir_next(struct worker *w, struct conn *c, struct dir *d,
		   void (*shut_dst)(struct conn *c))
{
	d->off = d->len = 0;
	if (d->eof) {
		conn_buf_put(w, d);
		if (!d->shut) {
			shut_dst(c);
			d->shut = true;
		}
		conn_maybe_done(w, c);
		return -ENODATA;
	}
	if (!d->buf && !(d->buf = conn_buf_get(w))) {
		conn_fail(w, c, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void relay_us_pump_t2p(struct worker *w, struct conn *c)
{
	struct dir *d = &c->t2p;

	while (!c->closing) {
		if (d->off < d->len) {
			if (relay_send_some(w, c, d, OP_US_T2P))
				return;
			continue;
		}
		if (relay_dir_next(w, c, d, relay_shut_plain))
			return;
		/* Drain what OpenSSL can give without blocking, record by record. */
		for (;;) {
			int r;

			ERR_clear_error();
			errno = 0;
			r = SSL_read(c->ssl, d->buf + d->len, (int)(RELAY_BUF - d->len));
			if (r > 0) {
				conn_buf_filled(d, d->len + (uint32_t)r);
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
				conn_buf_put(w, d);
				d->busy = true;
				conn_poll(w, c, OP_US_T2P, c->tfd,
					  tls_want(c->ssl, r) == TLS_WANT_READ ? POLLIN : POLLOUT);
				return;
			case TLS_WANT_CLOSED:
				d->eof = true;
				break;
			default:
				if (!relay_tls_read_end(w, c, r))
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
				conn_moved(w, c, d, (uint64_t)r);
				conn_touch(w, c);
				continue;
			}
			switch (tls_want(c->ssl, r)) {
			case TLS_WANT_READ:
			case TLS_WANT_WRITE:
				d->busy = true;
				conn_poll(w, c, OP_US_P2T, c->tfd,
					  tls_want(c->ssl, r) == TLS_WANT_READ ? POLLIN : POLLOUT);
				return;
			default:
				tls_io_failed(w, c, "write", r);
				return;
			}
		}
		if (relay_dir_next(w, c, d, shut_tls))
			return;
		ssize_t n = recv(c->pfd, d->buf, RELAY_BUF, 0);

		if (n > 0) {
			conn_buf_filled(d, (uint32_t)n);
			conn_touch(w, c);
		} else if (n == 0) {
			d->eof = true;
		} else if (errno == EAGAIN) {
			conn_buf_put(w, d);
			d->busy = true;
			conn_poll(w, c, OP_US_P2T, c->pfd, POLLIN);
			return;
		} else {
			conn_fail(w, c, "%s recv: %s", conn_plain_side(c), strerror(errno));
			return;
		}
	}
}

static int us_start(struct worker *w, struct conn *c)
{
	conn_set_relay(w, c, &relay_us_ops);
	relay_us_pump_t2p(w, c);
	if (!c->closing)
		us_pump_p2t(w, c);
	return 0;
}

static void us_on_cqe(struct worker *w, struct conn *c, unsigned op, int res)
{
	struct dir *d = op == OP_US_T2P ? &c->t2p : &c->p2t;

	d->busy = false;
	if (c->closing)
		return;
	if (op == OP_US_T2P)
		relay_us_pump_t2p(w, c);
	else
		us_pump_p2t(w, c);
}

static void us_close_notify(struct worker *w, struct conn *c)
{
	ERR_clear_error();
	SSL_shutdown(c->ssl);
	ERR_clear_error();
}

static void us_release(struct worker *w, struct conn *c)
{
	conn_buf_put(w, &c->t2p);
	conn_buf_put(w, &c->p2t);
}

const struct relay_ops relay_us_ops = {
	.kind = "userspace",
	.gauge = GAUGE_RELAY_USERSPACE,
	.records = "openssl",
	.start = us_start,
	.on_cqe = us_on_cqe,
	.close_notify = us_close_notify,
	.release = us_release,
};

// SPDX-License-Identifier: MIT
/*
 * The userspace relay with libktls's own records (ktls_rec_*), for hosts without kTLS:
 * once the handshake is done the SSL is freed, as on the kTLS path, and ktlsd opens and
 * seals the TLS 1.3 records itself. An idle connection keeps its two sockets and its keys
 * (~2 KiB), not an SSL (~23 KiB), and the bytes take fewer copies and system calls than
 * through OpenSSL (which reads each record's header and body apart).
 *
 *  - TLS -> plaintext: recv up to RELAY_BUF bytes of records into rbuf, open them one by
 *    one into buf (each straight from rbuf: no copy of its own), send buf.
 *  - plaintext -> TLS: one readv into up to REC_SLOTS record-sized slots of buf, each
 *    sealed in place: every slot but the last is full, so the records lie back to back
 *    and one send takes them all.
 *
 * Buffers come from the worker's pool while bytes are in flight, as in relay_us.c; rbuf
 * stays only while it holds part of a record. Non-data records take libktls's control
 * path: a close_notify ends the direction, an alert fails the connection, tickets are
 * skipped and a KeyUpdate is followed, ours owed going out before our next record.
 * Errors in the peer's records send it the fatal alert RFC 8446 names and end the
 * connection. A client that resumes reads the server's tickets through OpenSSL first
 * (t2p_split). Where the record layer cannot take a connection (TLS 1.2, OpenSSL holding
 * unread bytes), relay_us.c does.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <openssl/ssl.h>

#include "ktlsd/ktls.h"
#include "relays.h"

enum {
	REC_SLOT = KTLS_REC_PLAIN_MAX + KTLS_REC_OVERHEAD,
	REC_SLOTS = RELAY_BUF / REC_SLOT, /* 3: 48 KiB of plaintext per read */
	ALERT_MAX = KTLS_REC_OVERHEAD + 2,
};

/* Best effort, straight to the socket: an alert the peer may or may not get. Skipped
 * where a record of ours is half sent (an alert now would land inside it). */
static void alert_send(struct conn *c, uint8_t level, uint8_t desc)
{
	uint8_t rec[ALERT_MAX];
	ssize_t n;

	if (c->p2t.off < c->p2t.len)
		return;
	n = ktls_rec_seal_alert(c->kc, level, desc, rec, sizeof(rec));
	if (n > 0 && send(c->tfd, rec, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		(void)0; /* the connection ends either way */
}

/* The peer's records broke the protocol (rc): its alert, then the end. */
static void records_failed(struct worker *w, struct conn *c, int rc)
{
	alert_send(c, 2, ktls_rec_alert(rc));
	ktls_rec_stop_tx(c->kc);
	conn_fail(w, c, "%s record: %s", conn_tls_side(c), ktls_strerror(rc));
}

static void rbuf_put(struct worker *w, struct dir *d)
{
	struct dir tmp = { .buf = d->rbuf }; /* ciphertext only: nothing to wipe */

	conn_buf_put(w, &tmp);
	d->rbuf = NULL;
	d->rlen = d->roff = 0;
}

/* One record opened into d->buf: what it was. 0: go on; -EPIPE: c has been failed. */
static int t2p_record(struct worker *w, struct conn *c, struct dir *d, enum ktls_control ctrl,
		      size_t n, uint8_t alert)
{
	switch (ctrl) {
	case KTLS_CTRL_DATA:
		conn_buf_filled(d, d->len + (uint32_t)n);
		return 0;
	case KTLS_CTRL_CLOSE_NOTIFY:
		d->eof = true; /* what follows it is ignored (RFC 8446 6.1) */
		return 0;
	case KTLS_CTRL_ALERT:
		ktls_rec_stop_tx(c->kc); /* the session is over: nothing more goes out */
		conn_fail(w, c, "%s sent alert %u", conn_tls_side(c), alert);
		return -EPIPE;
	default: /* a ticket skipped, a KeyUpdate followed (ours goes before our next) */
		return 0;
	}
}

/* Open what rbuf holds while buf has room for a record. 0, or -EPIPE: c has failed. */
static int t2p_open(struct worker *w, struct conn *c, struct dir *d)
{
	while (d->roff < d->rlen && !d->eof && RELAY_BUF - d->len >= KTLS_REC_INNER_MAX) {
		enum ktls_control ctrl = KTLS_CTRL_DATA;
		uint8_t alert = 0;
		size_t used, n;
		int rc = ktls_rec_unseal(c->kc, d->rbuf + d->roff, d->rlen - d->roff, &used,
					 d->buf + d->len, RELAY_BUF - d->len, &n, &ctrl, &alert);

		if (rc == -EAGAIN)
			break;
		if (rc) {
			records_failed(w, c, rc);
			return -EPIPE;
		}
		d->roff += (uint32_t)used;
		if (t2p_record(w, c, d, ctrl, n, alert))
			return -EPIPE;
	}
	if (d->eof || d->roff == d->rlen)
		rbuf_put(w, d);
	return 0;
}

/*
 * More records from the TLS socket. 1: something to look at (bytes, or the end); 0: a
 * poll is queued and the buffers are back in the pool unless a record is incomplete;
 * -EPIPE: c has failed.
 */
static int t2p_recv(struct worker *w, struct conn *c, struct dir *d)
{
	ssize_t n;

	if (!d->rbuf && !(d->rbuf = conn_buf_get(w))) {
		conn_fail(w, c, "out of memory");
		return -EPIPE;
	}
	if (d->roff) { /* the incomplete record moves to the front */
		memmove(d->rbuf, d->rbuf + d->roff, d->rlen - d->roff);
		d->rlen -= d->roff;
		d->roff = 0;
	}
	n = recv(c->tfd, d->rbuf + d->rlen, RELAY_BUF - d->rlen, 0);
	if (n > 0) {
		d->rlen += (uint32_t)n;
		conn_touch(w, c);
		return 1;
	}
	if (n == 0) {
		if (d->rlen) {
			conn_fail(w, c, "%s closed inside a record", conn_tls_side(c));
			return -EPIPE;
		}
		/* FIN without close_notify: an end all the same, but one an attacker can
		 * forge, so it is said and counted (relay_tls_read_end, the OpenSSL relay). */
		if (!c->fin_without_close_notify)
			conn_count(w, c, STAT_TRUNCATED);
		c->fin_without_close_notify = true;
		d->eof = true;
		return 1;
	}
	if (errno == EAGAIN) {
		if (!d->rlen)
			rbuf_put(w, d);
		conn_buf_put(w, d);
		d->busy = true;
		conn_poll(w, c, OP_US_T2P, c->tfd, POLLIN);
		return 0;
	}
	conn_fail(w, c, "%s recv: %s", conn_tls_side(c), strerror(errno));
	return -EPIPE;
}

static void rec_pump_t2p(struct worker *w, struct conn *c)
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
		if (d->rlen && t2p_open(w, c, d))
			return;
		if (d->len || d->eof)
			continue;
		if (t2p_recv(w, c, d) <= 0)
			return;
	}
}

/* After our close_notify: the TLS socket's write side too. */
static void shut_tls(struct conn *c)
{
	shutdown(c->tfd, SHUT_WR);
}

/*
 * Plaintext into the slots of d->buf, each sealed in place. 1: records to send, or the
 * end; 0: a poll is queued and the buffer is back in the pool; -EPIPE: c has failed.
 */
static int p2t_recv(struct worker *w, struct conn *c, struct dir *d)
{
	struct iovec iov[REC_SLOTS];
	size_t left, end = 0;
	ssize_t n;

	for (int i = 0; i < REC_SLOTS; i++) {
		iov[i].iov_base = d->buf + i * REC_SLOT + KTLS_REC_HDR;
		iov[i].iov_len = KTLS_REC_PLAIN_MAX;
	}
	n = readv(c->pfd, iov, REC_SLOTS);
	if (n == 0) {
		d->eof = true;
		return 1;
	}
	if (n < 0) {
		if (errno == EAGAIN) {
			conn_buf_put(w, d);
			d->busy = true;
			conn_poll(w, c, OP_US_P2T, c->pfd, POLLIN);
			return 0;
		}
		conn_fail(w, c, "%s recv: %s", conn_plain_side(c), strerror(errno));
		return -EPIPE;
	}
	d->dirty = RELAY_BUF; /* plaintext until sealed */
	left = (size_t)n;
	for (int i = 0; left; i++) {
		size_t m = left < KTLS_REC_PLAIN_MAX ? left : KTLS_REC_PLAIN_MAX;
		ssize_t r = ktls_rec_seal(c->kc, 23, d->buf + i * REC_SLOT, m);

		if (r < 0) {
			conn_fail(w, c, "sealing a record: %s", ktls_strerror((int)r));
			return -EPIPE;
		}
		end = (size_t)i * REC_SLOT + (size_t)r;
		left -= m;
	}
	d->dirty = 0; /* all sealed: ciphertext only */
	d->off = 0;
	d->len = (uint32_t)end;
	conn_moved(w, c, d, (uint64_t)n);
	conn_touch(w, c);
	return 1;
}

/* What goes into an empty d->buf before the next plaintext: our owed KeyUpdate, or at the
 * end our close_notify. 1: queued; 0: nothing to queue; -EPIPE: c has failed. */
static int p2t_control(struct worker *w, struct conn *c, struct dir *d)
{
	ssize_t n;

	if (d->eof && !d->cn_queued) {
		n = ktls_rec_seal_alert(c->kc, 1, 0, d->buf, RELAY_BUF);
		d->cn_queued = true;
	} else if (!d->eof && ktls_conn_key_update_owed(c->kc)) {
		n = ktls_rec_seal_key_update(c->kc, d->buf, RELAY_BUF);
	} else {
		return 0;
	}
	if (n < 0) {
		conn_fail(w, c, "sealing a record: %s", ktls_strerror((int)n));
		return -EPIPE;
	}
	d->off = 0;
	d->len = (uint32_t)n;
	return 1;
}

static void rec_pump_p2t(struct worker *w, struct conn *c)
{
	struct dir *d = &c->p2t;

	while (!c->closing) {
		int rc;

		if (d->off < d->len) {
			if (relay_send_some(w, c, d, OP_US_P2T))
				return;
			continue;
		}
		/* The source ended: close_notify first, then dir_next shuts the socket. */
		if (d->eof && !d->cn_queued) {
			d->off = d->len = 0;
			if (!d->buf && !(d->buf = conn_buf_get(w))) {
				conn_fail(w, c, "out of memory");
				return;
			}
		} else if (relay_dir_next(w, c, d, shut_tls)) {
			return;
		}
		rc = p2t_control(w, c, d);
		if (rc)
			rc = rc > 0 ? 1 : -EPIPE;
		else
			rc = p2t_recv(w, c, d);
		if (rc <= 0)
			return;
	}
}

/*
 * A resuming client reads through OpenSSL until the server's tickets (or its first data)
 * are through, then RX moves to libktls, as the kTLS relay's split install does. False
 * while OpenSSL still reads (or c has failed).
 */
static bool t2p_split(struct worker *w, struct conn *c)
{
	int rc;

	if (!c->ssl)
		return true;
	relay_us_pump_t2p(w, c);
	if (c->closing || !(c->id.tickets || c->t2p.bytes) || SSL_has_pending(c->ssl))
		return false;
	rc = ktls_conn_install_rx(c->kc, c->ssl);
	if (rc) {
		conn_fail(w, c, "records: taking %s's keys over: %s", conn_tls_side(c),
			  ktls_strerror(rc));
		return false;
	}
	relay_ssl_handed_over(c);
	return !c->t2p.busy; /* else its poll comes back to rec_pump_t2p */
}

static void rec_t2p(struct worker *w, struct conn *c)
{
	if (t2p_split(w, c))
		rec_pump_t2p(w, c);
}

static int rec_start(struct worker *w, struct conn *c)
{
	/* A client that resumes must read the server's tickets through OpenSSL. */
	bool split = !conn_is_server(c) && conn_sess_cache(w, c);
	struct ktls_conn *kc = NULL;
	int rc;

	rc = ktls_rec_new(c->ssl, KTLS_DIR_TX | (split ? 0 : KTLS_DIR_RX), &kc);
	if (rc)
		return rc;
	c->kc = kc;
	if (!split)
		relay_ssl_handed_over(c);
	conn_set_relay(w, c, &relay_rec_ops);
	rec_t2p(w, c);
	if (!c->closing)
		rec_pump_p2t(w, c);
	return 0;
}

static void rec_on_cqe(struct worker *w, struct conn *c, unsigned op, int res)
{
	struct dir *d = op == OP_US_T2P ? &c->t2p : &c->p2t;

	d->busy = false;
	if (c->closing)
		return;
	if (op == OP_US_T2P)
		rec_t2p(w, c);
	else
		rec_pump_p2t(w, c);
}

static void rec_close_notify(struct worker *w, struct conn *c)
{
	if (!c->p2t.cn_queued)
		alert_send(c, 1, 0);
}

static void rec_release(struct worker *w, struct conn *c)
{
	conn_buf_put(w, &c->t2p);
	conn_buf_put(w, &c->p2t);
	rbuf_put(w, &c->t2p);
	ktls_conn_free(c->kc);
	c->kc = NULL;
}

const struct relay_ops relay_rec_ops = {
	.kind = "userspace",
	.gauge = GAUGE_RELAY_USERSPACE,
	.records = "ktlsd",
	.start = rec_start,
	.on_cqe = rec_on_cqe,
	.close_notify = rec_close_notify,
	.release = rec_release,
};

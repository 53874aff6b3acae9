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
#include "worker.h"

#define SPLICE_CHUNK (1u << 20)

bool relay_ktls_fallback_ok(int err)
{
	/* libktls guarantees the socket is untouched for these. */
	return err == -KTLS_E_NO_ULP || err == -KTLS_E_UNSUPPORTED_CIPHER ||
	       err == -KTLS_E_UNSUPPORTED_VERSION || err == -KTLS_E_PENDING ||
	       err == -KTLS_E_NO_SECRETS || err == -KTLS_E_SEQUENCE;
}

static void splice_in(struct worker *w, struct conn *c, struct dir *d, int src, enum op op)
{
	d->busy = true;
	io_uring_prep_splice(conn_sqe(w, c, op), src, -1, d->pipe[1], -1, SPLICE_CHUNK,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

static void splice_out(struct worker *w, struct conn *c, struct dir *d, int dst, enum op op)
{
	d->busy = true;
	io_uring_prep_splice(conn_sqe(w, c, op), d->pipe[0], -1, dst, -1, d->in_pipe,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

static void pump(struct worker *w, struct conn *c, bool t2p)
{
	struct dir *d = t2p ? &c->t2p : &c->p2t;
	int src = t2p ? c->tfd : c->pfd, dst = t2p ? c->pfd : c->tfd;

	if (c->closing || d->busy)
		return;
	if (d->in_pipe) {
		splice_out(w, c, d, dst, t2p ? OP_SPLICE_P_OUT : OP_SPLICE_T_OUT);
		return;
	}
	if (!d->eof) {
		splice_in(w, c, d, src, t2p ? OP_SPLICE_T_IN : OP_SPLICE_P_IN);
		return;
	}
	if (!d->shut) {
		/* Half-close: TLS peer's close_notify -> FIN on the plaintext side; FIN
		 * from the plaintext side -> close_notify alert (through the kernel) then
		 * FIN to the TLS peer. */
		if (!t2p)
			ktls_conn_send_close_notify(c->kc);
		shutdown(dst, SHUT_WR);
		d->shut = true;
	}
	conn_maybe_done(w, c);
}

/*
 * The kernel owns the session now: keep no SSL (memory per idle connection). Freed
 * without SSL_shutdown, OpenSSL would take the session for a broken one and mark the
 * client's newest ticket unusable; nothing is broken, so say the shutdown is done.
 */
static void ssl_handed_over(struct conn *c)
{
	SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c->ssl);
	c->ssl = NULL;
}

/* RX is in the kernel now: the SSL goes, and splicing takes the TLS -> plaintext side. */
static int split_finish(struct worker *w, struct conn *c)
{
	int rc = ktls_conn_install_rx(c->kc, c->ssl);

	if (rc)
		return rc;
	ssl_handed_over(c);
	pump(w, c, true);
	return 0;
}

/* Split install: read through OpenSSL until a ticket or the first data record is through. */
static void split_read(struct worker *w, struct conn *c)
{
	struct dir *d = &c->t2p;
	uint8_t buf[16384]; /* one record's plaintext at most: SSL_read never leaves a rest */
	int r, rc;

	for (;;) {
		ERR_clear_error();
		errno = 0;
		r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0) {
			/* The pipe is empty and holds 64 KiB: one record always fits. */
			ssize_t n = write(d->pipe[1], buf, (size_t)r);

			if (n != r) {
				conn_fail(w, c, "pipe: %s",
					  n < 0 ? strerror(errno) : "short write");
				return;
			}
			d->in_pipe += (uint32_t)r;
			rc = split_finish(w, c);
			if (rc == -KTLS_E_PENDING)
				continue;
			break;
		}
		switch (tls_want(c->ssl, r)) {
		case TLS_WANT_READ:
			rc = c->id.tickets ? split_finish(w, c) : -KTLS_E_PENDING;
			if (rc == -KTLS_E_PENDING) {
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
			if (conn_tls_read_ended(w, c, r))
				pump(w, c, true);
			return;
		}
		break;
	}
	if (rc)
		conn_fail(w, c, "ktls rx install failed: %s", ktls_strerror(rc));
}

int relay_ktls_start(struct worker *w, struct conn *c)
{
	struct ktls_conn *kc = NULL;
	/* TLS 1.2 tickets came inside the handshake: only 1.3 needs to read on for them. */
	bool split = conn_sess_cache(w, c) && SSL_version(c->ssl) == TLS1_3_VERSION;
	int rc = split ? ktls_install_tx(c->ssl, c->tfd, &kc) : ktls_install(c->ssl, c->tfd, &kc);

	if (rc)
		return rc;
	c->kc = kc;
	c->ktls = true;
	if (!split)
		ssl_handed_over(c);
	if (pipe2(c->t2p.pipe, O_CLOEXEC) || pipe2(c->p2t.pipe, O_CLOEXEC)) {
		rc = -errno;
		conn_fail(w, c, "pipe: %s", strerror(-rc));
		return rc;
	}
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
		atomic_fetch_add_explicit(&c->svc->rekey_closes, 1, memory_order_relaxed);
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
		if (ktls_conn_key_update_owed(c->kc)) {
			rc = ktls_conn_update_tx(c->kc, false);
			if (rc)
				conn_fail(w, c, "KeyUpdate answer: %s", ktls_strerror(rc));
		}
		break;
	}
}

void relay_ktls_cqe(struct worker *w, struct conn *c, enum op op, int res)
{
	bool t2p = op == OP_SPLICE_T_IN || op == OP_SPLICE_P_OUT || op == OP_KPOLL_T2P ||
		   op == OP_KPOLL_SPLIT;
	struct dir *d = t2p ? &c->t2p : &c->p2t;
	bool in = op == OP_SPLICE_T_IN || op == OP_SPLICE_P_IN;

	d->busy = false;
	if (c->closing)
		return;
	if (op == OP_KPOLL_SPLIT) {
		split_read(w, c);
		return;
	}
	/*
	 * The sockets stay non-blocking (OpenSSL needed that for the handshake), so a splice
	 * that would block comes back -EAGAIN instead of parking an io-wq thread per
	 * connection: wait for readiness, then splice again.
	 */
	if (res == -EAGAIN && op != OP_KPOLL_T2P && op != OP_KPOLL_P2T) {
		int fd = in ? (t2p ? c->tfd : c->pfd) : (t2p ? c->pfd : c->tfd);

		d->busy = true;
		io_uring_prep_poll_add(conn_sqe(w, c, t2p ? OP_KPOLL_T2P : OP_KPOLL_P2T), fd,
				       in ? POLLIN : POLLOUT);
		return;
	}
	switch (op) {
	case OP_KPOLL_T2P:
	case OP_KPOLL_P2T:
		break; /* ready (or an error the next splice will report) */
	case OP_SPLICE_T_IN:
	case OP_SPLICE_P_IN:
		if (res > 0)
			d->in_pipe += (uint32_t)res;
		else if (res == 0)
			d->eof = true;
		else if (t2p && (res == -EINVAL || res == -EIO))
			on_control(w, c); /* a non-data record is next */
		else
			conn_fail(w, c, "%s read: %s", t2p ? conn_tls_side(c) : conn_plain_side(c),
				  strerror(-res));
		break;
	default:
		if (res > 0) {
			d->in_pipe -= (uint32_t)res;
			d->bytes += (uint64_t)res;
		} else {
			conn_fail(w, c, "%s write: %s", t2p ? conn_plain_side(c) : conn_tls_side(c),
				  strerror(res ? -res : EPIPE));
		}
		break;
	}
	pump(w, c, t2p);
}

void relay_ktls_close_notify(struct conn *c)
{
	if (c->kc)
		ktls_conn_send_close_notify(c->kc);
}

void relay_ktls_release(struct conn *c)
{
	ktls_conn_free(c->kc);
	c->kc = NULL;
	for (int i = 0; i < 2; i++) {
		if (c->t2p.pipe[i] >= 0)
			close(c->t2p.pipe[i]);
		if (c->p2t.pipe[i] >= 0)
			close(c->p2t.pipe[i]);
		c->t2p.pipe[i] = c->p2t.pipe[i] = -1;
	}
}

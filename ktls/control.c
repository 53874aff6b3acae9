// SPDX-License-Identifier: MIT
/*
 * Non-data records on an installed kTLS socket: alerts, TLS 1.3 NewSessionTicket and
 * KeyUpdate. The kernel hands these to userspace one record per recvmsg with
 * TLS_GET_RECORD_TYPE; handshake messages may still span records (a large ticket) or
 * share one (two tickets), so message framing is tracked in the connection across calls
 * with a few bytes of state instead of a buffer: ticket bodies are skipped, not kept.
 *
 * KeyUpdate can be followed only where the kernel accepts a second TLS_TX/TLS_RX (6.14+).
 * Whether it does is the kernel's answer (ops->rekey_supported), never a version check;
 * elsewhere -KTLS_E_REKEY_UNSUPPORTED, before anything is sent or changed.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include <openssl/crypto.h>

#include "ktlsd/ktls.h"
#include "ktls_internal.h"

enum {
	REC_CCS = 20,
	REC_ALERT = 21,
	REC_HANDSHAKE = 22,
	REC_DATA = 23,
	HS_NEW_SESSION_TICKET = 4,
	HS_KEY_UPDATE = 24,
	MAX_PLAINTEXT = 16384,
};

static ssize_t send_record(struct ktls_conn *c, uint8_t type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	if (c->tx_broken)
		return -EPIPE; /* the peer reads with the key we could not install */
	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cm) = type;
	n = c->ops->sendmsg(c->fd, &msg, 0);
	if (n >= 0 && (size_t)n != len)
		return -EIO; /* a control record is never split: the kernel took part of it */
	return n < 0 ? n : 0;
}

int ktls_conn_send_alert(struct ktls_conn *c, uint8_t level, uint8_t desc)
{
	uint8_t alert[2] = { level, desc };

	if (level != 1 && level != 2)
		return -EINVAL;
	return (int)send_record(c, REC_ALERT, alert, sizeof(alert));
}

int ktls_conn_send_close_notify(struct ktls_conn *c)
{
	return ktls_conn_send_alert(c, 1, 0);
}

static int rekey_check(struct ktls_conn *c)
{
	int rc;

	if (c->version != TLS1_3_VERSION || !c->secrets)
		return -KTLS_E_UNSUPPORTED_VERSION;
	if (c->rec)
		return 0; /* userspace records (record.c): the new key is ours to use */
	rc = c->ops->rekey_supported();
	if (rc < 0)
		return rc;
	return rc == 1 ? 0 : -KTLS_E_REKEY_UNSUPPORTED;
}

/* Derive the next secret for one direction and give the kernel its crypto_info. */
static int rekey_dir(struct ktls_conn *c, int dir, uint8_t *secret)
{
	uint8_t next[KTLS_SECRET_MAX];
	union ktls_crypto_info ci;
	int rc;

	memset(&ci, 0, sizeof(ci));
	rc = ktls_tls13_next_secret(c->suite->digest, secret, c->secret_len, next);
	if (rc < 0)
		goto out_wipe;
	rc = ktls_crypto_info_tls13(c->suite, next, c->secret_len, 0, &ci);
	if (rc < 0)
		goto out_wipe;
	if (c->rec)
		rc = ktls_rec_set_key(c, dir, &ci);
	else
		rc = c->ops->setsockopt(c->fd, SOL_TLS, dir, &ci, c->suite->info_len);
	if (rc == -EBUSY)
		rc = -KTLS_E_REKEY_UNSUPPORTED;
	if (rc < 0)
		goto out_wipe;
	memcpy(secret, next, c->secret_len);
out_wipe:
	OPENSSL_cleanse(next, sizeof(next));
	OPENSSL_cleanse(&ci, sizeof(ci));
	return rc;
}

/* Our KeyUpdate is out (or sealed): TX moves to the next key. A failure leaves TX on a key
 * the peer has left: nothing more may be sent. */
static int tx_next_key(struct ktls_conn *c)
{
	int rc = rekey_dir(c, TLS_TX, c->secrets->tx);

	if (rc < 0) {
		c->tx_broken = true;
		return rc;
	}
	c->tx_gen++;
	c->tx_update_owed = false;
	return 0;
}

int ktls_conn_update_tx(struct ktls_conn *c, bool request_peer_update)
{
	uint8_t msg[5] = { HS_KEY_UPDATE, 0, 0, 1, request_peer_update ? 1 : 0 };
	int rc;

	rc = rekey_check(c);
	if (rc < 0)
		return rc;
	/*
	 * The KeyUpdate itself goes out under the old key; everything after under the new. A
	 * failed send sent nothing (a control record is never split), so it can be retried.
	 */
	rc = (int)send_record(c, REC_HANDSHAKE, msg, sizeof(msg));
	if (rc < 0)
		return rc;
	return tx_next_key(c);
}

ssize_t ktls_rec_seal_key_update(struct ktls_conn *c, uint8_t *out, size_t cap)
{
	const uint8_t msg[5] = { HS_KEY_UPDATE, 0, 0, 1, 0 };
	ssize_t n;
	int rc;

	if (!c->rec)
		return -EINVAL;
	if (cap < KTLS_REC_OVERHEAD + sizeof(msg))
		return -ENOSPC;
	rc = rekey_check(c);
	if (rc < 0)
		return rc;
	memcpy(out + KTLS_REC_HDR, msg, sizeof(msg));
	n = ktls_rec_seal(c, REC_HANDSHAKE, out, sizeof(msg));
	if (n < 0)
		return n;
	/* Nothing has gone out yet, but the record is sealed: the old key is done with. */
	rc = tx_next_key(c);
	return rc < 0 ? rc : n;
}

bool ktls_conn_key_update_owed(const struct ktls_conn *c)
{
	return c->tx_update_owed;
}

/* The peer's KeyUpdate with request byte req; it ended the record, as RFC 8446 4.6.3 says. */
static int key_update_rx(struct ktls_conn *c, uint8_t req)
{
	int rc;

	if (req > 1)
		return -KTLS_E_PROTOCOL;
	rc = rekey_check(c);
	if (rc < 0)
		return rc;
	rc = rekey_dir(c, TLS_RX, c->secrets->rx);
	if (rc < 0)
		return rc;
	c->rx_gen++;
	/* Answered by the caller: only it knows when nothing else is writing the socket. */
	if (req)
		c->tx_update_owed = true;
	return 0;
}

/* Walk the handshake messages in one record; framing state carries across records. */
static int handshake_record(struct ktls_conn *c, const uint8_t *p, size_t n,
			    enum ktls_control *ret_ctrl)
{
	enum ktls_control ctrl = KTLS_CTRL_TICKET;
	size_t i = 0;

	if (c->version != TLS1_3_VERSION || n == 0)
		return -KTLS_E_PROTOCOL; /* TLS 1.2: HelloRequest (renegotiation) is refused */
	while (i < n) {
		uint32_t len;
		size_t take;

		if (c->hs_skip) {
			take = n - i < c->hs_skip ? n - i : c->hs_skip;
			c->hs_skip -= (uint32_t)take;
			i += take;
			continue;
		}
		while (c->hs_hdr_len < 4 && i < n)
			c->hs_hdr[c->hs_hdr_len++] = p[i++];
		if (c->hs_hdr_len < 4)
			break;
		len = (uint32_t)c->hs_hdr[1] << 16 | (uint32_t)c->hs_hdr[2] << 8 | c->hs_hdr[3];
		c->hs_hdr_len = 0;
		switch (c->hs_hdr[0]) {
		case HS_NEW_SESSION_TICKET:
			/* Tickets are useless to a connection that will never resume; only a
			 * server sends them. */
			if (c->server || len < 9)
				return -KTLS_E_PROTOCOL;
			c->hs_skip = len;
			break;
		case HS_KEY_UPDATE: {
			int rc;

			if (len != 1 || i + 1 != n)
				return -KTLS_E_PROTOCOL;
			rc = key_update_rx(c, p[i]);
			if (rc < 0)
				return rc;
			i++;
			ctrl = KTLS_CTRL_KEY_UPDATE;
			break;
		}
		default:
			return -KTLS_E_PROTOCOL;
		}
	}
	*ret_ctrl = ctrl;
	return 0;
}

int ktls_control_record(struct ktls_conn *c, uint8_t type, const uint8_t *buf, size_t n,
			enum ktls_control *ret_ctrl, uint8_t *ret_alert)
{
	enum ktls_control ctrl;
	int rc;

	switch (type) {
	case REC_ALERT:
		/* Nothing comes between the records of one handshake message (RFC 8446 5.1): a
		 * close_notify there would end a stream cut inside a message as a whole one. */
		if (n != 2 || c->hs_skip || c->hs_hdr_len)
			rc = -KTLS_E_PROTOCOL;
		else if (buf[1] == 0) {
			*ret_ctrl = KTLS_CTRL_CLOSE_NOTIFY;
			*ret_alert = 0;
			rc = 0;
		} else {
			*ret_ctrl = KTLS_CTRL_ALERT;
			*ret_alert = buf[1];
			rc = 0;
		}
		break;
	case REC_HANDSHAKE:
		rc = handshake_record(c, buf, n, &ctrl);
		if (rc == 0)
			*ret_ctrl = ctrl;
		break;
	default: /* REC_CCS after the handshake, or an unknown type */
		rc = -KTLS_E_PROTOCOL;
		break;
	}
	return rc;
}

static ssize_t recv_record(struct ktls_conn *c, void *buf, size_t len, int flags, uint8_t *ret_type)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;
	ssize_t n;

	n = c->ops->recvmsg(c->fd, &msg, flags | MSG_DONTWAIT);
	if (n < 0)
		return n;
	*ret_type = REC_DATA;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			*ret_type = *CMSG_DATA(cm);
	return n;
}

int ktls_conn_recv_control(struct ktls_conn *c, enum ktls_control *ret_ctrl, uint8_t *ret_alert)
{
	uint8_t buf[MAX_PLAINTEXT + 1];
	uint8_t type;
	ssize_t n;
	int rc;

	/* Peek first: if data is next after all, it must stay for the relay. */
	n = recv_record(c, buf, 1, MSG_PEEK, &type);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ECONNRESET; /* TCP FIN without close_notify: truncation */
	if (type == REC_DATA) {
		*ret_ctrl = KTLS_CTRL_DATA;
		return 0;
	}
	n = recv_record(c, buf, sizeof(buf), 0, &type);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ECONNRESET;
	rc = ktls_control_record(c, type, buf, (size_t)n, ret_ctrl, ret_alert);
	/* Ticket bodies carry resumption secrets. */
	OPENSSL_cleanse(buf, (size_t)n);
	return rc;
}

uint64_t ktls_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The kernel's next RX record sequence number (getsockopt returns the key too: wiped). */
static int rx_seq(struct ktls_conn *c, uint64_t *ret_seq)
{
	union ktls_crypto_info ci;
	socklen_t len = c->suite->info_len;
	const uint8_t *seq;
	int rc;

	memset(&ci, 0, sizeof(ci));
	rc = c->ops->getsockopt(c->fd, SOL_TLS, TLS_RX, &ci, &len);
	if (rc == 0 && len != c->suite->info_len)
		rc = -EIO;
	if (rc == 0) {
		switch (c->suite->cipher_type) {
		case TLS_CIPHER_AES_GCM_128:
			seq = ci.gcm128.rec_seq;
			break;
		case TLS_CIPHER_AES_GCM_256:
			seq = ci.gcm256.rec_seq;
			break;
		default:
			seq = ci.chacha.rec_seq;
			break;
		}
		*ret_seq = ktls_get_be64(seq);
	}
	OPENSSL_cleanse(&ci, sizeof(ci));
	return rc;
}

int ktls_conn_zero_read(struct ktls_conn *c)
{
	bool same_epoch = c->zr_valid && c->zr_gen == c->rx_gen;
	uint64_t seq = 0;
	int rc = rx_seq(c, &seq);

	if (rc < 0)
		return rc;
	/* No record decrypted since the last zero read: this one met the end of the stream. */
	if (same_epoch && seq == c->zr_seq)
		return 1;
	/* Exactly one record since, and that read returned 0: another empty one in a row. */
	c->zr_run = same_epoch && seq == c->zr_seq + 1 ? c->zr_run + 1 : 1;
	c->zr_valid = true;
	c->zr_gen = c->rx_gen;
	c->zr_seq = seq;
	return c->zr_run > KTLS_MAX_EMPTY_RECORDS ? -KTLS_E_PROTOCOL : 0;
}

// SPDX-License-Identifier: MIT
/*
 * Userspace records: TLS 1.3 record protection (RFC 8446 5.2-5.3) with the keys libktls
 * derived for the kernel, for hosts whose kernel has no TLS ULP. The connection keeps what
 * the kernel would: per direction an AEAD context keyed once, the static IV and the
 * sequence number. Control records go through control.c exactly as on a kTLS socket, and a
 * KeyUpdate rekeys here (ktls_rec_set_key stands in for setsockopt TLS_TX / TLS_RX).
 *
 * Checks on what the peer sends, each fatal: the outer header (type application_data,
 * version 0x0303, length <= 2^14 + 256 and long enough for a tag and a content type), the
 * inner plaintext's length before any work on it (content, type and padding <= 2^14 + 1
 * bytes, RFC 8446 5.4, as the kernel's TLS_RX has it), the tag, a content type after the
 * padding, no data record inside a handshake message, at most KTLS_MAX_EMPTY_RECORDS
 * records in a row that move no data (empty ones, tickets, KeyUpdates), and no sequence
 * number wrap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ktlsd/ktls.h"
#include "ktls_internal.h"

enum {
	REC_ALERT = 21,
	REC_HANDSHAKE = 22,
	REC_DATA = 23,
	CIPHERTEXT_MAX = KTLS_REC_PLAIN_MAX + 256, /* RFC 8446 5.2 */
	/* RFC 8446 5.4: padding does not raise the limit of content plus its type. */
	INNER_PLAIN_MAX = KTLS_REC_PLAIN_MAX + 1,
	NONCE_LEN = 12,
};

struct rec_dir {
	EVP_CIPHER_CTX *ctx; /* keyed once per key; each record sets only the nonce */
	uint8_t iv[NONCE_LEN];
	uint64_t seq;
};

struct ktls_rec {
	struct rec_dir tx, rx;
	uint8_t empty_run; /* records in a row that moved no application data */
};

/* Fetched once: an implicit fetch per EVP_CipherInit_ex would cost a lookup each time. */
static pthread_once_t ciphers_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *cipher_gcm128, *cipher_gcm256, *cipher_chacha;

static void ciphers_fetch(void)
{
	cipher_gcm128 = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	cipher_gcm256 = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	cipher_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

static const EVP_CIPHER *cipher_for(uint16_t cipher_type)
{
	pthread_once(&ciphers_once, ciphers_fetch);
	switch (cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		return cipher_gcm128;
	case TLS_CIPHER_AES_GCM_256:
		return cipher_gcm256;
	case TLS_CIPHER_CHACHA20_POLY1305:
		return cipher_chacha;
	}
	return NULL;
}

struct ktls_rec *ktls_rec_alloc(void)
{
	return calloc(1, sizeof(struct ktls_rec));
}

void ktls_rec_free(struct ktls_rec *r)
{
	if (!r)
		return;
	EVP_CIPHER_CTX_free(r->tx.ctx); /* wipes the key schedule */
	EVP_CIPHER_CTX_free(r->rx.ctx);
	OPENSSL_cleanse(r, sizeof(*r));
	free(r);
}

int ktls_rec_set_key(struct ktls_conn *c, int dir, const union ktls_crypto_info *ci)
{
	struct rec_dir *d = dir == TLS_TX ? &c->rec->tx : &c->rec->rx;
	const EVP_CIPHER *cipher = cipher_for(c->suite->cipher_type);
	union ktls_crypto_info tmp = *ci;
	uint8_t *iv, *key, *salt, *seq;
	int rc = 0;

	if (!cipher)
		return -KTLS_E_UNSUPPORTED_CIPHER;
	if (!d->ctx && !(d->ctx = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	ktls_info_fields(c->suite, &tmp, &iv, &key, &salt, &seq);
	if (EVP_CipherInit_ex(d->ctx, cipher, NULL, key, NULL, dir == TLS_TX) != 1)
		rc = -EIO;
	if (rc == 0) {
		memcpy(d->iv, salt, c->suite->salt_len);
		memcpy(d->iv + c->suite->salt_len, iv, c->suite->iv_len);
		d->seq = ktls_get_be64(seq);
	}
	OPENSSL_cleanse(&tmp, sizeof(tmp));
	return rc;
}

/*
 * One AEAD pass over n bytes from src to dst (the same, or apart): the nonce is the static
 * IV xor the sequence number, the additional data the record header hdr. Sealing writes
 * the tag, opening checks it (-KTLS_E_BAD_RECORD). The sequence number moves only on
 * success.
 */
static int rec_crypt(struct rec_dir *d, bool seal, const uint8_t *hdr, const uint8_t *src,
		     uint8_t *dst, size_t n, uint8_t *tag)
{
	uint8_t nonce[NONCE_LEN];
	int outl;

	if (d->seq == UINT64_MAX)
		return -EOVERFLOW; /* RFC 8446 5.3: the sequence number must not wrap */
	memcpy(nonce, d->iv, sizeof(nonce));
	for (int i = 0; i < 8; i++)
		nonce[NONCE_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
	if (EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, nonce, seal) != 1 ||
	    EVP_CipherUpdate(d->ctx, NULL, &outl, hdr, KTLS_REC_HDR) != 1 ||
	    (n && EVP_CipherUpdate(d->ctx, dst, &outl, src, (int)n) != 1))
		return -EIO;
	if (!seal && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, KTLS_REC_TAG, tag) != 1)
		return -EIO;
	if (EVP_CipherFinal_ex(d->ctx, dst + n, &outl) != 1)
		return seal ? -EIO : -KTLS_E_BAD_RECORD;
	if (seal && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, KTLS_REC_TAG, tag) != 1)
		return -EIO;
	d->seq++;
	return 0;
}

ssize_t ktls_rec_seal(struct ktls_conn *c, uint8_t type, uint8_t *rec, size_t len)
{
	size_t inner = len + 1;
	int rc;

	if (!c->rec)
		return -EINVAL;
	if (len > KTLS_REC_PLAIN_MAX)
		return -EMSGSIZE;
	if (c->tx_broken)
		return -EPIPE;
	rec[0] = REC_DATA; /* the outer type of every protected record */
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (uint8_t)((inner + KTLS_REC_TAG) >> 8);
	rec[4] = (uint8_t)(inner + KTLS_REC_TAG);
	rec[KTLS_REC_HDR + len] = type;
	rc = rec_crypt(&c->rec->tx, true, rec, rec + KTLS_REC_HDR, rec + KTLS_REC_HDR, inner,
		       rec + KTLS_REC_HDR + inner);
	if (rc < 0) {
		OPENSSL_cleanse(rec + KTLS_REC_HDR, inner);
		return rc;
	}
	return (ssize_t)(KTLS_REC_HDR + inner + KTLS_REC_TAG);
}

ssize_t ktls_rec_seal_alert(struct ktls_conn *c, uint8_t level, uint8_t desc, uint8_t *out,
			    size_t cap)
{
	if (level != 1 && level != 2)
		return -EINVAL;
	if (cap < KTLS_REC_OVERHEAD + 2)
		return -ENOSPC;
	out[KTLS_REC_HDR] = level;
	out[KTLS_REC_HDR + 1] = desc;
	return ktls_rec_seal(c, REC_ALERT, out, 2);
}

void ktls_rec_stop_tx(struct ktls_conn *c)
{
	c->tx_broken = true;
}

uint8_t ktls_rec_alert(int err)
{
	switch (-err) {
	case KTLS_E_BAD_RECORD:
		return 20; /* bad_record_mac */
	case KTLS_E_RECORD_OVERFLOW:
		return 22; /* record_overflow */
	case KTLS_E_PROTOCOL:
		return 10; /* unexpected_message */
	}
	return 80; /* internal_error */
}

/* The outer header of the record at in: its body length, or why it cannot be one. */
static int header_check(const uint8_t *in, size_t *ret_len)
{
	size_t len = (size_t)in[3] << 8 | in[4];

	/* After the handshake every record is protected, so its outer type is data; the
	 * version is 0x0303 in every TLS 1.3 record but a first ClientHello's. */
	if (in[0] != REC_DATA || in[1] != 3 || in[2] != 3)
		return -KTLS_E_PROTOCOL;
	if (len > CIPHERTEXT_MAX)
		return -KTLS_E_RECORD_OVERFLOW;
	if (len < KTLS_REC_TAG + 1)
		return -KTLS_E_PROTOCOL; /* no room for a content type */
	/* Every suite here has a 16-byte tag: the inner plaintext's length is known before
	 * any work is spent on it (a peer's padding would otherwise pass as a record). */
	if (len - KTLS_REC_TAG > INNER_PLAIN_MAX)
		return -KTLS_E_RECORD_OVERFLOW;
	*ret_len = len;
	return 0;
}

/*
 * An opened record of type with n bytes of content: the checks that need the connection's
 * state. Records that move no application data (empty ones, tickets, KeyUpdates) cost a
 * pass each and give nothing: at most KTLS_MAX_EMPTY_RECORDS of them in a row.
 */
static int record_state(struct ktls_conn *c, uint8_t type, size_t n)
{
	/* Handshake messages may span records, but nothing may come between the parts. */
	if (type == REC_DATA && (c->hs_skip || c->hs_hdr_len))
		return -KTLS_E_PROTOCOL;
	if (type == REC_DATA && n)
		c->rec->empty_run = 0;
	else if (++c->rec->empty_run > KTLS_MAX_EMPTY_RECORDS)
		return -KTLS_E_PROTOCOL;
	return 0;
}

int ktls_rec_unseal(struct ktls_conn *c, const uint8_t *in, size_t avail, size_t *used,
		    uint8_t *out, size_t outcap, size_t *len, enum ktls_control *ctrl,
		    uint8_t *alert)
{
	size_t body, n;
	uint8_t type;
	int rc;

	*used = *len = 0;
	if (!c->rec)
		return -EINVAL;
	if (avail < KTLS_REC_HDR)
		return -EAGAIN;
	rc = header_check(in, &body);
	if (rc < 0)
		return rc;
	if (avail < KTLS_REC_HDR + body)
		return -EAGAIN;
	n = body - KTLS_REC_TAG;
	if (outcap < n)
		return -ENOSPC;
	/* OpenSSL only reads the tag it is given (the cast is its API's). */
	rc = rec_crypt(&c->rec->rx, false, in, in + KTLS_REC_HDR, out, n,
		       (uint8_t *)in + KTLS_REC_HDR + n);
	if (rc < 0) {
		OPENSSL_cleanse(out, n);
		return rc;
	}
	*used = KTLS_REC_HDR + body;
	/* TLSInnerPlaintext: content, the content type, then zeros. */
	while (n && out[n - 1] == 0)
		n--;
	if (n == 0)
		return -KTLS_E_PROTOCOL; /* no content type at all */
	type = out[--n];
	if (n > KTLS_REC_PLAIN_MAX)
		rc = -KTLS_E_RECORD_OVERFLOW;
	else
		rc = record_state(c, type, n);
	if (rc == 0 && type != REC_DATA)
		rc = ktls_control_record(c, type, out, n, ctrl, alert);
	if (rc == 0 && type == REC_DATA) {
		*ctrl = KTLS_CTRL_DATA;
		*len = n;
		return 0;
	}
	OPENSSL_cleanse(out, body - KTLS_REC_TAG); /* tickets carry resumption secrets */
	return rc;
}

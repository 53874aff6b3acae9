/* SPDX-License-Identifier: MIT */
/* libktls internals shared between capture.c, keys.c, conn.c and control.c. */
#ifndef KTLSD_KTLS_INTERNAL_H
#define KTLSD_KTLS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/tls.h>
#include <openssl/ssl.h>

#include "ktlsd/ktls.h"
#include "ktls_compat.h"

#define KTLS_SECRET_MAX 48 /* SHA-384 */

/*
 * What ktls_ctx_prepare()'s callbacks saw of one SSL: the TLS 1.3 traffic secrets (keylog)
 * and, per direction, how many records OpenSSL itself wrote or read after that direction's
 * Finished message (message callback). Those records used the keys kTLS takes over, so the
 * kernel's record sequence numbers start after them: a TLS 1.3 server's tickets, or the
 * records a client read through OpenSSL before installing kTLS RX.
 */
struct ktls_captured {
	uint8_t client[KTLS_SECRET_MAX];
	uint8_t server[KTLS_SECRET_MAX];
	uint8_t client_len;
	uint8_t server_len;
	bool tx_fin, rx_fin; /* Finished written / read: counting runs from here */
	bool rekeyed;	     /* a KeyUpdate went through OpenSSL: the secrets are stale */
	uint32_t tx_records, rx_records;
};

/* The capture of ssl, or NULL if ktls_ctx_prepare() was not called (or allocation failed). */
struct ktls_captured *ktls_captured_get(const SSL *ssl);

int ktls_kdf_init(void);

/* Suite facts for one negotiated cipher. */
struct ktls_suite {
	uint16_t cipher_type; /* TLS_CIPHER_* */
	const char *digest;
	uint8_t key_len;
	uint8_t salt_len;     /* implicit nonce part kept in crypto_info.salt */
	uint8_t iv_len;	      /* crypto_info.iv */
	uint8_t fixed_iv_len; /* TLS 1.2 key block client/server_write_IV length */
	uint16_t info_len;    /* sizeof the tls12_crypto_info_* struct */
};

/*
 * Union of the three kernel crypto_info layouts; filled by ktls_crypto_info_* and
 * handed to setsockopt with suite->info_len bytes.
 */
union ktls_crypto_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

/* Shared MADV_DONTDUMP slab for the TLS 1.3 secret pairs kept for rekey. */
struct ktls_secret_slot {
	uint8_t tx[KTLS_SECRET_MAX];
	uint8_t rx[KTLS_SECRET_MAX];
};
struct ktls_secret_slot *ktls_slot_alloc(void);
void ktls_slot_free(struct ktls_secret_slot *s);

struct ktls_rec;

struct ktls_conn {
	const struct ktls_ops *ops;
	struct ktls_rec *rec; /* userspace records (record.c); NULL: the kernel's */
	const struct ktls_suite *suite;
	struct ktls_secret_slot *secrets; /* TLS 1.3 only */
	uint64_t tx_gen;
	uint64_t rx_gen;
	int fd;
	uint16_t version;
	uint8_t secret_len;
	bool server;
	bool rx_installed;
	bool tx_update_owed; /* the peer requested our KeyUpdate; not sent yet */
	bool tx_broken;	     /* our KeyUpdate went out, the new TX key did not get in */
	/* The last zero-length read: where the RX sequence was then (ktls_conn_zero_read). */
	bool zr_valid;
	uint8_t zr_run;
	uint64_t zr_gen, zr_seq;
	/* Handshake message framing across records (NewSessionTicket may span records). */
	uint32_t hs_skip;  /* body bytes of the current message still to skip */
	uint8_t hs_hdr[4]; /* partial message header */
	uint8_t hs_hdr_len;
	const char *cipher_name; /* static string owned by OpenSSL */
};

/*
 * Build the crypto_info for one direction of TLS 1.3 from a traffic secret, rec_seq 0
 * (used at install and at every KeyUpdate).
 */
int ktls_crypto_info_tls13(const struct ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			   uint64_t seq, union ktls_crypto_info *ret);

/* The crypto_info fields of whichever layout suite uses. */
void ktls_info_fields(const struct ktls_suite *suite, union ktls_crypto_info *ci, uint8_t **iv,
		      uint8_t **key, uint8_t **salt, uint8_t **seq);
uint64_t ktls_get_be64(const uint8_t *p);

/* Userspace records: one direction's key (TLS_TX / TLS_RX) from ci, as setsockopt would. */
int ktls_rec_set_key(struct ktls_conn *c, int dir, const union ktls_crypto_info *ci);
struct ktls_rec *ktls_rec_alloc(void);
void ktls_rec_free(struct ktls_rec *r);

/*
 * A decrypted non-data record of type with n bytes of plaintext: alerts, and TLS 1.3
 * handshake messages (tickets skipped, KeyUpdate followed), as ktls_conn_recv_control.
 */
int ktls_control_record(struct ktls_conn *c, uint8_t type, const uint8_t *buf, size_t n,
			enum ktls_control *ret_ctrl, uint8_t *ret_alert);

#endif

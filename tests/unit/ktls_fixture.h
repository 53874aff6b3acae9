/* SPDX-License-Identifier: MIT */
/*
 * Shared by ktls_install_test.c and ktls_control_test.c (ktls_fixture.c). Include after
 * <cmocka.h>.
 *  - fake seam: fake_ops records every setsockopt (F.calls), sendmsg (F.sent) and hands
 *    out queued records (queue) to recvmsg, as the kernel does with TLS_GET_RECORD_TYPE;
 *  - handshake: pair_handshake runs a real OpenSSL handshake in one thread; K is what the
 *    test's own keylog callback saw (ktls_ctx_prepare must chain to it);
 *  - expectations: the kernel's crypto_info bytes computed here, not by libktls.
 */
#ifndef KTLSD_TESTS_KTLS_FIXTURE_H
#define KTLSD_TESTS_KTLS_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "ktlsd/ktls.h"

/* --- fake seam ----------------------------------------------------------------------- */

struct call {
	int level, name;
	uint8_t val[64];
	socklen_t len;
};

struct rec {
	uint8_t type;
	uint8_t data[64];
	size_t len;
};

struct fake {
	struct call calls[8];
	int ncalls;
	int fail_at;  /* index of the setsockopt call that fails, -1 none */
	int fail_err; /* positive errno */
	int rekey;    /* rekey_supported() answer */
	struct rec sent[4];
	int nsent;
	struct rec inq[8];
	int nin, inpos;
	int send_err;	 /* positive errno for the next sendmsg, 0 none */
	uint64_t rx_seq; /* what getsockopt(TLS_RX) reports as the next RX sequence */
};

extern struct fake F;
extern const struct ktls_ops fake_ops;

void fake_reset(void);
/* One record for the fake recvmsg to hand out, in order. */
void queue(uint8_t type, const uint8_t *d, size_t len);

/* --- handshake fixture ----------------------------------------------------------------- */

/* What this test's own keylog callback saw (to check chaining and compute expectations). */
struct seen {
	uint8_t c_ap[48], s_ap[48], ms[48];
	size_t c_ap_len, s_ap_len, ms_len;
	int lines;
};

extern struct seen K;

struct pair {
	SSL_CTX *sctx, *cctx;
	SSL *s, *c;
	int fds[2];
};

struct hs_opts {
	int version;
	const char *cipher; /* TLS 1.3 ciphersuite or TLS 1.2 cipher list */
	bool rsa;
	bool prepare_server, prepare_client;
};

/* TLS 1.3, AES-128-GCM, both sides prepared. */
extern const struct hs_opts O13;

/* cmocka group setup / teardown: the EC and RSA keys and certificates. */
int group_setup(void **state);
int group_teardown(void **state);
void pair_handshake(struct pair *p, const struct hs_opts *o);
void pair_free(struct pair *p);

/* --- independent expectations ---------------------------------------------------------- */

void hkdf_label(const EVP_MD *md, const uint8_t *secret, size_t sl, const char *label, uint8_t *out,
		size_t out_len);

struct expect {
	uint16_t cipher_type;
	size_t key_len, salt_len, iv_len, info_len;
	const EVP_MD *md;
};

extern const struct expect E_AES128, E_AES256, E_CHACHA;

/* crypto_info bytes: TLS 1.3 from a traffic secret at a record sequence (or 0); TLS 1.2
 * both directions from K.ms and the session randoms, rec_seq 1. */
void expect_tls13_seq(const struct expect *e, const uint8_t *secret, size_t sl, uint64_t seq,
		      uint8_t *out);
void expect_tls13(const struct expect *e, const uint8_t *secret, size_t sl, uint8_t *out);
void expect_tls12(const struct expect *e, SSL *ssl, uint8_t *cli, uint8_t *srv);

#endif

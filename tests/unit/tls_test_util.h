/* SPDX-License-Identifier: MIT */
/*
 * Helpers for unit tests that run real OpenSSL handshakes in-process (a server and a client
 * SSL on a non-blocking socketpair). Include after <cmocka.h>: failures are test failures.
 */
#ifndef KTLSD_TESTS_TLS_TEST_UTIL_H
#define KTLSD_TESTS_TLS_TEST_UTIL_H

#include <stdbool.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Self-signed certificate for key k, CN cn, valid from now + not_before to now + not_after
 * (seconds, either may be negative). */
static inline X509 *tu_self_signed(EVP_PKEY *k, const char *cn, long not_before, long not_after)
{
	X509 *x = X509_new();
	X509_NAME *n;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), not_before));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), not_after));
	assert_int_equal(X509_set_pubkey(x, k), 1);
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	return x;
}

/* One step of a non-blocking handshake; anything but WANT_READ/WRITE fails the test. */
static inline void tu_hs_step(SSL *ssl, bool *done)
{
	int r, e;

	if (*done)
		return;
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return;
	}
	e = SSL_get_error(ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		ERR_print_errors_fp(stderr);
		fail_msg("handshake failed: SSL error %d", e);
	}
}

/* A server and a client SSL on a fresh non-blocking socketpair (sv[0]: the server's end). */
static inline void tu_pair(SSL_CTX *sctx, SSL_CTX *cctx, SSL **ret_s, SSL **ret_c, int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	*ret_s = SSL_new(sctx);
	*ret_c = SSL_new(cctx);
	assert_non_null(*ret_s);
	assert_non_null(*ret_c);
	assert_int_equal(SSL_set_fd(*ret_s, sv[0]), 1);
	assert_int_equal(SSL_set_fd(*ret_c, sv[1]), 1);
	SSL_set_accept_state(*ret_s);
	SSL_set_connect_state(*ret_c);
}

/* Both ends of a tu_pair() through their handshake. */
static inline void tu_handshake(SSL *s, SSL *c)
{
	bool sdone = false, cdone = false;

	for (int i = 0; i < 50 && !(sdone && cdone); i++) {
		tu_hs_step(c, &cdone);
		tu_hs_step(s, &sdone);
	}
	assert_true(sdone && cdone);
}

#endif

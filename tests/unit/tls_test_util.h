/* SPDX-License-Identifier: MIT */
/*
 * Helpers for unit tests that run real OpenSSL handshakes in-process (a server and a client
 * SSL on a non-blocking socketpair). Include after <cmocka.h>: failures are test failures.
 */
#ifndef KTLSD_TESTS_TLS_TEST_UTIL_H
#define KTLSD_TESTS_TLS_TEST_UTIL_H

#include <stdbool.h>
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

#endif

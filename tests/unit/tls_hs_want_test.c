// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tlsctx.h"

static void test_map(void **state)
{
	assert_int_equal(tls_want_from_error(SSL_ERROR_NONE), TLS_WANT_DONE);
	assert_int_equal(tls_want_from_error(SSL_ERROR_WANT_READ), TLS_WANT_READ);
	assert_int_equal(tls_want_from_error(SSL_ERROR_WANT_WRITE), TLS_WANT_WRITE);
	assert_int_equal(tls_want_from_error(SSL_ERROR_ZERO_RETURN), TLS_WANT_CLOSED);
	assert_int_equal(tls_want_from_error(SSL_ERROR_SYSCALL), TLS_WANT_FAILED);
	assert_int_equal(tls_want_from_error(SSL_ERROR_SSL), TLS_WANT_FAILED);
	/* Modes ktlsd never enables must not be mistaken for "poll and retry". */
	assert_int_equal(tls_want_from_error(SSL_ERROR_WANT_X509_LOOKUP), TLS_WANT_FAILED);
	assert_int_equal(tls_want_from_error(SSL_ERROR_WANT_ASYNC), TLS_WANT_FAILED);
	assert_int_equal(tls_want_from_error(SSL_ERROR_WANT_CONNECT), TLS_WANT_FAILED);
	assert_int_equal(tls_want_from_error(12345), TLS_WANT_FAILED);
}

/* A real SSL on a memory BIO: a server with nothing to read wants to read. */
static void test_real_ssl(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	int r;

	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(ssl, rb, wb);
	SSL_set_accept_state(ssl);
	r = SSL_do_handshake(ssl);
	assert_int_equal(tls_want(ssl, r), TLS_WANT_READ);
	/* Garbage instead of a ClientHello is fatal, with an exact reason. */
	BIO_write(rb, "GET / HTTP/1.1\r\n\r\n", 18);
	r = SSL_do_handshake(ssl);
	assert_int_equal(tls_want(ssl, r), TLS_WANT_FAILED);
	{
		char why[160];
		struct tls_peer peer = { 0 };

		tls_fail_reason(ssl, SSL_get_error(ssl, r), 0, &peer, why, sizeof(why));
		assert_string_equal(why, "http request");
		peer.denied = true;
		peer.verdict = POLICY_DENY_NO_MATCH;
		tls_fail_reason(ssl, SSL_ERROR_SSL, 0, &peer, why, sizeof(why));
		assert_string_equal(why, "identity not allowed");
		peer.verdict = POLICY_DENY_SVID_URIS;
		tls_fail_reason(ssl, SSL_ERROR_SSL, 0, &peer, why, sizeof(why));
		assert_string_equal(why, "identity not allowed: not exactly one URI SAN "
					 "(an X.509-SVID carries one)");
		peer.denied = false;
		tls_fail_reason(ssl, SSL_ERROR_SYSCALL, 0, &peer, why, sizeof(why));
		assert_string_equal(why, "peer closed the connection during handshake");
		tls_fail_reason(ssl, SSL_ERROR_SYSCALL, ECONNRESET, &peer, why, sizeof(why));
		assert_string_equal(why, "Connection reset by peer during handshake");
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

static unsigned long ssl_err(int reason)
{
	return ERR_PACK(ERR_LIB_SSL, 0, reason);
}

/* Every failure lands in the issue's fixed set, the operator-actionable ones exactly. */
static void test_fail_class(void **state)
{
	unsigned long vf = ssl_err(SSL_R_CERTIFICATE_VERIFY_FAILED);

	assert_int_equal(tls_fail_class(true, vf, X509_V_ERR_CERT_HAS_EXPIRED, SSL_ERROR_SSL, 0),
			 HS_IDENTITY); /* the policy's word comes first */
	assert_int_equal(tls_fail_class(false, vf, X509_V_ERR_CERT_HAS_EXPIRED, SSL_ERROR_SSL, 0),
			 HS_EXPIRED);
	assert_int_equal(tls_fail_class(false, vf, X509_V_ERR_CERT_NOT_YET_VALID, SSL_ERROR_SSL, 0),
			 HS_EXPIRED);
	assert_int_equal(tls_fail_class(false, vf, X509_V_ERR_CERT_REVOKED, SSL_ERROR_SSL, 0),
			 HS_REVOKED);
	assert_int_equal(tls_fail_class(false, vf, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
					SSL_ERROR_SSL, 0),
			 HS_UNKNOWN_CA);
	assert_int_equal(
		tls_fail_class(false, vf, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, SSL_ERROR_SSL, 0),
		HS_UNKNOWN_CA);
	assert_int_equal(tls_fail_class(false, vf, X509_V_ERR_HOSTNAME_MISMATCH, SSL_ERROR_SSL, 0),
			 HS_IDENTITY);
	assert_int_equal(
		tls_fail_class(false, vf, X509_V_ERR_CERT_SIGNATURE_FAILURE, SSL_ERROR_SSL, 0),
		HS_OTHER);
	assert_int_equal(tls_fail_class(false, ssl_err(SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE), 0,
					SSL_ERROR_SSL, 0),
			 HS_NO_CERT);
	/* The peer's alerts about our certificate */
	assert_int_equal(tls_fail_class(false, ssl_err(SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED), 0,
					SSL_ERROR_SSL, 0),
			 HS_NO_CERT);
	assert_int_equal(
		tls_fail_class(false, ssl_err(SSL_R_TLSV1_ALERT_UNKNOWN_CA), 0, SSL_ERROR_SSL, 0),
		HS_UNKNOWN_CA);
	assert_int_equal(
		tls_fail_class(false, ssl_err(SSL_R_UNSUPPORTED_PROTOCOL), 0, SSL_ERROR_SSL, 0),
		HS_PROTOCOL);
	assert_int_equal(
		tls_fail_class(false, ssl_err(SSL_R_WRONG_VERSION_NUMBER), 0, SSL_ERROR_SSL, 0),
		HS_PROTOCOL);
	assert_int_equal(tls_fail_class(false, ssl_err(SSL_R_UNEXPECTED_EOF_WHILE_READING), 0,
					SSL_ERROR_SSL, 0),
			 HS_RESET);
	assert_int_equal(tls_fail_class(false, 0, 0, SSL_ERROR_SYSCALL, 0), HS_RESET);
	assert_int_equal(tls_fail_class(false, 0, 0, SSL_ERROR_SYSCALL, ECONNRESET), HS_RESET);
	assert_int_equal(tls_fail_class(false, 0, 0, SSL_ERROR_SYSCALL, ENOMEM), HS_OTHER);
	assert_int_equal(tls_fail_class(false, ERR_PACK(ERR_LIB_EVP, 0, 1), 0, SSL_ERROR_SSL, 0),
			 HS_OTHER);
	assert_string_equal(hs_reason_name(HS_NO_CERT), "no_cert");
	assert_string_equal(hs_reason_name(HS_UNKNOWN_CA), "unknown_ca");
	assert_string_equal(hs_reason_name(HS_TIMEOUT), "timeout");
	assert_string_equal(hs_reason_name(HS_REASON_MAX), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_real_ssl),
		cmocka_unit_test(test_fail_class),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: MIT
/*
 * The one mapping from OpenSSL's SSL_get_error() to what the event loop does next, and
 * the wording of handshake failures. Kept apart from the context code so unit tests link
 * it without the kTLS library.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>

#include "hs_want.h"
#include "tlsctx.h" /* struct tls_peer */

enum tls_want tls_want_from_error(int ssl_error)
{
	switch (ssl_error) {
	case SSL_ERROR_NONE:
		return TLS_WANT_DONE;
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_WANT_CLOSED;
	default: /* SYSCALL, SSL, and WANT_* kinds we never enable (X509_LOOKUP, ASYNC...) */
		return TLS_WANT_FAILED;
	}
}

enum tls_want tls_want(SSL *ssl, int ret)
{
	return tls_want_from_error(SSL_get_error(ssl, ret));
}

bool tls_fin_without_close_notify(SSL *ssl, int ret)
{
	unsigned long e = ERR_peek_error();

	if (SSL_get_error(ssl, ret) == SSL_ERROR_SYSCALL && !errno && !e)
		return true;
	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

void tls_fail_reason(SSL *ssl, int ssl_error, int saved_errno, const struct tls_peer *peer,
		     char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();

	if (peer && peer->denied) {
		snprintf(buf, len, "%s", policy_verdict_str(peer->verdict));
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
		   ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
		   SSL_get_verify_result(ssl) == X509_V_ERR_CERT_REVOKED) {
		/* The words operators grep for, whichever certificate of the chain it was. */
		snprintf(buf, len, "certificate revoked");
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
		   ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		snprintf(buf, len, "certificate verify failed: %s",
			 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
	} else if (e) {
		const char *r = ERR_reason_error_string(e);

		snprintf(buf, len, "%s", r ? r : "TLS protocol error");
	} else if (ssl_error == SSL_ERROR_SYSCALL && saved_errno) {
		snprintf(buf, len, "%s during handshake", strerror(saved_errno));
	} else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, len, "peer closed the connection during handshake");
	} else {
		snprintf(buf, len, "handshake failed");
	}
	ERR_clear_error();
}

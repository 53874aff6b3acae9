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
#include <openssl/x509_vfy.h>

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

static enum hs_reason verify_class(long verify)
{
	switch (verify) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_CRL_HAS_EXPIRED:
		return HS_EXPIRED;
	case X509_V_ERR_CERT_REVOKED:
		return HS_REVOKED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
	case X509_V_ERR_INVALID_CA:
		return HS_UNKNOWN_CA;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
	case X509_V_ERR_EMAIL_MISMATCH:
	case X509_V_ERR_INVALID_PURPOSE:
		return HS_IDENTITY;
	default:
		return HS_OTHER;
	}
}

/* OpenSSL's own reasons, including the alerts a peer sent about our certificate. */
static enum hs_reason ssl_reason_class(int reason)
{
	switch (reason) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return HS_NO_CERT;
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return HS_UNKNOWN_CA;
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return HS_EXPIRED;
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
		return HS_REVOKED;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return HS_RESET;
	default:
		return HS_PROTOCOL;
	}
}

enum hs_reason tls_fail_class(bool denied, unsigned long err, long verify, int ssl_error,
			      int saved_errno)
{
	if (denied)
		return HS_IDENTITY;
	if (err && ERR_GET_LIB(err) == ERR_LIB_SSL) {
		if (ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
			return verify_class(verify);
		}
		return ssl_reason_class(ERR_GET_REASON(err));
	}
	if (err)
		return HS_OTHER;
	if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
		/* EOF or a reset: the peer went away mid-handshake (a port scan, a health check). */
		if (!saved_errno || saved_errno == ECONNRESET || saved_errno == EPIPE)
			return HS_RESET;
	}
	return HS_OTHER;
}

const char *hs_reason_name(enum hs_reason r)
{
	static const char *const names[HS_REASON_MAX] = {
		[HS_NO_CERT] = "no_cert",   [HS_UNKNOWN_CA] = "unknown_ca",
		[HS_EXPIRED] = "expired",   [HS_REVOKED] = "revoked",
		[HS_IDENTITY] = "identity", [HS_PROTOCOL] = "protocol",
		[HS_TIMEOUT] = "timeout",   [HS_RESET] = "reset",
		[HS_OTHER] = "other",
	};

	return r < HS_REASON_MAX && r >= 0 ? names[r] : "other";
}

/* SPDX-License-Identifier: MIT */
/*
 * The one mapping from OpenSSL's SSL_get_error() to what the event loop waits for next,
 * and the wording of handshake failures. Apart from tlsctx.h so that code and tests that
 * only drive SSL calls need neither the context code nor the kTLS library.
 */
#ifndef KTLSD_DAEMON_HS_WANT_H
#define KTLSD_DAEMON_HS_WANT_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

enum tls_want {
	TLS_WANT_DONE,	 /* the call completed */
	TLS_WANT_READ,	 /* poll for POLLIN and call again */
	TLS_WANT_WRITE,	 /* poll for POLLOUT and call again */
	TLS_WANT_CLOSED, /* peer sent close_notify */
	TLS_WANT_FAILED, /* fatal: protocol error, verify failure, I/O error or EOF */
};

/* Pure: SSL_ERROR_* -> tls_want. */
enum tls_want tls_want_from_error(int ssl_error);
/* For the return value ret of an SSL_* I/O call on ssl. */
enum tls_want tls_want(SSL *ssl, int ret);
/*
 * After a failed SSL_read (ret): was it a plain TCP FIN without close_notify? Many HTTP
 * peers end that way; callers treat it as end of stream and note it. Needs errno zeroed
 * before the call.
 */
bool tls_fin_without_close_notify(SSL *ssl, int ret);

struct tls_peer;

/* After a failed handshake: the exact reason, e.g. "certificate verify failed:
 * certificate has expired". Consumes the thread's OpenSSL error queue. */
void tls_fail_reason(SSL *ssl, int ssl_error, int saved_errno, const struct tls_peer *peer,
		     char *buf, size_t len);

/*
 * Why a handshake failed, the short fixed set /metrics labels with: what an operator can act
 * on (the peer sent no certificate, one from a CA we do not trust, expired or revoked, an
 * identity the policy refuses), else the protocol, the clock, or the peer going away.
 */
enum hs_reason {
	HS_NO_CERT,
	HS_UNKNOWN_CA,
	HS_EXPIRED,
	HS_REVOKED,
	HS_IDENTITY,
	HS_PROTOCOL,
	HS_TIMEOUT,
	HS_RESET,
	HS_OTHER,
	HS_REASON_MAX
};

/*
 * Pure: the reason of a failed handshake. denied: the policy refused a valid chain; err: the
 * first OpenSSL error of the queue (ERR_peek_error, 0 for none); verify: SSL_get_verify_result;
 * ssl_error: SSL_get_error; saved_errno: errno right after the failed call. Timeouts do not
 * come through here: the loop counts HS_TIMEOUT itself.
 */
enum hs_reason tls_fail_class(bool denied, unsigned long err, long verify, int ssl_error,
			      int saved_errno);
/* "no_cert", "unknown_ca", ... as /metrics labels them. */
const char *hs_reason_name(enum hs_reason r);

#endif

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

#endif

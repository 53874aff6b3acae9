/* SPDX-License-Identifier: MIT */
/*
 * TLS side of a service: one SSL_CTX built once per service (trust store parsed once,
 * policy attached), the verify callback that applies the identity policy, and what it
 * learns about the peer. What the loop waits for after an SSL call is in hs_want.h.
 */
#ifndef KTLSD_DAEMON_TLSCTX_H
#define KTLSD_DAEMON_TLSCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "hs_want.h"
#include "policy.h"

/*
 * What the handshake learnt about the peer; the SSL's app data points at one. The names
 * are heap copies of exactly their length: they outlive the SSL (kTLS frees it) and an
 * idle connection should not carry fixed-size buffers. tls_peer_clear() frees them.
 *
 * id is set only once the policy admitted a verified chain, and is exactly the name the
 * policy matched: the one identity ktlsd reports (log, PROXY v2). Until then the names
 * the certificate carries are only claims (claimed_*), logged under that word; they are
 * dropped when the identity is set, so an established connection keeps one string.
 */
struct tls_peer {
	char *id;
	enum policy_kind id_kind;
	char *claimed_uri; /* every URI SAN, ' ' between them: several is itself the finding */
	char *claimed_dns; /* first DNS SAN */
	char *claimed_cn;
	enum policy_verdict verdict; /* why the policy refused a valid chain */
	bool denied;		     /* chain was valid but the identity policy said no */
	uint8_t tickets;	     /* client: session tickets received (and cached) so far */
};

void tls_peer_clear(struct tls_peer *peer);

/*
 * After a resumed handshake the verify callback did not run: the peer is the one the
 * session was made with (its certificate travels in the session/ticket). Applies pol to
 * that certificate again, which yields the identity to report. 0, or -ENOENT if the
 * session has no peer certificate (never for mTLS), -EACCES if pol no longer admits it
 * (peer->verdict says why).
 */
int tls_peer_from_session(SSL *ssl, const struct policy *pol, struct tls_peer *peer);

/* pol's verdict on certificate x, taken as verified (the caller verified its chain). */
enum policy_verdict tls_policy_verdict(X509 *x, const struct policy *pol);

struct sess_cache;
/* Client resumption: tickets the server sends on ssl go into cache (the worker's). */
void tls_set_session_cache(SSL *ssl, struct sess_cache *cache);

/*
 * Builds the SSL_CTX of service s (server or client role): certificate + key (checked
 * to match; a client may have none), trust store from cacert, client certificates
 * required (server), TLS 1.2
 * ECDHE+AEAD / TLS 1.3 only, verify callback applying s->policy. Resumption
 * (s->resumption): a server issues stateless tickets under rotated keys (ticket_keys.c)
 * and accepts one only while the certificate inside is unexpired and still allowed; a
 * client hands the tickets it gets to tls_set_session_cache()'s cache. Without it no
 * session state is kept or sent at all. for_ktls: prepare for key export (libktls: kTLS,
 * or its userspace records).
 * Returns 0, or with an operator-facing message in err: -EINVAL (a file, or a TLS
 * parameter of s, that OpenSSL refuses), -ENOMEM, -EIO or -ENOTSUP (session ticket keys,
 * see ticket_keys_new), or ktls_ctx_prepare's error (for_ktls). *ret_ctx is untouched on
 * failure.
 */
int tls_ctx_build(const struct service_config *s, bool for_ktls, SSL_CTX **ret_ctx, char *err,
		  size_t errlen);

/*
 * The files tls_ctx_build reads for s (what a reload watches): cert, key (unless a
 * pkcs11: URI), cacert, key-password-file, ocsp-staple. Fills ret_files (room for
 * TLS_CTX_FILES_MAX) and returns how many.
 */
#define TLS_CTX_FILES_MAX 8
size_t tls_ctx_files(const struct service_config *s, const char **ret_files);

/*
 * Fills *ret_id with the names of x (URI/DNS/IP SANs, CN, OUs); they point into x and into
 * *ret_sans, which the caller frees with GENERAL_NAMES_free() when done with *ret_id.
 * Names with embedded NULs are skipped: they cannot be compared safely (skipped URI SANs
 * are still counted, for the one-URI rule of SPIFFE).
 */
void tls_identity_from_x509(X509 *x, struct peer_identity *ret_id, GENERAL_NAMES **ret_sans);

#endif

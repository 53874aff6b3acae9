/* SPDX-License-Identifier: MIT */
/*
 * What an established connection keeps of its peer so that a reload can judge it again:
 * the DER of the certificates it presented (leaf first), not the SSL object, which kTLS
 * frees. One allocation of exactly its length; an idle connection carries nothing else.
 */
#ifndef KTLSD_DAEMON_PEER_CHAIN_H
#define KTLSD_DAEMON_PEER_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

/* Chains longer than the verify depth (8) never verify: nothing longer is kept. */
#define PEER_CHAIN_MAX_CERTS 10

/*
 * The peer's certificates of a finished handshake on ssl, DER one after the other, leaf
 * first. A session resumed from a stateless ticket carries only the leaf (a ticket holds
 * no chain); one from the server's session cache, what tls_session_shed_chain kept.
 * Returns 0, -ENOENT (no peer certificate) or -ENOMEM; *ret_der is the caller's to free.
 */
int tls_peer_chain_der(SSL *ssl, uint8_t **ret_der, uint32_t *ret_len);

/*
 * Server session cache: sess, ssl's session, about to be kept for resumption, holds the
 * certificates the client sent after its leaf decoded (~5 KB each, with their keys).
 * Only their DER is ever needed again (tls_peer_chain_der): it goes into the session's
 * app data (tagged) and the decoded copies are freed. The leaf stays (identity, expiry,
 * OCSP). sess must not be in the cache yet: another thread could be reading the chain.
 * Returns 0 or -ENOMEM (the session is left as it was).
 */
int tls_session_shed_chain(SSL *ssl, SSL_SESSION *sess);

/*
 * Would ctx admit this peer now? The chain is verified against ctx's trust store and its
 * CRLs (all of the chain where it has any), then ctx's policy is applied to the leaf.
 * Validity dates are not checked again: a reload is about trust and revocation, and a
 * certificate that expired during a connection was valid when it was presented (the next
 * handshake refuses it). server: ctx is a server's, the peer a client. Returns 0 (still
 * admitted), or with the reason in why: -EKEYREVOKED ("certificate revoked"), -EACCES
 * ("identity no longer allowed"), -EPERM ("certificate no longer trusted: ..."), -EINVAL
 * (der does not parse) or -ENOMEM.
 */
int tls_peer_recheck(SSL_CTX *ctx, bool server, const uint8_t *der, uint32_t len, char *why,
		     size_t whylen);

#endif

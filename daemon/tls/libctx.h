/* SPDX-License-Identifier: MIT */
/*
 * The OpenSSL library context the services' SSL_CTXs run in: OpenSSL's default provider
 * seen through a view that lists fewer algorithms, because OpenSSL 3.0 walks all of them
 * for every certificate a peer sends (libctx.c says why and what).
 */
#ifndef KTLSD_DAEMON_TLS_LIBCTX_H
#define KTLSD_DAEMON_TLS_LIBCTX_H

#include <stdbool.h>
#include <openssl/types.h>

/*
 * The handshake library context, made on the first call and kept for the life of the
 * process (thread-safe). 0 and *ret_libctx, or -ENOMEM (out of memory, or OpenSSL's
 * default provider would not load into it); the same answer on every later call.
 */
int tls_libctx_get(OSSL_LIB_CTX **ret_libctx);

/*
 * Whether the view lists an algorithm of operation_id (OSSL_OP_*) with these names (the
 * provider's "EC:id-ecPublicKey:1.2.840.10045.2.1") and properties (a decoder's "input=der,
 * structure=..."; may be NULL otherwise). Operations the view does not filter: true.
 */
bool tls_libctx_keeps(int operation_id, const char *names, const char *properties);

#endif

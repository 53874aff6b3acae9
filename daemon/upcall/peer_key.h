/* SPDX-License-Identifier: MIT */
/*
 * A verified peer certificate as a kernel key, whose serial DONE hands back as REMOTE_AUTH:
 * nfsd treats a client as authenticated (xprtsec=mtls exports) only with a non-zero one.
 */
#ifndef KTLSD_DAEMON_PEER_KEY_H
#define KTLSD_DAEMON_PEER_KEY_H

#include <stdint.h>
#include <openssl/x509.h>

/*
 * Adds x (DER) to the process's session keyring as an "asymmetric" key described
 * "ktlsd:peer:<sha256 of the DER>", so the same certificate replaces its own earlier key
 * instead of piling up. Where the kernel cannot parse it as asymmetric (key type off, an
 * algorithm it lacks), a "user" key with the same description and bytes stands in: the
 * consumers only compare the serial with 0. Returns 0 with *ret_serial > 0 and
 * *ret_type naming the key type used, or -errno (from add_key).
 */
int peer_key_add(X509 *x, int32_t *ret_serial, const char **ret_type);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Private keys that never leave a token: `key = pkcs11:token=...;object=...` (RFC 7512),
 * opened through OpenSSL 3's pkcs11 provider (Debian: pkcs11-provider, in
 * bookworm-backports) with OSSL_STORE. The key stays in the token; OpenSSL asks the
 * provider to sign during each handshake. Which PKCS#11 module the provider loads is its
 * own setting (PKCS11_PROVIDER_MODULE, or its section in openssl.cnf).
 */
#ifndef KTLSD_DAEMON_PKCS11_KEY_H
#define KTLSD_DAEMON_PKCS11_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

static inline bool tls_key_is_pkcs11(const char *key)
{
	return key && !strncmp(key, "pkcs11:", 7);
}

/*
 * key as it may be shown in a message: a pkcs11 URI's pin-value (and pin-source) replaced
 * by "***", since the URI is a secret where it carries the PIN.
 */
void tls_key_display(const char *key, char *buf, size_t len);

/*
 * Loads the private key uri names. The PIN, when the URI has none, comes from pw_cb
 * (key-password-file; never a prompt). Returns 0 with *ret_pkey, or -ENOENT (no pkcs11
 * provider: the message says what to install), -EINVAL (no such key, wrong PIN...) with
 * the message in err.
 */
int tls_pkcs11_key_load(const char *uri, pem_password_cb *pw_cb, void *pw_data, EVP_PKEY **ret_pkey,
			char *err, size_t errlen);

#endif

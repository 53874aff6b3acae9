/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 external PSKs from the kernel keyring, as NVMe/TCP hands them over: the host side
 * names the key by serial (PEER_IDENTITY), the target side finds it in the KEYRING the kernel
 * names (".nvme") by the identity the client sent. Key type "psk", description = the TLS PSK
 * identity ("NVMe0R01 <hostnqn> <subnqn>", NVMe TCP transport spec 3.6.1.3); its "01"/"02"
 * picks SHA-256 / SHA-384, so TLS_AES_128_GCM_SHA256 / TLS_AES_256_GCM_SHA384.
 */
#ifndef KTLSD_DAEMON_PSK_H
#define KTLSD_DAEMON_PSK_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#define PSK_MAX_KEY	 64
#define PSK_MAX_IDENTITY 256

struct psk {
	int32_t serial;
	size_t len;
	uint8_t key[PSK_MAX_KEY];
	char identity[PSK_MAX_IDENTITY];
};

/* The key with this serial: its bytes and description. 0 or -errno (keyctl's). */
int psk_read(int32_t serial, struct psk *ret_psk);

/*
 * The "psk" key described identity (len bytes, no NUL inside) in keyring (searched
 * recursively). 0, -ENOKEY when there is none, -EINVAL for an identity that cannot be a
 * key description, or -errno.
 */
int psk_find(int32_t keyring, const unsigned char *identity, size_t len, struct psk *ret_psk);

/* Links keyring into our session keyring: possessing it is what lets us search and read. */
int psk_keyring_link(int32_t keyring);

/* The keyring called name that we may view (/proc/keys): 0, -ENOKEY or -errno. */
int psk_keyring_by_name(const char *name, int32_t *ret_serial);

/* A TLS 1.3 session resuming with p as the external PSK (OpenSSL's psk callbacks). */
int psk_session(SSL *ssl, const struct psk *p, SSL_SESSION **ret_sess);

/* Wipes the key bytes. */
void psk_clear(struct psk *p);

#endif

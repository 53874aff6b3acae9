// SPDX-License-Identifier: MIT
/* The peer certificate as a kernel key (add_key(2) directly: no libkeyutils needed). */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <openssl/evp.h>

#include "peer_key.h"

#define KEY_SPEC_SESSION_KEYRING (-3)

static long add_key(const char *type, const char *desc, const void *data, size_t len)
{
	return syscall(SYS_add_key, type, desc, data, len, KEY_SPEC_SESSION_KEYRING);
}

int peer_key_add(X509 *x, int32_t *ret_serial, const char **ret_type)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	char desc[16 + 2 * EVP_MAX_MD_SIZE + 1];
	unsigned mdlen = 0;
	int len = i2d_X509(x, &der);
	const char *type;
	long serial;
	int n, err;

	if (len <= 0)
		return -ENOMEM;
	if (!EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL)) {
		OPENSSL_free(der);
		return -ENOMEM;
	}
	n = snprintf(desc, sizeof(desc), "ktlsd:peer:");
	for (unsigned i = 0; i < mdlen; i++)
		n += snprintf(desc + n, sizeof(desc) - (size_t)n, "%02x", md[i]);
	type = "asymmetric";
	serial = add_key(type, desc, der, (size_t)len);
	if (serial < 0) {
		type = "user";
		serial = add_key(type, desc, der, (size_t)len);
	}
	err = errno;
	OPENSSL_free(der);
	if (serial < 0)
		return -err;
	*ret_serial = (int32_t)serial;
	*ret_type = type;
	return 0;
}

// SPDX-License-Identifier: MIT
/* PSKs from the kernel keyring through keyctl(2) directly (no libkeyutils needed). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <openssl/crypto.h>

#include "psk.h"

#define KEY_SPEC_SESSION_KEYRING (-3)
static const unsigned char psk_sid_ctx[] = "ktlsd-psk";
enum { KEYCTL_DESCRIBE = 6, KEYCTL_LINK = 8, KEYCTL_SEARCH = 10, KEYCTL_READ = 11 };

static long keyctl(int cmd, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	return syscall(SYS_keyctl, cmd, a2, a3, a4, a5);
}

void psk_clear(struct psk *p)
{
	if (p)
		OPENSSL_cleanse(p->key, sizeof(p->key));
}

/* "type;uid;gid;perm;description": the description is the PSK identity. */
static int describe(int32_t serial, char *buf, size_t len, const char **ret_desc)
{
	long n = keyctl(KEYCTL_DESCRIBE, (unsigned long)serial, (unsigned long)buf, len, 0);
	char *p = buf;

	if (n < 0)
		return -errno;
	if ((size_t)n > len)
		return -ENAMETOOLONG;
	buf[len - 1] = '\0';
	if (strncmp(buf, "psk;", 4))
		return -EKEYREJECTED;
	for (int i = 0; i < 4 && p; i++) {
		p = strchr(p, ';');
		if (p)
			p++;
	}
	if (!p)
		return -EPROTO;
	*ret_desc = p;
	return 0;
}

int psk_read(int32_t serial, struct psk *ret_psk)
{
	char buf[PSK_MAX_IDENTITY + 64];
	uint8_t key[PSK_MAX_KEY];
	const char *desc = NULL;
	long n;
	int rc = describe(serial, buf, sizeof(buf), &desc);

	if (rc)
		return rc;
	if (strlen(desc) >= sizeof(ret_psk->identity))
		return -ENAMETOOLONG;
	n = keyctl(KEYCTL_READ, (unsigned long)serial, (unsigned long)key, sizeof(key), 0);
	if (n < 0)
		rc = -errno;
	else if (n == 0 || (size_t)n > sizeof(key))
		rc = -EMSGSIZE;
	if (!rc) {
		ret_psk->serial = serial;
		ret_psk->len = (size_t)n;
		memcpy(ret_psk->key, key, (size_t)n);
		strcpy(ret_psk->identity, desc);
	}
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

int psk_find(int32_t keyring, const unsigned char *identity, size_t len, struct psk *ret_psk)
{
	char desc[PSK_MAX_IDENTITY];
	long serial;

	if (len == 0 || len >= sizeof(desc) || memchr(identity, '\0', len))
		return -EINVAL;
	memcpy(desc, identity, len);
	desc[len] = '\0';
	serial = keyctl(KEYCTL_SEARCH, (unsigned long)keyring, (unsigned long)"psk",
			(unsigned long)desc, 0);
	if (serial < 0)
		return errno == ENOKEY || errno == ENOENT ? -ENOKEY : -errno;
	return psk_read((int32_t)serial, ret_psk);
}

int psk_keyring_link(int32_t keyring)
{
	if (keyctl(KEYCTL_LINK, (unsigned long)keyring, (unsigned long)KEY_SPEC_SESSION_KEYRING, 0,
		   0) < 0)
		return -errno;
	return 0;
}

int psk_session(SSL *ssl, const struct psk *p, SSL_SESSION **ret_sess)
{
	/* "NVMe?R02 ..." (or G02): SHA-384; anything else SHA-256. */
	bool sha384 = strlen(p->identity) > 7 && !strncmp(p->identity + 6, "02", 2);
	const unsigned char id[2] = { 0x13, sha384 ? 0x02 : 0x01 };
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, id);
	SSL_SESSION *s;

	if (!c)
		return -ENOTSUP;
	s = SSL_SESSION_new();
	if (!s)
		return -ENOMEM;
	/* OpenSSL refuses a PSK session whose id context differs from the SSL's. */
	if (SSL_set_session_id_context(ssl, psk_sid_ctx, sizeof(psk_sid_ctx) - 1) != 1 ||
	    SSL_SESSION_set1_id_context(s, psk_sid_ctx, sizeof(psk_sid_ctx) - 1) != 1 ||
	    SSL_SESSION_set1_master_key(s, p->key, p->len) != 1 ||
	    SSL_SESSION_set_cipher(s, c) != 1 ||
	    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
		SSL_SESSION_free(s);
		return -ENOMEM;
	}
	*ret_sess = s;
	return 0;
}

int psk_keyring_by_name(const char *name, int32_t *ret_serial)
{
	FILE *f = fopen("/proc/keys", "re");
	char line[512], type[32], desc[256];
	unsigned long serial;
	int rc = -ENOKEY;

	if (!f)
		return -errno;
	/* "3f2b1c0a I--Q---  1 perm 3f030000  0  0 keyring   .nvme: 1" */
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx %*s %*s %*s %*s %*s %*s %31s %255[^:]", &serial, type,
			   desc) != 3)
			continue;
		if (!strcmp(type, "keyring") && !strcmp(desc, name)) {
			*ret_serial = (int32_t)serial;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

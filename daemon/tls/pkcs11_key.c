// SPDX-License-Identifier: MIT
/*
 * PKCS#11 private keys through OpenSSL's pkcs11 provider. The provider is loaded once per
 * process, next to the default one (loading a provider by hand would otherwise stop the
 * default provider from loading by itself), and stays loaded: a reload opens the key again
 * through it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "pkcs11_key.h"

void tls_key_display(const char *key, char *buf, size_t len)
{
	size_t off = 0;
	const char *p = key;

	if (!tls_key_is_pkcs11(key)) {
		snprintf(buf, len, "%s", key);
		return;
	}
	buf[0] = '\0';
	/* Attributes are separated by ; (path) or & (query); copy each, PINs masked. */
	while (*p && off + 1 < len) {
		size_t n = strcspn(p, ";?&");
		bool secret = !strncmp(p, "pin-value=", 10) || !strncmp(p, "pin-source=", 11);
		int w = secret ? snprintf(buf + off, len - off, "%.*s=***",
					  (int)(strchr(p, '=') - p), p)
			       : snprintf(buf + off, len - off, "%.*s", (int)n, p);

		off += w > 0 ? (size_t)w : 0;
		if (off >= len)
			break;
		p += n;
		if (*p && off + 1 < len) {
			buf[off++] = *p++;
			buf[off] = '\0';
		}
	}
}

/* The provider, loaded once; -ENOENT where OpenSSL cannot find it. */
static int provider_load(void)
{
	static OSSL_PROVIDER *prov;

	if (prov || OSSL_PROVIDER_available(NULL, "pkcs11"))
		return 0;
	/* retain_fallbacks: the default provider still loads for everything else. */
	prov = OSSL_PROVIDER_try_load(NULL, "pkcs11", 1);
	ERR_clear_error();
	return prov ? 0 : -ENOENT;
}

static EVP_PKEY *store_first_key(OSSL_STORE_CTX *sc)
{
	EVP_PKEY *pkey = NULL;

	while (!pkey && !OSSL_STORE_eof(sc)) {
		OSSL_STORE_INFO *info = OSSL_STORE_load(sc);

		if (!info) {
			if (OSSL_STORE_error(sc))
				break;
			continue;
		}
		if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
			pkey = OSSL_STORE_INFO_get1_PKEY(info);
		OSSL_STORE_INFO_free(info);
	}
	return pkey;
}

int tls_pkcs11_key_load(const char *uri, pem_password_cb *pw_cb, void *pw_data, EVP_PKEY **ret_pkey,
			char *err, size_t errlen)
{
	UI_METHOD *ui = NULL;
	OSSL_STORE_CTX *sc = NULL;
	EVP_PKEY *pkey = NULL;
	char shown[512];
	unsigned long e;

	tls_key_display(uri, shown, sizeof(shown));
	if (provider_load()) {
		snprintf(
			err, errlen,
			"key %s: OpenSSL's pkcs11 provider is not installed (Debian 12: package "
			"pkcs11-provider from bookworm-backports, as scripts/install-deps does; it "
			"loads the module PKCS11_PROVIDER_MODULE names)",
			shown);
		return -ENOENT;
	}
	ERR_clear_error();
	ui = UI_UTIL_wrap_read_pem_callback(pw_cb, 0);
	if (ui)
		sc = OSSL_STORE_open(uri, ui, pw_data, NULL, NULL);
	if (sc && OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY))
		pkey = store_first_key(sc);
	e = ERR_peek_last_error();
	OSSL_STORE_close(sc);
	UI_destroy_method(ui);
	if (!pkey) {
		const char *r = e ? ERR_reason_error_string(e) : NULL;

		snprintf(err, errlen, "key %s: no private key found in the token%s%s", shown,
			 r ? ": " : " (check token=, object=, and the PIN)", r ? r : "");
		ERR_clear_error();
		return -EINVAL;
	}
	ERR_clear_error();
	*ret_pkey = pkey;
	return 0;
}

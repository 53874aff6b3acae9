// SPDX-License-Identifier: MIT
/*
 * Key schedule: TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1/7.3/7.2 "traffic upd") and the
 * TLS 1.2 PRF (RFC 5246 5), both through OpenSSL's own KDF implementations so the bytes
 * are the ones OpenSSL's record layer would use.
 *
 * EVP_KDF_fetch() in OpenSSL 3.0 takes the provider store's locks and allocates: done once
 * per process, not once per connection. The fetched objects are immutable and shared.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

#include "ktlsd/ktls.h"
#include "ktls_internal.h"

static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;
static EVP_KDF *kdf_tls13;
static EVP_KDF *kdf_tls12;

static void kdf_fetch(void)
{
	kdf_tls13 = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
	kdf_tls12 = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
}

int ktls_kdf_init(void)
{
	pthread_once(&kdf_once, kdf_fetch);
	return kdf_tls13 && kdf_tls12 ? 0 : -ENOSYS;
}

int ktls_tls13_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			    const char *label, uint8_t *out, size_t out_len)
{
	static const char prefix[] = "tls13 ";
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[6];
	EVP_KDF_CTX *kctx;
	int rc;

	rc = ktls_kdf_init();
	if (rc < 0)
		return rc;
	kctx = EVP_KDF_CTX_new(kdf_tls13);
	if (!kctx)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	params[2] =
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, (void *)prefix,
						      sizeof(prefix) - 1);
	params[4] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label,
						      strlen(label));
	params[5] = OSSL_PARAM_construct_end();
	rc = EVP_KDF_derive(kctx, out, out_len, params) == 1 ? 0 : -EINVAL;
	/* The context copied the secret; freeing it cleanses that copy. */
	EVP_KDF_CTX_free(kctx);
	return rc;
}

int ktls_tls13_next_secret(const char *digest, const uint8_t *secret, size_t secret_len,
			   uint8_t *out)
{
	return ktls_tls13_expand_label(digest, secret, secret_len, "traffic upd", out, secret_len);
}

int ktls_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
		   const uint8_t *seed, size_t seed_len, uint8_t *out, size_t out_len)
{
	OSSL_PARAM params[5];
	EVP_KDF_CTX *kctx;
	int rc;

	rc = ktls_kdf_init();
	if (rc < 0)
		return rc;
	kctx = EVP_KDF_CTX_new(kdf_tls12);
	if (!kctx)
		return -ENOMEM;
	/* OpenSSL 3.0's TLS1-PRF concatenates repeated seed parameters: label || seed. */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret,
						      secret_len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)label,
						      strlen(label));
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)seed, seed_len);
	params[4] = OSSL_PARAM_construct_end();
	rc = EVP_KDF_derive(kctx, out, out_len, params) == 1 ? 0 : -EINVAL;
	EVP_KDF_CTX_free(kctx);
	return rc;
}

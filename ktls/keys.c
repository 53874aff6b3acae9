// SPDX-License-Identifier: MIT
/*
 * Key schedule: TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1/7.3/7.2 "traffic upd") and the
 * TLS 1.2 PRF (RFC 5246 5), both through OpenSSL's own KDF implementations so the bytes
 * are the ones OpenSSL's record layer would use.
 *
 * EVP_KDF_fetch() in OpenSSL 3.0 takes the provider store's locks and allocates: done once
 * per process, not once per connection. The fetched objects are immutable and shared.
 *
 * Every label libktls expands (key, iv, traffic upd) fits one hash block, where
 * HKDF-Expand-Label is a single HMAC (RFC 5869 2.3: T(1)). The KDF would look the digest up
 * by name at every call; an HMAC context made once per digest and copied per call does not.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "ktlsd/ktls.h"
#include "ktls_internal.h"

static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;
static EVP_KDF *kdf_tls13;
static EVP_KDF *kdf_tls12;

/* HMAC with its digest set, one per TLS 1.3 hash: copied, never used in place. */
static EVP_MAC_CTX *hmac_sha256, *hmac_sha384;

static EVP_MAC_CTX *hmac_template(EVP_MAC *mac, const char *digest)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *m = mac ? EVP_MAC_CTX_new(mac) : NULL;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (m && EVP_MAC_CTX_set_params(m, params) != 1) {
		EVP_MAC_CTX_free(m);
		m = NULL;
	}
	return m;
}

static void kdf_fetch(void)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);

	kdf_tls13 = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
	kdf_tls12 = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
	hmac_sha256 = hmac_template(mac, "SHA256");
	hmac_sha384 = hmac_template(mac, "SHA384");
	EVP_MAC_free(mac); /* the contexts hold their own reference */
}

/*
 * HKDF-Expand-Label as one HMAC: out_len no longer than the hash, and a digest with a
 * template. 1: not this case (the caller takes the KDF); 0 / -errno: done here.
 */
static int expand_one_block(const char *digest, const uint8_t *secret, size_t secret_len,
			    const char *label, uint8_t *out, size_t out_len)
{
	bool sha256 = !strcmp(digest, "SHA256"), sha384 = !strcmp(digest, "SHA384");
	EVP_MAC_CTX *tmpl = sha256 ? hmac_sha256 : sha384 ? hmac_sha384 : NULL;
	size_t ll = strlen(label), hl = 0, tl = 0, md_len = sha256 ? 32 : 48;
	uint8_t info[2 + 1 + 255 + 1 + 1], t[EVP_MAX_MD_SIZE];
	EVP_MAC_CTX *m;
	int rc = 0;

	if (!tmpl || out_len > md_len || 6 + ll > 255)
		return 1;
	/* HkdfLabel: length, "tls13 " label, an empty context; then the block counter. */
	info[hl++] = (uint8_t)(out_len >> 8);
	info[hl++] = (uint8_t)out_len;
	info[hl++] = (uint8_t)(6 + ll);
	memcpy(info + hl, "tls13 ", 6);
	memcpy(info + hl + 6, label, ll);
	hl += 6 + ll;
	info[hl++] = 0;
	info[hl++] = 1;
	m = EVP_MAC_CTX_dup(tmpl);
	if (!m)
		return -ENOMEM;
	if (EVP_MAC_init(m, secret, secret_len, NULL) != 1 || EVP_MAC_update(m, info, hl) != 1 ||
	    EVP_MAC_final(m, t, &tl, sizeof(t)) != 1 || tl < out_len)
		rc = -EINVAL;
	if (rc == 0)
		memcpy(out, t, out_len);
	OPENSSL_cleanse(t, sizeof(t));
	EVP_MAC_CTX_free(m); /* cleanses its copy of the key */
	return rc;
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
	rc = expand_one_block(digest, secret, secret_len, label, out, out_len);
	if (rc <= 0)
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

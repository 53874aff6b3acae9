// SPDX-License-Identifier: MIT
/*
 * The handshake library context (daemon/tls/libctx.c): what its view of the default
 * provider lists and leaves out, and that certificates of every signing key type still
 * decode and verify in it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/core_dispatch.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "libctx.h"
#include "tls_test_util.h"

static OSSL_LIB_CTX *view(void)
{
	OSSL_LIB_CTX *lc = NULL;

	assert_int_equal(tls_libctx_get(&lc), 0);
	assert_non_null(lc);
	return lc;
}

static void *nonnull(void *p, const char *what)
{
	if (!p)
		fail_msg("%s: not found", what);
	return p;
}

static void count_decoder(OSSL_DECODER *d, void *arg)
{
	(void)d;
	(*(int *)arg)++;
}

static int n_decoders(OSSL_LIB_CTX *lc)
{
	int n = 0;

	OSSL_DECODER_do_all_provided(lc, count_decoder, &n);
	return n;
}

/* The same context every time. */
static void test_once(void **state)
{
	assert_ptr_equal(view(), view());
}

/* Few decoders (the point of it); what TLS uses is there, the rest is not. */
static void test_lists(void **state)
{
	static const char *const md_in[] = {
		"SHA1", "SHA256", "SHA384", "SHA512", "MD5", "MD5-SHA1"
	};
	static const char *const cipher_in[] = { "AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305",
						 "AES-256-CBC" };
	static const char *const km_in[] = { "EC",    "RSA", "RSA-PSS", "ED25519",
					     "ED448", "DSA", "X25519",	"HMAC" };
	OSSL_LIB_CTX *lc = view();
	unsigned char rnd[32];

	/* 6 key types' SPKI decoders, where the default context has 40 decoders. */
	assert_int_equal(n_decoders(lc), 6);
	assert_true(n_decoders(NULL) >= 30);
	for (size_t i = 0; i < sizeof(md_in) / sizeof(md_in[0]); i++)
		EVP_MD_free(nonnull(EVP_MD_fetch(lc, md_in[i], NULL), md_in[i]));
	for (size_t i = 0; i < sizeof(cipher_in) / sizeof(cipher_in[0]); i++)
		EVP_CIPHER_free(nonnull(EVP_CIPHER_fetch(lc, cipher_in[i], NULL), cipher_in[i]));
	for (size_t i = 0; i < sizeof(km_in) / sizeof(km_in[0]); i++)
		EVP_KEYMGMT_free(nonnull(EVP_KEYMGMT_fetch(lc, km_in[i], NULL), km_in[i]));
	EVP_MAC_free(nonnull(EVP_MAC_fetch(lc, "HMAC", NULL), "HMAC"));
	EVP_KDF_free(nonnull(EVP_KDF_fetch(lc, "TLS13-KDF", NULL), "TLS13-KDF"));
	EVP_KDF_free(nonnull(EVP_KDF_fetch(lc, "TLS1-PRF", NULL), "TLS1-PRF"));
	EVP_KDF_free(nonnull(EVP_KDF_fetch(lc, "HKDF", NULL), "HKDF"));
	EVP_SIGNATURE_free(nonnull(EVP_SIGNATURE_fetch(lc, "ECDSA", NULL), "ECDSA"));
	EVP_KEYEXCH_free(nonnull(EVP_KEYEXCH_fetch(lc, "X25519", NULL), "X25519"));
	EVP_RAND_free(nonnull(EVP_RAND_fetch(lc, "CTR-DRBG", NULL), "CTR-DRBG"));
	/* The context's own random generators run (CTR-DRBG seeded from SEED-SRC). */
	assert_int_equal(RAND_bytes_ex(lc, rnd, sizeof(rnd), 0), 1);
	assert_int_equal(RAND_priv_bytes_ex(lc, rnd, sizeof(rnd), 0), 1);
	/* Left out: in the default context, not in the view. */
	assert_null(EVP_CIPHER_fetch(lc, "ARIA-128-GCM", NULL));
	assert_null(EVP_MD_fetch(lc, "SHAKE256", NULL));
	assert_null(EVP_MD_fetch(lc, "SHA3-256", NULL));
	assert_null(EVP_KEYMGMT_fetch(lc, "X448", NULL));
	assert_null(EVP_RAND_fetch(lc, "TEST-RAND", NULL));
	assert_null(EVP_KEYMGMT_fetch(lc, "DH", NULL));
	assert_null(EVP_KEYMGMT_fetch(lc, "SM2", NULL));
	assert_null(EVP_KDF_fetch(lc, "SCRYPT", NULL));
	EVP_CIPHER_free(nonnull(EVP_CIPHER_fetch(NULL, "ARIA-128-GCM", NULL), "default"));
	ERR_clear_error();
}

static void test_keeps(void **state)
{
	const char *spki = "provider=default,fips=yes,input=der,structure=SubjectPublicKeyInfo";

	assert_true(tls_libctx_keeps(OSSL_OP_DECODER, "EC:id-ecPublicKey:1.2.840.10045.2.1", spki));
	assert_true(tls_libctx_keeps(OSSL_OP_DECODER, "ED25519:1.3.101.112", spki));
	assert_false(tls_libctx_keeps(OSSL_OP_DECODER, "X25519:1.3.101.110", spki));
	assert_false(tls_libctx_keeps(OSSL_OP_DECODER, "DER", spki));
	assert_false(
		tls_libctx_keeps(OSSL_OP_DECODER, "EC",
				 "provider=default,fips=yes,input=der,structure=PrivateKeyInfo"));
	assert_false(tls_libctx_keeps(OSSL_OP_DECODER, "EC", "provider=default,input=pem"));
	assert_false(tls_libctx_keeps(OSSL_OP_DECODER, "EC",
				      "input=der,structure=SubjectPublicKeyInfoX"));
	assert_false(tls_libctx_keeps(OSSL_OP_DECODER, "EC", NULL));
	/* Any of an algorithm's names; not a prefix of one. */
	assert_true(tls_libctx_keeps(OSSL_OP_DIGEST, "SHA2-256:SHA-256:SHA256:2.16.840.1", NULL));
	assert_true(tls_libctx_keeps(OSSL_OP_DIGEST, "SHA-1:SHA1:SSL3-SHA1", NULL));
	assert_false(tls_libctx_keeps(OSSL_OP_DIGEST, "SHA2-256X", NULL));
	assert_false(tls_libctx_keeps(OSSL_OP_DIGEST, "SHA", NULL));
	/* Operations the view does not filter pass through. */
	assert_true(tls_libctx_keeps(OSSL_OP_RAND, "CTR-DRBG", NULL));
	assert_true(tls_libctx_keeps(OSSL_OP_ENCODER, "anything", NULL));
}

/* A self-signed certificate for a key made by genpkey alg (and opt), as DER. */
static int cert_der(const char *alg, const char *curve, int bits, const char *md,
		    unsigned char **ret_der)
{
	EVP_PKEY *k = NULL;
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	X509 *x = X509_new();
	X509_NAME *n;
	int len;

	assert_non_null(pc);
	assert_int_equal(EVP_PKEY_keygen_init(pc), 1);
	if (curve)
		assert_int_equal(EVP_PKEY_CTX_set_group_name(pc, curve), 1);
	if (bits)
		assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(pc, bits), 1);
	assert_int_equal(EVP_PKEY_generate(pc, &k), 1);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, k), 1);
	n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
						    (const unsigned char *)alg, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, n), 1);
	assert_true(X509_sign(x, k, md ? EVP_get_digestbyname(md) : NULL) > 0);
	*ret_der = NULL;
	len = i2d_X509(x, ret_der);
	assert_true(len > 0);
	X509_free(x);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(pc);
	return len;
}

/* Every key type that signs: the certificate's key decodes in the view and verifies. */
static void test_cert_keys(void **state)
{
	static const struct {
		const char *alg, *curve;
		int bits;
		const char *md; /* NULL: Ed25519/Ed448 sign without a separate digest */
	} t[] = { { "EC", "P-256", 0, "SHA256" },      { "EC", "P-384", 0, "SHA384" },
		  { "RSA", NULL, 2048, "SHA3-256" },   { "EC", "P-256", 0, "SHA1" },
		  { "RSA", NULL, 2048, "SHA256" },     { "RSA", NULL, 2048, "SHA224" },
		  { "RSA-PSS", NULL, 2048, "SHA256" }, { "ED25519", NULL, 0, NULL },
		  { "ED448", NULL, 0, NULL } };
	OSSL_LIB_CTX *lc = view();

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		unsigned char *der;
		int len = cert_der(t[i].alg, t[i].curve, t[i].bits, t[i].md, &der);
		const unsigned char *p = der;
		X509 *x = X509_new_ex(lc, NULL);

		assert_non_null(x);
		assert_non_null(d2i_X509(&x, &p, len));
		if (!X509_get0_pubkey(x))
			fail_msg("%s: certificate key not decoded in the view", t[i].alg);
		if (X509_verify(x, X509_get0_pubkey(x)) != 1)
			fail_msg("%s/%s: self-signature does not verify in the view", t[i].alg,
				 t[i].md);
		/* A flipped bit in the signature still fails: verification is not weakened. */
		der[len - 1] ^= 1;
		p = der;
		assert_non_null(d2i_X509(&x, &p, len));
		assert_int_not_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
		X509_free(x);
		OPENSSL_free(der);
		ERR_clear_error();
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_once),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_keeps),
		cmocka_unit_test(test_cert_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: MIT
/*
 * libktls key schedule against published and independently computed values:
 * RFC 8448 section 3 application traffic secrets -> write key/iv; "traffic upd" and the
 * TLS 1.2 PRF recomputed here by hand from HMAC (RFC 5869 / RFC 5246 5), so a framing
 * mistake in the library's use of EVP_KDF shows up as a mismatch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ktlsd/ktls.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;

	for (; h[0] && h[1]; h += 2) {
		unsigned int v;

		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* RFC 8448 section 3 "Simple 1-RTT Handshake". */
static const char c_ap[] = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5";
static const char s_ap[] = "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643";

static void check_label(const char *secret_hex, const char *label, const char *want_hex)
{
	uint8_t secret[64], want[64], got[64];
	size_t sl = unhex(secret_hex, secret), wl = unhex(want_hex, want);

	assert_int_equal(ktls_tls13_expand_label("SHA256", secret, sl, label, got, wl), 0);
	assert_memory_equal(got, want, wl);
}

static void test_rfc8448_server_app_key_iv(void **state)
{
	check_label(s_ap, "key", "9f02283b6c9c07efc26bb9f2ac92e356");
	check_label(s_ap, "iv", "cf782b88dd83549aadf1e984");
}

static void test_rfc8448_client_app_key_iv(void **state)
{
	check_label(c_ap, "key", "17422dda596ed5d9acd890e3c63f5051");
	check_label(c_ap, "iv", "5b78923dee08579033e523d9");
}

static void test_rfc8448_wrong_label_differs(void **state)
{
	uint8_t secret[32], got[16], want[16];

	unhex(s_ap, secret);
	unhex("9f02283b6c9c07efc26bb9f2ac92e356", want);
	assert_int_equal(ktls_tls13_expand_label("SHA256", secret, 32, "kez", got, 16), 0);
	assert_memory_not_equal(got, want, 16);
}

/* HKDF-Expand-Label by hand: HMAC(secret, HkdfLabel || 0x01) ... */
static void hkdf_expand_label_ref(const EVP_MD *md, const uint8_t *secret, size_t sl,
				  const char *label, uint8_t *out, size_t out_len)
{
	uint8_t info[2 + 1 + 255 + 1], t[EVP_MAX_MD_SIZE];
	size_t ll = strlen("tls13 ") + strlen(label), il = 0, done = 0, hl = EVP_MD_get_size(md);
	unsigned int tl = 0;

	info[il++] = (uint8_t)(out_len >> 8);
	info[il++] = (uint8_t)out_len;
	info[il++] = (uint8_t)ll;
	memcpy(info + il, "tls13 ", 6);
	memcpy(info + il + 6, label, strlen(label));
	il += ll;
	info[il++] = 0; /* empty context */
	for (uint8_t i = 1; done < out_len; i++) {
		uint8_t in[EVP_MAX_MD_SIZE + sizeof(info) + 1];
		size_t inl = 0;

		if (i > 1) {
			memcpy(in, t, hl);
			inl = hl;
		}
		memcpy(in + inl, info, il);
		inl += il;
		in[inl++] = i;
		HMAC(md, secret, (int)sl, in, inl, t, &tl);
		memcpy(out + done, t, out_len - done < hl ? out_len - done : hl);
		done += out_len - done < hl ? out_len - done : hl;
	}
}

static void test_traffic_upd_sha256(void **state)
{
	uint8_t secret[32], got[32], want[32];

	unhex(c_ap, secret);
	hkdf_expand_label_ref(EVP_sha256(), secret, 32, "traffic upd", want, 32);
	assert_int_equal(ktls_tls13_next_secret("SHA256", secret, 32, got), 0);
	assert_memory_equal(got, want, 32);
	assert_memory_not_equal(got, secret, 32);
}

static void test_traffic_upd_sha384(void **state)
{
	uint8_t secret[48], got[48], want[48];

	for (int i = 0; i < 48; i++)
		secret[i] = (uint8_t)(i * 7 + 3);
	hkdf_expand_label_ref(EVP_sha384(), secret, 48, "traffic upd", want, 48);
	assert_int_equal(ktls_tls13_next_secret("SHA384", secret, 48, got), 0);
	assert_memory_equal(got, want, 48);
	/* and the key of a 384 suite: 32 bytes, two HMAC blocks would not be needed */
	hkdf_expand_label_ref(EVP_sha384(), secret, 48, "key", want, 32);
	assert_int_equal(ktls_tls13_expand_label("SHA384", secret, 48, "key", got, 32), 0);
	assert_memory_equal(got, want, 32);
}

/* TLS 1.2 PRF by hand: P_hash(secret, label || seed), RFC 5246 section 5. */
static void prf_ref(const EVP_MD *md, const uint8_t *secret, size_t sl, const char *label,
		    const uint8_t *seed, size_t seedl, uint8_t *out, size_t out_len)
{
	uint8_t ls[256], a[EVP_MAX_MD_SIZE], t[EVP_MAX_MD_SIZE], in[EVP_MAX_MD_SIZE + 256];
	size_t lsl = strlen(label) + seedl, done = 0;
	unsigned int al, tl;

	memcpy(ls, label, strlen(label));
	memcpy(ls + strlen(label), seed, seedl);
	HMAC(md, secret, (int)sl, ls, lsl, a, &al); /* A(1) */
	while (done < out_len) {
		memcpy(in, a, al);
		memcpy(in + al, ls, lsl);
		HMAC(md, secret, (int)sl, in, al + lsl, t, &tl);
		memcpy(out + done, t, out_len - done < tl ? out_len - done : tl);
		done += out_len - done < tl ? out_len - done : tl;
		HMAC(md, secret, (int)sl, a, al, a, &al); /* A(i+1) */
	}
}

static void check_prf(const char *digest, const EVP_MD *md, size_t len)
{
	uint8_t ms[48], seed[64], got[128], want[128];

	for (int i = 0; i < 48; i++)
		ms[i] = (uint8_t)(0xa5 ^ i);
	for (int i = 0; i < 64; i++)
		seed[i] = (uint8_t)(i * 13);
	prf_ref(md, ms, 48, "key expansion", seed, 64, want, len);
	assert_int_equal(ktls_tls12_prf(digest, ms, 48, "key expansion", seed, 64, got, len), 0);
	assert_memory_equal(got, want, len);
}

static void test_tls12_prf_sha256(void **state)
{
	check_prf("SHA256", EVP_sha256(), 40); /* AES-128-GCM key block */
	check_prf("SHA256", EVP_sha256(), 88); /* ChaCha20 key block */
}

static void test_tls12_prf_sha384(void **state)
{
	check_prf("SHA384", EVP_sha384(), 72); /* AES-256-GCM key block */
}

static void test_bad_digest_fails(void **state)
{
	uint8_t s[32] = { 0 }, out[16];

	assert_int_not_equal(ktls_tls13_expand_label("NOPE", s, 32, "key", out, 16), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc8448_server_app_key_iv),
		cmocka_unit_test(test_rfc8448_client_app_key_iv),
		cmocka_unit_test(test_rfc8448_wrong_label_differs),
		cmocka_unit_test(test_traffic_upd_sha256),
		cmocka_unit_test(test_traffic_upd_sha384),
		cmocka_unit_test(test_tls12_prf_sha256),
		cmocka_unit_test(test_tls12_prf_sha384),
		cmocka_unit_test(test_bad_digest_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

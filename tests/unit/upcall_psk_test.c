// SPDX-License-Identifier: MIT
/* psk.c: the session an NVMe PSK becomes (suite from the identity's hash), identity checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/ssl.h>

#include "psk.h"

static void session_for(const char *identity, const char *want_suite)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	struct psk p = { .serial = 5, .len = 32 };
	SSL_SESSION *s = NULL;
	unsigned char key[64];
	size_t n;

	memset(p.key, 0xa5, p.len);
	snprintf(p.identity, sizeof(p.identity), "%s", identity);
	assert_int_equal(psk_session(ssl, &p, &s), 0);
	assert_string_equal(SSL_CIPHER_get_name(SSL_SESSION_get0_cipher(s)), want_suite);
	assert_int_equal(SSL_SESSION_get_protocol_version(s), TLS1_3_VERSION);
	n = SSL_SESSION_get_master_key(s, key, sizeof(key));
	assert_int_equal(n, 32);
	assert_memory_equal(key, p.key, 32);
	SSL_SESSION_free(s);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

static void test_suite_by_hash(void **state)
{
	(void)state;
	session_for("NVMe0R01 nqn.h nqn.s", "TLS_AES_128_GCM_SHA256");
	session_for("NVMe0R02 nqn.h nqn.s", "TLS_AES_256_GCM_SHA384");
	session_for("NVMe1G02 nqn.h nqn.s abc=", "TLS_AES_256_GCM_SHA384");
	session_for("x", "TLS_AES_128_GCM_SHA256");
}

/* What a client offers as its identity cannot reach keyctl unless it is a plain string. */
static void test_find_rejects(void **state)
{
	struct psk p = { .serial = -1 };
	unsigned char big[PSK_MAX_IDENTITY];

	(void)state;
	memset(big, 'a', sizeof(big));
	assert_int_equal(psk_find(1, (const unsigned char *)"", 0, &p), -EINVAL);
	assert_int_equal(psk_find(1, (const unsigned char *)"a\0b", 3, &p), -EINVAL);
	assert_int_equal(psk_find(1, big, sizeof(big), &p), -EINVAL);
	assert_int_equal(p.serial, -1);
}

static void test_clear(void **state)
{
	struct psk p = { .len = 4 };

	(void)state;
	memset(p.key, 0x5a, sizeof(p.key));
	psk_clear(&p);
	for (size_t i = 0; i < sizeof(p.key); i++)
		assert_int_equal(p.key[i], 0);
	psk_clear(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_by_hash),
		cmocka_unit_test(test_find_rejects),
		cmocka_unit_test(test_clear),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

// SPDX-License-Identifier: MIT
/*
 * sess_cache with real SSL_SESSION objects: built by hand (id, master key, times) for the
 * ring logic, and taken from in-memory TLS 1.3 handshakes where a peer certificate is
 * needed. Reference counts are checked by running under valgrind or ASan: every session
 * a test creates is freed exactly once, by the cache or by the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sess_cache.h"
#include "tls_test_util.h"

#define T0 1000000

static SSL_SESSION *mk(unsigned char id, long t, long timeout)
{
	static const unsigned char mkey[48] = { 1 };
	SSL_SESSION *s = SSL_SESSION_new();

	assert_non_null(s);
	assert_int_equal(SSL_SESSION_set1_master_key(s, mkey, sizeof(mkey)), 1);
	assert_int_equal(SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_SESSION_set1_id(s, &id, 1), 1);
	assert_int_equal(SSL_SESSION_set_time(s, t), t);
	assert_int_equal(SSL_SESSION_set_timeout(s, timeout), 1);
	assert_true(SSL_SESSION_is_resumable(s));
	return s;
}

static unsigned char id_of(const SSL_SESSION *s)
{
	unsigned int len;
	const unsigned char *id = SSL_SESSION_get_id(s, &len);

	assert_int_equal(len, 1);
	return id[0];
}

/* Takes the next session, checks it is id, frees it. */
static void take_expect(struct sess_cache *sc, time_t now, unsigned char id)
{
	SSL_SESSION *s = sess_cache_take(sc, now);

	assert_non_null(s);
	assert_int_equal(id_of(s), id);
	SSL_SESSION_free(s);
}

static void test_lifo(void **state)
{
	struct sess_cache sc;
	unsigned char id;

	assert_int_equal(sess_cache_init(&sc, 4), 0);
	assert_null(sess_cache_take(&sc, T0));
	assert_int_equal(sc.misses, 1);
	for (id = 1; id <= 3; id++)
		sess_cache_put(&sc, mk(id, T0, 100));
	assert_int_equal(sc.n, 3);
	take_expect(&sc, T0, 3);
	sess_cache_put(&sc, mk(4, T0, 100));
	take_expect(&sc, T0, 4);
	take_expect(&sc, T0, 2);
	take_expect(&sc, T0, 1);
	assert_null(sess_cache_take(&sc, T0));
	assert_int_equal(sc.hits, 4);
	assert_int_equal(sc.misses, 2);
	assert_int_equal(sc.evicted, 0);
	sess_cache_clear(&sc);
	assert_null(sc.s);
	assert_int_equal(sc.n, 0);
}

/* Full: the oldest goes, whether or not the caller still holds its own reference. */
static void test_bound_evicts_oldest(void **state)
{
	struct sess_cache sc;
	SSL_SESSION *first = mk(1, T0, 100);
	unsigned char id;

	assert_int_equal(sess_cache_init(&sc, 3), 0);
	/* Keep a reference of our own: eviction must drop only the cache's. */
	assert_int_equal(SSL_SESSION_up_ref(first), 1);
	sess_cache_put(&sc, first);
	for (id = 2; id <= 7; id++)
		sess_cache_put(&sc, mk(id, T0, 100));
	assert_int_equal(sc.n, 3);
	assert_int_equal(sc.evicted, 4);
	/* Ours is still alive and intact. */
	assert_int_equal(id_of(first), 1);
	SSL_SESSION_free(first);
	take_expect(&sc, T0, 7);
	take_expect(&sc, T0, 6);
	take_expect(&sc, T0, 5);
	assert_null(sess_cache_take(&sc, T0));
	/* Wrapped ring, partly full: clear frees what is left. */
	for (id = 8; id <= 12; id++)
		sess_cache_put(&sc, mk(id, T0, 100));
	sess_cache_clear(&sc);
	/* A cleared cache takes nothing in and leaks nothing. */
	sess_cache_put(&sc, mk(13, T0, 100));
	assert_int_equal(sc.n, 0);
	assert_null(sess_cache_take(&sc, T0));
	sess_cache_clear(&sc);
}

static void test_cap_one(void **state)
{
	struct sess_cache sc;

	assert_int_equal(sess_cache_init(&sc, 1), 0);
	sess_cache_put(&sc, mk(1, T0, 100));
	sess_cache_put(&sc, mk(2, T0, 100));
	assert_int_equal(sc.evicted, 1);
	take_expect(&sc, T0, 2);
	assert_null(sess_cache_take(&sc, T0));
	sess_cache_clear(&sc);
}

static void test_expiry(void **state)
{
	struct sess_cache sc;

	assert_int_equal(sess_cache_init(&sc, 4), 0);
	sess_cache_put(&sc, mk(1, T0, 100));
	take_expect(&sc, T0 + 99, 1);
	sess_cache_put(&sc, mk(1, T0, 100));
	assert_null(sess_cache_take(&sc, T0 + 100));
	assert_int_equal(sc.n, 0);
	/* An expired newer one is skipped (and freed) for a valid older one. */
	sess_cache_put(&sc, mk(2, T0, 1000));
	sess_cache_put(&sc, mk(3, T0, 10));
	sess_cache_put(&sc, mk(4, T0 - 100, 50));
	take_expect(&sc, T0 + 10, 2);
	assert_int_equal(sc.n, 0);
	assert_int_equal(sc.hits, 2);
	assert_int_equal(sc.misses, 1);
	/* Expired sessions are not evictions: that counter is for a too-small cache. */
	assert_int_equal(sc.evicted, 0);
	sess_cache_clear(&sc);
}

static void test_not_resumable(void **state)
{
	struct sess_cache sc;
	SSL_SESSION *s = SSL_SESSION_new();

	assert_int_equal(sess_cache_init(&sc, 4), 0);
	/* No id and no ticket: nothing to resume with, freed at once. */
	assert_non_null(s);
	assert_false(SSL_SESSION_is_resumable(s));
	sess_cache_put(&sc, s);
	assert_int_equal(sc.n, 0);
	sess_cache_put(&sc, NULL);
	assert_int_equal(sc.n, 0);
	/* Became non-resumable while cached: dropped by take. */
	sess_cache_put(&sc, mk(1, T0, 100));
	s = mk(2, T0, 100);
	assert_int_equal(SSL_SESSION_up_ref(s), 1);
	sess_cache_put(&sc, s);
	assert_int_equal(SSL_SESSION_set1_id(s, (const unsigned char *)"", 0), 1);
	assert_false(SSL_SESSION_is_resumable(s));
	SSL_SESSION_free(s);
	take_expect(&sc, T0, 1);
	sess_cache_clear(&sc);
}

static void test_init_bad(void **state)
{
	struct sess_cache sc = { .cap = 77 };

	assert_int_equal(sess_cache_init(&sc, 0), -EINVAL);
	assert_int_equal(sc.cap, 77);
}

/* --- sessions from real handshakes, for the peer certificate check --- */

/* A TLS 1.3 client session (with a ticket) from a server presenting a cert valid until
 * now + not_after_adj. The client does not verify: an expired cert must still connect. */
static SSL_SESSION *session_from_server(long not_after_adj)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *cert;
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
	SSL *s, *c;
	SSL_SESSION *sess;
	char buf[16];
	int sv[2], r;

	assert_non_null(pkey);
	assert_non_null(sctx);
	assert_non_null(cctx);
	cert = tu_self_signed(pkey, "backend", -7200, not_after_adj);
	assert_int_equal(SSL_CTX_use_certificate(sctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(sctx, pkey), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	tu_pair(sctx, cctx, &s, &c, sv);
	tu_handshake(s, c);
	r = SSL_read(c, buf, sizeof(buf));
	assert_true(r <= 0);
	assert_int_equal(SSL_get_error(c, r), SSL_ERROR_WANT_READ);
	sess = SSL_get1_session(c);
	assert_non_null(sess);
	assert_true(SSL_SESSION_has_ticket(sess));
	assert_non_null(SSL_SESSION_get0_peer(sess));
	/* Without a close_notify sent, SSL_free marks the session not resumable. */
	assert_true(SSL_shutdown(c) >= 0);
	SSL_free(c);
	SSL_free(s);
	close(sv[0]);
	close(sv[1]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	X509_free(cert);
	EVP_PKEY_free(pkey);
	/* Only the certificate may end this session's usefulness in these tests. */
	assert_int_equal(SSL_SESSION_set_timeout(sess, 30 * 86400), 1);
	return sess;
}

static void test_peer_cert_expired(void **state)
{
	struct sess_cache sc;
	time_t now = time(NULL);
	SSL_SESSION *s;

	assert_int_equal(sess_cache_init(&sc, 4), 0);
	/* Valid for another hour: usable now, not two hours from now. */
	s = session_from_server(3600);
	assert_int_equal(SSL_SESSION_up_ref(s), 1);
	sess_cache_put(&sc, s);
	assert_ptr_equal(sess_cache_take(&sc, now), s);
	SSL_SESSION_free(s);
	sess_cache_put(&sc, s);
	assert_null(sess_cache_take(&sc, now + 7200));
	/* Already expired when the session was made. */
	sess_cache_put(&sc, session_from_server(-60));
	assert_null(sess_cache_take(&sc, now));
	assert_int_equal(sc.hits, 1);
	assert_int_equal(sc.misses, 2);
	sess_cache_clear(&sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifo),
		cmocka_unit_test(test_bound_evicts_oldest),
		cmocka_unit_test(test_cap_one),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_not_resumable),
		cmocka_unit_test(test_init_bad),
		cmocka_unit_test(test_peer_cert_expired),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

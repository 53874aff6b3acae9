// SPDX-License-Identifier: MIT
/*
 * ticket_keys against real OpenSSL handshakes: a server and a client SSL on a non-blocking
 * AF_UNIX socketpair in this process, the client reading until WANT_READ so that TLS 1.3
 * tickets arrive. Time is a fake clock the tests move.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "smaps_util.h"
#include "ticket_keys.h"
#include "tls_test_util.h"

#define LIFETIME 100
#define T0	 1000000

/* Atomic: the threaded test moves it while workers' handshakes read it. */
static _Atomic time_t fake_now;

static time_t fake_clock(void)
{
	return atomic_load(&fake_now);
}

struct fixture {
	EVP_PKEY *pkey;
	X509 *cert;
};

static int setup(void **state)
{
	static struct fixture f;

	f.pkey = EVP_EC_gen("P-256");
	if (!f.pkey)
		return -1;
	f.cert = tu_self_signed(f.pkey, "server", -60, 3600);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	X509_free(f->cert);
	EVP_PKEY_free(f->pkey);
	return 0;
}

/* The server side as ktlsd would run it for resumption: no stateful cache, tickets only. */
static SSL_CTX *server_ctx(const struct fixture *f, struct ticket_keys *tk)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, f->cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, f->pkey), 1);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	assert_int_equal(SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"svc", 3), 1);
	if (tk)
		assert_int_equal(ticket_keys_attach(ctx, tk), 0);
	return ctx;
}

static SSL_CTX *client_ctx(int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

/*
 * One connection; resume: a client session to offer or NULL. Returns whether the
 * handshake resumed (checked to agree on both ends) and the client's session after it has
 * read every ticket the server sent.
 */
static bool handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *resume, SSL_SESSION **ret_sess)
{
	bool reused;
	SSL *s, *c;
	char buf[16];
	int sv[2], r;

	tu_pair(sctx, cctx, &s, &c, sv);
	if (resume)
		assert_int_equal(SSL_set_session(c, resume), 1);
	tu_handshake(s, c);
	/* Post-handshake messages (TLS 1.3 NewSessionTicket) are read by SSL_read. */
	r = SSL_read(c, buf, sizeof(buf));
	assert_true(r <= 0);
	assert_int_equal(SSL_get_error(c, r), SSL_ERROR_WANT_READ);
	reused = SSL_session_reused(c);
	assert_int_equal(reused, SSL_session_reused(s));
	*ret_sess = SSL_get1_session(c);
	assert_non_null(*ret_sess);
	/* Without a close_notify sent, SSL_free marks the session not resumable. */
	assert_true(SSL_shutdown(c) >= 0);
	SSL_free(c);
	SSL_free(s);
	close(sv[0]);
	close(sv[1]);
	return reused;
}

/* The key name is the first 16 bytes of a ticket sealed by ticket_cb. */
static void ticket_name(const SSL_SESSION *sess, unsigned char name[16])
{
	const unsigned char *tick;
	size_t len;

	assert_true(SSL_SESSION_has_ticket(sess));
	SSL_SESSION_get0_ticket(sess, &tick, &len);
	assert_true(len > 16);
	memcpy(name, tick, 16);
}

static void resume_works(const struct fixture *f, int max_version)
{
	struct ticket_keys *tk = NULL;
	SSL_CTX *sctx, *cctx = client_ctx(max_version);
	SSL_SESSION *s1, *s2;

	assert_int_equal(ticket_keys_new(LIFETIME, &tk), 0);
	sctx = server_ctx(f, tk);
	assert_int_equal(SSL_CTX_get_timeout(sctx), LIFETIME);
	assert_false(handshake(sctx, cctx, NULL, &s1));
	assert_int_equal(SSL_SESSION_get_protocol_version(s1), max_version);
	assert_true(handshake(sctx, cctx, s1, &s2));
	assert_int_equal(ticket_keys_rotations(tk), 0);
	SSL_SESSION_free(s2);
	SSL_SESSION_free(s1);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	ticket_keys_free(tk);
}

static void test_resume_tls13(void **state)
{
	resume_works(*state, TLS1_3_VERSION);
}

static void test_resume_tls12(void **state)
{
	resume_works(*state, TLS1_2_VERSION);
}

/*
 * Rotation after one lifetime; a ticket under the retired key resumes until 2 * lifetime
 * after its key's creation and is renewed under the current key, then is refused.
 */
static void rotation(const struct fixture *f, int max_version)
{
	struct ticket_keys *tk = NULL;
	SSL_CTX *sctx, *cctx = client_ctx(max_version);
	SSL_SESSION *old, *fresh, *s;
	unsigned char n_old[16], n_new[16], n[16];

	assert_int_equal(ticket_keys_new(LIFETIME, &tk), 0);
	fake_now = T0;
	ticket_keys_set_clock(tk, fake_clock);
	sctx = server_ctx(f, tk);

	assert_false(handshake(sctx, cctx, NULL, &old));
	ticket_name(old, n_old);
	fake_now = T0 + LIFETIME - 1;
	assert_true(handshake(sctx, cctx, old, &s));
	ticket_name(s, n);
	assert_memory_equal(n, n_old, 16);
	SSL_SESSION_free(s);
	assert_int_equal(ticket_keys_rotations(tk), 0);

	fake_now = T0 + LIFETIME;
	assert_false(handshake(sctx, cctx, NULL, &fresh));
	assert_int_equal(ticket_keys_rotations(tk), 1);
	ticket_name(fresh, n_new);
	assert_memory_not_equal(n_new, n_old, 16);

	/* Old key, still valid: resumes, and the client leaves with a ticket under the new key
	 * because the callback asked for renewal (OpenSSL issues none on resumption otherwise). */
	fake_now = T0 + 2 * LIFETIME - 1;
	assert_true(handshake(sctx, cctx, old, &s));
	ticket_name(s, n);
	assert_memory_equal(n, n_new, 16);
	SSL_SESSION_free(s);
	/* Current key: resumes, no renewal: the client keeps the ticket it offered. */
	assert_true(handshake(sctx, cctx, fresh, &s));
	ticket_name(s, n);
	assert_memory_equal(n, n_new, 16);
	SSL_SESSION_free(s);
	assert_int_equal(ticket_keys_rotations(tk), 1);

	/* The old key is gone. OpenSSL's own session-age checks use the real clock, which has
	 * barely moved, so the refusal below is ticket_keys' doing; a long session timeout
	 * on the client copy makes that explicit. */
	assert_int_equal(SSL_SESSION_set_timeout(old, 86400), 1);
	fake_now = T0 + 2 * LIFETIME + 1;
	assert_false(handshake(sctx, cctx, old, &s));
	SSL_SESSION_free(s);
	/* That full handshake issued a ticket past the new key's lifetime: second rotation. */
	assert_int_equal(ticket_keys_rotations(tk), 2);
	/* The first rotated-in key is now the previous one and still valid. */
	assert_true(handshake(sctx, cctx, fresh, &s));
	SSL_SESSION_free(s);

	SSL_SESSION_free(fresh);
	SSL_SESSION_free(old);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	ticket_keys_free(tk);
}

static void test_rotation_tls13(void **state)
{
	rotation(*state, TLS1_3_VERSION);
}

static void test_rotation_tls12(void **state)
{
	rotation(*state, TLS1_2_VERSION);
}

/* A key idle past two lifetimes decrypts nothing, even while it is still the current one. */
static void test_idle_current_key_expires(void **state)
{
	struct ticket_keys *tk = NULL;
	SSL_CTX *sctx, *cctx = client_ctx(TLS1_3_VERSION);
	SSL_SESSION *s1, *s2;

	assert_int_equal(ticket_keys_new(LIFETIME, &tk), 0);
	fake_now = T0;
	ticket_keys_set_clock(tk, fake_clock);
	sctx = server_ctx(*state, tk);
	assert_false(handshake(sctx, cctx, NULL, &s1));
	fake_now = T0 + 2 * LIFETIME;
	assert_false(handshake(sctx, cctx, s1, &s2));
	SSL_SESSION_free(s2);
	SSL_SESSION_free(s1);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	ticket_keys_free(tk);
}

/* Another server (another ticket_keys) cannot open this one's tickets. */
static void test_other_instance(void **state)
{
	struct ticket_keys *tk1 = NULL, *tk2 = NULL;
	SSL_CTX *sctx1, *sctx2, *cctx = client_ctx(TLS1_3_VERSION);
	SSL_SESSION *s1, *s2;

	assert_int_equal(ticket_keys_new(LIFETIME, &tk1), 0);
	assert_int_equal(ticket_keys_new(LIFETIME, &tk2), 0);
	sctx1 = server_ctx(*state, tk1);
	sctx2 = server_ctx(*state, tk2);
	assert_false(handshake(sctx1, cctx, NULL, &s1));
	assert_false(handshake(sctx2, cctx, s1, &s2));
	SSL_SESSION_free(s2);
	/* Still good on its own server. */
	assert_true(handshake(sctx1, cctx, s1, &s2));
	SSL_SESSION_free(s2);
	SSL_SESSION_free(s1);
	SSL_CTX_free(sctx1);
	SSL_CTX_free(sctx2);
	SSL_CTX_free(cctx);
	ticket_keys_free(tk1);
	ticket_keys_free(tk2);
}

/*
 * Worker threads sharing one ticket_keys: in each round every thread does a full
 * handshake and a resumption at once, so when the clock has just passed a key's lifetime
 * they all race to rotate, and must rotate once. Rounds run in lockstep (barriers) and
 * the clock moves only between them, so the result does not depend on scheduling. Meant
 * for the TSan build too. A failed assertion in a worker aborts the binary (cmocka cannot
 * unwind another thread), which still fails the test.
 */
#define N_THREADS 4
#define N_ROUNDS  20
#define STEP	  3  /* fake seconds per round */
#define T_LIFE	  10 /* -> rotations at T0 + 12, 24, 36, 48, 60 */

struct worker_arg {
	SSL_CTX *sctx;
	pthread_barrier_t *round;
	int resumed;
};

static void *worker(void *p)
{
	struct worker_arg *a = p;
	SSL_CTX *cctx = client_ctx(TLS1_3_VERSION);
	SSL_SESSION *s1, *s2;
	int i;

	for (i = 0; i < N_ROUNDS; i++) {
		pthread_barrier_wait(a->round); /* main moves the clock */
		pthread_barrier_wait(a->round);
		if (handshake(a->sctx, cctx, NULL, &s1))
			break;
		if (handshake(a->sctx, cctx, s1, &s2))
			a->resumed++;
		SSL_SESSION_free(s2);
		SSL_SESSION_free(s1);
	}
	SSL_CTX_free(cctx);
	return NULL;
}

static void test_threads(void **state)
{
	struct ticket_keys *tk = NULL;
	struct worker_arg a[N_THREADS];
	pthread_barrier_t round;
	pthread_t t[N_THREADS];
	SSL_CTX *sctx;
	int i;

	assert_int_equal(ticket_keys_new(T_LIFE, &tk), 0);
	fake_now = T0;
	ticket_keys_set_clock(tk, fake_clock);
	sctx = server_ctx(*state, tk);
	assert_int_equal(pthread_barrier_init(&round, NULL, N_THREADS + 1), 0);
	for (i = 0; i < N_THREADS; i++) {
		a[i] = (struct worker_arg){ .sctx = sctx, .round = &round };
		assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
	}
	for (i = 0; i < N_ROUNDS; i++) {
		pthread_barrier_wait(&round); /* previous round done */
		fake_now += STEP;
		pthread_barrier_wait(&round);
	}
	for (i = 0; i < N_THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(a[i].resumed, N_ROUNDS);
	}
	assert_int_equal(ticket_keys_rotations(tk), 5);
	pthread_barrier_destroy(&round);
	SSL_CTX_free(sctx);
	ticket_keys_free(tk);
}

static void test_bad_args(void **state)
{
	struct ticket_keys *tk = (struct ticket_keys *)&tk;
	SSL_CTX *ctx;

	assert_int_equal(ticket_keys_new(0, &tk), -EINVAL);
	assert_int_equal(ticket_keys_new(TICKET_KEYS_MAX_LIFETIME + 1, &tk), -EINVAL);
	/* ret_ untouched on failure */
	assert_ptr_equal(tk, (struct ticket_keys *)&tk);
	assert_int_equal(ticket_keys_new(TICKET_KEYS_MAX_LIFETIME, &tk), 0);
	ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(ctx);
	assert_int_equal(ticket_keys_attach(NULL, tk), -EINVAL);
	assert_int_equal(ticket_keys_attach(ctx, NULL), -EINVAL);
	assert_int_equal(ticket_keys_attach(ctx, tk), 0);
	assert_int_equal(SSL_CTX_get_timeout(ctx), TICKET_KEYS_MAX_LIFETIME);
	SSL_CTX_free(ctx);
	ticket_keys_free(tk);
	ticket_keys_free(NULL);
}

/*
 * The ring (keys and their names) must never reach a core file: the opaque pointer is the
 * ring itself, so its page must carry the kernel's DONTDUMP and WIPEONFORK marks.
 */
static void test_keys_not_dumped(void **state)
{
	struct ticket_keys *tk;

	assert_int_equal(ticket_keys_new(LIFETIME, &tk), 0);
	assert_true(smaps_has_flag(tk, "dd"));
	assert_true(smaps_has_flag(tk, "wf"));
	ticket_keys_free(tk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resume_tls13),
		cmocka_unit_test(test_resume_tls12),
		cmocka_unit_test(test_rotation_tls13),
		cmocka_unit_test(test_rotation_tls12),
		cmocka_unit_test(test_idle_current_key_expires),
		cmocka_unit_test(test_other_instance),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_keys_not_dumped),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

// SPDX-License-Identifier: MIT
/*
 * peer_chain.c: what an established connection keeps of its peer (DER, leaf first) and the
 * verdict a reloaded service gives on it: still admitted, revoked by a new CRL, no longer
 * allowed by the rules, no longer trusted, or unreadable, each with its errno and words.
 * Also the CRL files a service loads (--crl): accepted, repeated, refused with the reason.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "config.h"
#include "peer_chain.h"
#include "pki_fixture.h"
#include "tls_test_util.h"
#include "tlsctx.h"

/* scripts/pki, then empty.crl (nothing revoked) and revoked.crl (client.pem), both by ca. */
static int pki_setup(void **state)
{
	char cmd[2048];

	(void)state;
	if (pki_make("peerchain"))
		return -1;
	snprintf(
		cmd, sizeof(cmd),
		"cd %s && mkdir db && : >db/index.txt && echo 01 "
		">db/crlnumber && printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=db/index.txt\\n"
		"crlnumber=db/crlnumber\\ndefault_md=sha256\\ndefault_crl_days=30\\n' >db/c.cnf && "
		"openssl ca -config db/c.cnf -gencrl -cert ca.pem -keyfile ca.key -out empty.crl "
		"2>/dev/null && openssl ca -config db/c.cnf -revoke client.pem -cert ca.pem "
		"-keyfile ca.key 2>/dev/null && openssl ca -config db/c.cnf -gencrl -cert ca.pem "
		"-keyfile ca.key -out revoked.crl 2>/dev/null && echo junk >junk.crl",
		pki_dir);
	return run(cmd) ? -1 : 0;
}

/* A server service from the command line: server.pem, cacert, then extra (NULL-ended). */
static int server_cfg(const char *cacert, const char *const *extra, struct run_config *ret_cfg,
		      char *err, size_t errlen)
{
	const char *argv[32] = { "server",	  "--listen", "127.0.0.1:1",   "--target",
				 "127.0.0.1:2",	  "--cert",   p("server.pem"), "--key",
				 p("server.key"), "--cacert", p(cacert) };
	int argc = 11;
	bool help;

	for (; extra && *extra; extra++)
		argv[argc++] = *extra;
	argv[argc] = NULL;
	return config_from_argv(ROLE_SERVER, argc, (char **)argv, ret_cfg, &help, err, errlen);
}

static SSL_CTX *server_ctx(const char *cacert, const char *const *extra, struct run_config *cfg)
{
	char err[CONFIG_ERR_MAX] = "";
	SSL_CTX *ctx = NULL;

	if (server_cfg(cacert, extra, cfg, err, sizeof(err)))
		fail_msg("config refused: %s", err);
	if (tls_ctx_build(&cfg->svc[0], false, &ctx, err, sizeof(err)))
		fail_msg("build refused: %s", err);
	return ctx;
}

/* The DER of a PEM certificate file. */
static uint8_t *der_of(const char *name, uint32_t *ret_len)
{
	FILE *f = fopen(p(name), "r");
	X509 *x;
	uint8_t *der = NULL;
	int n;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	n = i2d_X509(x, &der);
	assert_true(n > 0);
	X509_free(x);
	*ret_len = (uint32_t)n;
	return der;
}

static void expect(SSL_CTX *ctx, const char *cert, int rc, const char *why_prefix)
{
	uint32_t len;
	uint8_t *der = der_of(cert, &len);
	char why[192] = "";

	assert_int_equal(tls_peer_recheck(ctx, true, der, len, why, sizeof(why)), rc);
	if (why_prefix && strncmp(why, why_prefix, strlen(why_prefix)))
		fail_msg("'%s' does not start with '%s'", why, why_prefix);
	assert_int_equal(ERR_peek_error(), 0);
	OPENSSL_free(der);
}

static void test_recheck(void **state)
{
	static const char *const empty[] = { "--allow-uri", "spiffe://example.org/client", "--crl",
					     NULL, NULL };
	static const char *const other_rule[] = { "--allow-uri", "spiffe://example.org/other",
						  NULL };
	const char *e[5], *r[5];
	char empty_crl[256], revoked_crl[256]; /* p()'s buffers are reused */
	struct run_config c1, c2, c3, c4;
	SSL_CTX *ok, *revoked, *rules, *untrusted;

	memcpy(e, empty, sizeof(e));
	memcpy(r, empty, sizeof(r));
	snprintf(empty_crl, sizeof(empty_crl), "%s", p("empty.crl"));
	snprintf(revoked_crl, sizeof(revoked_crl), "%s", p("revoked.crl"));
	e[3] = empty_crl;
	r[3] = revoked_crl;
	ok = server_ctx("ca.pem", e, &c1);
	revoked = server_ctx("ca.pem", r, &c2);
	rules = server_ctx("ca.pem", other_rule, &c3);
	untrusted = server_ctx("other-ca.pem", e + 0, &c4);
	expect(ok, "client.pem", 0, NULL);
	/* dates are not judged again: it was valid when presented */
	expect(ok, "expired-client.pem", 0, NULL);
	expect(revoked, "client.pem", -EKEYREVOKED, "certificate revoked");
	expect(rules, "client.pem", -EACCES, "identity no longer allowed");
	expect(untrusted, "client.pem", -EPERM, "certificate no longer trusted: ");
	{
		uint8_t junk[8] = { 0x30, 0x82, 0x10, 0x00, 1, 2, 3, 4 };
		char why[192];

		assert_int_equal(tls_peer_recheck(ok, true, junk, sizeof(junk), why, sizeof(why)),
				 -EINVAL);
	}
	SSL_CTX_free(ok);
	SSL_CTX_free(revoked);
	SSL_CTX_free(rules);
	SSL_CTX_free(untrusted);
	config_free(&c1);
	config_free(&c2);
	config_free(&c3);
	config_free(&c4);
}

/* PEM certificate file name as an X509. */
static X509 *x509_of(const char *name)
{
	FILE *f = fopen(p(name), "r");
	X509 *x;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

/* tls_peer_chain_der(ssl) is exactly the DER of certs a, then b (if any). */
static void expect_der(SSL *ssl, const char *a, const char *b)
{
	uint8_t *der = NULL, *da, *db = NULL;
	uint32_t len = 0, la, lb = 0;

	assert_int_equal(tls_peer_chain_der(ssl, &der, &len), 0);
	da = der_of(a, &la);
	if (b)
		db = der_of(b, &lb);
	assert_int_equal(len, la + lb);
	assert_memory_equal(der, da, la);
	if (b)
		assert_memory_equal(der + la, db, lb);
	free(der);
	OPENSSL_free(da);
	OPENSSL_free(db);
}

/*
 * The client's certificates, leaf first, with chain (NULL-ended) sent after the leaf: what
 * the server keeps (want_b: the second certificate kept, if any), and what the client keeps
 * of the server (its leaf and the CA, the chain ktlsd's server sends).
 */
/* A client presenting client.pem, with chain (NULL-ended) sent after it. */
static SSL_CTX *client_ctx(const char *const *chain)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_use_certificate_file(cctx, p("client.pem"), SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(cctx, p("client.key"), SSL_FILETYPE_PEM), 1);
	for (; chain && *chain; chain++) {
		X509 *x = x509_of(*chain);

		assert_int_equal(SSL_CTX_add1_chain_cert(cctx, x), 1);
		X509_free(x);
	}
	return cctx;
}

static void chain_der_check(const char *const *chain, const char *want_b)
{
	const char *const extra[] = { "--allow-all", NULL };
	struct run_config cfg;
	SSL_CTX *sctx = server_ctx("ca.pem", extra, &cfg);
	SSL_CTX *cctx = client_ctx(chain);
	SSL *s, *c;
	int sv[2];

	tu_pair(sctx, cctx, &s, &c, sv);
	tu_handshake(s, c);
	expect_der(s, "client.pem", want_b);
	/* A client's view of the chain starts with the leaf: kept once. */
	expect_der(c, "server.pem", "ca.pem");
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	config_free(&cfg);
}

/*
 * What a finished handshake keeps: the peer's certificates as DER, leaf first, the leaf
 * once, also where a client sends a copy of it along (another object, the same DER).
 */
static void test_chain_der(void **state)
{
	const char *const with_ca[] = { "ca.pem", NULL };
	const char *const with_leaf[] = { "client.pem", NULL };

	chain_der_check(NULL, NULL);
	chain_der_check(with_ca, "ca.pem");
	chain_der_check(with_leaf, NULL);
}

/*
 * A handshake of cctx against sctx offering sess (if any), the ticket read; check(s, arg),
 * if given, looks at the server's end before both send close_notify (a session ended
 * without one is dropped from the cache). Sets *reused; returns the client's session.
 */
static SSL_SESSION *offer(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess, bool *reused,
			  void (*check)(SSL *s, void *arg), void *arg)
{
	SSL_SESSION *next;
	SSL *s, *c;
	char b;
	int sv[2];

	tu_pair(sctx, cctx, &s, &c, sv);
	if (sess)
		assert_int_equal(SSL_set_session(c, sess), 1);
	tu_handshake(s, c);
	assert_int_equal(SSL_get_error(c, SSL_read(c, &b, 1)), SSL_ERROR_WANT_READ);
	*reused = SSL_session_reused(s);
	if (check)
		check(s, arg);
	next = SSL_get1_session(c);
	assert_true(SSL_shutdown(c) >= 0);
	assert_true(SSL_shutdown(s) >= 0);
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	return next;
}

/*
 * What the server keeps of the client is client.pem then ca.pem, as sent, and its session
 * holds no decoded chain; a reload to revoked (its CRL revokes client.pem) judges that
 * chain revoked.
 */
static void check_shed(SSL *s, void *revoked)
{
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(s);
	uint8_t *der;
	uint32_t len;
	char why[192];

	assert_non_null(SSL_get0_peer_certificate(s));
	expect_der(s, "client.pem", "ca.pem");
	assert_int_equal(chain ? sk_X509_num(chain) : 0, 0);
	assert_int_equal(tls_peer_chain_der(s, &der, &len), 0);
	assert_int_equal(tls_peer_recheck(revoked, true, der, len, why, sizeof(why)), -EKEYREVOKED);
	free(der);
}

/* One handshake, resuming sess if given, checked by check_shed; the next session. */
static SSL_SESSION *cached_once(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess, SSL_CTX *revoked)
{
	bool reused;
	SSL_SESSION *next = offer(sctx, cctx, sess, &reused, check_shed, revoked);

	assert_int_equal(reused, sess != NULL);
	assert_true(SSL_SESSION_is_resumable(next));
	return next;
}

/*
 * --resumption=cache: a cached session keeps the certificates sent after the client's leaf
 * as DER, not decoded (~5 KB each, for as long as the session is cached); a resumed
 * connection still gets the whole chain for reloads to judge, three resumptions deep, with
 * TLS 1.3 tickets and TLS 1.2 session IDs (where the cached session itself is resumed).
 */
static void test_cache_sheds_chain(void **state)
{
	const char *extra[] = { "--allow-all", "--resumption=cache", NULL };
	const char *rev[] = { "--allow-all", "--crl", NULL, NULL };
	const char *const with_ca[] = { "ca.pem", NULL };
	const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
	char crl[256];
	struct run_config cfg, rcfg;
	SSL_CTX *revoked;

	snprintf(crl, sizeof(crl), "%s", p("revoked.crl"));
	rev[2] = crl;
	revoked = server_ctx("ca.pem", rev, &rcfg);
	for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
		SSL_CTX *sctx = server_ctx("ca.pem", extra, &cfg);
		SSL_CTX *cctx = client_ctx(with_ca);
		SSL_SESSION *sess;

		assert_int_equal(SSL_CTX_set_max_proto_version(cctx, versions[v]), 1);
		sess = cached_once(sctx, cctx, NULL, revoked);
		for (int i = 0; i < 3; i++) {
			SSL_SESSION *next = cached_once(sctx, cctx, sess, revoked);

			SSL_SESSION_free(sess);
			sess = next;
		}
		SSL_SESSION_free(sess);
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
		config_free(&cfg);
	}
	SSL_CTX_free(revoked);
	config_free(&rcfg);
}

/*
 * --resumption=cache: a TLS 1.3 ticket resumes once; the cache keeps one session per
 * client, the latest. A TLS 1.2 session ID resumes again and again (the same session).
 */
static void test_cache_single_use(void **state)
{
	const char *const extra[] = { "--allow-all", "--resumption=cache", NULL };
	const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
	struct run_config cfg;

	for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
		SSL_CTX *sctx = server_ctx("ca.pem", extra, &cfg);
		SSL_CTX *cctx = client_ctx(NULL);
		bool tls13 = versions[v] == TLS1_3_VERSION, reused;
		SSL_SESSION *first, *second, *third;

		assert_int_equal(SSL_CTX_set_max_proto_version(cctx, versions[v]), 1);
		first = offer(sctx, cctx, NULL, &reused, NULL, NULL);
		assert_false(reused);
		assert_int_equal(SSL_CTX_sess_number(sctx), 1);
		second = offer(sctx, cctx, first, &reused, NULL, NULL);
		assert_true(reused);
		assert_int_equal(SSL_CTX_sess_number(sctx), 1);
		/* The first ticket again: spent under TLS 1.3, a full handshake. */
		third = offer(sctx, cctx, first, &reused, NULL, NULL);
		assert_int_equal(reused, !tls13);
		assert_int_equal(SSL_CTX_sess_number(sctx), tls13 ? 2 : 1);
		SSL_SESSION_free(first);
		SSL_SESSION_free(second);
		SSL_SESSION_free(third);
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
		config_free(&cfg);
	}
}

/* --crl: repeatable; a file that holds no CRL, or is missing, is refused with its name. */
static void test_crl_files(void **state)
{
	const char *two[] = { "--allow-all", "--crl", NULL, "--crl", NULL, NULL };
	const char *junk[] = { "--allow-all", "--crl", NULL, NULL };
	const char *missing[] = { "--allow-all", "--crl", NULL, NULL };
	char err[CONFIG_ERR_MAX] = "", want[CONFIG_ERR_MAX], a[256], b[256];
	struct run_config cfg;
	SSL_CTX *ctx = NULL;

	snprintf(a, sizeof(a), "%s", p("empty.crl"));
	snprintf(b, sizeof(b), "%s", p("revoked.crl"));
	two[2] = a;
	two[4] = b;
	SSL_CTX_free(server_ctx("ca.pem", two, &cfg));
	assert_int_equal(cfg.svc[0].n_crl, 2);
	config_free(&cfg);
	snprintf(a, sizeof(a), "%s", p("junk.crl"));
	junk[2] = a;
	assert_int_equal(server_cfg("ca.pem", junk, &cfg, err, sizeof(err)), 0);
	assert_int_equal(tls_ctx_build(&cfg.svc[0], false, &ctx, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "crl %s: no CRL in file (expected PEM X509 CRL)",
		 p("junk.crl"));
	assert_string_equal(err, want);
	assert_null(ctx);
	config_free(&cfg);
	snprintf(a, sizeof(a), "%s", p("nope.crl"));
	missing[2] = a;
	assert_int_equal(server_cfg("ca.pem", missing, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "--crl %s: No such file or directory", p("nope.crl"));
	assert_string_equal(err, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recheck),		  cmocka_unit_test(test_chain_der),
		cmocka_unit_test(test_cache_sheds_chain), cmocka_unit_test(test_cache_single_use),
		cmocka_unit_test(test_crl_files),
	};

	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}

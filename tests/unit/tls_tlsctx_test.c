// SPDX-License-Identifier: MIT
/*
 * tls_ctx_build() against real files from scripts/pki (made once into a temporary
 * directory): what a good service's SSL_CTX enforces, and the exact operator message and
 * -errno for each way the files can be wrong. Services are parsed by config_from_argv, as
 * ktlsd does, then built; a handshake between a server and a client context checks that the
 * identity policy really decides.
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
#include <openssl/ssl.h>

#include "config.h"
#include "pki_fixture.h"
#include "tls_test_util.h"
#include "tlsctx.h"

#define PASSWORD "correct horse"

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(p(name), "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int pki_setup(void **state)
{
	char cmd[512];

	(void)state;
	if (pki_make("tlsctx"))
		return -1;
	/* The server's key again, encrypted, and files holding the right and a wrong password. */
	write_file("pw", PASSWORD "\n");
	write_file("wrong-pw", "not it\n");
	write_file("empty-pw", "");
	write_file("no-ca.pem", "");
	write_file("garbage.pem", "this is not PEM\n");
	snprintf(cmd, sizeof(cmd),
		 "openssl pkey -in %s -aes256 -passout file:%s -out %s 2>/dev/null && "
		 "chmod 600 %s",
		 p("server.key"), p("pw"), p("server-enc.key"), p("server-enc.key"));
	return run(cmd) ? -1 : 0;
}

/*
 * A service of role with cert/key/cacert and the given extra options (NULL-terminated),
 * parsed as on the command line.
 */
static void svc(enum service_role role, const char *cert, const char *key, const char *cacert,
		const char *const *extra, struct run_config *ret_cfg)
{
	const char *argv[32] = { role == ROLE_SERVER ? "server" : "client",
				 "--listen",
				 "127.0.0.1:1",
				 "--target",
				 "127.0.0.1:2",
				 "--cert",
				 p(cert),
				 "--key",
				 p(key),
				 "--cacert",
				 p(cacert) };
	char err[CONFIG_ERR_MAX] = "";
	bool help;
	int argc = 11;

	for (; extra && *extra; extra++)
		argv[argc++] = *extra;
	argv[argc] = NULL;
	if (config_from_argv(role, argc, (char **)argv, ret_cfg, &help, err, sizeof(err)))
		fail_msg("config refused: %s", err);
	assert_false(help);
}

static const char *const allow_all[] = { "--allow-all", NULL };

/* Builds and expects failure rc with exactly the message want. */
static void expect_fail(const struct service_config *s, int rc, const char *want)
{
	SSL_CTX *ctx = (SSL_CTX *)0x1;
	char err[256] = "";

	assert_int_equal(tls_ctx_build(s, false, &ctx, err, sizeof(err)), rc);
	assert_ptr_equal(ctx, (SSL_CTX *)0x1); /* untouched */
	assert_string_equal(err, want);
	assert_int_equal(ERR_peek_error(), 0); /* the reason was taken off the queue */
}

/* The same for a message that ends in OpenSSL's words: "prefix: <its reason>". */
static void expect_fail_openssl(const struct service_config *s, int rc, const char *prefix)
{
	SSL_CTX *ctx = (SSL_CTX *)0x1;
	char err[256] = "";

	assert_int_equal(tls_ctx_build(s, false, &ctx, err, sizeof(err)), rc);
	assert_ptr_equal(ctx, (SSL_CTX *)0x1);
	if (strncmp(err, prefix, strlen(prefix)) || strlen(err) <= strlen(prefix) + 2)
		fail_msg("'%s' is not '%s: <reason>'", err, prefix);
	assert_int_equal(ERR_peek_error(), 0);
}

static SSL_CTX *expect_ok(const struct service_config *s, bool for_ktls)
{
	SSL_CTX *ctx = NULL;
	char err[256] = "";

	if (tls_ctx_build(s, for_ktls, &ctx, err, sizeof(err)))
		fail_msg("refused: %s", err);
	assert_non_null(ctx);
	return ctx;
}

static void test_server_good(void **state)
{
	struct run_config cfg;
	SSL_CTX *ctx;
	long opts;

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", allow_all, &cfg);
	ctx = expect_ok(&cfg.svc[0], false);
	/* A client certificate is required and verified, by the policy's callback. */
	assert_int_equal(SSL_CTX_get_verify_mode(ctx),
			 SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	assert_non_null(SSL_CTX_get_verify_callback(ctx));
	assert_int_equal(SSL_CTX_get_verify_depth(ctx), 8);
	assert_ptr_equal(SSL_CTX_get_app_data(ctx), cfg.svc[0].policy);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
	opts = (long)SSL_CTX_get_options(ctx);
	assert_true(opts & SSL_OP_NO_RENEGOTIATION);
	assert_true(opts & SSL_OP_NO_COMPRESSION);
	/* Plaintext wiping is set per connection once its handshake is done (test_cleanse). */
	assert_false(opts & SSL_OP_CLEANSE_PLAINTEXT);
	assert_non_null(SSL_CTX_get_info_callback(ctx));
	/* The CA's name is what the server asks clients for. */
	assert_int_equal(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(ctx)), 1);
	/* Resumption off by default on a server: nothing kept, nothing sent. */
	assert_true(opts & SSL_OP_NO_TICKET);
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
	assert_int_equal(SSL_CTX_get_num_tickets(ctx), 0);
	SSL_CTX_free(ctx);
	config_free(&cfg);
}

static void test_server_resumption(void **state)
{
	static const char *const tickets[] = { "--allow-all", "--resumption", "--ticket-lifetime",
					       "600", NULL };
	static const char *const cache[] = { "--allow-all", "--resumption=cache", "--session-cache",
					     "77", NULL };
	struct run_config cfg;
	SSL_CTX *ctx;

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", tickets, &cfg);
	ctx = expect_ok(&cfg.svc[0], false);
	assert_false(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
	assert_int_equal(SSL_CTX_get_num_tickets(ctx), 2);
	assert_int_equal(SSL_CTX_get_timeout(ctx), 600);
	SSL_CTX_free(ctx);
	config_free(&cfg);

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", cache, &cfg);
	ctx = expect_ok(&cfg.svc[0], false);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	/* Stored by ktlsd's new-session callback, once finished (tls_session_shed_chain). */
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx),
			 SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	assert_int_equal(SSL_CTX_sess_get_cache_size(ctx), 77);
	assert_non_null(SSL_CTX_sess_get_new_cb(ctx));
	SSL_CTX_free(ctx);
	config_free(&cfg);
}

static void test_client_good(void **state)
{
	static const char *const tls13[] = { "--min-tls", "1.3", NULL };
	struct run_config cfg;
	SSL_CTX *ctx;

	svc(ROLE_CLIENT, "client.pem", "client.key", "ca.pem", tls13, &cfg);
	ctx = expect_ok(&cfg.svc[0], false);
	/* The server is verified; without FAIL_IF_NO_PEER_CERT, which is a server's flag. */
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	assert_non_null(SSL_CTX_get_verify_callback(ctx));
	assert_ptr_equal(SSL_CTX_get_app_data(ctx), cfg.svc[0].policy);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	/* Resumption on by default on a client, into the worker's cache, not OpenSSL's. */
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx),
			 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	assert_non_null(SSL_CTX_sess_get_new_cb(ctx));
	SSL_CTX_free(ctx);
	config_free(&cfg);
}

static void test_for_ktls(void **state)
{
	struct run_config cfg;

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", allow_all, &cfg);
	SSL_CTX_free(expect_ok(&cfg.svc[0], true));
	config_free(&cfg);
}

static void test_key_mismatch(void **state)
{
	struct run_config cfg;
	char want[512];

	svc(ROLE_SERVER, "server.pem", "client.key", "ca.pem", allow_all, &cfg);
	snprintf(want, sizeof(want), "key %s does not match cert %s", p("client.key"),
		 p("server.pem"));
	expect_fail(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);
}

static void test_bad_cert(void **state)
{
	struct run_config cfg;
	char want[512];

	svc(ROLE_SERVER, "garbage.pem", "server.key", "ca.pem", allow_all, &cfg);
	snprintf(want, sizeof(want), "cert %s:", p("garbage.pem"));
	expect_fail_openssl(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);
}

static void test_ca_missing(void **state)
{
	struct run_config cfg;
	char want[512];

	/* The file was there when the configuration was read, and is gone when it is built. */
	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", allow_all, &cfg);
	free(cfg.svc[0].cacert);
	cfg.svc[0].cacert = strdup(p("gone.pem"));
	assert_non_null(cfg.svc[0].cacert);
	snprintf(want, sizeof(want), "cacert %s:", p("gone.pem"));
	expect_fail_openssl(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);

	/* A file with no certificate in it is no trust store. */
	svc(ROLE_SERVER, "server.pem", "server.key", "no-ca.pem", allow_all, &cfg);
	snprintf(want, sizeof(want), "cacert %s:", p("no-ca.pem"));
	expect_fail_openssl(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);
}

static void test_encrypted_key(void **state)
{
	static const char *const right[] = { "--allow-all", "--key-password-file", NULL, NULL };
	const char *argv[4];
	struct run_config cfg;
	char want[512];

	/* Never a prompt: without a password file the key is refused, saying why. */
	svc(ROLE_SERVER, "server.pem", "server-enc.key", "ca.pem", allow_all, &cfg);
	snprintf(want, sizeof(want), "key %s is encrypted: give --key-password-file",
		 p("server-enc.key"));
	expect_fail(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);

	memcpy(argv, right, sizeof(argv));
	argv[2] = p("pw");
	svc(ROLE_SERVER, "server.pem", "server-enc.key", "ca.pem", argv, &cfg);
	SSL_CTX_free(expect_ok(&cfg.svc[0], false));
	config_free(&cfg);

	argv[2] = p("wrong-pw");
	svc(ROLE_SERVER, "server.pem", "server-enc.key", "ca.pem", argv, &cfg);
	snprintf(want, sizeof(want), "key %s: cannot decrypt it with key-password-file %s",
		 p("server-enc.key"), p("wrong-pw"));
	expect_fail(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);

	argv[2] = p("empty-pw");
	svc(ROLE_SERVER, "server.pem", "server-enc.key", "ca.pem", argv, &cfg);
	snprintf(want, sizeof(want), "key-password-file %s: empty", p("empty-pw"));
	expect_fail(&cfg.svc[0], -EINVAL, want);
	config_free(&cfg);
}

/*
 * Both ends through their handshake; false as soon as either fails for good. The peers'
 * tls_peer records are where the verify callback writes what it decided.
 */
static bool handshake(SSL_CTX *sctx, SSL_CTX *cctx, struct tls_peer *sp, struct tls_peer *cp)
{
	bool sdone = false, cdone = false, failed = false;
	SSL *s, *c;
	int sv[2];

	tu_pair(sctx, cctx, &s, &c, sv);
	SSL_set_app_data(s, sp);
	SSL_set_app_data(c, cp);
	for (int i = 0; i < 50 && !failed && !(sdone && cdone); i++) {
		SSL *both[2] = { c, s };
		bool *done[2] = { &cdone, &sdone };

		for (int k = 0; k < 2 && !failed; k++) {
			int r;

			if (*done[k])
				continue;
			r = SSL_do_handshake(both[k]);
			if (r == 1)
				*done[k] = true;
			else if (tls_want(both[k], r) == TLS_WANT_FAILED)
				failed = true;
		}
	}
	ERR_clear_error();
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	return !failed && sdone && cdone;
}

static void test_policy_decides(void **state)
{
	static const char *const want_client[] = { "--allow-uri", "spiffe://example.org/client",
						   NULL };
	static const char *const want_other[] = { "--allow-uri", "spiffe://example.org/other",
						  NULL };
	struct run_config scfg, ccfg, dcfg;
	struct tls_peer sp = { 0 }, cp = { 0 };
	SSL_CTX *sctx, *cctx, *dctx;

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", want_client, &scfg);
	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", want_other, &dcfg);
	/* --target 127.0.0.1: the server must carry that IP SAN, which server.pem does. */
	svc(ROLE_CLIENT, "client.pem", "client.key", "ca.pem", NULL, &ccfg);
	sctx = expect_ok(&scfg.svc[0], false);
	dctx = expect_ok(&dcfg.svc[0], false);
	cctx = expect_ok(&ccfg.svc[0], false);

	assert_true(handshake(sctx, cctx, &sp, &cp));
	assert_string_equal(sp.id, "spiffe://example.org/client");
	assert_int_equal(sp.id_kind, POLICY_URI);
	assert_false(sp.denied);
	assert_non_null(cp.id); /* the client admitted the server by its IP SAN */
	assert_string_equal(cp.id, "127.0.0.1");
	assert_int_equal(cp.id_kind, POLICY_IP);
	tls_peer_clear(&sp);
	tls_peer_clear(&cp);

	/* Same chain, a policy that names someone else: refused, and said to be the policy. */
	memset(&sp, 0, sizeof(sp));
	memset(&cp, 0, sizeof(cp));
	assert_false(handshake(dctx, cctx, &sp, &cp));
	assert_true(sp.denied);
	assert_int_equal(sp.verdict, POLICY_DENY_NO_MATCH);
	assert_null(sp.id);
	assert_string_equal(sp.claimed_uri, "spiffe://example.org/client");
	tls_peer_clear(&sp);
	tls_peer_clear(&cp);

	SSL_CTX_free(sctx);
	SSL_CTX_free(dctx);
	SSL_CTX_free(cctx);
	config_free(&scfg);
	config_free(&dcfg);
	config_free(&ccfg);
}

/* The certificates a client receives from a server built with cacert. */
static int chain_seen(const char *cacert)
{
	struct run_config scfg, ccfg;
	SSL_CTX *sctx, *cctx;
	STACK_OF(X509) *chain = NULL;
	SSL *s, *c;
	int sv[2], n;

	svc(ROLE_SERVER, "server.pem", "server.key", cacert, allow_all, &scfg);
	svc(ROLE_CLIENT, "client.pem", "client.key", "ca.pem", NULL, &ccfg);
	sctx = expect_ok(&scfg.svc[0], false);
	cctx = expect_ok(&ccfg.svc[0], false);
	/* Built once: a NULL chain would have OpenSSL build one in every handshake. */
	assert_int_equal(SSL_CTX_get0_chain_certs(sctx, &chain), 1);
	assert_non_null(chain);
	/* Only what the server sends matters here: no verification either way. */
	SSL_CTX_set_verify(sctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	tu_pair(sctx, cctx, &s, &c, sv);
	SSL_set_app_data(s, NULL);
	tu_handshake(s, c);
	n = sk_X509_num(SSL_get_peer_cert_chain(c));
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	config_free(&scfg);
	config_free(&ccfg);
	return n;
}

/*
 * server.pem holds the leaf alone: the chain sent is what OpenSSL's per-handshake build
 * found in the trust store (leaf and CA), now built once; with a trust store that does
 * not hold the server's CA, the leaf goes alone, as before.
 */
static void test_chain_built_once(void **state)
{
	assert_int_equal(chain_seen("ca.pem"), 2);
	assert_int_equal(chain_seen("other-ca.pem"), 1);
}

/*
 * Every block OpenSSL frees is searched for a marker the client sends as application data:
 * OpenSSL decrypts records in place, so a record buffer released unwiped would hold it.
 */
static const char MARKER[] = "ktlsd application data marker: wipe me";
static size_t marker_frees;

#define HDR 16 /* room for the block's size ahead of it, alignment kept */

static void *t_malloc(size_t n, const char *file, int line)
{
	unsigned char *b = malloc(n + HDR);

	(void)file;
	(void)line;
	if (!b)
		return NULL;
	memcpy(b, &n, sizeof(n));
	return b + HDR;
}

static void t_free(void *ptr, const char *file, int line)
{
	unsigned char *b;
	size_t n;

	(void)file;
	(void)line;
	if (!ptr)
		return;
	b = (unsigned char *)ptr - HDR; /* not before the check: no offset on NULL (UBSan) */
	memcpy(&n, b, sizeof(n));
	if (memmem(ptr, n, MARKER, sizeof(MARKER) - 1))
		marker_frees++;
	free(b);
}

static void *t_realloc(void *ptr, size_t n, const char *file, int line)
{
	void *r = t_malloc(n, file, line);
	size_t old;

	if (r && ptr) {
		memcpy(&old, (unsigned char *)ptr - HDR, sizeof(old));
		memcpy(r, ptr, old < n ? old : n);
		t_free(ptr, file, line);
	}
	return r;
}

/*
 * The handshake of s and c; the side done first sends MARKER at once, so that it is on the
 * wire right behind that side's last handshake message while the other side still finishes
 * its handshake (and does not wipe yet). Returns the other side, which is to read it.
 */
static SSL *handshake_send_early(SSL *s, SSL *c)
{
	SSL *both[2] = { c, s };
	bool done[2] = { false, false };
	int first = -1;

	for (int i = 0; i < 50 && !(done[0] && done[1]); i++) {
		for (int k = 0; k < 2; k++) {
			tu_hs_step(both[k], &done[k]);
			if (!done[k] || first >= 0)
				continue;
			first = k;
			assert_false(done[!k]);
			assert_false(SSL_get_options(both[!k]) & SSL_OP_CLEANSE_PLAINTEXT);
			assert_int_equal(SSL_write(both[k], MARKER, sizeof(MARKER)),
					 sizeof(MARKER));
		}
	}
	assert_true(done[0] && done[1]);
	return both[!first];
}

/*
 * Nothing is wiped during the handshake (cheaper); the application data after it is, in
 * TLS 1.3 and in TLS 1.2 (version: the client's highest), also the first record, sent
 * while the receiver's handshake is still finishing.
 */
static void cleanse_check(int version)
{
	struct run_config scfg, ccfg;
	struct tls_peer sp = { 0 }, cp = { 0 };
	SSL_CTX *sctx, *cctx;
	char buf[sizeof(MARKER)];
	SSL *s, *c, *reader;
	int sv[2];

	svc(ROLE_SERVER, "server.pem", "server.key", "ca.pem", allow_all, &scfg);
	svc(ROLE_CLIENT, "client.pem", "client.key", "ca.pem", NULL, &ccfg);
	sctx = expect_ok(&scfg.svc[0], false);
	cctx = expect_ok(&ccfg.svc[0], false);
	tu_pair(sctx, cctx, &s, &c, sv);
	SSL_set_app_data(s, &sp);
	SSL_set_app_data(c, &cp);
	assert_int_equal(SSL_set_max_proto_version(c, version), 1);
	assert_false(SSL_get_options(s) & SSL_OP_CLEANSE_PLAINTEXT);
	assert_false(SSL_get_options(c) & SSL_OP_CLEANSE_PLAINTEXT);
	marker_frees = 0;
	reader = handshake_send_early(s, c);
	assert_int_equal(SSL_version(s), version);
	assert_true(SSL_get_options(s) & SSL_OP_CLEANSE_PLAINTEXT);
	assert_true(SSL_get_options(c) & SSL_OP_CLEANSE_PLAINTEXT);
	assert_int_equal(SSL_read(reader, buf, sizeof(buf)), sizeof(MARKER));
	assert_memory_equal(buf, MARKER, sizeof(MARKER));
	OPENSSL_cleanse(buf, sizeof(buf));
	SSL_free(s);
	SSL_free(c);
	assert_int_equal(marker_frees, 0);

	tls_peer_clear(&sp);
	tls_peer_clear(&cp);
	close(sv[0]);
	close(sv[1]);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	config_free(&scfg);
	config_free(&ccfg);
}

static void test_cleanse(void **state)
{
	cleanse_check(TLS1_3_VERSION);
	cleanse_check(TLS1_2_VERSION);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_good),    cmocka_unit_test(test_server_resumption),
		cmocka_unit_test(test_client_good),    cmocka_unit_test(test_for_ktls),
		cmocka_unit_test(test_key_mismatch),   cmocka_unit_test(test_bad_cert),
		cmocka_unit_test(test_ca_missing),     cmocka_unit_test(test_encrypted_key),
		cmocka_unit_test(test_policy_decides), cmocka_unit_test(test_chain_built_once),
		cmocka_unit_test(test_cleanse),
	};

	/* Before OpenSSL allocates anything: test_cleanse searches what it frees. */
	if (!CRYPTO_set_mem_functions(t_malloc, t_realloc, t_free))
		return 1;
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}

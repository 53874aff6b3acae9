// SPDX-License-Identifier: MIT
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

#include "config.h"

/* Any readable file stands in for cert/key/CA: parsing only checks readability. */
#define F "/etc/passwd"

static char path[64];

static const char *write_ini(const char *text)
{
	int fd;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/ktlsd-cfg-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static void expect_error(const char *text, int line, const char *needle)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX], want[96];

	if (config_from_file(write_ini(text), &cfg, err, sizeof(err)) != -EINVAL)
		fail_msg("accepted:\n%s", text);
	unlink(path);
	if (line)
		snprintf(want, sizeof(want), "%s:%d: ", path, line);
	else /* whole-file problems carry no line */
		snprintf(want, sizeof(want), "%s: ", path);
	if (!strstr(err, want) || !strstr(err, needle))
		fail_msg("error '%s' lacks '%s' or '%s'", err, want, needle);
}

static void test_two_services(void **state)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX] = "";
	const char *ini = "; comment\n"
			  "[global]\n"
			  "threads = 3\n"
			  "log-format = json\n"
			  "\n"
			  "[service a]\n"
			  "listen = 127.0.0.1:8443\n"
			  "target = unix:/run/a.sock\n"
			  "cert = " F "\nkey = " F "\ncacert = " F "\n"
			  "allow-uri = spiffe://example.org/a spiffe://example.org/b\n"
			  "allow-uri = spiffe://other.org/*\n"
			  "ktls = off\n"
			  "handshake-timeout = 500\n"
			  "\n"
			  "[service b]\n"
			  "listen = [::1]:9443\n"
			  "target = 127.0.0.1:80\n"
			  "cert = " F "\nkey = " F "\ncacert = " F "\n"
			  "allow-all = yes\n"
			  "min-tls = 1.3\n"
			  "max-conns = 10\n";

	assert_int_equal(config_from_file(write_ini(ini), &cfg, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(cfg.threads, 3);
	assert_int_equal(cfg.log_format, LOG_JSON);
	assert_int_equal(cfg.n_svc, 2);
	assert_string_equal(cfg.svc[0].name, "a");
	assert_int_equal(cfg.svc[0].line, 6);
	assert_int_equal(cfg.svc[0].ktls, KTLS_MODE_OFF);
	assert_int_equal(cfg.svc[0].handshake_timeout_ms, 500);
	assert_string_equal(cfg.svc[0].target, "unix:/run/a.sock");
	assert_false(policy_is_empty(cfg.svc[0].policy));
	assert_string_equal(cfg.svc[1].name, "b");
	assert_int_equal(cfg.svc[1].line, 17);
	assert_int_equal(cfg.svc[1].max_conns, 10);
	assert_int_equal(cfg.svc[1].min_tls, 0x0304);
	assert_int_equal(cfg.svc[1].ktls, KTLS_MODE_AUTO);
	assert_int_equal(cfg.svc[1].handshake_timeout_ms, 10000);
	config_free(&cfg);
}

#define SVC                         \
	"[service a]\n"             \
	"listen = 127.0.0.1:8443\n" \
	"target = 127.0.0.1:80\n"   \
	"cert = " F "\nkey = " F "\ncacert = " F "\n"

static void test_errors(void **state)
{
	expect_error(SVC "allow-all = yes\nno equals sign here\n", 8, "malformed line");
	expect_error(SVC "allow-all = yes\nallow-everything = 1\n", 8,
		     "unknown key 'allow-everything'");
	expect_error("[service a]\nlisten = 127.0.0.1\n", 2, "expected host:port");
	expect_error("[service a]\nlisten = unix:/x\n", 2, "only valid as a target");
	expect_error("[service a]\ntarget = [::1:80\n", 2, "[v6addr]:port");
	expect_error("[service a]\ncert = /nonexistent/c.pem\n", 2, "No such file");
	expect_error("[global]\nthreads = 1\n\n" SVC, 4, "no allow-uri");
	expect_error(SVC "allow-uri = spiffe://a/b*\n", 7, "spiffe://trust.domain/*");
	expect_error(SVC "allow-all = maybe\n", 7, "invalid value 'maybe'");
	expect_error(SVC "allow-all = yes\nktls = sometimes\n", 8, "ktls: invalid value");
	expect_error("[global]\nthreads = 0\n", 2, "threads: invalid value");
	expect_error("[global]\nlisten = 127.0.0.1:1\n", 2, "unknown key 'listen' in [global]");
	expect_error(SVC "allow-all = yes\n" SVC "allow-all = yes\n", 8, "defined twice");
	expect_error("[global]\nthreads = 1\n", 0, "no [service NAME]");
	/* The first error wins even if later lines are also wrong. */
	expect_error(SVC "bogus = 1\nalso bogus\n", 7, "unknown key 'bogus'");
	expect_error(SVC "also bogus\nbogus = 1\n", 7, "malformed line");
}

static void test_argv(void **state)
{
	char *argv[] = { "server",
			 "--listen",
			 "127.0.0.1:1",
			 "--target",
			 "127.0.0.1:2",
			 "--cert",
			 F,
			 "--key",
			 F,
			 "--cacert",
			 F,
			 "--allow-dns",
			 "a.example",
			 "--allow-cn",
			 "c",
			 "--threads",
			 "4",
			 "--ktls",
			 "require",
			 "--log-format",
			 "json",
			 NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX] = "";

	assert_int_equal(config_from_argv(ROLE_SERVER, 21, argv, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.n_svc, 1);
	assert_int_equal(cfg.threads, 4);
	assert_int_equal(cfg.svc[0].ktls, KTLS_MODE_REQUIRE);
	assert_int_equal(cfg.log_format, LOG_JSON);
	config_free(&cfg);

	/* Without any allow rule the server refuses to start. */
	assert_int_equal(config_from_argv(ROLE_SERVER, 11, argv, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--allow-all"));

	char *bad[] = { "server", "--listen", "127.0.0.1:1", "--threads", "x", NULL };

	assert_int_equal(config_from_argv(ROLE_SERVER, 5, bad, &cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--threads: invalid value 'x'");

	char *client_only[] = { "server", "--verify-uri", "spiffe://a/b", NULL };

	assert_int_equal(config_from_argv(ROLE_SERVER, 3, client_only, &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown option"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_services),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_argv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

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

/* The whole message: "FILE:LINE: " (or "FILE: " for line 0) and then exactly want. */
static void expect_exact(const char *text, int line, const char *want)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX], full[CONFIG_ERR_MAX + 96];

	if (config_from_file(write_ini(text), &cfg, err, sizeof(err)) != -EINVAL)
		fail_msg("accepted:\n%.400s", text);
	unlink(path);
	if (line)
		snprintf(full, sizeof(full), "%s:%d: %s", path, line, want);
	else
		snprintf(full, sizeof(full), "%s: %s", path, want);
	assert_string_equal(err, full);
}

static void expect_ok(const char *text, struct run_config *ret_cfg)
{
	char err[CONFIG_ERR_MAX] = "";

	if (config_from_file(write_ini(text), ret_cfg, err, sizeof(err)))
		fail_msg("refused: %s", err);
	unlink(path);
}

/* role's required options (target as given) followed by extra; NULL-terminated lists. */
static int parse_cli(enum service_role role, const char *target, const char *const *extra,
		     struct run_config *ret_cfg, char *err)
{
	const char *argv[64] = { role == ROLE_SERVER ? "server" : "client",
				 "--listen",
				 "127.0.0.1:1",
				 "--target",
				 target,
				 "--cert",
				 F,
				 "--key",
				 F,
				 "--cacert",
				 F };
	int argc = 11, rc;
	bool help;

	for (; extra && *extra; extra++) {
		assert_true(argc < 63);
		argv[argc++] = *extra;
	}
	argv[argc] = NULL;
	err[0] = '\0';
	rc = config_from_argv(role, argc, (char **)argv, ret_cfg, &help, err, CONFIG_ERR_MAX);
	assert_false(rc == 0 && help);
	return rc;
}

static void expect_cli_error(enum service_role role, const char *target, const char *const *extra,
			     const char *want)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	if (parse_cli(role, target, extra, &cfg, err) != -EINVAL)
		fail_msg("accepted %s (first extra '%s')", target, extra[0]);
	assert_string_equal(err, want);
}

/* Would the policy accept a server whose certificate has just this DNS SAN / URI SAN? */
static bool allows_dns(const struct policy *p, const char *name)
{
	struct peer_identity id = { .n_dns = 1 };

	id.dns[0] = (struct peer_name){ name, strlen(name) };
	return policy_allows(p, &id);
}

static bool allows_uri(const struct policy *p, const char *uri)
{
	struct peer_identity id = { .n_uri = 1 };

	id.uri[0] = (struct peer_name){ uri, strlen(uri) };
	return policy_allows(p, &id);
}

static bool allows_ip(const struct policy *p, const char *bytes, size_t len)
{
	struct peer_identity id = { .n_ip = 1 };

	id.ip[0] = (struct peer_name){ bytes, len };
	return policy_allows(p, &id);
}

static bool allows_cn(const struct policy *p, const char *cn)
{
	struct peer_identity id = { 0 };

	id.cn = (struct peer_name){ cn, strlen(cn) };
	return policy_allows(p, &id);
}

static bool allows_ou(const struct policy *p, const char *ou)
{
	struct peer_identity id = { .n_ou = 1 };

	id.ou[0] = (struct peer_name){ ou, strlen(ou) };
	return policy_allows(p, &id);
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
	bool help = true;

	assert_int_equal(config_from_argv(ROLE_SERVER, 21, argv, &cfg, &help, err, sizeof(err)), 0);
	assert_false(help);
	assert_int_equal(cfg.n_svc, 1);
	assert_int_equal(cfg.threads, 4);
	assert_int_equal(cfg.svc[0].ktls, KTLS_MODE_REQUIRE);
	assert_int_equal(cfg.log_format, LOG_JSON);
	config_free(&cfg);

	/* Without any allow rule the server refuses to start. */
	assert_int_equal(config_from_argv(ROLE_SERVER, 11, argv, &cfg, &help, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "--allow-all"));

	char *bad[] = { "server", "--listen", "127.0.0.1:1", "--threads", "x", NULL };

	assert_int_equal(config_from_argv(ROLE_SERVER, 5, bad, &cfg, &help, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "--threads: invalid value 'x'");

	char *client_only[] = { "server", "--verify-uri", "spiffe://a/b", NULL };

	assert_int_equal(
		config_from_argv(ROLE_SERVER, 3, client_only, &cfg, &help, err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "unknown option"));
}

/* --help is a success with nothing to run: an out-parameter, not a return value of its own. */
static void test_help(void **state)
{
	char *argv[] = { "server", "--listen", "127.0.0.1:1", "--help", "--threads", "x", NULL };
	char *client[] = { "client", "-h", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX] = "";
	bool help = false;

	memset(&cfg, 0xa5, sizeof(cfg));
	assert_int_equal(config_from_argv(ROLE_SERVER, 6, argv, &cfg, &help, err, sizeof(err)), 0);
	assert_true(help);
	/* Nothing to free, and freeing it is harmless. */
	assert_int_equal(cfg.n_svc, 0);
	assert_null(cfg.svc);
	config_free(&cfg);

	help = false;
	assert_int_equal(config_from_argv(ROLE_CLIENT, 2, client, &cfg, &help, err, sizeof(err)),
			 0);
	assert_true(help);

	/* A bad option before --help is still the error it was. */
	char *bad_first[] = { "server", "--threads", "x", "--help", NULL };

	help = true;
	assert_int_equal(config_from_argv(ROLE_SERVER, 4, bad_first, &cfg, &help, err, sizeof(err)),
			 -EINVAL);
	assert_true(help); /* untouched on failure */
	assert_string_equal(err, "--threads: invalid value 'x'");
}

static void test_client_identity(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const sni[] = { "--server-name", "api.example", NULL };
	static const char *const uri[] = { "--verify-uri", "spiffe://example.org/server", NULL };
	static const char *const any[] = { "--verify-any", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];
	const struct service_config *s;

	/* A name target: SNI and hostname verification against it, nothing else accepted. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "localhost:1", none, &cfg, err), 0);
	s = &cfg.svc[0];
	assert_string_equal(s->server_name, "localhost");
	assert_true(s->default_dns_rule);
	assert_true(allows_dns(s->policy, "LOCALHOST"));
	assert_false(allows_dns(s->policy, "other.example"));
	assert_false(allows_uri(s->policy, "spiffe://example.org/server"));
	config_free(&cfg);

	/* An explicit --server-name wins over the target's name and is what gets verified. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "localhost:1", sni, &cfg, err), 0);
	assert_string_equal(cfg.svc[0].server_name, "api.example");
	assert_true(allows_dns(cfg.svc[0].policy, "api.example"));
	assert_false(allows_dns(cfg.svc[0].policy, "localhost"));
	config_free(&cfg);

	/* An IP target names no certificate: --server-name supplies the name. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", sni, &cfg, err), 0);
	assert_string_equal(cfg.svc[0].server_name, "api.example");
	assert_true(cfg.svc[0].default_dns_rule);
	assert_true(allows_dns(cfg.svc[0].policy, "api.example"));
	config_free(&cfg);

	/* Explicit rules replace the default rule; the SNI still comes from the name. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "localhost:1", uri, &cfg, err), 0);
	assert_string_equal(cfg.svc[0].server_name, "localhost");
	assert_false(cfg.svc[0].default_dns_rule);
	assert_false(allows_dns(cfg.svc[0].policy, "localhost"));
	assert_true(allows_uri(cfg.svc[0].policy, "spiffe://example.org/server"));
	config_free(&cfg);

	assert_int_equal(parse_cli(ROLE_CLIENT, "localhost:1", any, &cfg, err), 0);
	assert_string_equal(cfg.svc[0].server_name, "localhost");
	assert_false(cfg.svc[0].default_dns_rule);
	config_free(&cfg);
}

/* IP and unix targets, wildcard names, and a server, which has no default rule. */
static void test_client_identity_ip(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const sni_org[] = { "--server-name", "api.example.org", NULL };
	static const char *const any[] = { "--verify-any", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	/* --verify-any with an IP target: no name to send, and none needed. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", any, &cfg, err), 0);
	assert_null(cfg.svc[0].server_name);
	assert_false(cfg.svc[0].default_dns_rule);
	config_free(&cfg);

	/* An IP target and nothing else: the server must carry that IP as an iPAddress SAN. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", none, &cfg, err), 0);
	assert_null(cfg.svc[0].server_name);
	assert_true(cfg.svc[0].default_ip_rule);
	assert_false(cfg.svc[0].default_dns_rule);
	assert_true(allows_ip(cfg.svc[0].policy, "\x7f\x00\x00\x01", 4));
	assert_false(allows_ip(cfg.svc[0].policy, "\x7f\x00\x00\x02", 4));
	assert_false(allows_dns(cfg.svc[0].policy, "127.0.0.1"));
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_CLIENT, "[::1]:1", none, &cfg, err), 0);
	assert_true(allows_ip(cfg.svc[0].policy, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16));
	config_free(&cfg);
	/* Verifying a server, RFC 6125 wildcard SANs count; the name rule is still one host. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "localhost:1", sni_org, &cfg, err), 0);
	assert_true(allows_dns(cfg.svc[0].policy, "*.example.org"));
	assert_false(allows_dns(cfg.svc[0].policy, "*.org"));
	config_free(&cfg);
	expect_cli_error(ROLE_CLIENT, "unix:/run/x.sock", none,
			 "no --verify-uri/--verify-dns rule and no --verify-any: the server's "
			 "identity would go unchecked (--target is a unix socket: give "
			 "--server-name, --verify-dns/--verify-uri, or --verify-any)");

	/* A server's target is its backend: no name defaults there. */
	expect_cli_error(ROLE_SERVER, "localhost:1", none,
			 "no --allow-uri/--allow-dns/--allow-cn/--allow-ou rule and no "
			 "--allow-all: refusing to start a server that admits nobody");
}

/* After "[service NAME]\ntarget = ...\n": the next key is on the section's line 8. */
#define CLIENT_KEYS_AT(port)            \
	"mode = client\n"               \
	"listen = 127.0.0.1:" port "\n" \
	"cert = " F "\nkey = " F "\ncacert = " F "\n"
#define CLIENT_KEYS CLIENT_KEYS_AT("8443")

static void test_client_identity_file(void **state)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX] = "";
	const char *ini = "[global]\nthreads = 1\n"
			  "[service c]\ntarget = localhost:9443\n" CLIENT_KEYS "\n"
			  "[service d]\ntarget = localhost:9443\n" CLIENT_KEYS_AT(
				  "8444") "verify-dns = b.example\n";

	assert_int_equal(config_from_file(write_ini(ini), &cfg, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(cfg.svc[0].role, ROLE_CLIENT);
	assert_string_equal(cfg.svc[0].server_name, "localhost");
	assert_true(cfg.svc[0].default_dns_rule);
	assert_true(allows_dns(cfg.svc[0].policy, "localhost"));
	assert_string_equal(cfg.svc[1].server_name, "localhost");
	assert_false(cfg.svc[1].default_dns_rule);
	assert_false(allows_dns(cfg.svc[1].policy, "localhost"));
	assert_true(allows_dns(cfg.svc[1].policy, "b.example"));
	config_free(&cfg);

	/* The error names the service's header line and spells keys as the file does. */
	expect_error("[global]\nthreads = 1\n[service c]\ntarget = unix:/run/x.sock\n" CLIENT_KEYS,
		     3,
		     "[service c]: no verify-uri/verify-dns rule and no verify-any: the server's "
		     "identity would go unchecked (target is a unix socket: give server-name, "
		     "verify-dns/verify-uri, or verify-any)");
}

static void test_resumption_cli(void **state)
{
	static const char *const any[] = { "--verify-any", NULL };
	static const char *const all[] = { "--allow-all", NULL };
	static const char *const srv_tk[] = { "--allow-all", "--resumption=tickets", NULL };
	static const char *const sc_srv[] = { "--allow-all", "--resumption=cache",
					      "--session-cache", "8", NULL };
	static const char *const srv_bad[] = { "--allow-all", "--resumption=stateful", NULL };
	static const char *const sc_srv0[] = { "--allow-all", "--session-cache", "0", NULL };
	static const char *const cli_cache[] = { "--verify-any", "--resumption=cache", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	/* Defaults: a client resumes with up to 64 tickets; a server issues none. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", any, &cfg, err), 0);
	assert_true(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].session_cache, 64);
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", all, &cfg, err), 0);
	assert_false(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].ticket_lifetime_s, 3600);
	assert_int_equal(cfg.svc[0].session_cache, 20000); /* a server's own default */
	config_free(&cfg);

	/* Server modes: tickets (the default of a bare --resumption) or a session cache. */
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", srv_tk, &cfg, err), 0);
	assert_true(cfg.svc[0].resumption);
	assert_false(cfg.svc[0].resumption_cache);
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", sc_srv, &cfg, err), 0);
	assert_true(cfg.svc[0].resumption);
	assert_true(cfg.svc[0].resumption_cache);
	assert_int_equal(cfg.svc[0].session_cache, 8);
	config_free(&cfg);
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", srv_bad,
			 "--resumption: invalid value 'stateful'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", sc_srv0, "--session-cache: invalid value '0'");
	/* A client has no mode: it keeps whatever tickets it is given. */
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", cli_cache,
			 "unknown option or missing value: '--resumption=cache'");
}

/* Ticket lifetimes and cache sizes, --resumption / --no-resumption, keys of one role. */
static void test_resumption_cli_values(void **state)
{
	static const char *const srv_on[] = { "--allow-all", "--resumption", "--ticket-lifetime",
					      "604800", NULL };
	static const char *const cli_off[] = { "--verify-any", "--session-cache", "0",
					       "--no-resumption", NULL };
	static const char *const cli_on[] = {
		"--verify-any", "--no-resumption", "--resumption", "--session-cache", "4096", NULL,
	};
	static const char *const lt0[] = { "--allow-all", "--ticket-lifetime", "0", NULL };
	static const char *const lt_big[] = { "--allow-all", "--ticket-lifetime", "604801", NULL };
	static const char *const lt_neg[] = { "--allow-all", "--ticket-lifetime", "-5", NULL };
	static const char *const sc_big[] = { "--verify-any", "--session-cache", "4097", NULL };
	static const char *const sc_x[] = { "--verify-any", "--session-cache", "64k", NULL };
	static const char *const lt_cli[] = { "--verify-any", "--ticket-lifetime", "60", NULL };
	static const char *const res_arg[] = { "--verify-any", "--resumption=no", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", srv_on, &cfg, err), 0);
	assert_true(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].ticket_lifetime_s, 604800);
	config_free(&cfg);

	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", cli_off, &cfg, err), 0);
	assert_false(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].session_cache, 0);
	config_free(&cfg);

	/* The last of --resumption / --no-resumption wins. */
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", cli_on, &cfg, err), 0);
	assert_true(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].session_cache, 4096);
	config_free(&cfg);

	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", lt0, "--ticket-lifetime: invalid value '0'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", lt_big,
			 "--ticket-lifetime: invalid value '604801'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", lt_neg,
			 "--ticket-lifetime: invalid value '-5'");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", sc_big,
			 "--session-cache: invalid value '4097'");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", sc_x, "--session-cache: invalid value '64k'");
	/* Each of these keys belongs to one role only. */
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", lt_cli,
			 "unknown option or missing value: '--ticket-lifetime'");
	/* The flags take no value on the command line (a file says resumption = no). */
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", res_arg,
			 "unknown option or missing value: '--resumption=no'");
}

static void test_resumption_file(void **state)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX] = "";
	/* Every section starts as a server until "mode = client": the client default must
	 * still come out as yes. */
	const char *ini =
		SVC "allow-all = yes\n"
		    "ticket-lifetime = 60\n"
		    "resumption = yes\n"
		    "[service c]\n"
		    "target = 127.0.0.1:80\n" CLIENT_KEYS_AT(
			    "8445") "verify-any = yes\n"
				    "session-cache = 8\n"
				    "[service d]\n"
				    "target = 127.0.0.1:80\n" CLIENT_KEYS_AT(
					    "8446") "verify-any = yes\n"
						    "resumption = off\n"
						    "[service s]\n"
						    "listen = 127.0.0.1:8444\n"
						    "target = 127.0.0.1:80\n"
						    "cert = " F "\nkey = " F "\ncacert = " F "\n"
						    "allow-all = yes\n";

	assert_int_equal(config_from_file(write_ini(ini), &cfg, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(cfg.n_svc, 4);
	assert_true(cfg.svc[0].resumption);
	assert_int_equal(cfg.svc[0].ticket_lifetime_s, 60);
	assert_true(cfg.svc[1].resumption);
	assert_int_equal(cfg.svc[1].session_cache, 8);
	assert_false(cfg.svc[2].resumption);
	assert_int_equal(cfg.svc[2].session_cache, 64);
	assert_false(cfg.svc[3].resumption);
	assert_int_equal(cfg.svc[3].ticket_lifetime_s, 3600);
	config_free(&cfg);

	expect_error(SVC "allow-all = yes\nresumption = maybe\n", 8,
		     "resumption: invalid value 'maybe'");
	expect_error(SVC "allow-all = yes\nticket-lifetime = 604801\n", 8,
		     "ticket-lifetime: invalid value '604801'");
	expect_error("[service c]\ntarget = 127.0.0.1:80\n" CLIENT_KEYS "session-cache = -1\n", 8,
		     "session-cache: invalid value '-1'");
	expect_error(
		"[service c]\ntarget = 127.0.0.1:80\n" CLIENT_KEYS "ticket-lifetime = 60\n", 8,
		"key 'ticket-lifetime' is for mode = server, but [service c] has mode = client");
	expect_error(SVC "allow-all = yes\nresumption = cache\nsession-cache = 0\n", 9,
		     "session-cache: invalid value '0'");
	expect_error("[service c]\ntarget = 127.0.0.1:80\n" CLIENT_KEYS "resumption = cache\n", 8,
		     "resumption: invalid value 'cache'");
}

/* A line of n bytes: prefix, then fill up to n, then suffix (included in n). */
static char *line_of(const char *prefix, char fill, size_t n, const char *suffix)
{
	size_t p = strlen(prefix), s = strlen(suffix);
	char *l = malloc(n + 2);

	assert_non_null(l);
	assert_true(n >= p + s);
	memcpy(l, prefix, p);
	memset(l + p, fill, n - p - s);
	memcpy(l + n - s, suffix, s);
	l[n] = '\n';
	l[n + 1] = '\0';
	return l;
}

static char *concat(const char *a, const char *b)
{
	char *r = malloc(strlen(a) + strlen(b) + 1);

	assert_non_null(r);
	strcpy(r, a);
	strcat(r, b);
	return r;
}

/*
 * inih cut lines at 199 bytes and parsed the rest as a line of its own: an allow-uri value
 * whose 200th byte started "allow-all=yes" made the service admit everyone. Lines are now
 * read whole; past 64 KiB they are refused, never cut.
 */
static void test_long_lines(void **state)
{
	struct run_config cfg;
	char *l, *ini;
	char want[128];

	/*
	 * The smuggle: the line is one allow-uri value, never a key. As a value it is no
	 * SPIFFE ID ('=' and ' ' are not path characters), so the file is refused outright.
	 */
	l = line_of("allow-uri = spiffe://example.org/", 'a', 199 + 13, "allow-all=yes");
	assert_memory_equal(l + 199, "allow-all=yes", 13);
	ini = concat(SVC, l);
	expect_error(ini, 7, "allow-uri 'spiffe://example.org/aaaa");
	free(ini);
	free(l);
	l = line_of("allow-uri = spiffe://example.org/", 'a', 199 + 15, "allow-all = yes");
	ini = concat(SVC, l);
	expect_error(ini, 7, "allow-uri '='");
	free(ini);
	free(l);
	/* Where the tail is a valid ID it is that: an exact URI rule, not allow-all. */
	l = line_of("allow-uri = spiffe://example.org/", 'a', 199 + 9, "allow-all");
	ini = concat(SVC, l);
	expect_ok(ini, &cfg);
	assert_false(allows_uri(cfg.svc[0].policy, "spiffe://example.org/other"));
	l[strlen(l) - 1] = '\0';
	assert_true(allows_uri(cfg.svc[0].policy, l + strlen("allow-uri = ")));
	config_free(&cfg);
	free(ini);
	free(l);

	/* A long list of rules is just a long line. */
	l = line_of("allow-uri =", ' ', 3000, " spiffe://example.org/last");
	ini = concat(SVC, l);
	expect_ok(ini, &cfg);
	assert_true(allows_uri(cfg.svc[0].policy, "spiffe://example.org/last"));
	config_free(&cfg);
	free(ini);
	free(l);

	/* 65536 bytes is the most a line may have; the next byte is an error with its line. */
	l = line_of("; ", 'x', 65536, "");
	ini = concat(l, SVC "allow-all = yes\n");
	expect_ok(ini, &cfg);
	config_free(&cfg);
	free(ini);
	free(l);
	l = line_of("allow-uri = spiffe://example.org/", 'a', 65537, "");
	ini = concat(SVC, l);
	snprintf(want, sizeof(want), "line too long (more than 65536 bytes)");
	expect_exact(ini, 7, want);
	free(ini);
	free(l);
}

static void test_syntax(void **state)
{
	static const char nul[] = SVC "allow-all = yes\0\n";
	struct run_config cfg;
	int fd;
	char err[CONFIG_ERR_MAX], want[128];

	expect_exact(SVC "allow-all = yes\n[service b\n", 8,
		     "malformed line (expected 'key = value', '[global]' or '[service NAME]')");
	expect_exact(SVC "allow-all = yes\n[service b] x\n", 8,
		     "malformed line (expected 'key = value', '[global]' or '[service NAME]')");
	expect_exact(SVC "allow-all = yes\n = yes\n", 8,
		     "malformed line (expected 'key = value', '[global]' or '[service NAME]')");
	expect_exact("allow-all = yes\n", 1, "key 'allow-all' outside any section");
	expect_exact("[service "
		     "a123456789a123456789a123456789a123456789a123456789a123456789abcd]\n",
		     1, "service name too long (at most 63 bytes)");
	/* An empty value is not yes: on the command line a bare flag is, in a file never. */
	expect_exact(SVC "allow-all =\n", 7, "allow-all: invalid value ''");
	/* Comments, indentation, the ':' separator and a BOM (inih's grammar, but indenting never continues a value). */
	expect_ok("\xEF\xBB\xBF; comment\n"
		  "[service a] ; trailing comment\n"
		  "  listen = 127.0.0.1:8443\n"
		  "\ttarget: 127.0.0.1:80 ; the backend\n"
		  "cert = " F "\nkey = " F "\ncacert = " F "\n"
		  "# another comment\n"
		  "    allow-uri = urn:example:a;b\n",
		  &cfg);
	assert_true(allows_uri(cfg.svc[0].policy, "urn:example:a;b"));
	assert_string_equal(cfg.svc[0].target, "127.0.0.1:80");
	config_free(&cfg);

	/* A NUL byte would hide the rest of its line. */
	snprintf(path, sizeof(path), "/tmp/ktlsd-cfg-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, nul, sizeof(nul) - 1), sizeof(nul) - 1);
	close(fd);
	assert_int_equal(config_from_file(path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:7: NUL byte in line", path);
	unlink(path);
	assert_string_equal(err, want);
}

/*
 * mode applies to the whole section wherever it stands. Before, "allow-all = yes" above
 * "mode = client" was taken as the server key and the client then accepted any server.
 */
static void test_mode_order(void **state)
{
	struct run_config cfg;

	expect_exact("[service c]\nallow-all = yes\ntarget = 127.0.0.1:80\n" CLIENT_KEYS
		     "verify-dns = a.example\n",
		     2, "key 'allow-all' is for mode = server, but [service c] has mode = client");
	expect_exact("[service c]\nallow-uri = spiffe://example.org/x\ntarget = "
		     "127.0.0.1:80\n" CLIENT_KEYS "verify-dns = a.example\n",
		     2, "key 'allow-uri' is for mode = server, but [service c] has mode = client");
	expect_exact(SVC "allow-all = yes\nmax-handshakes-per-second = 10000001\n", 8,
		     "max-handshakes-per-second: invalid value '10000001'");
	expect_exact(SVC "verify-any = yes\n", 7,
		     "key 'verify-any' is for mode = client, but [service a] has mode = server");
	expect_exact(SVC "max-handshakes-per-source = 3\nmode = client\nverify-any = yes\n", 7,
		     "key 'max-handshakes-per-source' is for mode = server, but [service a] has "
		     "mode = client");

	/* Client keys above the mode line are client keys. */
	expect_ok("[service c]\nverify-dns = b.example\nconnect-timeout = 5\nsession-cache = 4096\n"
		  "target = 127.0.0.1:80\n" CLIENT_KEYS,
		  &cfg);
	assert_int_equal(cfg.svc[0].role, ROLE_CLIENT);
	assert_int_equal(cfg.svc[0].connect_timeout_ms, 5);
	assert_int_equal(cfg.svc[0].session_cache, 4096);
	assert_true(allows_dns(cfg.svc[0].policy, "b.example"));
	assert_false(allows_dns(cfg.svc[0].policy, "c.example"));
	config_free(&cfg);

	expect_exact(SVC "mode = client\nverify-any = yes\nmode = server\n", 9,
		     "key 'mode' given twice (first on line 7)");
	expect_exact(SVC "mode = sidecar\n", 7, "mode: expected server or client, got 'sidecar'");
	/* Which of two values was meant cannot be told: neither wins. */
	expect_exact(SVC "allow-all = yes\nlisten = 127.0.0.1:9443\n", 8,
		     "key 'listen' given twice (first on line 2)");
	expect_exact("[global]\nthreads = 2\nthreads = 3\n" SVC "allow-all = yes\n", 3,
		     "key 'threads' given twice (first on line 2)");
}

#define SVC_ON(name, listen)                                               \
	"[service " name "]\nlisten = " listen "\ntarget = 127.0.0.1:80\n" \
	"cert = " F "\nkey = " F "\ncacert = " F "\nallow-all = yes\n"

/* Two services on one address would have split its connections (SO_REUSEPORT). */
static void test_listen_overlap(void **state)
{
	struct run_config cfg;

	expect_exact(SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "127.0.0.1:8443"), 8,
		     "[service b]: listen 127.0.0.1:8443 overlaps listen 127.0.0.1:8443 of "
		     "[service a] (line 1): two services cannot share an address");
	expect_exact(SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "127.0.0.1:9443")
			     SVC_ON("c", "0.0.0.0:8443"),
		     15,
		     "[service c]: listen 0.0.0.0:8443 overlaps listen 127.0.0.1:8443 of "
		     "[service a] (line 1): two services cannot share an address");
	expect_exact(SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "[::]:8443"), 8,
		     "[service b]: listen [::]:8443 overlaps listen 127.0.0.1:8443 of "
		     "[service a] (line 1): two services cannot share an address");
	expect_exact(
		SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "[::ffff:127.0.0.1]:8443"), 8,
		"[service b]: listen [::ffff:127.0.0.1]:8443 overlaps listen 127.0.0.1:8443 of "
		"[service a] (line 1): two services cannot share an address");
	expect_exact(SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "127.1:8443"), 8,
		     "[service b]: listen 127.1:8443 overlaps listen 127.0.0.1:8443 of "
		     "[service a] (line 1): two services cannot share an address");
	/* Other port, or another address of the same family. */
	expect_ok(SVC_ON("a", "127.0.0.1:8443") SVC_ON("b", "127.0.0.1:8444")
			  SVC_ON("c", "127.0.0.2:8443") SVC_ON("d", "[::1]:8443"),
		  &cfg);
	assert_int_equal(cfg.n_svc, 4);
	config_free(&cfg);
}

static void test_new_keys_cli(void **state)
{
	static const char *const all[] = { "--allow-all", NULL };
	static const char *const any[] = { "--verify-any", NULL };
	static const char *const srv[] = { "--allow-all",
					   "--max-handshakes",
					   "10000000",
					   "--max-handshakes-per-source",
					   "0",
					   "--max-handshakes-per-source",
					   "10000000",
					   "--max-handshakes-per-second",
					   "10000000",
					   "--idle-timeout",
					   "2592000",
					   "--key-password-file",
					   F,
					   "--allow-core-dumps",
					   NULL };
	static const char *const cli[] = { "--verify-any",
					   "--max-handshakes",
					   "1",
					   "--max-handshakes-per-second",
					   "5",
					   "--idle-timeout",
					   "0",
					   "--key-password-file",
					   F,
					   NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	/* Defaults. */
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", all, &cfg, err), 0);
	assert_int_equal(cfg.svc[0].max_handshakes, 0);
	assert_int_equal(cfg.svc[0].max_handshakes_per_source, 0);
	assert_int_equal(cfg.svc[0].max_handshakes_per_second, 0); /* off */
	assert_int_equal(cfg.svc[0].idle_timeout_s, 3600);
	assert_null(cfg.svc[0].key_password_file);
	assert_false(cfg.allow_core_dumps);
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", any, &cfg, err), 0);
	assert_int_equal(cfg.svc[0].idle_timeout_s, 3600);
	config_free(&cfg);

	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", srv, &cfg, err), 0);
	assert_int_equal(cfg.svc[0].max_handshakes, 10000000);
	assert_int_equal(cfg.svc[0].max_handshakes_per_source, 10000000);
	assert_int_equal(cfg.svc[0].max_handshakes_per_second, 10000000);
	assert_int_equal(cfg.svc[0].idle_timeout_s, 2592000);
	assert_string_equal(cfg.svc[0].key_password_file, F);
	assert_true(cfg.allow_core_dumps);
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", cli, &cfg, err), 0);
	assert_int_equal(cfg.svc[0].max_handshakes, 1);
	assert_int_equal(cfg.svc[0].max_handshakes_per_second, 5); /* client mode too */
	assert_int_equal(cfg.svc[0].idle_timeout_s, 0);
	assert_string_equal(cfg.svc[0].key_password_file, F);
	config_free(&cfg);
}

/* Values out of range, unreadable files, and keys of the other role. */
static void test_new_keys_cli_refused(void **state)
{
	static const char *const mh0[] = { "--allow-all", "--max-handshakes", "0", NULL };
	static const char *const mh_big[] = { "--allow-all", "--max-handshakes", "10000001", NULL };
	static const char *const mps_big[] = { "--allow-all", "--max-handshakes-per-source",
					       "10000001", NULL };
	static const char *const mps_neg[] = { "--allow-all", "--max-handshakes-per-source", "-1",
					       NULL };
	static const char *const mhs_neg[] = { "--allow-all", "--max-handshakes-per-second", "-1",
					       NULL };
	static const char *const mhs_x[] = { "--verify-any", "--max-handshakes-per-second", "1k",
					     NULL };
	static const char *const idle_big[] = { "--allow-all", "--idle-timeout", "2592001", NULL };
	static const char *const idle_x[] = { "--verify-any", "--idle-timeout", "1h", NULL };
	static const char *const pw_none[] = { "--allow-all", "--key-password-file",
					       "/nonexistent/pw", NULL };
	static const char *const pw_empty[] = { "--verify-any", "--key-password-file", "", NULL };
	static const char *const mps_cli[] = { "--verify-any", "--max-handshakes-per-source", "3",
					       NULL };
	static const char *const core_arg[] = { "--allow-all", "--allow-core-dumps=no", NULL };

	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", mh0, "--max-handshakes: invalid value '0'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", mh_big,
			 "--max-handshakes: invalid value '10000001'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", mps_big,
			 "--max-handshakes-per-source: invalid value '10000001'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", mps_neg,
			 "--max-handshakes-per-source: invalid value '-1'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", mhs_neg,
			 "--max-handshakes-per-second: invalid value '-1'");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", mhs_x,
			 "--max-handshakes-per-second: invalid value '1k'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", idle_big,
			 "--idle-timeout: invalid value '2592001'");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", idle_x, "--idle-timeout: invalid value '1h'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", pw_none,
			 "--key-password-file /nonexistent/pw: No such file or directory");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", pw_empty,
			 "--key-password-file: empty file name");
	expect_cli_error(ROLE_CLIENT, "127.0.0.1:1", mps_cli,
			 "unknown option or missing value: '--max-handshakes-per-source'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", core_arg,
			 "unknown option or missing value: '--allow-core-dumps=no'");
}

static void test_new_keys_file(void **state)
{
	struct run_config cfg;

	expect_ok("[global]\nallow-core-dumps = yes\n" SVC "allow-all = yes\n"
		  "max-handshakes = 100\nmax-handshakes-per-source = 10\nidle-timeout = 60\n"
		  "max-handshakes-per-second = 300\n"
		  "key-password-file = " F "\n"
		  "[service c]\ntarget = 127.0.0.1:80\n" CLIENT_KEYS_AT(
			  "8444") "verify-any = yes\n"
				  "max-handshakes = 7\nidle-timeout = 0\nkey-password-file = " F
				  "\n",
		  &cfg);
	assert_true(cfg.allow_core_dumps);
	assert_int_equal(cfg.svc[0].max_handshakes, 100);
	assert_int_equal(cfg.svc[0].max_handshakes_per_source, 10);
	assert_int_equal(cfg.svc[0].max_handshakes_per_second, 300);
	assert_int_equal(cfg.svc[0].idle_timeout_s, 60);
	assert_string_equal(cfg.svc[0].key_password_file, F);
	assert_int_equal(cfg.svc[1].max_handshakes, 7);
	assert_int_equal(cfg.svc[1].idle_timeout_s, 0);
	assert_string_equal(cfg.svc[1].key_password_file, F);
	config_free(&cfg);
	expect_ok("[global]\nallow-core-dumps = no\n" SVC "allow-all = yes\n", &cfg);
	assert_false(cfg.allow_core_dumps);
	config_free(&cfg);

	expect_exact("[global]\nallow-core-dumps = maybe\n", 2,
		     "allow-core-dumps: invalid value 'maybe'");
	expect_exact(SVC "allow-all = yes\nallow-core-dumps = yes\n", 8,
		     "unknown key 'allow-core-dumps' in [service a]");
	expect_exact(SVC "allow-all = yes\nmax-handshakes = 0\n", 8,
		     "max-handshakes: invalid value '0'");
	expect_exact(SVC "allow-all = yes\nidle-timeout = 2592001\n", 8,
		     "idle-timeout: invalid value '2592001'");
	expect_exact(SVC "allow-all = yes\nkey-password-file = /nonexistent/pw\n", 8,
		     "key-password-file /nonexistent/pw: No such file or directory");
	expect_exact(
		"[global]\nlisten = 127.0.0.1:1\n", 2,
		"unknown key 'listen' in [global] (known: threads, log-format, drain-timeout, "
		"allow-core-dumps, handshake-thread, admin, admin-allow-remote, user, landlock, "
		"seccomp)");
	/* handshake-thread: a [global] yes/no, and the flag. */
	expect_ok("[global]\nhandshake-thread = yes\n" SVC "allow-all = yes\n", &cfg);
	assert_true(cfg.handshake_thread);
	config_free(&cfg);
	expect_ok(SVC "allow-all = yes\n", &cfg);
	assert_false(cfg.handshake_thread); /* off by default */
	config_free(&cfg);
	expect_exact("[global]\nhandshake-thread = soon\n", 2,
		     "handshake-thread: invalid value 'soon'");
}

/*
 * A CN or OU may contain spaces and commas: each key is one name. Split, "allow-cn =
 * Payments Service" admitted any certificate with CN=Service (an outside review's find).
 */
static void test_cn_ou_one_name(void **state)
{
	static const char *const cli[] = { "--allow-cn", "Payments Service", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	expect_ok(SVC "allow-cn = Payments Service\nallow-ou = Smith, John\n", &cfg);
	assert_true(allows_cn(cfg.svc[0].policy, "Payments Service"));
	assert_false(allows_cn(cfg.svc[0].policy, "Service"));
	assert_false(allows_cn(cfg.svc[0].policy, "Payments"));
	assert_true(allows_ou(cfg.svc[0].policy, "Smith, John"));
	assert_false(allows_ou(cfg.svc[0].policy, "John"));
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", cli, &cfg, err), 0);
	assert_false(allows_cn(cfg.svc[0].policy, "Service"));
	assert_true(allows_cn(cfg.svc[0].policy, "Payments Service"));
	config_free(&cfg);
	/* URI and DNS rules still take several per key: they cannot contain a blank. */
	expect_ok(SVC "allow-dns = a.example.org, b.example.org\n", &cfg);
	assert_true(allows_dns(cfg.svc[0].policy, "b.example.org"));
	config_free(&cfg);
	/* A control byte in a rule is never a name. */
	expect_exact(SVC "allow-cn = foo\rallow-all = yes\n", 7,
		     "allow-cn: control character in the value");
}

static void test_global_once(void **state)
{
	expect_exact("[global]\nthreads = 2\n[global]\nthreads = 3\n" SVC "allow-all = yes\n", 3,
		     "[global] given twice");
}

/* OCSP keys and PKCS#11 key URIs (docs/ocsp-pkcs11.md). */
static void test_ocsp_pkcs11_keys(void **state)
{
	static const char *const ok[] = { "--allow-all",
					  "--ocsp-staple",
					  F,
					  "--ocsp-url",
					  "http://127.0.0.1:8080/a/b?x=1",
					  "--ocsp-timeout-ms",
					  "500",
					  "--ocsp-fail",
					  "closed",
					  "--key",
					  "pkcs11:token=t;object=k?pin-value=1",
					  NULL };
	static const char *const https[] = { "--allow-all", "--ocsp-url", "https://127.0.0.1/",
					     NULL };
	static const char *const user[] = { "--allow-all", "--ocsp-url", "http://u@127.0.0.1/",
					    NULL };
	static const char *const fail[] = { "--allow-all", "--ocsp-fail", "maybe", NULL };
	static const char *const tmo[] = { "--allow-all", "--ocsp-timeout-ms", "60001", NULL };
	static const char *const ctl[] = { "--allow-all", "--key", "pkcs11:object=a\nb", NULL };
	static const char *const staple_cli[] = { "--verify-any", "--ocsp-staple", F, NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:1", ok, &cfg, err), 0);
	assert_string_equal(cfg.svc[0].ocsp_staple, F);
	assert_string_equal(cfg.svc[0].ocsp_host, "127.0.0.1");
	assert_string_equal(cfg.svc[0].ocsp_path, "/a/b?x=1");
	assert_int_equal(cfg.svc[0].ocsp_addr.n > 0, 1);
	assert_int_equal(cfg.svc[0].ocsp_timeout_ms, 500);
	assert_true(cfg.svc[0].ocsp_fail_closed);
	assert_string_equal(cfg.svc[0].key, "pkcs11:token=t;object=k?pin-value=1");
	config_free(&cfg);
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", https,
			 "--ocsp-url 'https://127.0.0.1/': expected http://host[:port]/path (plain "
			 "HTTP, no user or fragment)");
	expect_cli_error(
		ROLE_SERVER, "127.0.0.1:1", user,
		"--ocsp-url 'http://u@127.0.0.1/': expected http://host[:port]/path (plain "
		"HTTP, no user or fragment)");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", fail, "--ocsp-fail: invalid value 'maybe'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", tmo,
			 "--ocsp-timeout-ms: invalid value '60001'");
	expect_cli_error(ROLE_SERVER, "127.0.0.1:1", ctl,
			 "--key: control character in the PKCS#11 URI");
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:1", staple_cli, &cfg, err), -EINVAL);
	/* Defaults: fail open, 2 s. */
	expect_ok("[service a]\nlisten = 127.0.0.1:8443\ntarget = 127.0.0.1:80\ncert = " F
		  "\ncacert = " F "\nallow-all = yes\nocsp-url = http://127.0.0.1:9/\n"
		  "key = pkcs11:token=t;object=k\n",
		  &cfg);
	assert_false(cfg.svc[0].ocsp_fail_closed);
	assert_int_equal(cfg.svc[0].ocsp_timeout_ms, 2000);
	assert_string_equal(cfg.svc[0].ocsp_path, "/");
	assert_string_equal(cfg.svc[0].key, "pkcs11:token=t;object=k");
	config_free(&cfg);
}

/* --admin: loopback and unix: only, unless the operator allows remote in so many words. */
static void test_admin(void **state)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	assert_int_equal(
		parse_cli(ROLE_SERVER, "127.0.0.1:2",
			  (const char *const[]){ "--allow-all", "--admin", "127.0.0.1:9797", NULL },
			  &cfg, err),
		0);
	assert_string_equal(cfg.admin, "127.0.0.1:9797");
	config_free(&cfg);
	assert_int_equal(parse_cli(ROLE_CLIENT, "127.0.0.1:2",
				   (const char *const[]){ "--admin", "unix:/run/ktlsd.sock",
							  "--admin", "[::1]:9", NULL },
				   &cfg, err),
			 0);
	assert_string_equal(cfg.admin, "[::1]:9");
	config_free(&cfg);
	expect_cli_error(ROLE_SERVER, "127.0.0.1:2",
			 (const char *const[]){ "--allow-all", "--admin", "0.0.0.0:9797", NULL },
			 "--admin '0.0.0.0:9797': not a loopback address (the endpoint has no "
			 "authentication; add admin-allow-remote to serve it there anyway)");
	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:2",
				   (const char *const[]){ "--allow-all", "--admin", "0.0.0.0:9797",
							  "--admin-allow-remote", NULL },
				   &cfg, err),
			 0);
	assert_true(cfg.admin_allow_remote);
	config_free(&cfg);
	expect_cli_error(ROLE_SERVER, "127.0.0.1:2",
			 (const char *const[]){ "--allow-all", "--admin", "x", NULL },
			 "--admin 'x': expected host:port, [v6addr]:port or unix:/path");
	expect_ok("[global]\nadmin = unix:/tmp/k.sock\n" SVC "allow-all = yes\n", &cfg);
	assert_string_equal(cfg.admin, "unix:/tmp/k.sock");
	config_free(&cfg);
	expect_error("[global]\nadmin = 0.0.0.0:1\n" SVC "allow-all = yes\n", 0,
		     "[global]: admin '0.0.0.0:1': not a loopback address");
	expect_ok("[global]\nadmin = 0.0.0.0:1\nadmin-allow-remote = yes\n" SVC "allow-all = yes\n",
		  &cfg);
	config_free(&cfg);
}

/*
 * Plaintext stays on the host by default: a server's target and a client's listen address
 * must be loopback or unix unless --unsafe-target / --unsafe-listen says otherwise.
 */
static void test_plaintext_local(void **state)
{
	static const char *const unsafe_t[] = { "--allow-all", "--unsafe-target", NULL };
	static const char *const safe[] = { "--allow-all", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	expect_cli_error(ROLE_SERVER, "192.0.2.1:80", safe,
			 "--target 192.0.2.1:80 is not a loopback address or unix socket: the "
			 "plaintext ktlsd decrypts for it would cross the network (give "
			 "--unsafe-target if that is what you want)");
	expect_cli_error(ROLE_SERVER, "0.0.0.0:80", safe,
			 "--target 0.0.0.0:80 is not a loopback address or unix socket: the "
			 "plaintext ktlsd decrypts for it would cross the network (give "
			 "--unsafe-target if that is what you want)");
	assert_int_equal(parse_cli(ROLE_SERVER, "192.0.2.1:80", unsafe_t, &cfg, err), 0);
	config_free(&cfg);
	for (const char *const *t =
		     (const char *const[]){ "127.0.0.2:80", "[::1]:80", "[::ffff:127.0.0.1]:80",
					    "unix:/run/a", "localhost:80", NULL };
	     *t; t++) {
		if (parse_cli(ROLE_SERVER, *t, safe, &cfg, err))
			fail_msg("%s refused: %s", *t, err);
		config_free(&cfg);
	}
	/* A client's target is the TLS side: anywhere. Its listen address is the plaintext. */
	static const char *const client_ok[] = { "--verify-any", NULL };
	assert_int_equal(parse_cli(ROLE_CLIENT, "192.0.2.1:443", client_ok, &cfg, err), 0);
	config_free(&cfg);
	expect_error("[service c]\nmode = client\nlisten = 0.0.0.0:9000\ntarget = 192.0.2.1:443\n"
		     "cert = " F "\nkey = " F "\ncacert = " F "\nverify-any = yes\n",
		     1,
		     "listen 0.0.0.0:9000 is not a loopback address: the plaintext ktlsd "
		     "encrypts from it would cross the network (give unsafe-listen if that is "
		     "what you want)");
	expect_ok("[service c]\nmode = client\nlisten = 0.0.0.0:9000\ntarget = 192.0.2.1:443\n"
		  "cert = " F "\nkey = " F "\ncacert = " F "\nverify-any = yes\n"
		  "unsafe-listen = yes\n",
		  &cfg);
	assert_true(cfg.svc[0].unsafe_listen);
	config_free(&cfg);
	/* Each flag belongs to one role. */
	expect_exact(SVC "allow-all = yes\nunsafe-listen = yes\n", 8,
		     "key 'unsafe-listen' is for mode = client, but [service a] has mode = server");
}

/* listen = systemd[:NAME]: a socket systemd passes, looked at only when the daemon starts. */
static void test_listen_systemd(void **state)
{
	struct run_config cfg;

	expect_ok("[service a]\nlisten = systemd:https\ntarget = 127.0.0.1:80\ncert = " F
		  "\nkey = " F "\ncacert = " F "\nallow-all = yes\n"
		  "[service b]\nmode = client\nlisten = systemd:plain\ntarget = 192.0.2.1:443\n"
		  "cert = " F "\nkey = " F "\ncacert = " F "\nverify-any = yes\n",
		  &cfg);
	assert_true(cfg.svc[0].listen_systemd);
	assert_string_equal(cfg.svc[0].listen, "systemd:https");
	assert_true(cfg.svc[1].listen_systemd);
	config_free(&cfg);
	expect_error("[service a]\nlisten = systemd:a:b\n", 2,
		     "listen 'systemd:a:b': expected systemd or systemd:NAME");
	expect_error("[service a]\nlisten = systemd:\n", 2, "expected systemd or systemd:NAME");
	/* Two services cannot take the same socket. */
	expect_error(SVC "allow-all = yes\n[service b]\nlisten = systemd:x\ntarget = 127.0.0.1:81\n"
			 "cert = " F "\nkey = " F "\ncacert = " F "\nallow-all = yes\n"
			 "[service c]\nlisten = systemd:x\ntarget = 127.0.0.1:82\n"
			 "cert = " F "\nkey = " F "\ncacert = " F "\nallow-all = yes\n",
		     15, "listen systemd:x overlaps listen systemd:x of [service b]");
}

/* [global] user, landlock, seccomp and their CLI spellings. */
static void test_sandbox_keys(void **state)
{
	static const char *const cli[] = { "--allow-all", "--user", "nobody", "--no-landlock",
					   NULL };
	static const char *const bad[] = { "--allow-all", "--user", "a b", NULL };
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];

	assert_int_equal(parse_cli(ROLE_SERVER, "127.0.0.1:2", cli, &cfg, err), 0);
	assert_string_equal(cfg.user, "nobody");
	assert_false(cfg.landlock);
	assert_true(cfg.seccomp);
	config_free(&cfg);
	expect_cli_error(ROLE_SERVER, "127.0.0.1:2", bad, "--user: invalid user name 'a b'");
	expect_ok("[global]\nuser = ktlsd\nseccomp = no\n" SVC "allow-all = yes\n", &cfg);
	assert_string_equal(cfg.user, "ktlsd");
	assert_true(cfg.landlock);
	assert_false(cfg.seccomp);
	config_free(&cfg);
	expect_exact("[global]\nlandlock = maybe\n" SVC "allow-all = yes\n", 2,
		     "landlock: invalid value 'maybe'");
}

/* [agent] belongs to `ktlsd agent --config`: the services' parser passes over it whole. */
static void test_agent_section_skipped(void **state)
{
	struct run_config cfg;

	expect_ok("[agent]\ncacert = /nowhere\nnot-a-service-key = 1\n" SVC "allow-all = yes\n",
		  &cfg);
	assert_int_equal(cfg.n_svc, 1);
	assert_string_equal(cfg.svc[0].name, "a");
	config_free(&cfg);
	expect_error("[agents]\n" SVC "allow-all = yes\n", 1, "unknown section [agents]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_services),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_client_identity),
		cmocka_unit_test(test_client_identity_ip),
		cmocka_unit_test(test_client_identity_file),
		cmocka_unit_test(test_resumption_cli),
		cmocka_unit_test(test_resumption_cli_values),
		cmocka_unit_test(test_resumption_file),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_mode_order),
		cmocka_unit_test(test_listen_overlap),
		cmocka_unit_test(test_new_keys_cli),
		cmocka_unit_test(test_new_keys_cli_refused),
		cmocka_unit_test(test_new_keys_file),
		cmocka_unit_test(test_cn_ou_one_name),
		cmocka_unit_test(test_global_once),
		cmocka_unit_test(test_ocsp_pkcs11_keys),
		cmocka_unit_test(test_admin),
		cmocka_unit_test(test_agent_section_skipped),
		cmocka_unit_test(test_plaintext_local),
		cmocka_unit_test(test_sandbox_keys),
		cmocka_unit_test(test_listen_systemd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

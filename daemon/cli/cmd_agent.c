// SPDX-License-Identifier: MIT
/*
 * ktlsd agent: the kernel's TLS handshake agent (daemon/upcall/). Its options are parsed
 * here, apart from config.c's service table: the agent has no listener or target, it has two
 * roles at once (nfsd's server side, the NFS client's side), and its rules apply to peers of
 * kernel consumers.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "agent.h"
#include "agent_admin.h"
#include "commands.h"
#include "config.h"
#include "tlsctx.h"
#include "upcall_nl.h"

#define AGENT_MAX_HANDSHAKES 1024

struct agent_args {
	const char *cert, *key, *client_cert, *client_key, *cacert, *crl, *psk_keyring;
	struct policy *allow;  /* client certificates presented to kernel servers */
	struct policy *verify; /* servers kernel clients connect to; empty: PEERNAME */
	bool allow_all;
	struct agent_opts o;
	struct run_config run; /* --admin, --admin-allow-remote (agent_admin.h) */
	char *file; /* --config: the file's text, which the values above may point into */
};

static void agent_usage(FILE *f)
{
	fputs("usage: ktlsd agent --cacert FILE [--cert FILE --key FILE]\n"
	      "                   [--client-cert FILE --client-key FILE] [--crl FILE]\n"
	      "                   [--allow-uri PATTERN]... [--allow-dns NAME]... [--allow-cn "
	      "NAME]...\n"
	      "                   [--allow-ou NAME]... [--allow-ip ADDR]... [--allow-all]\n"
	      "                   [--verify-uri PATTERN]... [--verify-dns NAME]...\n"
	      "                   [--psk-keyring NAME] [--max-handshakes N] [--handshake-timeout "
	      "MS]\n"
	      "                   [--log-format logfmt|json] [--config FILE]\n"
	      "                   [--admin ADDR [--admin-allow-remote]]\n"
	      "Serves the kernel's TLS handshake upcalls (netlink family \"handshake\", Linux "
	      "6.5+):\n"
	      "NFS xprtsec=tls|mtls, NVMe/TCP TLS 1.3 PSK. --cert/--key: nfsd's server side; "
	      "--client-cert/--client-key:\n"
	      "NFS clients mounting with xprtsec=mtls. --allow-*: which client certificates the\n"
	      "kernel's servers accept; --verify-*: which servers its clients accept (default:\n"
	      "the name the consumer asked for). --psk-keyring: where PSKs are looked up when the\n"
	      "kernel names no keyring (default .nvme). --config FILE: the [agent] section of an\n"
	      "INI file, the same keys without the dashes (allow-all = yes); other sections are\n"
	      "skipped, and options after --config override it. --admin ADDR: /metrics,\n"
	      "/healthz, /readyz over HTTP (loopback or unix:/path; docs/admin.md).\n",
	      f);
}

enum {
	O_CERT = 1,
	O_KEY,
	O_CCERT,
	O_CKEY,
	O_CACERT,
	O_CRL,
	O_ALLOW_URI,
	O_ALLOW_DNS,
	O_ALLOW_CN,
	O_ALLOW_OU,
	O_ALLOW_IP,
	O_ALLOW_ALL,
	O_VERIFY_URI,
	O_VERIFY_DNS,
	O_PSK_KEYRING,
	O_MAXHS,
	O_TIMEOUT,
	O_LOGFMT,
	O_ADMIN,
	O_ADMIN_REMOTE,
	O_CONFIG,
	O_HELP,
};

static const struct option agent_options[] = {
	{ "cert", required_argument, NULL, O_CERT },
	{ "key", required_argument, NULL, O_KEY },
	{ "client-cert", required_argument, NULL, O_CCERT },
	{ "client-key", required_argument, NULL, O_CKEY },
	{ "cacert", required_argument, NULL, O_CACERT },
	{ "crl", required_argument, NULL, O_CRL },
	{ "allow-uri", required_argument, NULL, O_ALLOW_URI },
	{ "allow-dns", required_argument, NULL, O_ALLOW_DNS },
	{ "allow-cn", required_argument, NULL, O_ALLOW_CN },
	{ "allow-ou", required_argument, NULL, O_ALLOW_OU },
	{ "allow-ip", required_argument, NULL, O_ALLOW_IP },
	{ "allow-all", no_argument, NULL, O_ALLOW_ALL },
	{ "verify-uri", required_argument, NULL, O_VERIFY_URI },
	{ "verify-dns", required_argument, NULL, O_VERIFY_DNS },
	{ "psk-keyring", required_argument, NULL, O_PSK_KEYRING },
	{ "max-handshakes", required_argument, NULL, O_MAXHS },
	{ "handshake-timeout", required_argument, NULL, O_TIMEOUT },
	{ "log-format", required_argument, NULL, O_LOGFMT },
	{ "admin", required_argument, NULL, O_ADMIN },
	{ "admin-allow-remote", no_argument, NULL, O_ADMIN_REMOTE },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

static int parse_uint(const char *opt, const char *v, unsigned lo, unsigned hi, unsigned *ret)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || n < lo || n > hi) {
		fprintf(stderr, "ktlsd agent: --%s: '%s' is not a number from %u to %u\n", opt, v,
			lo, hi);
		return -EINVAL;
	}
	*ret = (unsigned)n;
	return 0;
}

static int add_rule(struct policy *p, enum policy_kind kind, const char *opt, const char *v)
{
	if (policy_add(p, kind, v)) {
		fprintf(stderr, "ktlsd agent: --%s: malformed pattern '%s'\n", opt, v);
		return -EINVAL;
	}
	return 0;
}

static int logfmt_parse(const char *v, enum log_format *ret)
{
	if (!strcmp(v, "logfmt"))
		*ret = LOG_LOGFMT;
	else if (!strcmp(v, "json"))
		*ret = LOG_JSON;
	else {
		fprintf(stderr, "ktlsd agent: --log-format: '%s' is not logfmt or json\n", v);
		return -EINVAL;
	}
	return 0;
}

static int agent_file(struct agent_args *g, const char *path);

/* --admin ADDR: host:port, [v6]:port or unix:/path, as for ktlsd server. */
static int admin_parse(struct agent_args *g, const char *v)
{
	const char *why = NULL;

	if (addr_parse(v, true, &g->run.admin_addr, &why)) {
		fprintf(stderr, "ktlsd agent: --admin '%s': %s\n", v, why ? why : "malformed");
		return -EINVAL;
	}
	g->run.admin = (char *)v;
	return 0;
}

/* One option; 1 for --help. */
static int agent_opt(struct agent_args *g, int c, const char *v)
{
	const char *name = agent_options[c - 1].name;

	switch (c) {
	case O_CERT:
		return g->cert = v, 0;
	case O_KEY:
		return g->key = v, 0;
	case O_CCERT:
		return g->client_cert = v, 0;
	case O_CKEY:
		return g->client_key = v, 0;
	case O_CACERT:
		return g->cacert = v, 0;
	case O_CRL:
		return g->crl = v, 0;
	case O_ALLOW_URI:
	case O_ALLOW_DNS:
	case O_ALLOW_CN:
	case O_ALLOW_OU:
	case O_ALLOW_IP:
		return add_rule(g->allow, (enum policy_kind)(c - O_ALLOW_URI), name, v);
	case O_ALLOW_ALL:
		return g->allow_all = true, 0;
	case O_VERIFY_URI:
	case O_VERIFY_DNS:
		return add_rule(g->verify, (enum policy_kind)(c - O_VERIFY_URI), name, v);
	case O_PSK_KEYRING:
		return g->psk_keyring = v, 0;
	case O_MAXHS:
		return parse_uint(name, v, 1, AGENT_MAX_HANDSHAKES, &g->o.max_handshakes);
	case O_TIMEOUT:
		return parse_uint(name, v, 100, 600000, &g->o.timeout_ms);
	case O_LOGFMT:
		return logfmt_parse(v, &g->o.log_format);
	case O_ADMIN:
		return admin_parse(g, v);
	case O_ADMIN_REMOTE:
		return g->run.admin_allow_remote = true, 0;
	case O_CONFIG:
		return agent_file(g, v);
	default:
		return 1;
	}
}

/* --- [agent] in an INI file ---------------------------------------------------------------- */

static char *trim(char *p)
{
	char *e;

	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return p;
}

static int file_fail(const char *path, int line, const char *what, const char *key)
{
	fprintf(stderr, "ktlsd agent: %s:%d: %s%s%s\n", path, line, what, key ? key : "",
		key ? "'" : "");
	return -EINVAL;
}

/* One "key = value" line of [agent]: the option of that name, flags as yes/no. */
static int file_key(struct agent_args *g, const char *path, int line, char *p)
{
	char *eq = strchr(p, '=');
	const char *key, *val;

	if (!eq)
		return file_fail(path, line, "malformed line (expected 'key = value')", NULL);
	*eq = '\0';
	key = trim(p);
	val = trim(eq + 1);
	for (const struct option *o = agent_options; o->name; o++) {
		if (strcmp(o->name, key) || o->val == O_CONFIG || o->val == O_HELP)
			continue;
		if (o->has_arg == no_argument) {
			if (!strcmp(val, "no"))
				return 0;
			if (strcmp(val, "yes"))
				return file_fail(path, line, "expected yes or no for '", key);
			val = NULL;
		}
		return agent_opt(g, o->val, val) ? file_fail(path, line, "bad value for '", key)
						 : 0;
	}
	return file_fail(path, line, "unknown key in [agent]: '", key);
}

static int file_lines(struct agent_args *g, const char *path)
{
	bool in_agent = false;
	int line = 0, rc = 0;

	for (char *next = g->file, *l; !rc && next; line++) {
		l = next;
		next = strchr(l, '\n');
		if (next)
			*next++ = '\0';
		l = trim(l);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[')
			in_agent = !strcmp(l, "[agent]");
		else if (in_agent)
			rc = file_key(g, path, line + 1, l);
	}
	return rc;
}

static int agent_file(struct agent_args *g, const char *path)
{
	FILE *f;
	long n;

	if (g->file)
		return file_fail(path, 0, "--config given twice", NULL);
	f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "ktlsd agent: --config %s: %s\n", path, strerror(errno));
		return -EINVAL;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) || fseek(f, 0, SEEK_SET) ||
	    !(g->file = calloc(1, (size_t)n + 1)) || fread(g->file, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		fprintf(stderr, "ktlsd agent: --config %s: cannot read it (at most 1 MiB)\n", path);
		return -EINVAL;
	}
	fclose(f);
	return file_lines(g, path);
}

/* The combinations that make no agent. */
static int agent_args_check(const struct agent_args *g)
{
	const char *what = NULL;

	if (!g->cacert)
		what = "--cacert is required (the trust anchor for peers of kernel consumers)";
	else if (!!g->cert != !!g->key)
		what = "--cert and --key go together";
	else if (!!g->client_cert != !!g->client_key)
		what = "--client-cert and --client-key go together";
	else if (g->cert && policy_is_empty(g->allow) && !g->allow_all)
		what = "no --allow-uri/--allow-dns/--allow-cn/--allow-ou/--allow-ip rule and no "
		       "--allow-all: which client certificates may the kernel's servers accept?";
	else if (!g->cert && (!policy_is_empty(g->allow) || g->allow_all))
		what = "--allow-* rules apply to a server: give --cert and --key";
	if (!what)
		return 0;
	fprintf(stderr, "ktlsd agent: %s\n", what);
	return -EINVAL;
}

/* The endpoint has no authentication: loopback or a unix socket unless said otherwise. */
static int agent_admin_check(const struct agent_args *g)
{
	if (!g->run.admin || g->run.admin_allow_remote || addr_is_loopback(&g->run.admin_addr))
		return 0;
	fprintf(stderr,
		"ktlsd agent: --admin '%s': not a loopback address (the endpoint has no "
		"authentication; add --admin-allow-remote to serve it there anyway)\n",
		g->run.admin);
	return -EINVAL;
}

/* Each file named, readable: OpenSSL's own words for a missing one are "system lib". */
static int agent_files_check(const struct agent_args *g)
{
	const struct {
		const char *opt, *path;
	} f[] = {
		{ "cacert", g->cacert },
		{ "cert", g->cert },
		{ "key", g->key },
		{ "client-cert", g->client_cert },
		{ "client-key", g->client_key },
		{ "crl", g->crl },
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (f[i].path && access(f[i].path, R_OK)) {
			fprintf(stderr, "ktlsd agent: --%s %s: %s\n", f[i].opt, f[i].path,
				strerror(errno));
			return -EINVAL;
		}
	}
	return 0;
}

/* 0, 1 for --help, or -EINVAL (message printed). */
static int agent_args_parse(int argc, char **argv, struct agent_args *g)
{
	int c, rc;

	g->o.max_handshakes = 64;
	g->psk_keyring = ".nvme";
	g->o.timeout_ms = 30000;
	g->o.log_format = LOG_LOGFMT;
	if (policy_new(&g->allow) || policy_new(&g->verify))
		return -ENOMEM;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", agent_options, NULL)) != -1) {
		if (c == '?' || c == ':') {
			fprintf(stderr, "ktlsd agent: unknown option or missing value: %s\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		rc = agent_opt(g, c, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr, "ktlsd agent: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (g->allow_all)
		policy_set_allow_all(g->allow);
	rc = agent_args_check(g);
	if (!rc)
		rc = agent_admin_check(g);
	return rc ? rc : agent_files_check(g);
}

/* Revoked peers: the CRL joins the trust store and every chain is checked against it. */
static int crl_load(SSL_CTX *ctx, const char *crl)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lu;

	if (!crl)
		return 0;
	lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
	if (!lu || X509_load_crl_file(lu, crl, X509_FILETYPE_PEM) <= 0) {
		ERR_clear_error();
		fprintf(stderr, "ktlsd agent: --crl %s: no CRL could be read from it\n", crl);
		return -EINVAL;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

static int ctx_build(const struct agent_args *g, enum service_role role, SSL_CTX **ret_ctx)
{
	bool server = role == ROLE_SERVER;
	struct service_config s = {
		.role = role,
		.cert = (char *)(server ? g->cert : g->client_cert),
		.key = (char *)(server ? g->key : g->client_key),
		.cacert = (char *)g->cacert,
		.policy = server ? g->allow : g->verify,
		/* RFC 9289 (RPC-with-TLS) and NVMe/TCP both require TLS 1.3. */
		.min_tls = TLS1_3_VERSION,
	};
	char err[CONFIG_ERR_MAX];
	SSL_CTX *ctx = NULL;
	int rc;

	snprintf(s.name, sizeof(s.name), "agent-%s", server ? "server" : "client");
	rc = tls_ctx_build(&s, true, &ctx, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ktlsd agent: %s\n", err);
		return rc;
	}
	rc = crl_load(ctx, g->crl);
	if (rc) {
		SSL_CTX_free(ctx);
		return rc;
	}
	/* nfsd's xprtsec=tls clients send no certificate: one is verified only if sent. */
	if (server)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(ctx));
	*ret_ctx = ctx;
	return 0;
}

static int agent_tls_build(const struct agent_args *g, struct agent_tls *t)
{
	int rc;

	t->client_cert = g->client_cert != NULL;
	t->psk_keyring = g->psk_keyring;
	t->verify_peername = policy_is_empty(g->verify);
	if (t->verify_peername)
		/* The chain must verify; the name check is OpenSSL's, against PEERNAME. */
		policy_set_allow_all(g->verify);
	else
		policy_set_peer_wildcards(g->verify);
	rc = ctx_build(g, ROLE_CLIENT, &t->client);
	if (!rc && g->cert)
		rc = ctx_build(g, ROLE_SERVER, &t->server);
	return rc;
}

static void agent_log_start(const struct agent_args *g, const struct agent_tls *t)
{
	char n[16];

	snprintf(n, sizeof(n), "%u", g->o.max_handshakes);
	struct log_kv kv[] = {
		{ "server_role", t->server ? "yes" : "no" },
		{ "client_cert", t->client_cert ? "yes" : "no" },
		{ "verify", t->verify_peername ? "peername" : "rules" },
		{ "max_handshakes", n },
	};
	log_kv(g->o.log_format, "info", "agent_start", kv, 4);
}

int cmd_agent(int argc, char **argv)
{
	struct agent_args g = { 0 };
	struct agent_tls t = { 0 };
	struct agent_admin am = { 0 };
	struct upcall_nl *nl = NULL;
	char err[CONFIG_ERR_MAX];
	int rc, ret = EXIT_USAGE;

	rc = agent_args_parse(argc, argv, &g);
	if (rc == 1) {
		agent_usage(stdout);
		ret = 0;
	}
	if (rc)
		goto out;
	if (agent_tls_build(&g, &t))
		goto out;
	g.run.log_format = g.o.log_format;
	ret = agent_admin_open(&am, &g.run, t.server ? g.cert : g.client_cert,
			       t.server ? t.server : t.client);
	if (ret)
		goto out;
	ret = EXIT_USAGE;
	rc = upcall_nl_open(&nl, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ktlsd agent: %s\n", err);
		ret = rc == -ENOENT ? EXIT_USAGE : EXIT_RUNTIME;
		goto out;
	}
	agent_log_start(&g, &t);
	ret = agent_admin_start(&am);
	if (ret)
		goto out;
	rc = agent_run(&g.o, &t, nl, &am.st);
	if (rc)
		fprintf(stderr, "ktlsd agent: %s\n", strerror(-rc));
	ret = rc ? EXIT_RUNTIME : 0;
out:
	agent_admin_stop(&am);
	upcall_nl_close(nl);
	SSL_CTX_free(t.server);
	SSL_CTX_free(t.client);
	policy_free(g.allow);
	policy_free(g.verify);
	free(g.file);
	return ret;
}

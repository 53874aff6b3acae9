// SPDX-License-Identifier: MIT
/*
 * ktlsd agent: the kernel's TLS handshake agent (daemon/upcall/). Its options are parsed
 * here, apart from config.c's service table: the agent has no listener or target, it has two
 * roles at once (nfsd's server side, the NFS client's side), and its rules apply to peers of
 * kernel consumers.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
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
#include "filewatch.h"
#include "sandbox.h"
#include "tlsctx.h"
#include "upcall_nl.h"

#define AGENT_MAX_HANDSHAKES 1024

/* Where the option errors go: stderr, or during a reload the reason of its log line. */
static FILE *agent_errf;
#define ERRF (agent_errf ? agent_errf : stderr)

struct agent_args {
	const char *cert, *key, *client_cert, *client_key, *cacert, *crl, *psk_keyring;
	struct policy *allow;  /* client certificates presented to kernel servers */
	struct policy *verify; /* servers kernel clients connect to; empty: PEERNAME */
	bool allow_all;
	const char *user;	/* --user: the sandbox's; NULL stays uid 0 */
	bool landlock, seccomp; /* on unless --no-landlock / --no-seccomp */
	struct agent_opts o;
	struct run_config run; /* --admin, --admin-allow-remote (agent_admin.h) */
	char *file;	     /* --config: the file's text, which the values above may point into */
	const char *cfgpath; /* --config FILE (a reload reads it again), or NULL */
	bool reload;	     /* parsed for a reload: the sandbox is in force */
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
	      "                   [--user USER] [--no-landlock] [--no-seccomp]\n"
	      "Serves the kernel's TLS handshake upcalls (netlink family \"handshake\", Linux "
	      "6.5+):\n"
	      "NFS xprtsec=tls|mtls, NVMe/TCP TLS 1.3 PSK. --cert/--key: nfsd's server side; "
	      "--client-cert/--client-key:\n"
	      "NFS clients mounting with xprtsec=mtls. --allow-*: which client certificates the\n"
	      "kernel's servers accept; --verify-*: which servers its clients accept (default:\n"
	      "the name the consumer asked for). --psk-keyring: where PSKs are looked up when the\n"
	      "kernel names no keyring (default .nvme). --config FILE: the [agent] section of an\n"
	      "INI file, the same keys without the dashes (allow-all = yes); other sections are\n"
	      "skipped, and options after --config override it. SIGHUP, or a change to any of\n"
	      "the files, reloads them (all or nothing). Once the netlink socket is open\n"
	      "the agent keeps only CAP_NET_ADMIN, reads only its files (Landlock) and makes\n"
	      "only the syscalls it needs (seccomp); --user USER: run as USER (NFS only:\n"
	      "NVMe/TCP PSK needs uid 0), --no-landlock, --no-seccomp: turn those off.\n"
	      "--admin ADDR: /metrics, /healthz, /readyz over HTTP (loopback or unix:/path;\n"
	      "docs/admin.md).\n",
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
	O_USER,
	O_NO_LANDLOCK,
	O_NO_SECCOMP,
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
	{ "user", required_argument, NULL, O_USER },
	{ "no-landlock", no_argument, NULL, O_NO_LANDLOCK },
	{ "no-seccomp", no_argument, NULL, O_NO_SECCOMP },
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
		fprintf(ERRF, "ktlsd agent: --%s: '%s' is not a number from %u to %u\n", opt, v, lo,
			hi);
		return -EINVAL;
	}
	*ret = (unsigned)n;
	return 0;
}

static int add_rule(struct policy *p, enum policy_kind kind, const char *opt, const char *v)
{
	if (policy_add(p, kind, v)) {
		fprintf(ERRF, "ktlsd agent: --%s: malformed pattern '%s'\n", opt, v);
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
		fprintf(ERRF, "ktlsd agent: --log-format: '%s' is not logfmt or json\n", v);
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
		fprintf(ERRF, "ktlsd agent: --admin '%s': %s\n", v, why ? why : "malformed");
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
	case O_USER:
		return g->user = v, 0;
	case O_NO_LANDLOCK:
		return g->landlock = false, 0;
	case O_NO_SECCOMP:
		return g->seccomp = false, 0;
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
	fprintf(ERRF, "ktlsd agent: %s:%d: %s%s%s\n", path, line, what, key ? key : "",
		key ? "'" : "");
	return -EINVAL;
}

/* landlock = yes|no, seccomp = yes|no: the server's [global] keys, the same words. */
static int sandbox_key(struct agent_args *g, const char *path, int line, const char *key,
		       const char *val)
{
	bool on = !strcmp(val, "yes");

	if (!on && strcmp(val, "no"))
		return file_fail(path, line, "expected yes or no for '", key);
	if (key[0] == 'l')
		g->landlock = on;
	else
		g->seccomp = on;
	return 0;
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
	if (!strcmp(key, "landlock") || !strcmp(key, "seccomp"))
		return sandbox_key(g, path, line, key, val);
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
	g->cfgpath = path;
	f = file_open_regular(path); /* a FIFO would block the agent's thread */
	if (!f) {
		fprintf(ERRF, "ktlsd agent: --config %s: %s\n", path,
			errno == EINVAL ? "not a regular file" : strerror(errno));
		return -EINVAL;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) || fseek(f, 0, SEEK_SET) ||
	    !(g->file = calloc(1, (size_t)n + 1)) || fread(g->file, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		fprintf(ERRF, "ktlsd agent: --config %s: cannot read it (at most 1 MiB)\n", path);
		return -EINVAL;
	}
	fclose(f);
	return file_lines(g, path);
}

/* --user names a user that exists (before anything is opened). */
static int agent_user_check(const struct agent_args *g)
{
	char err[CONFIG_ERR_MAX];
	struct run_config rc = { .user = (char *)g->user };

	if (!g->user || !sandbox_user_check(&rc, err, sizeof(err)))
		return 0;
	fprintf(ERRF, "ktlsd agent: --user: %s\n", err);
	return -EINVAL;
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
	/* A reload cannot look --user up (Landlock hides /etc/passwd) and need not: the
	 * user is the one the agent became at start (a change is named in not_applied). */
	if (!what)
		return g->reload ? 0 : agent_user_check(g);
	fprintf(ERRF, "ktlsd agent: %s\n", what);
	return -EINVAL;
}

/* The endpoint has no authentication: loopback or a unix socket unless said otherwise. */
static int agent_admin_check(const struct agent_args *g)
{
	if (!g->run.admin || g->run.admin_allow_remote || addr_is_loopback(&g->run.admin_addr))
		return 0;
	fprintf(ERRF,
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
		/* Opened, not access(): a FIFO put in a file's place (by whoever can write its
		 * directory) would block OpenSSL's read, and with it the agent's one thread. */
		FILE *fp = f[i].path ? file_open_regular(f[i].path) : NULL;

		if (f[i].path && !fp) {
			fprintf(ERRF, "ktlsd agent: --%s %s: %s\n", f[i].opt, f[i].path,
				errno == EINVAL ? "not a regular file" : strerror(errno));
			return -EINVAL;
		}
		if (fp)
			fclose(fp);
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
	g->landlock = g->seccomp = true;
	if (policy_new(&g->allow) || policy_new(&g->verify))
		return -ENOMEM;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", agent_options, NULL)) != -1) {
		if (c == '?' || c == ':') {
			fprintf(ERRF, "ktlsd agent: unknown option or missing value: %s\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		rc = agent_opt(g, c, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(ERRF, "ktlsd agent: unexpected argument '%s'\n", argv[optind]);
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
	FILE *f;

	if (!crl)
		return 0;
	/* OpenSSL's own words hide why a file is unreadable (a reload under Landlock). */
	f = file_open_regular(crl);
	if (!f) {
		fprintf(ERRF, "ktlsd agent: --crl %s: %s\n", crl,
			errno == EINVAL ? "not a regular file" : strerror(errno));
		return -EINVAL;
	}
	fclose(f);
	lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
	if (!lu || X509_load_crl_file(lu, crl, X509_FILETYPE_PEM) <= 0) {
		ERR_clear_error();
		fprintf(ERRF, "ktlsd agent: --crl %s: no CRL could be read from it\n", crl);
		return -EINVAL;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/*
 * Each context owns its rules (SSL_CTX ex_data, freed with it): after a reload a handshake
 * in flight still holds the old context, and with it the rules it started under.
 */
static int policy_idx = -1;

static void policy_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			   void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	policy_free(ptr);
}

static int ctx_own_policy(SSL_CTX *ctx, struct policy **pol)
{
	if (policy_idx < 0)
		policy_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, policy_ex_free);
	if (policy_idx < 0 || !SSL_CTX_set_ex_data(ctx, policy_idx, *pol))
		return -ENOMEM;
	*pol = NULL;
	return 0;
}

static int ctx_build(struct agent_args *g, enum service_role role, SSL_CTX **ret_ctx)
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
		fprintf(ERRF, "ktlsd agent: %s\n", err);
		return rc;
	}
	rc = crl_load(ctx, g->crl);
	if (rc) {
		SSL_CTX_free(ctx);
		return rc;
	}
	rc = ctx_own_policy(ctx, server ? &g->allow : &g->verify);
	if (rc) {
		fprintf(ERRF, "ktlsd agent: out of memory\n");
		SSL_CTX_free(ctx);
		return rc;
	}
	/* nfsd's xprtsec=tls clients send no certificate: one is verified only if sent. */
	if (server)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(ctx));
	*ret_ctx = ctx;
	return 0;
}

static int agent_tls_build(struct agent_args *g, struct agent_tls *t)
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

/* --- reload (SIGHUP, a changed file): on the agent's thread, all or nothing --------------- */

enum { F_CONFIG, F_CERT, F_KEY, F_CCERT, F_CKEY, F_CACERT, F_CRL, F_N };

static const char *const file_names[F_N] = {
	"config", "cert", "key", "client-cert", "client-key", "cacert", "crl",
};

/* What the fingerprints are of: the files of one generation of options. */
static void agent_paths(const struct agent_args *g, const char **p)
{
	p[F_CONFIG] = g->cfgpath;
	p[F_CERT] = g->cert;
	p[F_KEY] = g->key;
	p[F_CCERT] = g->client_cert;
	p[F_CKEY] = g->client_key;
	p[F_CACERT] = g->cacert;
	p[F_CRL] = g->crl;
}

struct agent_fp {
	unsigned char sha[F_N][32];
	bool ok[F_N];
};

static void agent_fp_take(const struct agent_args *g, struct agent_fp *fp)
{
	const char *p[F_N];

	agent_paths(g, p);
	memset(fp, 0, sizeof(*fp));
	for (int i = 0; i < F_N; i++)
		fp->ok[i] = p[i] && file_sha256(p[i], fp->sha[i]);
}

/* "cert,crl" for what differs; empty when nothing does. */
static void agent_fp_diff(const struct agent_fp *a, const struct agent_fp *b, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < F_N && off < len; i++)
		if (a->ok[i] != b->ok[i] || memcmp(a->sha[i], b->sha[i], 32))
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
						file_names[i]);
}

/* Everything one agent process runs with; a reload replaces g and t's contexts. */
struct agent_state {
	int argc;
	char **argv;
	struct agent_args g;
	struct agent_tls t;
	struct agent_opts o; /* as started: max-handshakes etc. need a restart */
	struct agent_fp fp;
	struct filewatch fw;
	struct agent_reload rl;
	bool failed; /* the last reload failed */
	unsigned reloads;
	struct agent_admin *am; /* its expiry series follows the reloaded certificate */
	char *user;		/* the sandbox as applied at start: a reload cannot change it */
	bool landlock, seccomp;
};

static void agent_args_free(struct agent_args *g)
{
	policy_free(g->allow);
	policy_free(g->verify);
	free(g->file);
	memset(g, 0, sizeof(*g));
}

static void agent_tls_free(struct agent_tls *t)
{
	SSL_CTX_free(t->server);
	SSL_CTX_free(t->client);
	t->server = t->client = NULL;
}

static void agent_watch(struct agent_state *st)
{
	const char *p[F_N];
	char dir[4096], msg[4200];
	int old, rc = filewatch_begin(&st->fw, &old);

	agent_paths(&st->g, p);
	for (int i = 0; !rc && i < F_N; i++) {
		int wrc = p[i] ? filewatch_add(&st->fw, p[i], dir, sizeof(dir)) : 0;

		if (!wrc)
			continue;
		snprintf(msg, sizeof(msg), "cannot watch %s (for %s %s): %s; reload it with SIGHUP",
			 dir, file_names[i], p[i], strerror(-wrc));
		struct log_kv kv[] = { { "msg", msg } };

		log_kv(st->o.log_format, "warn", "reload_watch_failed", kv, 1);
	}
	if (rc) {
		struct log_kv kv[] = { { "msg",
					 "inotify unavailable: files reload on SIGHUP only" } };

		log_kv(st->o.log_format, "warn", "reload_watch_failed", kv, 1);
	}
	filewatch_end(&st->fw, old);
}

/* The options and both contexts built again; the first line of what went wrong in reason. */
static int agent_rebuild(struct agent_state *st, struct agent_args *g, struct agent_tls *t,
			 char *reason, size_t len)
{
	char *buf = NULL;
	size_t n = 0;
	int rc;

	agent_errf = open_memstream(&buf, &n);
	g->reload = true;
	rc = agent_args_parse(st->argc, st->argv, g);
	if (!rc)
		rc = agent_tls_build(g, t);
	if (agent_errf)
		fclose(agent_errf);
	agent_errf = NULL;
	if (rc) {
		const char *m = buf && buf[0] ? buf : "the options no longer parse";

		if (!strncmp(m, "ktlsd agent: ", 13))
			m += 13;
		snprintf(reason, len, "%.*s", (int)strcspn(m, "\n"), m);
	}
	free(buf);
	return rc;
}

/* Options a running agent cannot take (the slots, the ring, the log): named, not applied. */
static void agent_not_live(const struct agent_opts *a, const struct agent_opts *b, char *buf,
			   size_t len)
{
	snprintf(buf, len, "%s%s%s",
		 a->max_handshakes != b->max_handshakes ? "max-handshakes," : "",
		 a->timeout_ms != b->timeout_ms ? "handshake-timeout," : "",
		 a->log_format != b->log_format ? "log-format," : "");
	if (buf[0])
		buf[strlen(buf) - 1] = '\0';
}

static void not_live_add(char *buf, size_t len, const char *what)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s%s", n ? "," : "", what);
}

/* The sandbox stays as it was applied at start (no way back to root, nor out of it). */
static void sandbox_not_live(const struct agent_state *st, char *buf, size_t len)
{
	const char *a = st->user, *b = st->g.user;

	if ((a || b) && !(a && b && !strcmp(a, b)))
		not_live_add(buf, len, "user");
	if (st->landlock != st->g.landlock)
		not_live_add(buf, len, "landlock");
	if (st->seccomp != st->g.seccomp)
		not_live_add(buf, len, "seccomp");
}

/* The admin endpoint stays where it was bound at start (before the sandbox). */
static bool admin_same(const struct agent_admin *am, const struct run_config *run)
{
	const char *a = am->rcfg.admin, *b = run->admin;

	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void reload_log(const struct agent_state *st, const char *why, const char *result,
		       const char *reason, const char *changed, const char *not_live)
{
	char n[16];

	snprintf(n, sizeof(n), "%u", st->reloads);
	struct log_kv kv[] = {
		{ "result", result },
		{ "trigger", why },
		{ "reason", reason },
		{ "changed", changed },
		{ "not_applied", not_live && not_live[0] ? not_live : NULL },
		{ "reloads", reason ? NULL : n },
		{ "msg", reason ? "the contexts in use stay as they were" : NULL },
	};
	log_kv(st->o.log_format, reason ? "error" : "info", "reload", kv, 7);
}

static void agent_reload(void *arg, const char *why)
{
	struct agent_state *st = arg;
	struct agent_args g = { 0 };
	struct agent_tls t = { 0 };
	struct agent_fp fp;
	char reason[512], changed[128], not_live[160];

	agent_fp_take(&st->g, &fp);
	agent_fp_diff(&st->fp, &fp, changed, sizeof(changed));
	/* An event that changed no content costs nothing (after a failure it reports). */
	if (strcmp(why, "SIGHUP") && !changed[0] && !st->failed)
		return;
	if (agent_rebuild(st, &g, &t, reason, sizeof(reason))) {
		st->failed = true;
		reload_log(st, why, "failed", reason, changed[0] ? changed : NULL, NULL);
		goto out;
	}
	/* The swap: handshakes in flight keep the old contexts through their SSLs. */
	agent_tls_free(&st->t);
	st->t = t;
	t = (struct agent_tls){ 0 };
	agent_args_free(&st->g);
	st->g = g;
	g = (struct agent_args){ 0 };
	agent_fp_take(&st->g, &fp);
	agent_fp_diff(&st->fp, &fp, changed, sizeof(changed));
	st->fp = fp;
	st->failed = false;
	st->reloads++;
	agent_not_live(&st->o, &st->g.o, not_live, sizeof(not_live));
	sandbox_not_live(st, not_live, sizeof(not_live));
	if (!admin_same(st->am, &st->g.run))
		not_live_add(not_live, sizeof(not_live), "admin");
	if (agent_admin_renew(st->am, st->t.server ? st->g.cert : st->g.client_cert,
			      st->t.server ? st->t.server : st->t.client))
		not_live_add(not_live, sizeof(not_live), "cert-expiry-metric");
	reload_log(st, why, "ok", NULL, changed[0] ? changed : "none", not_live);
	agent_watch(st);
out:
	agent_tls_free(&t);
	agent_args_free(&g);
}

/* --- least privilege ---------------------------------------------------------------------- */

/*
 * After the netlink socket and the first contexts: the handshake family's ACCEPT carries
 * GENL_ADMIN_PERM, checked against the sender at each call, so CAP_NET_ADMIN stays; DONE
 * needs none. The keyring calls (add_key to the session keyring, keyctl search/read/link
 * of .nvme and the consumers' keyrings) need no capability, only the uid owning those
 * keyrings: the agent stays uid 0 unless --user. /proc/keys: --psk-keyring's lookup.
 */
static int agent_sandbox(struct agent_state *st)
{
	static const int caps[] = { CAP_NET_ADMIN };
	/* /proc/self (its net/tls_stat too) and /proc/stat: the process_* and
	 * ktlsd_kernel_tls_* series of --admin, as for the server. */
	static const char *const paths[] = { "/proc/keys", "/proc/self", "/proc/stat" };
	/* psk.c's keyctl operations: DESCRIBE, LINK, SEARCH, READ. Not SETPERM, UPDATE,
	 * UNLINK, REVOKE, PKEY_*: root's other keys stay out of a compromised agent's reach.
	 * add_key (peer_key.c) and LINK write into the session keyring only: .nvme, linked
	 * there (possessed, so writable), gets no key from the agent. */
	static const unsigned keyctl_ops[] = { KEYCTL_DESCRIBE, KEYCTL_LINK, KEYCTL_SEARCH,
					       KEYCTL_READ };
	/* Every socket is open by now (netlink, --admin): a new one with CAP_NET_ADMIN would
	 * reach rtnetlink, nftables and xfrm, and bpf() the socket filters. */
	static const char *const deny[] = { "socket", "bpf" };
	const char *files[F_N];
	char err[CONFIG_ERR_MAX];
	struct sandbox_spec s = {
		.user = st->g.user,
		.landlock = st->g.landlock,
		.seccomp = st->g.seccomp,
		.caps = caps,
		.n_caps = 1,
		.files = files,
		.n_files = F_N,
		.paths = paths,
		.n_paths = sizeof(paths) / sizeof(paths[0]),
		.keyctl_ops = keyctl_ops,
		.n_keyctl_ops = 4,
		.keys_session_only = true,
		.deny = deny,
		.n_deny = 2,
		.log_format = st->o.log_format,
	};
	int rc;

	agent_paths(&st->g, files);
	st->landlock = st->g.landlock;
	st->seccomp = st->g.seccomp;
	if (st->g.user && !(st->user = strdup(st->g.user)))
		return -ENOMEM;
	rc = sandbox_apply_spec(&s, err, sizeof(err));
	if (rc)
		fprintf(stderr, "ktlsd agent: sandbox: %s\n", err);
	else if (st->g.user) {
		struct log_kv kv[] = { { "msg",
					 "NVMe/TCP PSK handshakes fail under --user: at "
					 "ACCEPT the kernel links the consumer's keyring "
					 "(.nvme, root's) into the agent's, which needs uid 0" } };

		log_kv(st->o.log_format, "warn", "agent_user_keyrings", kv, 1);
	}
	return rc;
}

/*
 * The ring exists, limited to the agent's operations: no further io_uring, no IPC_LOCK.
 * Only then does event=agent_start say the agent is up: fully sandboxed from here on.
 */
static int agent_ring_ready(void *arg)
{
	struct agent_state *st = arg;
	/* sandbox_seal_rings knows when seccomp is off (also in sanitizer builds). */
	struct run_config cfg = { .seccomp = st->g.seccomp };
	char err[CONFIG_ERR_MAX];
	int rc;

	sandbox_rings_done();
	rc = sandbox_seal_rings(&cfg, err, sizeof(err));
	if (rc)
		fprintf(stderr, "ktlsd agent: %s\n", err);
	else
		agent_log_start(&st->g, &st->t);
	return rc;
}

static int agent_start(struct agent_state *st, struct upcall_nl **nl)
{
	char err[CONFIG_ERR_MAX];
	int rc = upcall_nl_open(nl, err, sizeof(err));

	if (rc) {
		fprintf(stderr, "ktlsd agent: %s\n", err);
		return rc == -ENOENT ? EXIT_USAGE : EXIT_RUNTIME;
	}
	st->o = st->g.o;
	agent_fp_take(&st->g, &st->fp);
	filewatch_init(&st->fw);
	agent_watch(st);
	st->rl = (struct agent_reload){ .watch = &st->fw, .fn = agent_reload, .arg = st };
	st->o.reload = &st->rl;
	st->o.ring_ready = agent_ring_ready;
	st->o.ring_arg = st;
	return agent_sandbox(st) ? EXIT_RUNTIME : 0;
}

int cmd_agent(int argc, char **argv)
{
	struct agent_admin am = { 0 };
	struct agent_state st = { .argc = argc, .argv = argv, .am = &am };
	struct upcall_nl *nl = NULL;
	int rc, ret = EXIT_USAGE;

	st.fw.ifd = st.fw.tfd = -1;
	rc = agent_args_parse(argc, argv, &st.g);
	if (rc == 1) {
		agent_usage(stdout);
		ret = 0;
	}
	if (rc)
		goto out;
	if (agent_tls_build(&st.g, &st.t))
		goto out;
	st.g.run.log_format = st.g.o.log_format;
	ret = agent_admin_open(&am, &st.g.run, st.t.server ? st.g.cert : st.g.client_cert,
			       st.t.server ? st.t.server : st.t.client);
	if (ret)
		goto out;
	ret = agent_start(&st, &nl);
	if (ret)
		goto out;
	/* The HTTP thread after the sandbox: Landlock binds only threads created after it. */
	ret = agent_admin_start(&am);
	if (ret)
		goto out;
	rc = agent_run(&st.o, &st.t, nl, &am.st);
	if (rc)
		fprintf(stderr, "ktlsd agent: %s\n", strerror(-rc));
	ret = rc ? EXIT_RUNTIME : 0;
out:
	agent_admin_stop(&am);
	upcall_nl_close(nl);
	filewatch_free(&st.fw);
	agent_tls_free(&st.t);
	agent_args_free(&st.g);
	free(st.user);
	return ret;
}

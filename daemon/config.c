// SPDX-License-Identifier: MIT
/*
 * Configuration parsing. Both front ends (getopt_long and inih) feed the same
 * key = value setter so a key means the same thing on the command line and in a file.
 */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/ssl.h>

#include "config.h"

#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_CONNECT_MS   10000
#define DEFAULT_MAX_CONNS    100000
#define DEFAULT_DRAIN_MS     30000
#define DEFAULT_IDLE_S	     3600
#define DEFAULT_TICKET_S     3600
#define MAX_TICKET_S	     (7 * 24 * 3600) /* RFC 8446 4.6.1: no ticket outlives 7 days */
#define DEFAULT_SESS_CACHE   64		     /* client: tickets per worker */
#define MAX_SESS_CACHE	     4096
#define DEFAULT_SRV_CACHE    20000 /* server, resumption = cache: sessions held */
#define MAX_SRV_CACHE	     10000000

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void svc_defaults(struct service_config *s, enum service_role role)
{
	memset(s, 0, sizeof(*s));
	s->role = role;
	s->handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
	s->connect_timeout_ms = DEFAULT_CONNECT_MS;
	s->max_conns = DEFAULT_MAX_CONNS;
	s->idle_timeout_s = DEFAULT_IDLE_S;
	s->min_tls = TLS1_2_VERSION;
	s->ticket_lifetime_s = DEFAULT_TICKET_S;
	s->session_cache = DEFAULT_SESS_CACHE;
	snprintf(s->name, sizeof(s->name), "%s", role == ROLE_SERVER ? "server" : "client");
}

static void svc_free(struct service_config *s)
{
	free(s->listen);
	free(s->target);
	free(s->cert);
	free(s->key);
	free(s->cacert);
	free(s->key_password_file);
	free(s->server_name);
	policy_free(s->policy);
}

void config_free(struct run_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_svc; i++)
		svc_free(&cfg->svc[i]);
	free(cfg->svc);
	memset(cfg, 0, sizeof(*cfg));
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long n;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*ret = (unsigned)n;
	return 0;
}

/* The words a key accepts and what each means; a table ends with a NULL word. */
struct word {
	const char *word;
	int val;
};

static const struct word bool_words[] = {
	{ "", 1 }, /* a flag given on the command line without a value */
	{ "true", 1 }, { "yes", 1 }, { "1", 1 },   { "on", 1 }, { "false", 0 },
	{ "no", 0 },   { "0", 0 },   { "off", 0 }, { NULL, 0 },
};
static const struct word ktls_words[] = {
	{ "auto", KTLS_MODE_AUTO },
	{ "require", KTLS_MODE_REQUIRE },
	{ "off", KTLS_MODE_OFF },
	{ NULL, 0 },
};
static const struct word log_format_words[] = {
	{ "logfmt", LOG_LOGFMT },
	{ "json", LOG_JSON },
	{ NULL, 0 },
};
static const struct word min_tls_words[] = {
	{ "1.2", TLS1_2_VERSION },
	{ "1.3", TLS1_3_VERSION },
	{ NULL, 0 },
};

static int parse_word(const char *v, const struct word *t, int *ret)
{
	for (; t->word; t++) {
		if (!strcmp(v, t->word)) {
			*ret = t->val;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_bool(const char *v, bool *ret)
{
	int b;

	if (parse_word(v, bool_words, &b))
		return -EINVAL;
	*ret = b;
	return 0;
}

static int set_file(char **slot, const char *key, const char *v, char *err, size_t errlen)
{
	if (!*v) {
		seterr(err, errlen, "%s: empty file name", key);
		return -EINVAL;
	}
	if (access(v, R_OK)) {
		seterr(err, errlen, "%s %s: %s", key, v, strerror(errno));
		return -EINVAL;
	}
	free(*slot);
	*slot = strdup(v);
	return *slot ? 0 : -ENOMEM;
}

static int set_addr(char **slot, struct daemon_addr *addr, bool allow_unix, const char *key,
		    const char *v, char *err, size_t errlen)
{
	const char *why = NULL;

	if (addr_parse(v, allow_unix, addr, &why)) {
		seterr(err, errlen, "%s '%s': %s", key, v, why);
		return -EINVAL;
	}
	free(*slot);
	*slot = strdup(v);
	return *slot ? 0 : -ENOMEM;
}

/* Rules may be given one per key or several separated by spaces. */
static int add_rules(struct service_config *s, enum policy_kind kind, const char *key,
		     const char *v, char *err, size_t errlen)
{
	char *copy = strdup(v), *save = NULL, *tok;
	int rc = 0, n = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		rc = policy_add(s->policy, kind, tok);
		if (rc) {
			if (kind == POLICY_URI)
				seterr(err, errlen,
				       "%s '%s': expected an exact URI or spiffe://trust.domain/*",
				       key, tok);
			else
				seterr(err, errlen, "%s '%s': invalid name", key, tok);
			break;
		}
		n++;
	}
	if (!rc && !n) {
		seterr(err, errlen, "%s: empty value", key);
		rc = -EINVAL;
	}
	free(copy);
	return rc;
}

static int rule_kind(const char *key, enum service_role role, enum policy_kind *ret)
{
	static const char *const server_keys[] = { "allow-uri", "allow-dns", "allow-cn",
						   "allow-ou" };
	static const char *const client_keys[] = { "verify-uri", "verify-dns", "verify-cn",
						   "verify-ou" };
	const char *const *keys = role == ROLE_SERVER ? server_keys : client_keys;

	for (int k = 0; k < POLICY_KIND_MAX; k++) {
		if (!strcmp(key, keys[k])) {
			*ret = (enum policy_kind)k;
			return 0;
		}
	}
	return -ENOENT;
}

static int global_set(struct run_config *r, const char *key, const char *v, char *err,
		      size_t errlen)
{
	int val;

	if (!strcmp(key, "threads")) {
		if (parse_uint(v, 1, 1024, &r->threads))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "log-format")) {
		if (parse_word(v, log_format_words, &val))
			goto bad;
		r->log_format = (enum log_format)val;
		return 0;
	}
	if (!strcmp(key, "drain-timeout")) {
		if (parse_uint(v, 0, 24 * 3600 * 1000, &r->drain_timeout_ms))
			goto bad;
		return 0;
	}
	return -ENOENT;
bad:
	seterr(err, errlen, "%s: invalid value '%s'", key, v);
	return -EINVAL;
}

static int svc_set(struct service_config *s, const char *key, const char *v, char *err,
		   size_t errlen)
{
	enum policy_kind kind;
	bool b;
	int val;

	if (!strcmp(key, "listen"))
		return set_addr(&s->listen, &s->listen_addr, false, key, v, err, errlen);
	if (!strcmp(key, "target"))
		return set_addr(&s->target, &s->target_addr, true, key, v, err, errlen);
	if (!strcmp(key, "cert"))
		return set_file(&s->cert, key, v, err, errlen);
	if (!strcmp(key, "key"))
		return set_file(&s->key, key, v, err, errlen);
	if (!strcmp(key, "cacert"))
		return set_file(&s->cacert, key, v, err, errlen);
	if (!rule_kind(key, s->role, &kind))
		return add_rules(s, kind, key, v, err, errlen);
	if (!strcmp(key, s->role == ROLE_SERVER ? "allow-all" : "verify-any")) {
		if (parse_bool(v, &b))
			goto bad;
		if (b)
			policy_set_allow_all(s->policy);
		return 0;
	}
	if (s->role == ROLE_SERVER && !strcmp(key, "proxy-protocol")) {
		if (parse_bool(v, &b))
			goto bad;
		s->proxy_protocol = b;
		return 0;
	}
	if (!strcmp(key, "resumption")) {
		/* server: yes = tickets (stateless, rotated keys), or cache (stateful) */
		bool cache = s->role == ROLE_SERVER && !strcmp(v, "cache");

		if (cache || (s->role == ROLE_SERVER && !strcmp(v, "tickets")))
			b = true;
		else if (parse_bool(v, &b))
			goto bad;
		s->resumption = b;
		s->resumption_cache = cache;
		s->resumption_set = true;
		return 0;
	}
	if (s->role == ROLE_SERVER && !strcmp(key, "ticket-lifetime")) {
		if (parse_uint(v, 1, MAX_TICKET_S, &s->ticket_lifetime_s))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "session-cache")) {
		if (s->role == ROLE_CLIENT ? parse_uint(v, 0, MAX_SESS_CACHE, &s->session_cache)
					   : parse_uint(v, 1, MAX_SRV_CACHE, &s->session_cache))
			goto bad;
		s->session_cache_set = true;
		return 0;
	}
	if (s->role == ROLE_CLIENT && !strcmp(key, "server-name")) {
		free(s->server_name);
		s->server_name = strdup(v);
		return s->server_name ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "ktls")) {
		if (parse_word(v, ktls_words, &val))
			goto bad;
		s->ktls = (enum ktls_mode)val;
		s->ktls_set = true;
		return 0;
	}
	if (!strcmp(key, "handshake-timeout")) {
		if (parse_uint(v, 1, 3600 * 1000, &s->handshake_timeout_ms))
			goto bad;
		return 0;
	}
	if (s->role == ROLE_CLIENT && !strcmp(key, "connect-timeout")) {
		if (parse_uint(v, 1, 3600 * 1000, &s->connect_timeout_ms))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "max-conns")) {
		if (parse_uint(v, 1, 10000000, &s->max_conns))
			goto bad;
		s->max_conns_set = true;
		return 0;
	}
	if (!strcmp(key, "max-handshakes")) {
		if (parse_uint(v, 1, 10000000, &s->max_handshakes))
			goto bad;
		return 0;
	}
	if (s->role == ROLE_SERVER && !strcmp(key, "max-handshakes-per-source")) {
		if (parse_uint(v, 0, 10000000, &s->max_handshakes_per_source))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "idle-timeout")) {
		if (parse_uint(v, 0, 30 * 24 * 3600, &s->idle_timeout_s))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "min-tls")) {
		if (parse_word(v, min_tls_words, &s->min_tls))
			goto bad;
		return 0;
	}
	return -ENOENT;
bad:
	seterr(err, errlen, "%s: invalid value '%s'", key, v);
	return -EINVAL;
}

/*
 * A client checks the server against the name it dialled unless told otherwise, as a
 * browser would: without this, a client given only --target would accept any certificate
 * the CA ever signed. An IP literal names no certificate, so it needs an explicit rule.
 */
static int client_identity_defaults(struct service_config *s, const char *dash, char *err,
				    size_t errlen)
{
	const struct daemon_addr *t = &s->target_addr;
	int rc;

	if (!s->server_name && t->host[0] && !t->host_is_ip) {
		s->server_name = strdup(t->host);
		if (!s->server_name) {
			seterr(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	if (!policy_is_empty(s->policy))
		return 0;
	if (!s->server_name) {
		seterr(err, errlen,
		       "no %sverify-uri/%sverify-dns rule and no %sverify-any: the server's "
		       "identity would go unchecked (%starget is %s: give %sserver-name, "
		       "%sverify-dns/%sverify-uri, or %sverify-any)",
		       dash, dash, dash, dash, t->host[0] ? "an IP address" : "a unix socket", dash,
		       dash, dash, dash);
		return -EINVAL;
	}
	rc = policy_add(s->policy, POLICY_DNS, s->server_name);
	if (rc == -ENOMEM) {
		seterr(err, errlen, "out of memory");
		return rc;
	}
	if (rc) {
		seterr(err, errlen,
		       "%sserver-name '%s': not usable as a DNS name to verify the server against "
		       "(give %sverify-dns/%sverify-uri or %sverify-any)",
		       dash, s->server_name, dash, dash, dash);
		return rc;
	}
	s->default_dns_rule = true;
	return 0;
}

/*
 * What every service needs before it can run, and the defaults that depend on the role
 * (a file's "mode = client" may come after other keys); dash says where it came from.
 */
static int svc_validate(struct service_config *s, bool cli, char *err, size_t errlen)
{
	const char *dash = cli ? "--" : "";
	const char *missing = !s->listen   ? "listen"
			      : !s->target ? "target"
			      : !s->cert   ? "cert"
			      : !s->key	   ? "key"
			      : !s->cacert ? "cacert"
					   : NULL;
	int rc;

	if (missing) {
		seterr(err, errlen, "%s%s is required", dash, missing);
		return -EINVAL;
	}
	/* A client reuses its own tickets; a server issuing them needs shared ticket keys. */
	if (!s->resumption_set)
		s->resumption = s->role == ROLE_CLIENT;
	if (s->role == ROLE_SERVER && !s->session_cache_set)
		s->session_cache = DEFAULT_SRV_CACHE;
	if (s->role == ROLE_CLIENT) {
		rc = client_identity_defaults(s, dash, err, errlen);
		if (rc)
			return rc;
	}
	if (policy_is_empty(s->policy)) {
		seterr(err, errlen,
		       "no %sallow-uri/%sallow-dns/%sallow-cn/%sallow-ou rule and no "
		       "%sallow-all: refusing to start a server that admits nobody",
		       dash, dash, dash, dash, dash);
		return -EINVAL;
	}
	return 0;
}

static struct service_config *svc_append(struct run_config *r, enum service_role role)
{
	struct service_config *grown = realloc(r->svc, (r->n_svc + 1) * sizeof(*grown));

	if (!grown)
		return NULL;
	r->svc = grown;
	svc_defaults(&r->svc[r->n_svc], role);
	if (policy_new(&r->svc[r->n_svc].policy))
		return NULL;
	return &r->svc[r->n_svc++];
}

static void run_defaults(struct run_config *r)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(r, 0, sizeof(*r));
	r->threads = n > 0 ? (unsigned)n : 1;
	r->log_format = LOG_LOGFMT;
	r->drain_timeout_ms = DEFAULT_DRAIN_MS;
}

static void print_help(enum service_role role)
{
	if (role == ROLE_SERVER)
		fputs("usage: ktlsd server --listen ADDR --target ADDR --cert FILE --key FILE "
		      "--cacert FILE\n"
		      "         [--allow-uri PATTERN]... [--allow-dns NAME]... [--allow-cn "
		      "NAME]...\n"
		      "         [--allow-ou NAME]... [--allow-all]\n"
		      "         [--ktls auto|require|off] [--threads N] [--handshake-timeout MS]\n"
		      "         [--max-conns N] [--log-format logfmt|json] [--min-tls 1.2|1.3]\n"
		      "         [--proxy-protocol] [--resumption[=tickets|cache]|--no-resumption]\n"
		      "         [--ticket-lifetime S] [--session-cache N]\n"
		      "  --resumption: stateless tickets under rotated keys; =cache: sessions\n"
		      "        kept here (up to --session-cache, 20000), tickets carry an ID\n"
		      "  ADDR: host:port, [v6addr]:port, or unix:/path (target only)\n"
		      "  PATTERN: an exact URI SAN, or spiffe://trust.domain/* for a trust "
		      "domain\n",
		      stdout);
	else
		fputs("usage: ktlsd client --listen ADDR --target HOST:PORT --cert FILE --key FILE "
		      "--cacert FILE\n"
		      "         [--verify-uri PATTERN]... [--verify-dns NAME]... [--server-name "
		      "SNI]\n"
		      "         [--verify-any] [--connect-timeout MS] [--ktls auto|require|off]\n"
		      "         [--threads N] [--handshake-timeout MS] [--max-conns N]\n"
		      "         [--log-format logfmt|json] [--min-tls 1.2|1.3]\n"
		      "         [--resumption|--no-resumption] [--session-cache N]\n"
		      "  HOST: a name also sets the default --server-name (SNI) and, without\n"
		      "        --verify-* or --verify-any, a --verify-dns rule for it\n",
		      stdout);
}

int config_from_argv(enum service_role role, int argc, char **argv, struct run_config *ret_cfg,
		     char *err, size_t errlen)
{
	static const struct option server_opts[] = {
		{ "listen", required_argument, NULL, 0 },
		{ "target", required_argument, NULL, 0 },
		{ "cert", required_argument, NULL, 0 },
		{ "key", required_argument, NULL, 0 },
		{ "cacert", required_argument, NULL, 0 },
		{ "allow-uri", required_argument, NULL, 0 },
		{ "allow-dns", required_argument, NULL, 0 },
		{ "allow-cn", required_argument, NULL, 0 },
		{ "allow-ou", required_argument, NULL, 0 },
		{ "allow-all", no_argument, NULL, 0 },
		{ "proxy-protocol", no_argument, NULL, 0 },
		{ "resumption", optional_argument, NULL, 0 },
		{ "no-resumption", no_argument, NULL, 0 },
		{ "ticket-lifetime", required_argument, NULL, 0 },
		{ "session-cache", required_argument, NULL, 0 },
		{ "ktls", required_argument, NULL, 0 },
		{ "threads", required_argument, NULL, 0 },
		{ "handshake-timeout", required_argument, NULL, 0 },
		{ "max-conns", required_argument, NULL, 0 },
		{ "max-handshakes", required_argument, NULL, 0 },
		{ "max-handshakes-per-source", required_argument, NULL, 0 },
		{ "idle-timeout", required_argument, NULL, 0 },
		{ "log-format", required_argument, NULL, 0 },
		{ "min-tls", required_argument, NULL, 0 },
		{ "drain-timeout", required_argument, NULL, 0 },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const struct option client_opts[] = {
		{ "listen", required_argument, NULL, 0 },
		{ "target", required_argument, NULL, 0 },
		{ "cert", required_argument, NULL, 0 },
		{ "key", required_argument, NULL, 0 },
		{ "cacert", required_argument, NULL, 0 },
		{ "verify-uri", required_argument, NULL, 0 },
		{ "verify-dns", required_argument, NULL, 0 },
		{ "verify-cn", required_argument, NULL, 0 },
		{ "verify-ou", required_argument, NULL, 0 },
		{ "verify-any", no_argument, NULL, 0 },
		{ "server-name", required_argument, NULL, 0 },
		{ "connect-timeout", required_argument, NULL, 0 },
		{ "resumption", no_argument, NULL, 0 },
		{ "no-resumption", no_argument, NULL, 0 },
		{ "session-cache", required_argument, NULL, 0 },
		{ "ktls", required_argument, NULL, 0 },
		{ "threads", required_argument, NULL, 0 },
		{ "handshake-timeout", required_argument, NULL, 0 },
		{ "max-conns", required_argument, NULL, 0 },
		{ "max-handshakes", required_argument, NULL, 0 },
		{ "idle-timeout", required_argument, NULL, 0 },
		{ "log-format", required_argument, NULL, 0 },
		{ "min-tls", required_argument, NULL, 0 },
		{ "drain-timeout", required_argument, NULL, 0 },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const struct option *opts = role == ROLE_SERVER ? server_opts : client_opts;
	struct run_config r;
	struct service_config *s;
	int c, idx, rc;

	run_defaults(&r);
	s = svc_append(&r, role);
	if (!s) {
		seterr(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out_free;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, &idx)) != -1) {
		const char *key, *val;

		if (c == 'h') {
			print_help(role);
			config_free(&r);
			return 1;
		}
		if (c == '?') {
			if (optopt)
				seterr(err, errlen, "unknown option '-%c'", optopt);
			else
				seterr(err, errlen, "unknown option or missing value: '%s'",
				       argv[optind - 1]);
			rc = -EINVAL;
			goto out_free;
		}
		key = opts[idx].name;
		val = optarg ? optarg : "";
		/* The negative flag has no key of its own: the file says resumption = no. */
		if (!strcmp(key, "no-resumption")) {
			key = "resumption";
			val = "no";
		}
		rc = global_set(&r, key, val, err, errlen);
		if (rc == -ENOENT)
			rc = svc_set(s, key, val, err, errlen);
		if (rc) {
			/* Setter messages name the key; on the CLI it is spelled --key. */
			char msg[CONFIG_ERR_MAX];

			snprintf(msg, sizeof(msg), "--%s", err);
			snprintf(err, errlen, "%s", msg);
			rc = -EINVAL;
			goto out_free;
		}
	}
	if (optind < argc) {
		seterr(err, errlen, "unexpected argument '%s'", argv[optind]);
		rc = -EINVAL;
		goto out_free;
	}
	rc = svc_validate(s, true, err, errlen);
	if (rc)
		goto out_free;
	*ret_cfg = r;
	return 0;

out_free:
	config_free(&r);
	return rc;
}

/* --- INI ------------------------------------------------------------------------- */

struct ini_state {
	FILE *f;
	int line;	  /* lines handed to inih so far = the line being parsed */
	int section_line; /* of the last [section] header seen */
	int err_line;	  /* where msg was set */
	int cur_section_line;
	int report_line; /* the header for section-level errors */
	bool err_section;
	struct run_config *r;
	struct service_config *cur; /* NULL in [global] or before any section */
	bool in_global;
	char cur_section[128];
	char msg[CONFIG_ERR_MAX];
};

/* inih reads one line per call: counting them here gives every key its line number. */
static char *cfg_ini_reader(char *str, int num, void *stream)
{
	struct ini_state *st = stream;
	char *got = fgets(str, num, st->f);
	const char *p = got;

	if (!got)
		return NULL;
	st->line++;
	while (p && (*p == ' ' || *p == '\t'))
		p++;
	if (p && *p == '[')
		st->section_line = st->line;
	return got;
}

static int ini_handle_key(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	int rc;

	/* A new header line starts a new section even if it repeats the previous name. */
	if (strcmp(section, st->cur_section) || st->section_line != st->cur_section_line) {
		snprintf(st->cur_section, sizeof(st->cur_section), "%s", section);
		st->cur_section_line = st->section_line;
		st->cur = NULL;
		st->in_global = false;
		if (!strcmp(section, "global")) {
			st->in_global = true;
		} else if (!strncmp(section, "service ", 8) && section[8]) {
			const char *svc_name = section + 8;

			for (size_t i = 0; i < st->r->n_svc; i++) {
				if (!strcmp(st->r->svc[i].name, svc_name)) {
					snprintf(st->msg, sizeof(st->msg),
						 "service '%s' defined twice (first on line %d)",
						 svc_name, st->r->svc[i].line);
					st->err_section = true;
					return 0;
				}
			}
			st->cur = svc_append(st->r, ROLE_SERVER);
			if (!st->cur) {
				snprintf(st->msg, sizeof(st->msg), "out of memory");
				return 0;
			}
			snprintf(st->cur->name, sizeof(st->cur->name), "%s", svc_name);
			st->cur->line = st->section_line;
		} else {
			snprintf(st->msg, sizeof(st->msg),
				 "unknown section [%s] (expected [global] or [service NAME])",
				 section);
			st->err_section = true;
			return 0;
		}
	}
	if (st->in_global) {
		rc = global_set(st->r, name, value, st->msg, sizeof(st->msg));
		if (rc == -ENOENT)
			snprintf(st->msg, sizeof(st->msg),
				 "unknown key '%s' in [global] (known: threads, log-format, "
				 "drain-timeout)",
				 name);
		return rc ? 0 : 1;
	}
	if (!st->cur) {
		snprintf(st->msg, sizeof(st->msg), "key '%s' outside any section", name);
		return 0;
	}
	/* A role key switches the service to client mode before its other keys. */
	if (!strcmp(name, "mode")) {
		if (!strcmp(value, "server") || !strcmp(value, "client")) {
			st->cur->role = !strcmp(value, "server") ? ROLE_SERVER : ROLE_CLIENT;
			return 1;
		}
		snprintf(st->msg, sizeof(st->msg), "mode: expected server or client, got '%s'",
			 value);
		return 0;
	}
	rc = svc_set(st->cur, name, value, st->msg, sizeof(st->msg));
	if (rc == -ENOENT)
		snprintf(st->msg, sizeof(st->msg), "unknown key '%s' in [service %s]", name,
			 st->cur->name);
	return rc ? 0 : 1;
}

/* inih keeps going after an error and reports the first line: keep the first message. */
static int cfg_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;

	if (st->err_line)
		return 0;
	if (ini_handle_key(user, section, name, value))
		return 1;
	st->err_line = st->line;
	st->report_line = st->err_section ? st->section_line : st->line;
	return 0;
}

int config_from_file(const char *path, struct run_config *ret_cfg, char *err, size_t errlen)
{
	struct ini_state st = { 0 };
	struct run_config r;
	int line, rc;

	run_defaults(&r);
	st.r = &r;
	st.f = fopen(path, "r");
	if (!st.f) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	line = ini_parse_stream(cfg_ini_reader, &st, cfg_ini_handler, &st);
	fclose(st.f);
	if (line < 0) {
		seterr(err, errlen, "%s: cannot read", path);
		rc = -EINVAL;
		goto out_free;
	}
	if (line > 0) {
		if (line != st.err_line)
			snprintf(st.msg, sizeof(st.msg),
				 "malformed line (expected 'key = value', '[global]' or "
				 "'[service NAME]')");
		else
			line = st.report_line;
		seterr(err, errlen, "%s:%d: %s", path, line, st.msg);
		rc = -EINVAL;
		goto out_free;
	}
	if (!r.n_svc) {
		seterr(err, errlen, "%s: no [service NAME] section", path);
		rc = -EINVAL;
		goto out_free;
	}
	for (size_t i = 0; i < r.n_svc; i++) {
		char msg[CONFIG_ERR_MAX];

		if (svc_validate(&r.svc[i], false, msg, sizeof(msg))) {
			seterr(err, errlen, "%s:%d: [service %s]: %s", path, r.svc[i].line,
			       r.svc[i].name, msg);
			rc = -EINVAL;
			goto out_free;
		}
	}
	*ret_cfg = r;
	return 0;

out_free:
	config_free(&r);
	return rc;
}

// SPDX-License-Identifier: MIT
/*
 * Configuration parsing. Both front ends (getopt_long and the INI reader below) feed the
 * same key = value setter so a key means the same thing on the command line and in a file.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/http.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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
#define MAX_COUNT	     10000000 /* max-conns, max-handshakes */
#define MAX_IDLE_S	     (30 * 24 * 3600)
#define MAX_CRL_FILES	     64
#define DEFAULT_OCSP_MS	     2000
#define MAX_OCSP_MS	     60000

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
	s->ocsp_timeout_ms = DEFAULT_OCSP_MS;
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
	for (unsigned i = 0; i < s->n_crl; i++)
		free(s->crl[i]);
	free(s->crl);
	free(s->ocsp_staple);
	free(s->ocsp_url);
	free(s->ocsp_host);
	free(s->ocsp_path);
	free(s->intercepts);
	policy_free(s->policy);
}

void config_free(struct run_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_svc; i++)
		svc_free(&cfg->svc[i]);
	free(cfg->svc);
	free(cfg->admin);
	free(cfg->user);
	memset(cfg, 0, sizeof(*cfg));
}

struct config_ref *config_ref_new(struct run_config *cfg)
{
	struct config_ref *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	return r;
}

struct config_ref *config_ref_get(struct config_ref *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void config_ref_put(struct config_ref *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	config_free(&r->cfg);
	free(r);
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *ret_n)
{
	char *end;
	unsigned long n;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*ret_n = (unsigned)n;
	return 0;
}

/* The words a key accepts and what each means; a table ends with a NULL word. */
struct word {
	const char *word;
	int val;
};

static const struct word bool_words[] = {
	{ "true", 1 }, { "yes", 1 }, { "1", 1 },   { "on", 1 }, { "false", 0 },
	{ "no", 0 },   { "0", 0 },   { "off", 0 }, { NULL, 0 },
};
static const struct word ktls_words[] = {
	{ "auto", KTLS_MODE_AUTO },
	{ "require", KTLS_MODE_REQUIRE },
	{ "off", KTLS_MODE_OFF },
	{ NULL, 0 },
};
static const struct word relay_words[] = {
	{ "auto", RELAY_MODE_AUTO },
	{ "splice", RELAY_MODE_SPLICE },
	{ "sockmap", RELAY_MODE_SOCKMAP },
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

static int parse_word(const char *v, const struct word *t, int *ret_val)
{
	for (; t->word; t++) {
		if (!strcmp(v, t->word)) {
			*ret_val = t->val;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_bool(const char *v, bool *ret_b)
{
	int b;

	if (parse_word(v, bool_words, &b))
		return -EINVAL;
	*ret_b = b;
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

/* A rule value with a control byte is a mistake (or a smuggling attempt), never a name. */
static bool has_control(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return true;
	return false;
}

/*
 * URI and DNS rules may be given one per key or several separated by spaces or commas:
 * neither can contain one. A CN or OU can ("Payments Service", "Smith, John"), so each
 * such key is exactly one name: splitting it would admit "Service" and "Payments".
 */
static int add_rules(struct service_config *s, enum policy_kind kind, const char *key,
		     const char *v, char *err, size_t errlen)
{
	bool split = kind == POLICY_URI || kind == POLICY_DNS;
	char *copy = strdup(v), *save = NULL, *tok;
	int rc = 0, n = 0;

	if (!copy)
		return -ENOMEM;
	if (has_control(v)) {
		seterr(err, errlen, "%s: control character in the value", key);
		rc = -EINVAL;
		goto out_free;
	}
	tok = split ? strtok_r(copy, " \t,", &save) : copy;
	for (; tok && *tok; tok = split ? strtok_r(NULL, " \t,", &save) : NULL) {
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
out_free:
	free(copy);
	return rc;
}

static int bad_value(const char *key, const char *v, char *err, size_t errlen)
{
	seterr(err, errlen, "%s: invalid value '%s'", key, v);
	return -EINVAL;
}

/* --- the admin endpoint's keys (admin, admin-allow-remote), kept together ----------- */

static int admin_set(struct run_config *r, const char *key, const char *v, char *err, size_t errlen)
{
	if (!strcmp(key, "admin"))
		return set_addr(&r->admin, &r->admin_addr, true, key, v, err, errlen);
	if (!strcmp(key, "admin-allow-remote")) {
		if (parse_bool(v, &r->admin_allow_remote))
			return bad_value(key, v, err, errlen);
		return 0;
	}
	return -ENOENT;
}

/*
 * The endpoint shows every peer's identity and address to whoever asks, without
 * authentication: only loopback and unix sockets, unless the operator says otherwise.
 */
static int admin_check(const struct run_config *r, char *err, size_t errlen)
{
	if (!r->admin || r->admin_allow_remote || addr_is_loopback(&r->admin_addr))
		return 0;
	seterr(err, errlen,
	       "admin '%s': not a loopback address (the endpoint has no authentication; "
	       "add admin-allow-remote to serve it there anyway)",
	       r->admin);
	return -EINVAL;
}

/* A user name as useradd takes it, or a numeric uid; existence is checked at start. */
static int set_user(struct run_config *r, const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (!n || n > 32 ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789._-") != n ||
	    v[0] == '-') {
		seterr(err, errlen, "user: invalid user name '%s'", v);
		return -EINVAL;
	}
	free(r->user);
	r->user = strdup(v);
	return r->user ? 0 : -ENOMEM;
}

static int global_set(struct run_config *r, const char *key, const char *v, char *err,
		      size_t errlen)
{
	int val = admin_set(r, key, v, err, errlen);

	if (val != -ENOENT)
		return val;

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
	if (!strcmp(key, "allow-core-dumps")) {
		if (parse_bool(v, &r->allow_core_dumps))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "handshake-thread")) {
		if (parse_bool(v, &r->handshake_thread))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "landlock") || !strcmp(key, "seccomp")) {
		if (parse_bool(v, key[0] == 'l' ? &r->landlock : &r->seccomp))
			goto bad;
		return 0;
	}
	if (!strcmp(key, "user"))
		return set_user(r, v, err, errlen);
	return -ENOENT;
bad:
	return bad_value(key, v, err, errlen);
}

/*
 * A service's keys: which role has each one and what it sets. svc_set looks a key up here,
 * and so does everything else that asks what a key is (ini's repeat rule, the other-role
 * hint), so there is one list of keys.
 */
enum key_role { ANY_ROLE, SERVER_ONLY, CLIENT_ONLY };

struct svc_key;
typedef int svc_setter(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		       size_t errlen);

struct svc_key {
	const char *name;
	enum key_role role;
	svc_setter *set;
	size_t off;	       /* set_file, set_uint: the field */
	unsigned min, max;     /* set_uint: the range */
	enum policy_kind kind; /* set_rules */
};

/*
 * systemd socket activation: "systemd" (the one socket passed) or "systemd:NAME" (the
 * socket unit's FileDescriptorName=, which systemd allows to be up to 255 printable ASCII
 * characters but ':'). The socket itself is only looked at when the daemon starts.
 */
static int set_listen_systemd(struct service_config *s, const struct svc_key *k, const char *v,
			      char *err, size_t errlen)
{
	const char *name = v[7] == ':' ? v + 8 : NULL;

	if (name && (!*name || strlen(name) > 255 || strchr(name, ':') || has_control(name) ||
		     strchr(name, ' '))) {
		seterr(err, errlen,
		       "%s '%s': expected systemd or systemd:NAME (NAME: the socket's "
		       "FileDescriptorName=)",
		       k->name, v);
		return -EINVAL;
	}
	memset(&s->listen_addr, 0, sizeof(s->listen_addr));
	snprintf(s->listen_addr.text, sizeof(s->listen_addr.text), "%s", v);
	s->listen_systemd = true;
	free(s->listen);
	s->listen = strdup(v);
	return s->listen ? 0 : -ENOMEM;
}

static int set_listen(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		      size_t errlen)
{
	if (!strncmp(v, "systemd", 7) && (!v[7] || v[7] == ':'))
		return set_listen_systemd(s, k, v, err, errlen);
	s->listen_systemd = false;
	return set_addr(&s->listen, &s->listen_addr, false, k->name, v, err, errlen);
}

static int set_target(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		      size_t errlen)
{
	return set_addr(&s->target, &s->target_addr, true, k->name, v, err, errlen);
}

static int set_path(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		    size_t errlen)
{
	return set_file((char **)((char *)s + k->off), k->name, v, err, errlen);
}

static int set_uint(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		    size_t errlen)
{
	if (parse_uint(v, k->min, k->max, (unsigned *)((char *)s + k->off)))
		return bad_value(k->name, v, err, errlen);
	return 0;
}

static int set_rules(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		     size_t errlen)
{
	return add_rules(s, k->kind, k->name, v, err, errlen);
}

static int set_allow_all(struct service_config *s, const struct svc_key *k, const char *v,
			 char *err, size_t errlen)
{
	bool b;

	if (parse_bool(v, &b))
		return bad_value(k->name, v, err, errlen);
	if (b)
		policy_set_allow_all(s->policy);
	return 0;
}

static int set_proxy_protocol(struct service_config *s, const struct svc_key *k, const char *v,
			      char *err, size_t errlen)
{
	if (parse_bool(v, &s->proxy_protocol))
		return bad_value(k->name, v, err, errlen);
	return 0;
}

/* server: yes = tickets (stateless, rotated keys), or cache (stateful) */
static int set_resumption(struct service_config *s, const struct svc_key *k, const char *v,
			  char *err, size_t errlen)
{
	bool cache = s->role == ROLE_SERVER && !strcmp(v, "cache");
	bool b;

	if (cache || (s->role == ROLE_SERVER && !strcmp(v, "tickets")))
		b = true;
	else if (parse_bool(v, &b))
		return bad_value(k->name, v, err, errlen);
	s->resumption = b;
	s->resumption_cache = cache;
	s->resumption_set = true;
	return 0;
}

/* client: tickets kept per worker; server (resumption = cache): sessions held */
static int set_session_cache(struct service_config *s, const struct svc_key *k, const char *v,
			     char *err, size_t errlen)
{
	if (s->role == ROLE_CLIENT ? parse_uint(v, 0, MAX_SESS_CACHE, &s->session_cache)
				   : parse_uint(v, 1, MAX_SRV_CACHE, &s->session_cache))
		return bad_value(k->name, v, err, errlen);
	s->session_cache_set = true;
	return 0;
}

static int set_server_name(struct service_config *s, const struct svc_key *k, const char *v,
			   char *err, size_t errlen)
{
	free(s->server_name);
	s->server_name = strdup(v);
	return s->server_name ? 0 : -ENOMEM;
}

static int set_ktls(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		    size_t errlen)
{
	int val;

	if (parse_word(v, ktls_words, &val))
		return bad_value(k->name, v, err, errlen);
	s->ktls = (enum ktls_mode)val;
	s->ktls_set = true;
	return 0;
}

static int set_max_conns(struct service_config *s, const struct svc_key *k, const char *v,
			 char *err, size_t errlen)
{
	if (parse_uint(v, 1, MAX_COUNT, &s->max_conns))
		return bad_value(k->name, v, err, errlen);
	s->max_conns_set = true;
	return 0;
}

static int set_min_tls(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		       size_t errlen)
{
	if (parse_word(v, min_tls_words, &s->min_tls))
		return bad_value(k->name, v, err, errlen);
	return 0;
}

/* Repeatable: each --crl adds a file (one CA's CRL each, typically). */
static int set_crl(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		   size_t errlen)
{
	char **grown, *path = NULL;
	int rc;

	if (s->n_crl == MAX_CRL_FILES) {
		seterr(err, errlen, "%s: more than %d files", k->name, MAX_CRL_FILES);
		return -EINVAL;
	}
	rc = set_file(&path, k->name, v, err, errlen);
	if (rc)
		return rc;
	grown = realloc(s->crl, (s->n_crl + 1) * sizeof(*grown));
	if (!grown) {
		free(path);
		return -ENOMEM;
	}
	s->crl = grown;
	s->crl[s->n_crl++] = path;
	return 0;
}

/* --- OCSP and PKCS#11 keys (docs/ocsp-pkcs11.md) ----------------------------------- */

/* A file, or a PKCS#11 URI (RFC 7512) that OpenSSL's pkcs11 provider opens at start. */
static int set_key(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		   size_t errlen)
{
	if (strncmp(v, "pkcs11:", 7))
		return set_path(s, k, v, err, errlen);
	if (has_control(v)) {
		seterr(err, errlen, "%s: control character in the PKCS#11 URI", k->name);
		return -EINVAL;
	}
	free(s->key);
	s->key = strdup(v);
	return s->key ? 0 : -ENOMEM;
}

/*
 * http://host[:port]/path only: the worker speaks plain HTTP to the responder itself
 * (OCSP responses are signed, RFC 6960 A.1) and resolves the host once, here, so no
 * handshake ever waits on DNS.
 */
static int set_ocsp_url(struct service_config *s, const struct svc_key *k, const char *v, char *err,
			size_t errlen)
{
	char *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL, *frag = NULL;
	char hostport[300];
	const char *why = NULL;
	int tls = 0, rc = -EINVAL;

	if (has_control(v) ||
	    !OSSL_HTTP_parse_url(v, &tls, &user, &host, &port, NULL, &path, &query, &frag)) {
		seterr(err, errlen, "%s '%s': not a URL", k->name, v);
		goto out_free;
	}
	if (tls || strncmp(v, "http://", 7) || (user && *user) || (frag && *frag)) {
		seterr(err, errlen,
		       "%s '%s': expected http://host[:port]/path (plain HTTP, no "
		       "user or fragment)",
		       k->name, v);
		goto out_free;
	}
	snprintf(hostport, sizeof(hostport), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
	if (addr_parse(hostport, false, &s->ocsp_addr, &why)) {
		seterr(err, errlen, "%s '%s': %s", k->name, v, why);
		goto out_free;
	}
	free(s->ocsp_url);
	free(s->ocsp_host);
	free(s->ocsp_path);
	s->ocsp_url = strdup(v);
	s->ocsp_host = host;
	if (!query || !*query)
		s->ocsp_path = strdup(path);
	else if (asprintf(&s->ocsp_path, "%s?%s", path, query) < 0)
		s->ocsp_path = NULL;
	host = NULL;
	rc = s->ocsp_url && s->ocsp_path ? 0 : -ENOMEM;
out_free:
	OPENSSL_free(host);
	OPENSSL_free(port);
	OPENSSL_free(path);
	OPENSSL_free(user);
	OPENSSL_free(query);
	OPENSSL_free(frag);
	return rc;
}

static int set_ocsp_fail(struct service_config *s, const struct svc_key *k, const char *v,
			 char *err, size_t errlen)
{
	if (strcmp(v, "open") && strcmp(v, "closed"))
		return bad_value(k->name, v, err, errlen);
	s->ocsp_fail_closed = !strcmp(v, "closed");
	return 0;
}

static int set_flag(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		    size_t errlen)
{
	if (parse_bool(v, (bool *)((char *)s + k->off)))
		return bad_value(k->name, v, err, errlen);
	return 0;
}

/* bpf/ keys (docs/bpf.md): --relay, --intercept (repeatable, like the rules). */
static int set_relay(struct service_config *s, const struct svc_key *k, const char *v, char *err,
		     size_t errlen)
{
	int val;

	if (parse_word(v, relay_words, &val))
		return bad_value(k->name, v, err, errlen);
	s->relay = (enum relay_mode)val;
	return 0;
}

static int set_intercept(struct service_config *s, const struct svc_key *k, const char *v,
			 char *err, size_t errlen)
{
	struct intercept_rule r, *grown;
	const char *why = NULL;

	if (intercept_parse(v, &r, &why)) {
		seterr(err, errlen, "%s '%s': %s", k->name, v, why);
		return -EINVAL;
	}
	if (s->n_intercepts >= INTERCEPT_MAX) {
		seterr(err, errlen, "%s: more than %d in one service", k->name, INTERCEPT_MAX);
		return -EINVAL;
	}
	grown = realloc(s->intercepts, (s->n_intercepts + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	grown[s->n_intercepts++] = r;
	s->intercepts = grown;
	return 0;
}

#define FIELD(f) offsetof(struct service_config, f)

/* Unnamed fields are 0: ANY_ROLE, and no field or range. */
static const struct svc_key svc_keys[] = {
	{ .name = "listen", .set = set_listen },
	{ .name = "target", .set = set_target },
	{ .name = "cert", .set = set_path, .off = FIELD(cert) },
	{ .name = "key", .set = set_key, .off = FIELD(key) },
	{ .name = "cacert", .set = set_path, .off = FIELD(cacert) },
	{ .name = "key-password-file", .set = set_path, .off = FIELD(key_password_file) },
	{ .name = "crl", .set = set_crl },
	{ .name = "allow-uri", .role = SERVER_ONLY, .set = set_rules, .kind = POLICY_URI },
	{ .name = "allow-dns", .role = SERVER_ONLY, .set = set_rules, .kind = POLICY_DNS },
	{ .name = "allow-cn", .role = SERVER_ONLY, .set = set_rules, .kind = POLICY_CN },
	{ .name = "allow-ou", .role = SERVER_ONLY, .set = set_rules, .kind = POLICY_OU },
	{ .name = "verify-uri", .role = CLIENT_ONLY, .set = set_rules, .kind = POLICY_URI },
	{ .name = "verify-dns", .role = CLIENT_ONLY, .set = set_rules, .kind = POLICY_DNS },
	{ .name = "verify-cn", .role = CLIENT_ONLY, .set = set_rules, .kind = POLICY_CN },
	{ .name = "verify-ou", .role = CLIENT_ONLY, .set = set_rules, .kind = POLICY_OU },
	{ .name = "allow-all", .role = SERVER_ONLY, .set = set_allow_all },
	{ .name = "verify-any", .role = CLIENT_ONLY, .set = set_allow_all },
	{ .name = "proxy-protocol", .role = SERVER_ONLY, .set = set_proxy_protocol },
	{ .name = "resumption", .set = set_resumption },
	{ .name = "ticket-lifetime",
	  .role = SERVER_ONLY,
	  .set = set_uint,
	  .off = FIELD(ticket_lifetime_s),
	  .min = 1,
	  .max = MAX_TICKET_S },
	{ .name = "session-cache", .set = set_session_cache },
	{ .name = "server-name", .role = CLIENT_ONLY, .set = set_server_name },
	{ .name = "ktls", .set = set_ktls },
	{ .name = "handshake-timeout",
	  .set = set_uint,
	  .off = FIELD(handshake_timeout_ms),
	  .min = 1,
	  .max = 3600 * 1000 },
	{ .name = "connect-timeout",
	  .role = CLIENT_ONLY,
	  .set = set_uint,
	  .off = FIELD(connect_timeout_ms),
	  .min = 1,
	  .max = 3600 * 1000 },
	{ .name = "max-conns", .set = set_max_conns },
	{ .name = "max-handshakes",
	  .set = set_uint,
	  .off = FIELD(max_handshakes),
	  .min = 1,
	  .max = MAX_COUNT },
	{ .name = "max-handshakes-per-source",
	  .role = SERVER_ONLY,
	  .set = set_uint,
	  .off = FIELD(max_handshakes_per_source),
	  .min = 0,
	  .max = MAX_COUNT },
	{ .name = "max-handshakes-per-second",
	  .set = set_uint,
	  .off = FIELD(max_handshakes_per_second),
	  .min = 0,
	  .max = MAX_COUNT },
	{ .name = "idle-timeout",
	  .set = set_uint,
	  .off = FIELD(idle_timeout_s),
	  .min = 0,
	  .max = MAX_IDLE_S },
	{ .name = "min-tls", .set = set_min_tls },
	/* OCSP */
	{ .name = "ocsp-staple", .role = SERVER_ONLY, .set = set_path, .off = FIELD(ocsp_staple) },
	{ .name = "ocsp-url", .set = set_ocsp_url },
	{ .name = "ocsp-timeout-ms",
	  .set = set_uint,
	  .off = FIELD(ocsp_timeout_ms),
	  .min = 1,
	  .max = MAX_OCSP_MS },
	{ .name = "ocsp-fail", .set = set_ocsp_fail },
	{ .name = "unsafe-target",
	  .role = SERVER_ONLY,
	  .set = set_flag,
	  .off = FIELD(unsafe_target) },
	{ .name = "unsafe-listen",
	  .role = CLIENT_ONLY,
	  .set = set_flag,
	  .off = FIELD(unsafe_listen) },
	{ .name = "relay", .set = set_relay },
	{ .name = "intercept", .role = SERVER_ONLY, .set = set_intercept },
};

#undef FIELD

/* The key called name in role's services, or NULL. */
static const struct svc_key *svc_key_find(enum service_role role, const char *name)
{
	enum key_role other = role == ROLE_SERVER ? CLIENT_ONLY : SERVER_ONLY;

	for (size_t i = 0; i < sizeof(svc_keys) / sizeof(svc_keys[0]); i++)
		if (svc_keys[i].role != other && !strcmp(svc_keys[i].name, name))
			return &svc_keys[i];
	return NULL;
}

/* Returns 0, -ENOENT (no such key in s's role: err untouched) or -EINVAL/-ENOMEM. */
static int svc_set(struct service_config *s, const char *key, const char *v, char *err,
		   size_t errlen)
{
	const struct svc_key *k = svc_key_find(s->role, key);

	if (!k)
		return -ENOENT;
	return k->set(s, k, v, err, errlen);
}

/*
 * A client checks the server against the name it dialled unless told otherwise, as a
 * browser would: without this, a client given only --target would accept any certificate
 * the CA ever signed. An IP literal with no --server-name is checked against the server's
 * iPAddress SANs (RFC 6125 does the same for IP reference identities); a unix socket
 * names nothing, so it needs an explicit rule.
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
	/* Servers may present RFC 6125 wildcard names; client certificates may not. */
	policy_set_peer_wildcards(s->policy);
	if (!policy_is_empty(s->policy))
		return 0;
	if (!s->server_name && t->host_is_ip) {
		rc = policy_add(s->policy, POLICY_IP, t->host);
		if (rc) {
			seterr(err, errlen, "%starget %s: %s", dash, t->host,
			       rc == -ENOMEM ? "out of memory" : "not an IP address to verify");
			return rc;
		}
		s->default_ip_rule = true;
		return 0;
	}
	if (!s->server_name) {
		seterr(err, errlen,
		       "no %sverify-uri/%sverify-dns rule and no %sverify-any: the server's "
		       "identity would go unchecked (%starget is a unix socket: give "
		       "%sserver-name, %sverify-dns/%sverify-uri, or %sverify-any)",
		       dash, dash, dash, dash, dash, dash, dash, dash);
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
 * ktlsd's plaintext side stays on this host unless the operator says otherwise: a server
 * relays decrypted bytes to its target, a client accepts bytes to encrypt on its listen
 * address. Either on another host would carry the plaintext over the network.
 */
static int plaintext_local_check(const struct service_config *s, const char *dash, char *err,
				 size_t errlen)
{
	bool server = s->role == ROLE_SERVER;
	const struct daemon_addr *a = server ? &s->target_addr : &s->listen_addr;

	if (addr_is_loopback(a) || (server ? s->unsafe_target : s->unsafe_listen))
		return 0;
	if (!server && s->listen_systemd)
		return 0; /* checked on the socket systemd passes (listen.c) */
	seterr(err, errlen,
	       "%s%s %s is not a loopback address%s: the plaintext %s would cross the network "
	       "(give %s%s if that is what you want)",
	       dash, server ? "target" : "listen", server ? s->target : s->listen,
	       server ? " or unix socket" : "",
	       server ? "ktlsd decrypts for it" : "ktlsd encrypts from it", dash,
	       server ? "unsafe-target" : "unsafe-listen");
	return -EINVAL;
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
	rc = plaintext_local_check(s, dash, err, errlen);
	if (rc)
		return rc;
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

/* A new service of role at the end of r->svc, with its defaults. Returns 0 or -ENOMEM. */
static int svc_append(struct run_config *r, enum service_role role, struct service_config **ret_svc)
{
	struct service_config *grown = realloc(r->svc, (r->n_svc + 1) * sizeof(*grown));
	int rc;

	if (!grown)
		return -ENOMEM;
	r->svc = grown;
	svc_defaults(&r->svc[r->n_svc], role);
	rc = policy_new(&r->svc[r->n_svc].policy);
	if (rc)
		return rc;
	*ret_svc = &r->svc[r->n_svc++];
	return 0;
}

static void run_defaults(struct run_config *r)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(r, 0, sizeof(*r));
	r->threads = n > 0 ? (unsigned)n : 1;
	r->log_format = LOG_LOGFMT;
	r->drain_timeout_ms = DEFAULT_DRAIN_MS;
	r->landlock = true;
	r->seccomp = true;
}

static void print_help_server(void)
{
	fputs("usage: ktlsd server --listen ADDR --target ADDR --cert FILE --key FILE "
	      "--cacert FILE\n"
	      "         [--allow-uri PATTERN]... [--allow-dns NAME]... [--allow-cn "
	      "NAME]...\n"
	      "         [--allow-ou NAME]... [--allow-all] [--unsafe-target]\n"
	      "         [--ktls auto|require|off] [--threads N] [--handshake-timeout MS]\n"
	      "         [--max-conns N] [--log-format logfmt|json] [--min-tls 1.2|1.3]\n"
	      "         [--proxy-protocol] [--resumption[=tickets|cache]|--no-resumption]\n"
	      "         [--ticket-lifetime S] [--session-cache N]\n"
	      "         [--max-handshakes N] [--max-handshakes-per-source N]\n"
	      "         [--max-handshakes-per-second N] [--handshake-thread]\n"
	      "         [--idle-timeout S] [--key-password-file FILE] "
	      "[--allow-core-dumps]\n"
	      "         [--drain-timeout MS] [--user USER] [--no-landlock] [--no-seccomp]\n"
	      "         [--crl FILE]... [--ocsp-staple FILE] [--ocsp-url URL]\n"
	      "         [--ocsp-timeout-ms MS]\n"
	      "         [--ocsp-fail open|closed] [--admin ADDR] [--admin-allow-remote]\n"
	      "         [--relay auto|splice|sockmap] [--intercept CIDR:PORT[-PORT]]...\n"
	      "  --resumption: stateless tickets under rotated keys; =cache: sessions\n"
	      "        kept here (up to --session-cache, 20000), tickets carry an ID\n"
	      "  --max-handshakes: handshakes in progress at once (default: --max-conns);\n"
	      "        --max-handshakes-per-source: the same per client address (0: off)\n"
	      "  --max-handshakes-per-second N: new handshakes started per second, split\n"
	      "        over the threads; past it accepting pauses (0: off, the default)\n"
	      "  --handshake-thread: handshake steps on a low-priority thread per worker:\n"
	      "        relays keep their latency under a flood, handshakes cost more CPU\n"
	      "  --idle-timeout: close a connection idle for S seconds (default 3600,\n"
	      "        0: never)\n"
	      "  --key-password-file: the passphrase of an encrypted --key\n"
	      "  --allow-core-dumps: let the process dump core (keys would be in it)\n"
	      "  --crl FILE: a PEM CRL (repeatable, reloaded): every certificate of the\n"
	      "        peer's chain is checked, so each CA in it needs its CRL\n"
	      "  --ocsp-staple FILE: DER OCSP response for --cert, stapled when asked\n"
	      "  --ocsp-url URL [--ocsp-timeout-ms MS] [--ocsp-fail open|closed]:\n"
	      "        check client certificates with this OCSP responder (http://)\n"
	      "  --key: a PEM file, or pkcs11:token=...;object=... (pkcs11-provider)\n"
	      "  --admin ADDR: /metrics, /healthz, /readyz, /connections over HTTP on\n"
	      "        ADDR (loopback or unix:/path; elsewhere with --admin-allow-remote)\n"
	      "  --relay auto|splice|sockmap: how plaintext moves after kTLS\n"
	      "  --intercept CIDR:PORT[-PORT]: take TCP connections to these addresses\n"
	      "        (sk_lookup; repeatable)\n"
	      "  --unsafe-target: allow a --target that is not loopback or unix:\n"
	      "        the decrypted bytes then cross the network\n"
	      "  --user: run as USER once listeners are bound and keys are read\n"
	      "  --no-landlock, --no-seccomp: turn off the file system / syscall sandbox\n"
	      "  ADDR: host:port, [v6addr]:port, or unix:/path (target only);\n"
	      "        systemd or systemd:NAME: a socket systemd passes (listen only)\n"
	      "  PATTERN: an exact URI SAN, or spiffe://trust.domain/* for a trust "
	      "domain\n",
	      stdout);
}

static void print_help_client(void)
{
	fputs("usage: ktlsd client --listen ADDR --target HOST:PORT --cert FILE --key FILE "
	      "--cacert FILE\n"
	      "         [--verify-uri PATTERN]... [--verify-dns NAME]... [--verify-cn "
	      "NAME]...\n"
	      "         [--verify-ou NAME]... [--server-name SNI] [--verify-any]\n"
	      "         [--unsafe-listen] [--connect-timeout MS] [--ktls "
	      "auto|require|off]\n"
	      "         [--threads N] [--handshake-timeout MS] [--max-conns N]\n"
	      "         [--log-format logfmt|json] [--min-tls 1.2|1.3]\n"
	      "         [--resumption|--no-resumption] [--session-cache N]\n"
	      "         [--max-handshakes N] [--max-handshakes-per-second N]\n"
	      "         [--handshake-thread] [--idle-timeout S] [--key-password-file FILE]\n"
	      "         [--allow-core-dumps] [--drain-timeout MS] [--user USER]\n"
	      "         [--no-landlock] [--no-seccomp] [--crl FILE]... [--ocsp-url URL]\n"
	      "         [--ocsp-timeout-ms MS] [--ocsp-fail open|closed] [--admin ADDR]\n"
	      "         [--admin-allow-remote] [--relay auto|splice|sockmap]\n"
	      "  --max-handshakes: handshakes in progress at once (default: --max-conns)\n"
	      "  --max-handshakes-per-second N: new handshakes started per second, split\n"
	      "        over the threads; past it accepting pauses (0: off, the default)\n"
	      "  --handshake-thread: handshake steps on a low-priority thread per worker:\n"
	      "        relays keep their latency under a flood, handshakes cost more CPU\n"
	      "  --idle-timeout: close a connection idle for S seconds (default 3600,\n"
	      "        0: never)\n"
	      "  --key-password-file: the passphrase of an encrypted --key\n"
	      "  --allow-core-dumps: let the process dump core (keys would be in it)\n"
	      "  --crl FILE: a PEM CRL (repeatable, reloaded): every certificate of the\n"
	      "        peer's chain is checked, so each CA in it needs its CRL\n"
	      "  --ocsp-url URL [--ocsp-timeout-ms MS] [--ocsp-fail open|closed]:\n"
	      "        check the server's certificate with this OCSP responder (http://)\n"
	      "  --key: a PEM file, or pkcs11:token=...;object=... (pkcs11-provider)\n"
	      "  --admin ADDR: /metrics, /healthz, /readyz, /connections over HTTP on\n"
	      "        ADDR (loopback or unix:/path; elsewhere with --admin-allow-remote)\n"
	      "  --relay auto|splice|sockmap: how plaintext moves after kTLS\n"
	      "  --unsafe-listen: allow a --listen that is not loopback: the plaintext\n"
	      "        to encrypt then comes over the network\n"
	      "  --user: run as USER once listeners are bound and keys are read\n"
	      "  --no-landlock, --no-seccomp: turn off the file system / syscall sandbox\n"
	      "  ADDR: host:port, [v6addr]:port; systemd or systemd:NAME: a socket\n"
	      "        systemd passes\n"
	      "  HOST: a name also sets the default --server-name (SNI) and, without\n"
	      "        --verify-* or --verify-any, a --verify-dns rule for it\n",
	      stdout);
}

static void print_help(enum service_role role)
{
	if (role == ROLE_SERVER)
		print_help_server();
	else
		print_help_client();
}

/*
 * The command line's options, one per file key (flags are the file's "key = yes"). Order
 * matters: getopt_long takes an abbreviation that several options share for the first of
 * them when they all take an argument the same way.
 */
static const struct option server_opts[] = {
	{ "listen", required_argument, NULL, 0 },
	{ "target", required_argument, NULL, 0 },
	{ "cert", required_argument, NULL, 0 },
	{ "key", required_argument, NULL, 0 },
	{ "cacert", required_argument, NULL, 0 },
	{ "crl", required_argument, NULL, 0 },
	{ "allow-uri", required_argument, NULL, 0 },
	{ "allow-dns", required_argument, NULL, 0 },
	{ "allow-cn", required_argument, NULL, 0 },
	{ "allow-ou", required_argument, NULL, 0 },
	{ "allow-all", no_argument, NULL, 0 },
	{ "unsafe-target", no_argument, NULL, 0 },
	{ "proxy-protocol", no_argument, NULL, 0 },
	{ "resumption", optional_argument, NULL, 0 },
	{ "no-resumption", no_argument, NULL, 0 },
	{ "ticket-lifetime", required_argument, NULL, 0 },
	{ "session-cache", required_argument, NULL, 0 },
	{ "max-handshakes-per-source", required_argument, NULL, 0 },
	{ "max-handshakes-per-second", required_argument, NULL, 0 },
	{ "ocsp-staple", required_argument, NULL, 0 },
	{ "ktls", required_argument, NULL, 0 },
	{ "threads", required_argument, NULL, 0 },
	{ "handshake-timeout", required_argument, NULL, 0 },
	{ "max-conns", required_argument, NULL, 0 },
	{ "max-handshakes", required_argument, NULL, 0 },
	{ "idle-timeout", required_argument, NULL, 0 },
	{ "key-password-file", required_argument, NULL, 0 },
	{ "allow-core-dumps", no_argument, NULL, 0 },
	{ "handshake-thread", no_argument, NULL, 0 },
	{ "log-format", required_argument, NULL, 0 },
	{ "min-tls", required_argument, NULL, 0 },
	{ "drain-timeout", required_argument, NULL, 0 },
	{ "ocsp-url", required_argument, NULL, 0 },
	{ "ocsp-timeout-ms", required_argument, NULL, 0 },
	{ "ocsp-fail", required_argument, NULL, 0 },
	{ "admin", required_argument, NULL, 0 },
	{ "admin-allow-remote", no_argument, NULL, 0 },
	{ "user", required_argument, NULL, 0 },
	{ "no-landlock", no_argument, NULL, 0 },
	{ "no-seccomp", no_argument, NULL, 0 },
	{ "relay", required_argument, NULL, 0 },
	{ "intercept", required_argument, NULL, 0 },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static const struct option client_opts[] = {
	{ "listen", required_argument, NULL, 0 },
	{ "target", required_argument, NULL, 0 },
	{ "cert", required_argument, NULL, 0 },
	{ "key", required_argument, NULL, 0 },
	{ "cacert", required_argument, NULL, 0 },
	{ "crl", required_argument, NULL, 0 },
	{ "verify-uri", required_argument, NULL, 0 },
	{ "verify-dns", required_argument, NULL, 0 },
	{ "verify-cn", required_argument, NULL, 0 },
	{ "verify-ou", required_argument, NULL, 0 },
	{ "verify-any", no_argument, NULL, 0 },
	{ "unsafe-listen", no_argument, NULL, 0 },
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
	{ "max-handshakes-per-second", required_argument, NULL, 0 },
	{ "idle-timeout", required_argument, NULL, 0 },
	{ "key-password-file", required_argument, NULL, 0 },
	{ "allow-core-dumps", no_argument, NULL, 0 },
	{ "handshake-thread", no_argument, NULL, 0 },
	{ "log-format", required_argument, NULL, 0 },
	{ "min-tls", required_argument, NULL, 0 },
	{ "drain-timeout", required_argument, NULL, 0 },
	{ "ocsp-url", required_argument, NULL, 0 },
	{ "ocsp-timeout-ms", required_argument, NULL, 0 },
	{ "ocsp-fail", required_argument, NULL, 0 },
	{ "admin", required_argument, NULL, 0 },
	{ "admin-allow-remote", no_argument, NULL, 0 },
	{ "user", required_argument, NULL, 0 },
	{ "no-landlock", no_argument, NULL, 0 },
	{ "no-seccomp", no_argument, NULL, 0 },
	{ "relay", required_argument, NULL, 0 },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

/* What getopt_long could not take: an unknown option, or one missing its value. */
static int cli_unknown(char **argv, char *err, size_t errlen)
{
	if (optopt)
		seterr(err, errlen, "unknown option '-%c'", optopt);
	else
		seterr(err, errlen, "unknown option or missing value: '%s'", argv[optind - 1]);
	return -EINVAL;
}

/* One option, applied as the file's key = value would be. */
static int cli_apply(struct run_config *r, struct service_config *s, const char *key,
		     const char *arg, char *err, size_t errlen)
{
	/* A flag is the file's "key = yes"; an empty value in a file is no yes. */
	const char *val = arg ? arg : "yes";
	char msg[CONFIG_ERR_MAX];
	int rc;

	/* A negative flag has no key of its own: the file says resumption = no. */
	if (!strncmp(key, "no-", 3)) {
		key += 3;
		val = "no";
	}
	rc = global_set(r, key, val, err, errlen);
	if (rc == -ENOENT)
		rc = svc_set(s, key, val, err, errlen);
	if (rc == -ENOMEM) {
		seterr(err, errlen, "out of memory");
		return rc;
	}
	if (rc) {
		/* Setter messages name the key; on the CLI it is spelled --key. */
		snprintf(msg, sizeof(msg), "--%s", err);
		snprintf(err, errlen, "%s", msg);
		return -EINVAL;
	}
	return 0;
}

/* The getopt_long loop over argv into r and its one service s; stops at --help. */
static int cli_parse(enum service_role role, int argc, char **argv, struct run_config *r,
		     struct service_config *s, bool *ret_help, char *err, size_t errlen)
{
	const struct option *opts = role == ROLE_SERVER ? server_opts : client_opts;
	int c, idx, rc;

	*ret_help = false;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, &idx)) != -1) {
		if (c == 'h') {
			*ret_help = true;
			return 0;
		}
		if (c == '?')
			return cli_unknown(argv, err, errlen);
		rc = cli_apply(r, s, opts[idx].name, optarg, err, errlen);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		seterr(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int config_from_argv(enum service_role role, int argc, char **argv, struct run_config *ret_cfg,
		     bool *ret_help, char *err, size_t errlen)
{
	char msg[CONFIG_ERR_MAX];
	struct run_config r;
	struct service_config *s;
	bool help;
	int rc;

	run_defaults(&r);
	rc = svc_append(&r, role, &s);
	if (rc) {
		seterr(err, errlen, "out of memory");
		goto out_free;
	}
	rc = cli_parse(role, argc, argv, &r, s, &help, err, errlen);
	if (rc)
		goto out_free;
	if (help) {
		print_help(role);
		config_free(&r);
		memset(ret_cfg, 0, sizeof(*ret_cfg));
		*ret_help = true;
		return 0;
	}
	rc = svc_validate(s, true, err, errlen);
	if (!rc && admin_check(&r, msg, sizeof(msg))) {
		seterr(err, errlen, "--%s", msg); /* the key is spelled --admin here */
		rc = -EINVAL;
	}
	if (rc)
		goto out_free;
	s->log_format = r.log_format;
	*ret_cfg = r;
	*ret_help = false;
	return 0;

out_free:
	config_free(&r);
	return rc;
}

/* --- INI ------------------------------------------------------------------------- */

/*
 * The file grammar is inih's, which this replaced: "[section]" headers, "key = value" (or
 * "key: value") lines, whole-line comments starting with ; or #, inline comments that
 * start with ; after whitespace, surrounding whitespace ignored. Unlike inih, a line is
 * read whole, up to INI_LINE_MAX, and an indented line is an ordinary line, never the
 * continuation of the value above: inih cut lines at 200 bytes and parsed the rest as a
 * line of its own, so a long allow-uri value ending in "allow-all = yes" became that key.
 *
 * A section's keys are collected and applied when it ends, mode first: a key then means
 * the same wherever it stands in its section, and one that the mode does not have is an
 * error instead of a key of the other role quietly dropped.
 */
#define INI_LINE_MAX 65536

struct ini_kv {
	char *name, *value; /* one allocation, at name */
	int line;
};

struct ini_state {
	FILE *f;
	int line; /* the line being parsed */
	struct run_config *r;
	bool in_global, seen_global;
	bool in_agent;		    /* [agent]: `ktlsd agent --config` reads it, not this */
	struct service_config *cur; /* the [service] being collected; NULL in [global] */
	struct ini_kv *kv;	    /* its keys, in file order */
	size_t n_kv, cap_kv;
	int err_line;
	bool apply_failed; /* the error is from applying keys, not from reading a line */
	char msg[CONFIG_ERR_MAX];
};

static int ini_fail(struct ini_state *st, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	st->err_line = line;
	return -EINVAL;
}

static int ini_malformed(struct ini_state *st)
{
	return ini_fail(st, st->line,
			"malformed line (expected 'key = value', '[global]' or '[service NAME]')");
}

static char *skip_space(char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

static void strip_trailing_space(char *p)
{
	size_t n = strlen(p);

	while (n && isspace((unsigned char)p[n - 1]))
		p[--n] = '\0';
}

/* An inline comment starts with ; right after whitespace (so a value may contain ;). */
static char *inline_comment(char *p)
{
	for (char *q = p; *q; q++)
		if (*q == ';' && q > p && isspace((unsigned char)q[-1]))
			return q;
	return NULL;
}

/*
 * One line without its newline into buf (INI_LINE_MAX + 1 bytes). Returns 0, with *ret_eof
 * set at the end of the file and *ret_len otherwise, -E2BIG for a line over INI_LINE_MAX,
 * or -EIO.
 */
static int ini_read_line(FILE *f, char *buf, size_t *ret_len, bool *ret_eof)
{
	size_t n = 0;
	int c;

	while ((c = getc(f)) != EOF && c != '\n') {
		if (n == INI_LINE_MAX)
			return -E2BIG;
		buf[n++] = (char)c;
	}
	if (c == EOF && ferror(f))
		return -EIO;
	*ret_eof = c == EOF && !n;
	if (*ret_eof)
		return 0;
	buf[n] = '\0';
	*ret_len = n;
	return 0;
}

static void ini_kv_clear(struct ini_state *st)
{
	for (size_t i = 0; i < st->n_kv; i++)
		free(st->kv[i].name);
	st->n_kv = 0;
}

static const struct ini_kv *ini_find(const struct ini_state *st, size_t before, const char *name)
{
	for (size_t j = 0; j < before; j++)
		if (!strcmp(st->kv[j].name, name))
			return &st->kv[j];
	return NULL;
}

/* Rules and CRLs add up (allow-uri = a, allow-uri = b); any other key given twice is a mistake
 * whichever of the two was meant, so neither silently wins. */
static bool key_repeats(const char *name)
{
	const struct svc_key *k = svc_key_find(ROLE_SERVER, name);

	if (!k)
		k = svc_key_find(ROLE_CLIENT, name);
	return k && (k->set == set_rules || k->set == set_crl || k->set == set_intercept);
}

static int ini_check_repeat(struct ini_state *st, size_t i)
{
	const struct ini_kv *first;

	if (key_repeats(st->kv[i].name))
		return 0;
	first = ini_find(st, i, st->kv[i].name);
	if (first)
		return ini_fail(st, st->kv[i].line, "key '%s' given twice (first on line %d)",
				st->kv[i].name, first->line);
	return 0;
}

static int ini_apply_global(struct ini_state *st)
{
	char msg[CONFIG_ERR_MAX];

	for (size_t i = 0; i < st->n_kv; i++) {
		const struct ini_kv *kv = &st->kv[i];
		int rc = ini_check_repeat(st, i);

		if (rc)
			return rc;
		rc = global_set(st->r, kv->name, kv->value, msg, sizeof(msg));
		if (rc == -ENOENT)
			return ini_fail(st, kv->line,
					"unknown key '%s' in [global] (known: threads, log-format, "
					"drain-timeout, allow-core-dumps, handshake-thread, admin, "
					"admin-allow-remote, user, landlock, seccomp)",
					kv->name);
		if (rc)
			return ini_fail(st, kv->line, "%s", msg);
	}
	return 0;
}

static const char *role_name(enum service_role role)
{
	return role == ROLE_SERVER ? "server" : "client";
}

static enum service_role other_role(enum service_role role)
{
	return role == ROLE_SERVER ? ROLE_CLIENT : ROLE_SERVER;
}

/* Would a service of the other role take this key? */
static bool other_role_key(enum service_role role, const char *name)
{
	return svc_key_find(other_role(role), name) != NULL;
}

static int ini_apply_mode(struct ini_state *st)
{
	const struct ini_kv *mode = NULL;

	for (size_t i = 0; i < st->n_kv; i++) {
		if (strcmp(st->kv[i].name, "mode"))
			continue;
		if (mode)
			return ini_fail(st, st->kv[i].line,
					"key 'mode' given twice (first on line %d)", mode->line);
		mode = &st->kv[i];
	}
	if (!mode)
		return 0; /* a server */
	if (!strcmp(mode->value, "server") || !strcmp(mode->value, "client")) {
		st->cur->role = !strcmp(mode->value, "server") ? ROLE_SERVER : ROLE_CLIENT;
		return 0;
	}
	return ini_fail(st, mode->line, "mode: expected server or client, got '%s'", mode->value);
}

static int ini_apply_service(struct ini_state *st)
{
	struct service_config *s = st->cur;
	char msg[CONFIG_ERR_MAX];
	int rc = ini_apply_mode(st);

	if (rc)
		return rc;
	for (size_t i = 0; i < st->n_kv; i++) {
		const struct ini_kv *kv = &st->kv[i];

		if (!strcmp(kv->name, "mode"))
			continue;
		rc = ini_check_repeat(st, i);
		if (rc)
			return rc;
		rc = svc_set(s, kv->name, kv->value, msg, sizeof(msg));
		if (rc == -ENOENT && other_role_key(s->role, kv->name))
			return ini_fail(st, kv->line,
					"key '%s' is for mode = %s, but [service %s] has mode = %s",
					kv->name, role_name(other_role(s->role)), s->name,
					role_name(s->role));
		if (rc == -ENOENT)
			return ini_fail(st, kv->line, "unknown key '%s' in [service %s]", kv->name,
					s->name);
		if (rc)
			return ini_fail(st, kv->line, "%s", msg);
	}
	return 0;
}

/* The end of a section: its keys take effect now, and are dropped either way. */
static int ini_section_end(struct ini_state *st)
{
	int rc = 0;

	if (st->in_global)
		rc = ini_apply_global(st);
	else if (st->cur)
		rc = ini_apply_service(st);
	ini_kv_clear(st);
	st->in_global = false;
	st->in_agent = false;
	st->cur = NULL;
	if (rc)
		st->apply_failed = true;
	return rc;
}

static int ini_section_begin(struct ini_state *st, const char *section)
{
	const char *name = section + 8;

	if (!strcmp(section, "global")) {
		/* Keys are unique per section; a second [global] would let a later one win. */
		if (st->seen_global)
			return ini_fail(st, st->line, "[global] given twice");
		st->seen_global = true;
		st->in_global = true;
		return 0;
	}
	/* `ktlsd agent --config` reads [agent]; one file may hold both. */
	if (!strcmp(section, "agent")) {
		st->in_agent = true;
		return 0;
	}
	if (strncmp(section, "service ", 8) || !*name)
		return ini_fail(
			st, st->line,
			"unknown section [%s] (expected [global], [service NAME] or [agent])",
			section);
	if (strlen(name) >= sizeof(st->cur->name))
		return ini_fail(st, st->line, "service name too long (at most %zu bytes)",
				sizeof(st->cur->name) - 1);
	for (size_t i = 0; i < st->r->n_svc; i++)
		if (!strcmp(st->r->svc[i].name, name))
			return ini_fail(st, st->line,
					"service '%s' defined twice (first on line %d)", name,
					st->r->svc[i].line);
	if (svc_append(st->r, ROLE_SERVER, &st->cur))
		return ini_fail(st, st->line, "out of memory");
	snprintf(st->cur->name, sizeof(st->cur->name), "%s", name);
	st->cur->line = st->line;
	return 0;
}

static int ini_header(struct ini_state *st, char *p)
{
	char *close = strchr(p, ']'), *rest;
	int rc;

	if (!close)
		return ini_malformed(st);
	rest = skip_space(close + 1);
	if (*rest && *rest != ';' && *rest != '#')
		return ini_malformed(st);
	*close = '\0';
	rc = ini_section_end(st);
	if (rc)
		return rc;
	return ini_section_begin(st, p + 1);
}

static int ini_key(struct ini_state *st, char *p)
{
	char *sep = p + strcspn(p, "=:"), *comment = inline_comment(p), *value;
	struct ini_kv *kv;
	size_t nlen, vlen;

	if (!*sep || (comment && comment < sep) || sep == p)
		return ini_malformed(st);
	*sep = '\0';
	strip_trailing_space(p);
	value = skip_space(sep + 1);
	comment = inline_comment(value);
	if (comment)
		*comment = '\0';
	strip_trailing_space(value);
	if (st->in_agent)
		return 0;
	if (!st->in_global && !st->cur)
		return ini_fail(st, st->line, "key '%s' outside any section", p);
	if (st->n_kv == st->cap_kv) {
		size_t cap = st->cap_kv ? 2 * st->cap_kv : 16;
		struct ini_kv *grown = realloc(st->kv, cap * sizeof(*grown));

		if (!grown)
			return ini_fail(st, st->line, "out of memory");
		st->kv = grown;
		st->cap_kv = cap;
	}
	kv = &st->kv[st->n_kv];
	nlen = strlen(p);
	vlen = strlen(value);
	kv->name = malloc(nlen + vlen + 2);
	if (!kv->name)
		return ini_fail(st, st->line, "out of memory");
	memcpy(kv->name, p, nlen + 1);
	kv->value = kv->name + nlen + 1;
	memcpy(kv->value, value, vlen + 1);
	kv->line = st->line;
	st->n_kv++;
	return 0;
}

static int ini_line(struct ini_state *st, char *line, size_t len)
{
	char *p = line;

	if (memchr(line, '\0', len))
		return ini_fail(st, st->line, "NUL byte in line");
	if (st->line == 1 && !strncmp(p, "\xEF\xBB\xBF", 3)) /* UTF-8 byte order mark */
		p += 3;
	p = skip_space(p);
	strip_trailing_space(p);
	if (!*p || *p == ';' || *p == '#')
		return 0;
	if (*p == '[')
		return ini_header(st, p);
	return ini_key(st, p);
}

/* Reads every line, then ends the last section. The first error in file order wins: a
 * bad key is found when its section ends, after later lines were read. */
static int ini_parse(struct ini_state *st)
{
	char *buf = malloc(INI_LINE_MAX + 1);
	size_t len = 0;
	bool eof = false;
	int rc;

	if (!buf)
		return ini_fail(st, 0, "out of memory");
	while (!(rc = ini_read_line(st->f, buf, &len, &eof)) && !eof) {
		st->line++;
		rc = ini_line(st, buf, len);
		if (rc)
			break;
	}
	free(buf);
	if (rc == -E2BIG)
		ini_fail(st, st->line + 1, "line too long (more than %d bytes)", INI_LINE_MAX);
	else if (rc == -EIO)
		ini_fail(st, 0, "cannot read");
	if (rc && !st->apply_failed) {
		/* A line could not be read: the keys above it go first. */
		char msg[CONFIG_ERR_MAX];
		int line = st->err_line;

		memcpy(msg, st->msg, sizeof(msg));
		if (!ini_section_end(st)) {
			st->err_line = line;
			memcpy(st->msg, msg, sizeof(msg));
		}
	} else if (!rc) {
		rc = ini_section_end(st);
	}
	ini_kv_clear(st);
	free(st->kv);
	return rc;
}

/* Two services on one address would split its connections between them. */
static int listen_overlap_check(const struct run_config *r, const char *path, char *err,
				size_t errlen)
{
	for (size_t j = 1; j < r->n_svc; j++) {
		const struct daemon_addr *b = &r->svc[j].listen_addr;

		for (size_t i = 0; i < j; i++) {
			const struct daemon_addr *a = &r->svc[i].listen_addr;

			if (r->svc[i].listen_systemd || r->svc[j].listen_systemd) {
				if (strcmp(r->svc[i].listen, r->svc[j].listen))
					continue;
			} else if (!addr_listen_overlap(
					   (const struct sockaddr *)&a->alt[0].ss, a->alt[0].len,
					   (const struct sockaddr *)&b->alt[0].ss, b->alt[0].len))
				continue;
			seterr(err, errlen,
			       "%s:%d: [service %s]: listen %s overlaps listen %s of [service %s] "
			       "(line %d): two services cannot share an address",
			       path, r->svc[j].line, r->svc[j].name, r->svc[j].listen,
			       r->svc[i].listen, r->svc[i].name, r->svc[i].line);
			return -EINVAL;
		}
	}
	return 0;
}

int config_from_file(const char *path, struct run_config *ret_cfg, char *err, size_t errlen)
{
	struct ini_state st = { 0 };
	char msg[CONFIG_ERR_MAX];
	struct run_config r;
	int rc;

	run_defaults(&r);
	st.r = &r;
	st.f = fopen(path, "r");
	if (!st.f) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	rc = ini_parse(&st);
	fclose(st.f);
	if (rc) {
		if (st.err_line)
			seterr(err, errlen, "%s:%d: %s", path, st.err_line, st.msg);
		else
			seterr(err, errlen, "%s: %s", path, st.msg);
		rc = -EINVAL;
		goto out_free;
	}
	if (!r.n_svc) {
		seterr(err, errlen, "%s: no [service NAME] section", path);
		rc = -EINVAL;
		goto out_free;
	}
	for (size_t i = 0; i < r.n_svc; i++) {
		if (svc_validate(&r.svc[i], false, msg, sizeof(msg))) {
			seterr(err, errlen, "%s:%d: [service %s]: %s", path, r.svc[i].line,
			       r.svc[i].name, msg);
			rc = -EINVAL;
			goto out_free;
		}
		r.svc[i].log_format = r.log_format;
	}
	rc = listen_overlap_check(&r, path, err, errlen);
	if (rc)
		goto out_free;
	if (admin_check(&r, msg, sizeof(msg))) {
		seterr(err, errlen, "%s: [global]: %s", path, msg);
		rc = -EINVAL;
		goto out_free;
	}
	*ret_cfg = r;
	return 0;

out_free:
	config_free(&r);
	return rc;
}

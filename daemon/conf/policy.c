// SPDX-License-Identifier: MIT
/*
 * Identity policy. Rules are few (a handful per service) so a linear scan beats any
 * index; matching allocates nothing, so it runs inside the verify callback at no cost.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

struct rule {
	enum policy_kind kind;
	bool prefix; /* URI trust-domain rule: pattern holds "spiffe://td/" */
	size_t len;
	char *pattern; /* POLICY_IP: the 4 or 16 address bytes */
};

struct policy {
	struct rule *rules;
	size_t n_rules;
	bool allow_all;
	bool spiffe;	     /* a spiffe:// URI rule is in force: the X.509-SVID rule applies */
	bool peer_wildcards; /* verifying servers: RFC 6125 wildcard DNS SANs */
};

int policy_new(struct policy **ret_policy)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	*ret_policy = p;
	return 0;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++)
		free(p->rules[i].pattern);
	free(p->rules);
	free(p);
}

const char *policy_kind_name(enum policy_kind kind)
{
	static const char *const names[] = { "uri", "dns", "cn", "ou", "ip" };

	return kind < POLICY_KIND_MAX ? names[kind] : "?";
}

const char *policy_verdict_str(enum policy_verdict v)
{
	switch (v) {
	case POLICY_ALLOW:
		return "allowed";
	case POLICY_DENY_NO_MATCH:
		return "identity not allowed";
	case POLICY_DENY_SVID_URIS:
		return "identity not allowed: not exactly one URI SAN (an X.509-SVID carries one)";
	case POLICY_DENY_SVID_INVALID:
		return "identity not allowed: URI SAN is not a valid SPIFFE ID";
	}
	return "identity not allowed";
}

#define SPIFFE_SCHEME	  "spiffe://"
#define SPIFFE_SCHEME_LEN 9
#define SPIFFE_MAX_LEN	  2048 /* SPIFFE ID spec: maximum URI length */
#define SPIFFE_TD_MAX	  255

static bool is_spiffe(const char *s, size_t len)
{
	return len >= SPIFFE_SCHEME_LEN && !memcmp(s, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN);
}

/* A SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' (SPIFFE ID spec). */
static bool valid_trust_domain(const char *s, size_t len)
{
	if (!len || len > SPIFFE_TD_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

static bool segment_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '-' || ch == '_';
}

/* "/seg/seg": non-empty segments of segment_char, never "." or "..", no trailing '/'. */
static bool valid_path(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t start;

		if (s[i] != '/')
			return false;
		start = ++i;
		while (i < len && s[i] != '/') {
			if (!segment_char(s[i]))
				return false;
			i++;
		}
		if (i == start || (i - start == 1 && s[start] == '.') ||
		    (i - start == 2 && s[start] == '.' && s[start + 1] == '.'))
			return false;
	}
	return true;
}

bool policy_spiffe_id_valid(const char *s, size_t len)
{
	const char *td, *slash;
	size_t td_len;

	if (!s || len > SPIFFE_MAX_LEN || !is_spiffe(s, len))
		return false;
	td = s + SPIFFE_SCHEME_LEN;
	slash = memchr(td, '/', len - SPIFFE_SCHEME_LEN);
	td_len = slash ? (size_t)(slash - td) : len - SPIFFE_SCHEME_LEN;
	return valid_trust_domain(td, td_len) &&
	       valid_path(td + td_len, len - SPIFFE_SCHEME_LEN - td_len);
}

/* A non-SPIFFE URI rule: "scheme:" then printable bytes, none blank. */
static bool valid_other_uri(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
		i++;
	if (!i || i >= len || s[i] != ':')
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/*
 * Checks a URI pattern; *ret_prefix says it names a whole trust domain. Returns 0 or
 * -EINVAL (malformed).
 */
static int uri_rule(const char *pattern, size_t len, bool *ret_prefix)
{
	bool prefix = false, ok;

	if (!is_spiffe(pattern, len)) {
		ok = !strchr(pattern, '*') && valid_other_uri(pattern, len);
	} else if (len >= 2 && !strcmp(pattern + len - 2, "/*")) {
		/* The only wildcard: a whole trust domain, spiffe://td/ followed by "*". */
		ok = valid_trust_domain(pattern + SPIFFE_SCHEME_LEN, len - SPIFFE_SCHEME_LEN - 2);
		prefix = true;
	} else {
		ok = policy_spiffe_id_valid(pattern, len);
	}
	if (!ok)
		return -EINVAL;
	*ret_prefix = prefix;
	return 0;
}

static bool dns_rule_valid(const char *pattern)
{
	const char *rest = strncmp(pattern, "*.", 2) ? pattern : pattern + 2;

	if (!*rest || strchr(rest, '*'))
		return false;
	for (const char *c = pattern; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return false;
	return true;
}

/* The rule's stored pattern: text, or for IP the address bytes. */
static int rule_pattern(enum policy_kind kind, const char *pattern, struct rule *r)
{
	unsigned char a[16];

	if (kind != POLICY_IP) {
		r->pattern = strndup(pattern, r->len);
		return r->pattern ? 0 : -ENOMEM;
	}
	if (inet_pton(AF_INET, pattern, a) == 1)
		r->len = 4;
	else if (inet_pton(AF_INET6, pattern, a) == 1)
		r->len = 16;
	else
		return -EINVAL;
	r->pattern = malloc(r->len);
	if (!r->pattern)
		return -ENOMEM;
	memcpy(r->pattern, a, r->len);
	return 0;
}

int policy_add(struct policy *p, enum policy_kind kind, const char *pattern)
{
	struct rule r = { .kind = kind };
	size_t len = pattern ? strlen(pattern) : 0;
	struct rule *grown;
	int rc;

	if (!len || kind >= POLICY_KIND_MAX)
		return -EINVAL;
	if (kind == POLICY_URI && uri_rule(pattern, len, &r.prefix))
		return -EINVAL;
	if (kind == POLICY_DNS && !dns_rule_valid(pattern))
		return -EINVAL;
	r.len = r.prefix ? len - 1 : len; /* a trust domain rule keeps "spiffe://td/" */
	rc = rule_pattern(kind, pattern, &r);
	if (rc)
		return rc;
	grown = realloc(p->rules, (p->n_rules + 1) * sizeof(*grown));
	if (!grown) {
		free(r.pattern);
		return -ENOMEM;
	}
	p->rules = grown;
	p->rules[p->n_rules++] = r;
	if (kind == POLICY_URI && is_spiffe(pattern, len))
		p->spiffe = true;
	return 0;
}

void policy_set_allow_all(struct policy *p)
{
	p->allow_all = true;
}

void policy_set_peer_wildcards(struct policy *p)
{
	p->peer_wildcards = true;
}

bool policy_is_empty(const struct policy *p)
{
	return !p->allow_all && !p->n_rules;
}

static bool match_uri(const struct rule *r, const struct peer_name *n)
{
	if (!r->prefix)
		return n->len == r->len && !memcmp(n->s, r->pattern, r->len);
	/* Trust domain: same prefix and a non-empty path after it. */
	return n->len > r->len && !memcmp(n->s, r->pattern, r->len);
}

/* A label a wildcard may stand for: 1 to 63 letters, digits and hyphens (RFC 1123). */
static bool ldh_label(const char *s, size_t len)
{
	if (!len || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool is_ip_literal(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* After the first label: the rest of a DNS name, starting at its '.', or NULL. */
static const char *after_first_label(const char *s, size_t len)
{
	const char *dot = memchr(s, '.', len);

	return dot && dot != s ? dot : NULL;
}

/*
 * A server's wildcard SAN "*.rest" (RFC 6125 6.4.3: the whole left-most label, and not
 * directly under a top-level name) against a rule naming one host.
 */
static bool match_peer_wildcard(const struct rule *r, const struct peer_name *n)
{
	const char *rdot;
	size_t rest;

	if (n->len < 4 || n->s[0] != '*' || n->s[1] != '.' || !memchr(n->s + 2, '.', n->len - 2))
		return false;
	/* RFC 6125 6.4.4: a wildcard never matches an IP reference identity. */
	if (r->pattern[0] == '*' || is_ip_literal(r->pattern))
		return false;
	rdot = after_first_label(r->pattern, r->len);
	if (!rdot || !ldh_label(r->pattern, (size_t)(rdot - r->pattern)))
		return false;
	rest = r->len - (size_t)(rdot - r->pattern);
	return rest == n->len - 1 && !strncasecmp(rdot, n->s + 1, rest);
}

static bool match_dns(const struct rule *r, const struct peer_name *n, bool peer_wildcards)
{
	if (peer_wildcards && match_peer_wildcard(r, n))
		return true;
	if (!strncmp(r->pattern, "*.", 2)) {
		/* "*.example.org" matches exactly one extra label: a.example.org. */
		const char *dot = after_first_label(n->s, n->len);
		size_t rest;

		if (!dot || !ldh_label(n->s, (size_t)(dot - n->s)))
			return false;
		rest = n->len - (size_t)(dot - n->s);
		return rest == r->len - 1 && !strncasecmp(dot, r->pattern + 1, rest);
	}
	return n->len == r->len && !strncasecmp(n->s, r->pattern, r->len);
}

static bool match_exact(const struct rule *r, const struct peer_name *n)
{
	return n->len == r->len && !memcmp(n->s, r->pattern, r->len);
}

static const struct peer_name *rule_match(const struct policy *p, const struct rule *r,
					  const struct peer_identity *id)
{
	const struct peer_name *list;
	size_t n;

	switch (r->kind) {
	case POLICY_URI:
		list = id->uri, n = id->n_uri;
		break;
	case POLICY_DNS:
		for (size_t i = 0; i < id->n_dns; i++)
			if (match_dns(r, &id->dns[i], p->peer_wildcards))
				return &id->dns[i];
		return NULL;
	case POLICY_CN:
		return id->cn.len && match_exact(r, &id->cn) ? &id->cn : NULL;
	case POLICY_OU:
		list = id->ou, n = id->n_ou;
		break;
	case POLICY_IP:
		list = id->ip, n = id->n_ip;
		break;
	default:
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (r->kind == POLICY_URI ? match_uri(r, &list[i]) : match_exact(r, &list[i]))
			return &list[i];
	return NULL;
}

/*
 * allow-all: no rule chose a name, so report the one the certificate leaves no doubt on:
 * its only URI SAN if that is a SPIFFE ID (backends take a URI identity for one), else
 * the CN, else the only DNS SAN.
 */
static struct policy_match unambiguous_name(const struct peer_identity *id)
{
	if (id->n_uri == 1 && !id->n_uri_skipped &&
	    policy_spiffe_id_valid(id->uri[0].s, id->uri[0].len))
		return (struct policy_match){ POLICY_URI, id->uri[0] };
	if (id->cn.len)
		return (struct policy_match){ POLICY_CN, id->cn };
	if (id->n_dns == 1)
		return (struct policy_match){ POLICY_DNS, id->dns[0] };
	return (struct policy_match){ POLICY_URI, { NULL, 0 } };
}

enum policy_verdict policy_check(const struct policy *p, const struct peer_identity *id,
				 struct policy_match *ret_match)
{
	size_t n_uri = id->n_uri + id->n_uri_skipped;

	if (p->spiffe && n_uri > 1)
		return POLICY_DENY_SVID_URIS;
	if (p->spiffe && n_uri == 1 &&
	    (!id->n_uri || !policy_spiffe_id_valid(id->uri[0].s, id->uri[0].len)))
		return POLICY_DENY_SVID_INVALID;
	if (p->allow_all) {
		*ret_match = unambiguous_name(id);
		return POLICY_ALLOW;
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct peer_name *n = rule_match(p, &p->rules[i], id);

		if (n) {
			*ret_match = (struct policy_match){ p->rules[i].kind, *n };
			return POLICY_ALLOW;
		}
	}
	return POLICY_DENY_NO_MATCH;
}

bool policy_allows(const struct policy *p, const struct peer_identity *id)
{
	struct policy_match m;

	return policy_check(p, id, &m) == POLICY_ALLOW;
}

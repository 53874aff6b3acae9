// SPDX-License-Identifier: MIT
/*
 * Identity policy. Rules are few (a handful per service) so a linear scan beats any
 * index; matching allocates nothing, so it runs inside the verify callback at no cost.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

struct rule {
	enum policy_kind kind;
	bool prefix; /* URI trust-domain rule: pattern holds "spiffe://td/" */
	size_t len;
	char *pattern;
};

struct policy {
	struct rule *rules;
	size_t n_rules;
	bool allow_all;
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
	static const char *const names[] = { "uri", "dns", "cn", "ou" };

	return kind < POLICY_KIND_MAX ? names[kind] : "?";
}

/* A SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' (SPIFFE ID spec). */
static bool valid_trust_domain(const char *s, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

int policy_add(struct policy *p, enum policy_kind kind, const char *pattern)
{
	struct rule r = { .kind = kind };
	size_t len = pattern ? strlen(pattern) : 0;
	struct rule *grown;

	if (!len || kind >= POLICY_KIND_MAX)
		return -EINVAL;
	if (kind == POLICY_URI && strchr(pattern, '*')) {
		/* The only wildcard: a whole trust domain, spiffe://td/ followed by "*". */
		const char *td = pattern + 9;

		if (strncmp(pattern, "spiffe://", 9) || len < 12 || strcmp(pattern + len - 2, "/*"))
			return -EINVAL;
		if (!valid_trust_domain(td, len - 9 - 2))
			return -EINVAL;
		r.prefix = true;
		len--; /* keep "spiffe://td/" */
	}
	if (kind == POLICY_DNS && strchr(pattern + (strncmp(pattern, "*.", 2) ? 0 : 2), '*'))
		return -EINVAL;
	if (kind == POLICY_DNS && !strcmp(pattern, "*."))
		return -EINVAL;
	r.pattern = strndup(pattern, len);
	if (!r.pattern)
		return -ENOMEM;
	r.len = len;
	grown = realloc(p->rules, (p->n_rules + 1) * sizeof(*grown));
	if (!grown) {
		free(r.pattern);
		return -ENOMEM;
	}
	p->rules = grown;
	p->rules[p->n_rules++] = r;
	return 0;
}

void policy_set_allow_all(struct policy *p)
{
	p->allow_all = true;
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

static bool match_dns(const struct rule *r, const struct peer_name *n)
{
	if (!strncmp(r->pattern, "*.", 2)) {
		/* "*.example.org" matches exactly one extra label: a.example.org. */
		const char *dot = memchr(n->s, '.', n->len);
		size_t rest;

		if (!dot || dot == n->s)
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

static bool rule_matches(const struct rule *r, const struct peer_identity *id)
{
	switch (r->kind) {
	case POLICY_URI:
		for (size_t i = 0; i < id->n_uri; i++)
			if (match_uri(r, &id->uri[i]))
				return true;
		return false;
	case POLICY_DNS:
		for (size_t i = 0; i < id->n_dns; i++)
			if (match_dns(r, &id->dns[i]))
				return true;
		return false;
	case POLICY_CN:
		return id->cn.len && match_exact(r, &id->cn);
	case POLICY_OU:
		for (size_t i = 0; i < id->n_ou; i++)
			if (match_exact(r, &id->ou[i]))
				return true;
		return false;
	default:
		return false;
	}
}

bool policy_allows(const struct policy *p, const struct peer_identity *id)
{
	if (p->allow_all)
		return true;
	for (size_t i = 0; i < p->n_rules; i++)
		if (rule_matches(&p->rules[i], id))
			return true;
	return false;
}

// SPDX-License-Identifier: MIT
/*
 * Identity policy: one rule (kind + pattern) and a peer identity, both from the input,
 * every name in its own exact-size allocation so ASan catches any read past a name.
 *
 * Input: byte 0 = rule kind, then NUL-separated fields: the pattern, then names, each
 * name's first byte choosing its list (uri, dns, cn, ou, ip). Besides not crashing, the
 * documented semantics must hold (policy.h):
 *   - an empty policy allows nobody;
 *   - what policy_check reports as the identity is one of the peer's names of its kind,
 *     and under a spiffe:// rule only ever the peer's one and valid URI SAN;
 *   - allow-all admits everyone but a peer the SPIFFE rule refuses;
 *   - an accepted exact pattern (no wildcard) allows an identity whose name of that kind
 *     is the pattern itself, and never one that has it only under a different kind;
 *   - "spiffe://td/" "*" allows spiffe://td/x but not the bare spiffe://td/;
 *   - "*.rest" (DNS) allows "a.rest" but not "rest" itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

#define MAX_NAMES (5 * PEER_MAX_NAMES)

static struct peer_name *slot(struct peer_identity *id, unsigned kind)
{
	switch (kind) {
	case POLICY_URI:
		return id->n_uri < PEER_MAX_NAMES ? &id->uri[id->n_uri++] : NULL;
	case POLICY_DNS:
		return id->n_dns < PEER_MAX_NAMES ? &id->dns[id->n_dns++] : NULL;
	case POLICY_CN:
		return &id->cn;
	case POLICY_IP:
		return id->n_ip < PEER_MAX_NAMES ? &id->ip[id->n_ip++] : NULL;
	default:
		return id->n_ou < PEER_MAX_NAMES ? &id->ou[id->n_ou++] : NULL;
	}
}

static bool allows_one(const struct policy *p, unsigned kind, const char *s, size_t len)
{
	struct peer_identity id = { 0 };
	char *copy = malloc(len ? len : 1);
	struct peer_name *n;
	bool ok;

	if (!copy)
		abort();
	memcpy(copy, s, len);
	n = slot(&id, kind);
	*n = (struct peer_name){ copy, len };
	ok = policy_allows(p, &id);
	free(copy);
	return ok;
}

/* The SPIFFE rule (a spiffe:// rule was added) refuses id whatever else is allowed. */
static bool svid_refused(unsigned kind, int add_rc, const struct peer_identity *id)
{
	return add_rc == 0 && kind == POLICY_URI &&
	       (id->n_uri > 1 ||
		(id->n_uri == 1 && !policy_spiffe_id_valid(id->uri[0].s, id->uri[0].len)));
}

static bool among(const struct peer_name *list, size_t n, const struct peer_name *x)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].s == x->s && list[i].len == x->len)
			return true;
	return false;
}

/* What is reported is a name the peer has, of the kind the rule is about. */
static void check_match(const struct policy *p, unsigned kind, const char *pattern,
			const struct peer_identity *id)
{
	struct policy_match m;
	bool spiffe = kind == POLICY_URI && !strncmp(pattern, "spiffe://", 9);

	if (policy_check(p, id, &m) != POLICY_ALLOW)
		return;
	CHECK(m.kind == kind);
	switch (m.kind) {
	case POLICY_URI:
		CHECK(among(id->uri, id->n_uri, &m.name));
		CHECK(!spiffe || (id->n_uri == 1 && policy_spiffe_id_valid(m.name.s, m.name.len)));
		break;
	case POLICY_DNS:
		CHECK(among(id->dns, id->n_dns, &m.name));
		break;
	case POLICY_CN:
		CHECK(m.name.s == id->cn.s && m.name.len == id->cn.len);
		break;
	case POLICY_OU:
		CHECK(among(id->ou, id->n_ou, &m.name));
		break;
	default:
		CHECK(among(id->ip, id->n_ip, &m.name));
	}
}

/*
 * The names after the pattern, from off: each a kind byte then bytes up to a NUL, every
 * one in its own allocation (listed in owned, for freeing). Returns how many are owned.
 */
static size_t parse_names(const uint8_t *data, size_t size, size_t off,
			  struct peer_identity *ret_id, char **owned)
{
	struct peer_identity id = *ret_id;
	const uint8_t *end;
	size_t n_owned = 0, len;

	while (off < size && n_owned < MAX_NAMES) {
		struct peer_name *n;
		unsigned nk = data[off++] % POLICY_KIND_MAX;

		end = memchr(data + off, '\0', size - off);
		len = end ? (size_t)(end - (data + off)) : size - off;
		n = slot(&id, nk);
		if (n) {
			owned[n_owned] = malloc(len ? len : 1);
			if (!owned[n_owned])
				abort();
			memcpy(owned[n_owned], data + off, len);
			if (nk == POLICY_CN && id.cn.s) {
				/* CN is one name: the last one given wins. */
				for (size_t i = 0; i < n_owned; i++)
					if (owned[i] == id.cn.s)
						owned[i] = NULL;
				free((char *)id.cn.s);
			}
			*n = (struct peer_name){ owned[n_owned], len };
			n_owned++;
		}
		off += len + 1;
	}
	*ret_id = id;
	return n_owned;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peer_identity id = { 0 };
	char *owned[MAX_NAMES];
	size_t n_owned = 0, off, len;
	struct policy *p;
	unsigned kind;
	char *pattern;
	const uint8_t *end;
	int r;

	if (size < 1)
		return 0;
	kind = data[0] % (POLICY_KIND_MAX + 1); /* one out of range on purpose */
	data++;
	size--;
	end = memchr(data, '\0', size);
	len = end ? (size_t)(end - data) : size;
	pattern = malloc(len + 1);
	if (!pattern)
		return 0;
	memcpy(pattern, data, len);
	pattern[len] = '\0';
	off = end ? len + 1 : size;

	n_owned = parse_names(data, size, off, &id, owned);

	if (policy_new(&p))
		goto out;
	CHECK(policy_is_empty(p));
	CHECK(!policy_allows(p, &id));
	r = policy_add(p, (enum policy_kind)kind, pattern);
	if (kind >= POLICY_KIND_MAX || !pattern[0])
		CHECK(r == -EINVAL);
	if (r == 0) {
		size_t plen = strlen(pattern);
		bool wild = (kind == POLICY_URI || kind == POLICY_DNS) && strchr(pattern, '*');

		CHECK(!policy_is_empty(p));
		check_match(p, kind, pattern, &id);
		if (kind == POLICY_IP) {
			unsigned char a[16];
			size_t alen = inet_pton(AF_INET, pattern, a) == 1 ? 4 : 16;

			CHECK(alen == 4 || inet_pton(AF_INET6, pattern, a) == 1);
			CHECK(allows_one(p, kind, (const char *)a, alen));
			CHECK(!allows_one(p, POLICY_URI, (const char *)a, alen));
		} else if (!wild) {
			CHECK(allows_one(p, kind, pattern, plen));
			for (unsigned other = 0; other < POLICY_KIND_MAX; other++)
				if (other != kind)
					CHECK(!allows_one(p, other, pattern, plen));
		} else if (kind == POLICY_URI) {
			char *x = malloc(plen + 1);

			memcpy(x, pattern, plen - 1);
			x[plen - 1] = 'x';
			CHECK(allows_one(p, kind, x, plen));
			CHECK(!allows_one(p, kind, pattern, plen - 1));
			free(x);
		} else if (kind == POLICY_DNS) {
			char *x = malloc(plen);

			x[0] = 'a';
			memcpy(x + 1, pattern + 1, plen - 1);
			CHECK(allows_one(p, kind, x, plen));
			CHECK(!allows_one(p, kind, pattern + 2, plen - 2));
			free(x);
		}
	}
	policy_set_allow_all(p);
	CHECK(policy_allows(p, &id) || svid_refused(kind, r, &id));
	policy_free(p);
out:
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	free(pattern);
	return 0;
}

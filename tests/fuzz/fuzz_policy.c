// SPDX-License-Identifier: MIT
/*
 * Identity policy: one rule (kind + pattern) and a peer identity, both from the input,
 * every name in its own exact-size allocation so ASan catches any read past a name.
 *
 * Input: byte 0 = rule kind, then NUL-separated fields: the pattern, then names, each
 * name's first byte choosing its list (uri, dns, cn, ou). Besides not crashing, the
 * documented semantics must hold (policy.h):
 *   - an empty policy allows nobody;
 *   - an accepted exact pattern (no wildcard) allows an identity whose name of that kind
 *     is the pattern itself, and never one that has it only under a different kind;
 *   - "spiffe://td/" "*" allows spiffe://td/x but not the bare spiffe://td/;
 *   - "*.rest" (DNS) allows "a.rest" but not "rest" itself.
 */
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

#define MAX_NAMES (4 * PEER_MAX_NAMES)

static struct peer_name *slot(struct peer_identity *id, unsigned kind)
{
	switch (kind) {
	case POLICY_URI:
		return id->n_uri < PEER_MAX_NAMES ? &id->uri[id->n_uri++] : NULL;
	case POLICY_DNS:
		return id->n_dns < PEER_MAX_NAMES ? &id->dns[id->n_dns++] : NULL;
	case POLICY_CN:
		return &id->cn;
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

	while (off < size && n_owned < MAX_NAMES) {
		struct peer_name *n;
		unsigned nk = data[off++] % 4;

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
		(void)policy_allows(p, &id);
		if (!wild) {
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
	CHECK(policy_allows(p, &id));
	policy_free(p);
out:
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	free(pattern);
	return 0;
}

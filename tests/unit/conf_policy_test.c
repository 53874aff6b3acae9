// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "policy.h"

#define N(str) ((struct peer_name){ (str), sizeof(str) - 1 })

static struct policy *mk(enum policy_kind kind, const char *pattern)
{
	struct policy *p;

	assert_int_equal(policy_new(&p), 0);
	if (pattern)
		assert_int_equal(policy_add(p, kind, pattern), 0);
	return p;
}

static struct peer_identity uri_id(struct peer_name n)
{
	struct peer_identity id = { 0 };

	id.uri[id.n_uri++] = n;
	return id;
}

static void test_uri_exact(void **state)
{
	struct policy *p = mk(POLICY_URI, "spiffe://example.org/client");
	struct peer_identity ok = uri_id(N("spiffe://example.org/client"));
	struct peer_identity longer = uri_id(N("spiffe://example.org/client2"));
	struct peer_identity shorter = uri_id(N("spiffe://example.org/clien"));
	struct peer_identity evil = uri_id(N("spiffe://evil.org/x"));
	struct peer_identity none = { 0 };

	assert_true(policy_allows(p, &ok));
	assert_false(policy_allows(p, &longer));
	assert_false(policy_allows(p, &shorter));
	assert_false(policy_allows(p, &evil));
	assert_false(policy_allows(p, &none));
	policy_free(p);
}

static void test_uri_trust_domain(void **state)
{
	struct policy *p = mk(POLICY_URI, "spiffe://example.org/*");
	struct peer_identity a = uri_id(N("spiffe://example.org/ns/x/sa/y"));
	struct peer_identity b = uri_id(N("spiffe://example.org/client"));
	struct peer_identity lookalike = uri_id(N("spiffe://example.org.evil.net/client"));
	struct peer_identity bare = uri_id(N("spiffe://example.org/"));
	struct peer_identity other = uri_id(N("spiffe://evil.org/x"));
	struct peer_identity two = { 0 };

	assert_true(policy_allows(p, &a));
	assert_true(policy_allows(p, &b));
	assert_false(policy_allows(p, &lookalike));
	assert_false(policy_allows(p, &bare));
	assert_false(policy_allows(p, &other));
	/* An X.509-SVID carries one URI SAN: a second one, matching or not, is refused. */
	two.uri[two.n_uri++] = N("spiffe://evil.org/x");
	two.uri[two.n_uri++] = N("spiffe://example.org/ok");
	assert_false(policy_allows(p, &two));
	policy_free(p);
}

static enum policy_verdict verdict(const struct policy *p, const struct peer_identity *id)
{
	struct policy_match m;

	return policy_check(p, id, &m);
}

/*
 * The security review's finding: URI:spiffe://evil.org/admin, URI:spiffe://example.org/x
 * passed a trust-domain rule for example.org and the first URI was reported. Refused now, whatever
 * order, whatever other rule the peer also matches, and also when the second URI SAN was
 * one the parser could not keep.
 */
static void test_svid_one_uri(void **state)
{
	struct policy *p = mk(POLICY_URI, "spiffe://example.org/*");
	struct peer_identity id = { 0 };
	struct policy_match m = { 0 };

	assert_int_equal(policy_add(p, POLICY_CN, "client"), 0);
	id.uri[id.n_uri++] = N("spiffe://evil.org/admin");
	id.uri[id.n_uri++] = N("spiffe://example.org/x");
	id.cn = N("client");
	assert_int_equal(verdict(p, &id), POLICY_DENY_SVID_URIS);
	id.uri[0] = N("spiffe://example.org/x");
	id.uri[1] = N("spiffe://evil.org/admin");
	assert_int_equal(verdict(p, &id), POLICY_DENY_SVID_URIS);
	id.n_uri = 1;
	id.n_uri_skipped = 1;
	assert_int_equal(verdict(p, &id), POLICY_DENY_SVID_URIS);
	id.n_uri_skipped = 0;
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.kind, POLICY_URI);
	assert_int_equal(m.name.len, strlen("spiffe://example.org/x"));
	assert_memory_equal(m.name.s, "spiffe://example.org/x", m.name.len);
	/* No URI SAN at all: only the other rules can admit it, and report what they matched. */
	id.n_uri = 0;
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.kind, POLICY_CN);
	assert_ptr_equal(m.name.s, id.cn.s);
	policy_free(p);
}

static void test_svid_invalid_peer_ids(void **state)
{
	static const char *const bad[] = {
		"spiffe://example.org/a/../b", "spiffe://example.org/a/./b",
		"spiffe://example.org/..",     "spiffe://example.org/a//b",
		"spiffe://example.org/a/",     "spiffe://example.org/%41",
		"spiffe://example.org/a?x=1",  "spiffe://example.org/a#f",
		"spiffe://example.org/a b",    "spiffe://example.org/a\nb",
		"spiffe://example.org/\x7f",
	};
	struct policy *p = mk(POLICY_URI, "spiffe://example.org/*");
	struct peer_identity id = { 0 };

	assert_int_equal(policy_add(p, POLICY_CN, "client"), 0);
	id.cn = N("client");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		id.uri[0] = (struct peer_name){ bad[i], strlen(bad[i]) };
		id.n_uri = 1;
		if (verdict(p, &id) != POLICY_DENY_SVID_INVALID)
			fail_msg("admitted peer URI '%s'", bad[i]);
	}
	id.uri[0] = N("spiffe://example.org/ns/default/sa/web-1.x_y");
	assert_int_equal(verdict(p, &id), POLICY_ALLOW);
	policy_free(p);
	assert_true(policy_spiffe_id_valid("spiffe://example.org", 20));
	assert_false(policy_spiffe_id_valid("spiffe://", 9));
	assert_false(policy_spiffe_id_valid("SPIFFE://example.org/a", 22));
	assert_false(policy_spiffe_id_valid("spiffe://user@example.org/a", 27));
	assert_false(policy_spiffe_id_valid("spiffe://example.org:8443/a", 27));
}

/* Without a spiffe:// rule the SVID rule is not in force: a non-SPIFFE URI rule matches. */
static void test_other_uri_rules(void **state)
{
	struct policy *p = mk(POLICY_URI, "urn:example:client");
	struct peer_identity id = { 0 };
	struct policy_match m;

	id.uri[id.n_uri++] = N("urn:example:other");
	id.uri[id.n_uri++] = N("urn:example:client");
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_ptr_equal(m.name.s, id.uri[1].s);
	policy_free(p);
}

static void test_allow_all_identity(void **state)
{
	struct policy *p = mk(POLICY_URI, NULL);
	struct peer_identity id = { 0 };
	struct policy_match m;

	policy_set_allow_all(p);
	id.uri[id.n_uri++] = N("spiffe://example.org/a");
	id.cn = N("client");
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.kind, POLICY_URI);
	assert_ptr_equal(m.name.s, id.uri[0].s);
	/* Two URIs: neither is the identity; the CN is the one name with no rival. */
	id.uri[id.n_uri++] = N("spiffe://example.org/b");
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.kind, POLICY_CN);
	id.cn = (struct peer_name){ 0 };
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.name.len, 0);
	policy_free(p);
}

static void test_ip(void **state)
{
	struct policy *p = mk(POLICY_IP, "192.0.2.7");
	struct peer_identity id = { 0 };
	struct policy_match m;

	assert_int_equal(policy_add(p, POLICY_IP, "2001:db8::1"), 0);
	assert_int_equal(policy_add(p, POLICY_IP, "192.0.2"), -EINVAL);
	assert_int_equal(policy_add(p, POLICY_IP, "example.org"), -EINVAL);
	id.ip[id.n_ip++] = N("\xc0\x00\x02\x08");
	assert_false(policy_allows(p, &id));
	id.ip[id.n_ip++] = N("\xc0\x00\x02\x07");
	assert_int_equal(policy_check(p, &id, &m), POLICY_ALLOW);
	assert_int_equal(m.kind, POLICY_IP);
	assert_ptr_equal(m.name.s, id.ip[1].s);
	memset(&id, 0, sizeof(id));
	id.ip[id.n_ip++] = N("\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01");
	assert_true(policy_allows(p, &id));
	/* The same bytes as a DNS name or as text are not an IP SAN. */
	memset(&id, 0, sizeof(id));
	id.dns[id.n_dns++] = N("192.0.2.7");
	assert_false(policy_allows(p, &id));
	policy_free(p);
}

/* RFC 6125 6.4.3, for verifying servers only: "*.example.org" covers one whole label. */
static void test_peer_wildcards(void **state)
{
	struct policy *p = mk(POLICY_DNS, "api.example.org");
	struct peer_identity id = { 0 };

	id.dns[id.n_dns++] = N("*.example.org");
	assert_false(policy_allows(p, &id)); /* client certificates: no wildcards */
	policy_set_peer_wildcards(p);
	assert_true(policy_allows(p, &id));
	id.dns[0] = N("*.EXAMPLE.org");
	assert_true(policy_allows(p, &id));
	id.dns[0] = N("*.org"); /* not directly under a top-level name */
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("a*.example.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("*.*.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("*.other.org");
	assert_false(policy_allows(p, &id));
	policy_free(p);

	/* RFC 6125 6.4.4: no wildcard for an IP reference identity ("*.0.0.1" vs 127.0.0.1). */
	p = mk(POLICY_DNS, "127.0.0.1");
	policy_set_peer_wildcards(p);
	id.dns[0] = N("*.0.0.1");
	assert_false(policy_allows(p, &id));
	policy_free(p);

	p = mk(POLICY_DNS, "a.b.example.org"); /* two labels: "*" covers only one */
	policy_set_peer_wildcards(p);
	id.dns[0] = N("*.example.org");
	assert_false(policy_allows(p, &id));
	policy_free(p);
}

static void test_bad_patterns(void **state)
{
	static const char *const bad_uri[] = {
		"spiffe://*.org/x",
		"spiffe://example.org/a*",
		"spiffe:///*",
		"https://x/*",
		"spiffe://Example.org/*",
		"*",
		"",
		"spiffe://example.org/a b",
		"spiffe://example.org/a/../b",
		"spiffe://example.org:8443/x",
		"spiffe://example.org/%41",
		"spiffe://example.org/a?q",
		"spiffe://example.org/",
		"spiffe://exa mple.org/*",
		"no-scheme",
		"urn:with space",
	};
	struct policy *p = mk(POLICY_URI, NULL);

	for (size_t i = 0; i < sizeof(bad_uri) / sizeof(bad_uri[0]); i++)
		if (policy_add(p, POLICY_URI, bad_uri[i]) != -EINVAL)
			fail_msg("accepted URI pattern '%s'", bad_uri[i]);
	assert_int_equal(policy_add(p, POLICY_DNS, "a.*.org"), -EINVAL);
	assert_int_equal(policy_add(p, POLICY_DNS, "*."), -EINVAL);
	assert_int_equal(policy_add(p, POLICY_DNS, "a b.example.org"), -EINVAL);
	assert_int_equal(policy_add(p, POLICY_CN, ""), -EINVAL);
	assert_true(policy_is_empty(p));
	policy_free(p);
}

static void test_dns(void **state)
{
	struct policy *p = mk(POLICY_DNS, "client.example.org");
	struct peer_identity id = { 0 };

	id.dns[id.n_dns++] = N("CLIENT.example.org");
	assert_true(policy_allows(p, &id));
	id.dns[0] = N("client.example.org.evil.net");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("evil.example.net");
	assert_false(policy_allows(p, &id));
	/* A URI with the same text is not a DNS name. */
	id.n_dns = 0;
	id.uri[id.n_uri++] = N("client.example.org");
	assert_false(policy_allows(p, &id));
	policy_free(p);

	p = mk(POLICY_DNS, "*.example.org");
	memset(&id, 0, sizeof(id));
	id.dns[id.n_dns++] = N("a.example.org");
	assert_true(policy_allows(p, &id));
	id.dns[0] = N("a.b.example.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("example.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N(".example.org");
	assert_false(policy_allows(p, &id));
	/* The label a rule's '*' stands for is a host label, not any bytes. */
	id.dns[0] = N("\xff\xfe x\rlevel=info cn=admin.example.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("a_b.example.org");
	assert_false(policy_allows(p, &id));
	id.dns[0] = N("xn--bcher-kva.example.org");
	assert_true(policy_allows(p, &id));
	policy_free(p);
}

static void test_cn_ou(void **state)
{
	struct policy *p = mk(POLICY_CN, "client");
	struct peer_identity id = { 0 };

	id.cn = N("client");
	assert_true(policy_allows(p, &id));
	id.cn = N("Client");
	assert_false(policy_allows(p, &id));
	id.cn = N("client ");
	assert_false(policy_allows(p, &id));
	id.cn = (struct peer_name){ 0 };
	assert_false(policy_allows(p, &id));
	policy_free(p);

	p = mk(POLICY_OU, "payments");
	memset(&id, 0, sizeof(id));
	id.ou[id.n_ou++] = N("web");
	assert_false(policy_allows(p, &id));
	id.ou[id.n_ou++] = N("payments");
	assert_true(policy_allows(p, &id));
	id.n_ou = 0;
	id.cn = N("payments"); /* a CN is not an OU */
	assert_false(policy_allows(p, &id));
	policy_free(p);
}

static void test_allow_all_and_empty(void **state)
{
	struct policy *p = mk(POLICY_URI, NULL);
	struct peer_identity none = { 0 };

	assert_true(policy_is_empty(p));
	assert_false(policy_allows(p, &none));
	policy_set_allow_all(p);
	assert_false(policy_is_empty(p));
	assert_true(policy_allows(p, &none));
	policy_free(p);
	policy_free(NULL);
}

static void test_mixed_rules(void **state)
{
	struct policy *p = mk(POLICY_URI, "spiffe://example.org/a");
	struct peer_identity id = { 0 };

	assert_int_equal(policy_add(p, POLICY_CN, "legacy"), 0);
	id.cn = N("legacy");
	assert_true(policy_allows(p, &id));
	id.cn = N("other");
	id.uri[id.n_uri++] = N("spiffe://example.org/b");
	assert_false(policy_allows(p, &id));
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_exact),
		cmocka_unit_test(test_uri_trust_domain),
		cmocka_unit_test(test_bad_patterns),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_cn_ou),
		cmocka_unit_test(test_allow_all_and_empty),
		cmocka_unit_test(test_mixed_rules),
		cmocka_unit_test(test_svid_one_uri),
		cmocka_unit_test(test_svid_invalid_peer_ids),
		cmocka_unit_test(test_other_uri_rules),
		cmocka_unit_test(test_allow_all_identity),
		cmocka_unit_test(test_ip),
		cmocka_unit_test(test_peer_wildcards),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

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
	/* Any one of several URI SANs may match. */
	two.uri[two.n_uri++] = N("spiffe://evil.org/x");
	two.uri[two.n_uri++] = N("spiffe://example.org/ok");
	assert_true(policy_allows(p, &two));
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
	};
	struct policy *p = mk(POLICY_URI, NULL);

	for (size_t i = 0; i < sizeof(bad_uri) / sizeof(bad_uri[0]); i++)
		if (policy_add(p, POLICY_URI, bad_uri[i]) != -EINVAL)
			fail_msg("accepted URI pattern '%s'", bad_uri[i]);
	assert_int_equal(policy_add(p, POLICY_DNS, "a.*.org"), -EINVAL);
	assert_int_equal(policy_add(p, POLICY_DNS, "*."), -EINVAL);
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
		cmocka_unit_test(test_uri_exact),    cmocka_unit_test(test_uri_trust_domain),
		cmocka_unit_test(test_bad_patterns), cmocka_unit_test(test_dns),
		cmocka_unit_test(test_cn_ou),	     cmocka_unit_test(test_allow_all_and_empty),
		cmocka_unit_test(test_mixed_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

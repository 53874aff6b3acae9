// SPDX-License-Identifier: MIT
/* --intercept CIDR:PORT[-PORT] parsing (daemon/conf/intercept.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "intercept.h"

static void test_good(void **state)
{
	struct intercept_rule r;
	const char *why = NULL;
	char buf[64];
	static const uint8_t v6[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0 };

	assert_int_equal(intercept_parse("127.0.0.2:9050", &r, &why), 0);
	assert_int_equal(r.family, AF_INET);
	assert_int_equal(r.prefix, 32);
	assert_int_equal(r.port_lo, 9050);
	assert_int_equal(r.port_hi, 9050);
	assert_memory_equal(r.addr, "\x7f\x00\x00\x02", 4);
	intercept_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "127.0.0.2/32:9050");

	assert_int_equal(intercept_parse("10.0.0.0/8:80-90", &r, &why), 0);
	assert_int_equal(r.prefix, 8);
	assert_int_equal(r.port_lo, 80);
	assert_int_equal(r.port_hi, 90);
	intercept_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "10.0.0.0/8:80-90");

	assert_int_equal(intercept_parse("[fd00::/64]:443", &r, &why), 0);
	assert_int_equal(r.family, AF_INET6);
	assert_int_equal(r.prefix, 64);
	assert_memory_equal(r.addr, v6, 16);
	intercept_format(&r, buf, sizeof(buf));
	assert_string_equal(buf, "[fd00::/64]:443");

	assert_int_equal(intercept_parse("0.0.0.0/0:1-65535", &r, &why), 0);
	assert_int_equal(r.prefix, 0);
}

static void test_bad(void **state)
{
	static const char *const bad[][2] = {
		{ "127.0.0.2", "expected CIDR:PORT" },
		{ "127.0.0.2:", "expected PORT" },
		{ "127.0.0.2:x", "expected PORT" },
		{ "127.0.0.2:-5", "expected PORT" },
		{ "127.0.0.2:80-", "expected PORT" },
		{ "127.0.0.2:0", "ports 1-65535" },
		{ "127.0.0.2:65536", "ports 1-65535" },
		{ "127.0.0.2:90-80", "backwards" },
		{ "127.0.0.2/33:80", "0-32" },
		{ "127.0.0.2/:80", "0-32" },
		{ "[fd00::/129]:80", "0-128" },
		{ "10.0.0.1/8:80", "past its prefix" },
		{ "[fd00::1/64]:80", "past its prefix" },
		{ "[127.0.0.1]:80", "brackets are for IPv6" },
		{ "fd00::/64:80", "IPv6 in brackets" },
		{ "[fd00::/64]80", "expected [IPv6/LEN]:PORT" },
		{ "example.com:80", "not an IPv4 or IPv6" },
	};
	struct intercept_rule r;

	memset(&r, 0x5a, sizeof(r));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;

		assert_int_equal(intercept_parse(bad[i][0], &r, &why), -EINVAL);
		assert_non_null(why);
		if (!strstr(why, bad[i][1]))
			fail_msg("%s: '%s' lacks '%s'", bad[i][0], why, bad[i][1]);
		assert_int_equal(r.port_lo, 0x5a5a); /* untouched on failure */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

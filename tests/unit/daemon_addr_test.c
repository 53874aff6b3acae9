// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"

static void test_ipv4(void **state)
{
	struct daemon_addr a;
	struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;

	assert_int_equal(addr_parse("127.0.0.1:8443", false, &a, NULL), 0);
	assert_int_equal(in->sin_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 8443);
	assert_int_equal(in->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_string_equal(a.text, "127.0.0.1:8443");
}

static void test_ipv6(void **state)
{
	struct daemon_addr a;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;

	assert_int_equal(addr_parse("[::1]:443", false, &a, NULL), 0);
	assert_int_equal(in6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 443);
	assert_memory_equal(&in6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
	assert_int_equal(addr_parse("[::]:1", false, &a, NULL), 0);
}

static void test_unix(void **state)
{
	struct daemon_addr a;
	struct sockaddr_un *un = (struct sockaddr_un *)&a.ss;
	const char *why = NULL;

	assert_int_equal(addr_parse("unix:/run/app.sock", true, &a, NULL), 0);
	assert_int_equal(un->sun_family, AF_UNIX);
	assert_string_equal(un->sun_path, "/run/app.sock");
	/* Only targets may be unix sockets. */
	assert_int_equal(addr_parse("unix:/run/app.sock", false, &a, &why), -EINVAL);
	assert_non_null(strstr(why, "target"));
	assert_int_equal(addr_parse("unix:relative", true, &a, NULL), -EINVAL);
}

static void test_bad(void **state)
{
	static const char *const bad[] = {
		"",	      "127.0.0.1",  "127.0.0.1:",   "127.0.0.1:0", "127.0.0.1:65536",
		":443",	      "::1:443",    "[::1]443",	    "[::1]:",	   "[nothost]:1",
		"1.2.3.4:-1", "1.2.3.4:1x", "1.2.3.4:http", "[]:1",
	};
	struct daemon_addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;

		if (addr_parse(bad[i], true, &a, &why) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
		assert_non_null(why);
	}
}

static void test_hostname(void **state)
{
	struct daemon_addr a;

	/* /etc/hosts always has localhost; no network involved. */
	assert_int_equal(addr_parse("localhost:80", false, &a, NULL), 0);
	assert_true(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4),	 cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_unix),	 cmocka_unit_test(test_bad),
		cmocka_unit_test(test_hostname),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

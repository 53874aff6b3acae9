// SPDX-License-Identifier: MIT
/*
 * The executable's __sprintf_chk (daemon/cli/hex_sprintf.c), linked in here as in ktlsd:
 * "%02x" of every byte is glibc's output, other formats and arguments pass through, and a
 * keylog line OpenSSL formats with it reaches the callback exactly as without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

int __sprintf_chk(char *s, int flag, size_t slen, const char *format, ...);

static void test_every_byte(void **st)
{
	char got[8], want[8];

	for (unsigned v = 0; v < 256; v++) {
		memset(got, 'X', sizeof(got));
		assert_int_equal(__sprintf_chk(got, 1, sizeof(got), "%02x", v), 2);
		assert_int_equal(snprintf(want, sizeof(want), "%02x", v), 2);
		assert_string_equal(got, want);
		assert_int_equal(got[3], 'X'); /* nothing past the terminator */
	}
}

static void test_pass_through(void **st)
{
	char got[64];

	/* Past a byte, or another format: glibc's own formatting. */
	assert_int_equal(__sprintf_chk(got, 1, sizeof(got), "%02x", 0x1234), 4);
	assert_string_equal(got, "1234");
	assert_int_equal(__sprintf_chk(got, 1, sizeof(got), "%02X", 0xab), 2);
	assert_string_equal(got, "AB");
	assert_int_equal(__sprintf_chk(got, 1, sizeof(got), "%02x-%s", 7, "ok"), 5);
	assert_string_equal(got, "07-ok");
	assert_int_equal(__sprintf_chk(got, 1, sizeof(got), "%02xz", 7), 3);
	assert_string_equal(got, "07z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_pass_through),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

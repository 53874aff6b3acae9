// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "log.h"

static void test_logfmt(void **state)
{
	struct log_kv kv[] = { { "reason", "identity not allowed" },
			       { "uri", "spiffe://evil.org/x" },
			       { "empty", "" },
			       { "null", NULL },
			       { "q", "say \"hi\"" } };
	char buf[512];

	log_format_line(LOG_LOGFMT, "warn", "conn_end", kv, 5, buf, sizeof(buf));
	assert_non_null(strstr(buf, " level=warn event=conn_end reason=\"identity not allowed\" "
				    "uri=spiffe://evil.org/x q=\"say \\\"hi\\\"\""));
	assert_null(strstr(buf, "empty="));
	assert_null(strstr(buf, "null="));
	assert_memory_equal(buf, "ts=", 3);
}

static void test_json(void **state)
{
	struct log_kv kv[] = { { "reason", "a \"b\"\n" }, { "ktls", "tx+rx" } };
	char buf[512];
	json_error_t e;
	json_t *o;

	log_format_line(LOG_JSON, "info", "conn_end", kv, 2, buf, sizeof(buf));
	o = json_loads(buf, 0, &e);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "event")), "conn_end");
	assert_string_equal(json_string_value(json_object_get(o, "reason")), "a \"b\"\n");
	assert_string_equal(json_string_value(json_object_get(o, "ktls")), "tx+rx");
	json_decref(o);
}

static void test_truncation(void **state)
{
	char big[600], buf[64];
	struct log_kv kv[] = { { "x", big } };
	int n;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = log_format_line(LOG_LOGFMT, "info", "e", kv, 1, buf, sizeof(buf));
	assert_int_equal(n, sizeof(buf) - 1);
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logfmt),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

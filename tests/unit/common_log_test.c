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

/* No byte of a value may end the line or reach a terminal raw. */
static void assert_one_clean_line(const char *buf)
{
	for (const unsigned char *p = (const unsigned char *)buf; *p; p++)
		assert_true(*p >= 0x20 && *p != 0x7f);
}

static void test_logfmt_controls(void **state)
{
	struct log_kv kv[] = { { "cn", "a\nts=x level=info event=forged" },
			       { "uri", "b\r\x1b[2Jc\x7f\t" },
			       { "dns", "c1\xc2\x9b"
					"31m" } };
	char buf[512];

	log_format_line(LOG_LOGFMT, "warn", "conn_end", kv, 3, buf, sizeof(buf));
	assert_one_clean_line(buf);
	assert_non_null(strstr(buf, " cn=\"a\\nts=x level=info event=forged\""));
	assert_non_null(strstr(buf, " uri=\"b\\r\\x1b[2Jc\\x7f\\t\""));
	/* U+009B is CSI to a terminal: C1 controls are escaped byte by byte too. */
	assert_non_null(strstr(buf, " dns=\"c1\\xc2\\x9b31m\""));
}

static void test_logfmt_utf8(void **state)
{
	struct log_kv kv[] = { { "cn", "caf\xc3\xa9" },
			       { "ou", "x\xff\xc3(\xe0\x80\x80\xed\xa0\x80" } };
	char buf[512];

	log_format_line(LOG_LOGFMT, "info", "e", kv, 2, buf, sizeof(buf));
	/* Well-formed UTF-8 stays readable; invalid, overlong and surrogate bytes do not. */
	assert_non_null(strstr(buf, " cn=\"caf\xc3\xa9\""));
	assert_non_null(strstr(buf, " ou=\"x\\xff\\xc3(\\xe0\\x80\\x80\\xed\\xa0\\x80\""));
}

static void test_json_controls(void **state)
{
	const char *v = "a\r\nts=x level=info event=forged \x1b[2J\x7f";
	struct log_kv kv[] = { { "cn", v } };
	char buf[512];
	json_error_t e;
	json_t *o;

	log_format_line(LOG_JSON, "warn", "conn_end", kv, 1, buf, sizeof(buf));
	assert_null(strchr(buf, '\n'));
	assert_null(strchr(buf, '\r'));
	assert_null(strchr(buf, '\x1b'));
	o = json_loads(buf, 0, &e);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "cn")), v);
	json_decref(o);
}

static void test_json_invalid_utf8(void **state)
{
	struct log_kv kv[] = { { "cn", "x\xff\xc3(" }, { "ou", "caf\xc3\xa9" }, { "ktls", "off" } };
	char buf[512];
	json_error_t e;
	json_t *o;

	log_format_line(LOG_JSON, "warn", "conn_end", kv, 3, buf, sizeof(buf));
	o = json_loads(buf, 0, &e);
	assert_non_null(o);
	/* The field is kept, each bad byte replaced by U+FFFD; good fields are untouched. */
	assert_string_equal(json_string_value(json_object_get(o, "cn")),
			    "x\xef\xbf\xbd\xef\xbf\xbd(");
	assert_string_equal(json_string_value(json_object_get(o, "ou")), "caf\xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(o, "ktls")), "off");
	json_decref(o);
}

/*
 * A peer can present a name of kilobytes (an outside review: a 2.5 KB URI SAN cut the JSON
 * line mid-string, so the record of its own refusal was invalid JSON). Each value is capped
 * at a character boundary with what was left out, so the line stays whole and every
 * field after the long one is still there.
 */
static void test_long_value_capped(void **state)
{
	char big[3000], buf[8192];
	struct log_kv kv[] = { { "claimed_uri", big }, { "tls", "TLSv1.3" } };
	json_error_t e;
	json_t *o;
	const char *v;

	memset(big, 'u', sizeof(big) - 1);
	memcpy(big + 254, "\xc3\xa9", 2); /* a 2-byte character across the cap */
	big[sizeof(big) - 1] = '\0';
	log_format_line(LOG_JSON, "warn", "conn_end", kv, 2, buf, sizeof(buf));
	o = json_loads(buf, 0, &e);
	assert_non_null(o);
	v = json_string_value(json_object_get(o, "claimed_uri"));
	assert_non_null(v);
	assert_true(strlen(v) < 300);
	assert_non_null(strstr(v, "\xc3\xa9...(+2743 bytes)"));
	assert_string_equal(json_string_value(json_object_get(o, "tls")), "TLSv1.3");
	json_decref(o);
	log_format_line(LOG_LOGFMT, "warn", "conn_end", kv, 2, buf, sizeof(buf));
	assert_true(strlen(buf) < 400);
	assert_non_null(strstr(buf, "...(+2743 bytes)\" tls=TLSv1.3"));
}

/* Bidi overrides and line separators would make a terminal show another line. */
static void test_logfmt_invisible(void **state)
{
	struct log_kv kv[] = { { "cn", "a\xe2\x80\xae"
				       "b\xe2\x80\xa8"
				       "c" } };
	char buf[512];

	log_format_line(LOG_LOGFMT, "info", "e", kv, 1, buf, sizeof(buf));
	assert_non_null(strstr(buf, "cn=\"a\\xe2\\x80\\xaeb\\xe2\\x80\\xa8c\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logfmt),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_logfmt_controls),
		cmocka_unit_test(test_logfmt_utf8),
		cmocka_unit_test(test_json_controls),
		cmocka_unit_test(test_json_invalid_utf8),
		cmocka_unit_test(test_long_value_capped),
		cmocka_unit_test(test_logfmt_invisible),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

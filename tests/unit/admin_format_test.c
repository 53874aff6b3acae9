// SPDX-License-Identifier: MIT
/* The admin endpoint's formatting: label escaping, /proc/net/tls_stat names, the ULP view
 * parsed from attributes built as the kernel's tcp_diag builds them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/inet_diag.h>
#include <linux/tls.h>
#include <netlink/attr.h>
#include <netlink/msg.h>

#include "admin.h"

static char *render(void (*fn)(FILE *, const char *), const char *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	fn(f, arg);
	fclose(f);
	return buf;
}

static void label(FILE *f, const char *v)
{
	prom_label_value(f, v);
}

static void test_label_escape(void **state)
{
	char *s = render(label, "a\"b\\c\nd");

	assert_string_equal(s, "a\\\"b\\\\c\\nd");
	free(s);
	s = render(label, "plain-name_1");
	assert_string_equal(s, "plain-name_1");
	free(s);
}

static void expect_name(const char *stat, const char *want, bool gauge)
{
	char buf[96];
	bool g = !gauge;

	assert_int_equal(kernel_tls_metric_name(stat, buf, sizeof(buf), &g), 0);
	assert_string_equal(buf, want);
	assert_int_equal(g, gauge);
}

static void test_tls_stat_names(void **state)
{
	char buf[96];
	bool g;

	expect_name("TlsCurrTxSw", "ktlsd_kernel_tls_curr_tx_sw", true);
	expect_name("TlsCurrRxDevice", "ktlsd_kernel_tls_curr_rx_device", true);
	expect_name("TlsTxSw", "ktlsd_kernel_tls_tx_sw_total", false);
	expect_name("TlsDecryptError", "ktlsd_kernel_tls_decrypt_error_total", false);
	expect_name("TlsRxRekeyOk", "ktlsd_kernel_tls_rx_rekey_ok_total", false);
	assert_int_equal(kernel_tls_metric_name("Foo", buf, sizeof(buf), &g), -EINVAL);
	assert_int_equal(kernel_tls_metric_name("Tls", buf, sizeof(buf), &g), -EINVAL);
	assert_int_equal(kernel_tls_metric_name("TlsA-b", buf, sizeof(buf), &g), -EINVAL);
	assert_int_equal(kernel_tls_metric_name("TlsCurrTxSw", buf, 20, &g), -EINVAL);
	assert_int_equal(kernel_tls_metric_name("TlsTxSw", buf, 24, &g), -EINVAL);
}

static void test_tls_stat_text(void **state)
{
	char *s = render(metrics_kernel_tls, "TlsCurrTxSw                     \t2\n"
					     "TlsTxSw                         \t5\n"
					     "Bogus-line 3\nTlsDecryptError 0\n");

	assert_string_equal(s,
			    "# HELP ktlsd_kernel_tls_curr_tx_sw /proc/net/tls_stat TlsCurrTxSw.\n"
			    "# TYPE ktlsd_kernel_tls_curr_tx_sw gauge\n"
			    "ktlsd_kernel_tls_curr_tx_sw 2\n"
			    "# HELP ktlsd_kernel_tls_tx_sw_total /proc/net/tls_stat TlsTxSw.\n"
			    "# TYPE ktlsd_kernel_tls_tx_sw_total counter\n"
			    "ktlsd_kernel_tls_tx_sw_total 5\n"
			    "# HELP ktlsd_kernel_tls_decrypt_error_total /proc/net/tls_stat "
			    "TlsDecryptError.\n"
			    "# TYPE ktlsd_kernel_tls_decrypt_error_total counter\n"
			    "ktlsd_kernel_tls_decrypt_error_total 0\n");
	free(s);
	/* No file (a kernel without CONFIG_TLS): no metrics at all, not zeros. */
	s = render(metrics_kernel_tls, NULL);
	assert_string_equal(s, "");
	free(s);
}

/* INET_DIAG_ULP_INFO as tcp_diag_put_ulp and tls_get_info build it. */
static struct nl_msg *ulp_msg(const char *name, bool tls, uint16_t tx, uint16_t rx)
{
	struct nl_msg *m = nlmsg_alloc();
	struct nlattr *ulp, *info;

	assert_non_null(m);
	ulp = nla_nest_start(m, INET_DIAG_ULP_INFO);
	nla_put_string(m, INET_ULP_INFO_NAME, name);
	if (tls) {
		info = nla_nest_start(m, INET_ULP_INFO_TLS);
		nla_put_u16(m, TLS_INFO_VERSION, TLS_1_3_VERSION);
		nla_put_u16(m, TLS_INFO_CIPHER, TLS_CIPHER_AES_GCM_256);
		nla_put_u16(m, TLS_INFO_TXCONF, tx);
		nla_put_u16(m, TLS_INFO_RXCONF, rx);
		nla_nest_end(m, info);
	}
	nla_nest_end(m, ulp);
	return m;
}

static struct nlattr *first_attr(struct nl_msg *m)
{
	return (struct nlattr *)nlmsg_data(nlmsg_hdr(m));
}

static void test_ulp_parse(void **state)
{
	struct nl_msg *m = ulp_msg("tls", true, TLS_CONF_SW, TLS_CONF_SW);
	struct ulp_view v;

	assert_int_equal(ulp_view_parse(first_attr(m), &v), 0);
	assert_string_equal(v.ulp, "tls");
	assert_true(v.tls);
	assert_string_equal(tls_version_name(v.version), "1.3");
	assert_string_equal(tls_cipher_name(v.cipher), "aes-gcm-256");
	assert_string_equal(tls_conf_name(v.txconf), "sw");
	assert_string_equal(tls_conf_name(v.rxconf), "sw");
	nlmsg_free(m);
	/* TX only (RX still with OpenSSL): the kernel says BASE for rx. */
	m = ulp_msg("tls", true, TLS_CONF_SW, TLS_CONF_BASE);
	assert_int_equal(ulp_view_parse(first_attr(m), &v), 0);
	assert_string_equal(tls_conf_name(v.rxconf), "off");
	nlmsg_free(m);
	m = ulp_msg("mptcp", false, 0, 0);
	assert_int_equal(ulp_view_parse(first_attr(m), &v), 0);
	assert_string_equal(v.ulp, "mptcp");
	assert_false(v.tls);
	nlmsg_free(m);
	assert_string_equal(tls_conf_name(TLS_CONF_HW), "hw");
	assert_string_equal(tls_conf_name(99), "?");
	assert_string_equal(tls_version_name(TLS_1_2_VERSION), "1.2");
	assert_string_equal(tls_cipher_name(TLS_CIPHER_CHACHA20_POLY1305), "chacha20-poly1305");
}

/* A version attribute of the wrong size is refused, not read past its end. */
static void test_ulp_malformed(void **state)
{
	struct nl_msg *m = nlmsg_alloc();
	struct nlattr *ulp, *info;
	struct ulp_view v;

	ulp = nla_nest_start(m, INET_DIAG_ULP_INFO);
	nla_put_string(m, INET_ULP_INFO_NAME, "tls");
	info = nla_nest_start(m, INET_ULP_INFO_TLS);
	nla_put_u8(m, TLS_INFO_VERSION, 3);
	nla_nest_end(m, info);
	nla_nest_end(m, ulp);
	assert_int_equal(ulp_view_parse(first_attr(m), &v), -EINVAL);
	nlmsg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escape),  cmocka_unit_test(test_tls_stat_names),
		cmocka_unit_test(test_tls_stat_text), cmocka_unit_test(test_ulp_parse),
		cmocka_unit_test(test_ulp_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

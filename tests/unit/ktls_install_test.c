// SPDX-License-Identifier: MIT
/*
 * ktls_install through a faked seam (ktls_fixture.h; control records after the install are
 * ktls_control_test.c). Real OpenSSL handshakes run over an AF_UNIX socketpair in one
 * thread; the fake setsockopt records what the kernel would have been given. Expected crypto_info bytes are computed here independently: TLS 1.3
 * from the secrets this test's own keylog callback saw (ktls_ctx_prepare must chain to
 * it), TLS 1.2 from the CLIENT_RANDOM keylog line with a by-hand HMAC PRF.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ktlsd/ktls.h"
#include "../../ktls/ktls_internal.h" /* white box: the capture is wiped */
#include "tls_test_util.h"
#include "ktls_fixture.h"

static void check_calls(const uint8_t *tx, const uint8_t *rx, size_t info_len)
{
	assert_int_equal(F.ncalls, 3);
	assert_int_equal(F.calls[0].level, SOL_TCP);
	assert_int_equal(F.calls[0].name, TCP_ULP);
	assert_int_equal(F.calls[0].len, 3);
	assert_memory_equal(F.calls[0].val, "tls", 3);
	assert_int_equal(F.calls[1].level, SOL_TLS);
	assert_int_equal(F.calls[1].name, TLS_TX);
	assert_int_equal(F.calls[1].len, info_len);
	assert_memory_equal(F.calls[1].val, tx, info_len);
	assert_int_equal(F.calls[2].level, SOL_TLS);
	assert_int_equal(F.calls[2].name, TLS_RX);
	assert_int_equal(F.calls[2].len, info_len);
	assert_memory_equal(F.calls[2].val, rx, info_len);
}

static void run_case(int version, const char *cipher, bool rsa, struct expect e, const EVP_MD *md)
{
	struct hs_opts o = { version, cipher, rsa, true, true };
	uint8_t cli[64], srv[64], srv_unread[64];
	struct ktls_conn *sc = NULL, *cc = NULL;
	struct pair p;

	e.md = md;
	pair_handshake(&p, &o);
	if (version == TLS1_3_VERSION) {
		assert_int_equal(K.c_ap_len, (size_t)EVP_MD_get_size(md));
		assert_int_equal(K.s_ap_len, (size_t)EVP_MD_get_size(md));
		expect_tls13(&e, K.c_ap, K.c_ap_len, cli);
		/* the server sent its 2 tickets (OpenSSL's default) as records 0 and 1; the
		 * client has read nothing yet, so its RX starts at 0 and it meets them there */
		expect_tls13_seq(&e, K.s_ap, K.s_ap_len, 2, srv);
		expect_tls13(&e, K.s_ap, K.s_ap_len, srv_unread);
	} else {
		expect_tls12(&e, p.s, cli, srv);
		memcpy(srv_unread, srv, sizeof(srv));
	}

	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.s, p.fds[0], &sc), 0);
	check_calls(srv, cli, e.info_len);
	if (version == TLS1_3_VERSION) {
		static const uint8_t zero[KTLS_SECRET_MAX];
		const struct ktls_captured *cap = ktls_captured_get(p.s);

		assert_non_null(cap);
		/* no copy of a secret left behind */
		assert_memory_equal(cap->client, zero, sizeof(zero));
		assert_memory_equal(cap->server, zero, sizeof(zero));
		assert_int_equal(cap->tx_records, 2);
		assert_int_equal(cap->rx_records, 0);
	}
	assert_int_equal(ktls_conn_version(sc), version);
	assert_string_equal(ktls_conn_cipher_name(sc),
			    SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)));

	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.c, p.fds[1], &cc), 0);
	check_calls(cli, srv_unread, e.info_len);
	ktls_conn_free(sc);
	ktls_conn_free(cc);
	pair_free(&p);
}

static void test_tls13_aes128(void **s)
{
	run_case(TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", false, E_AES128, EVP_sha256());
}

static void test_tls13_aes256(void **s)
{
	run_case(TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", false, E_AES256, EVP_sha384());
}

static void test_tls13_chacha(void **s)
{
	run_case(TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", false, E_CHACHA, EVP_sha256());
}

static void test_tls12_ecdsa_aes128(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", false, E_AES128, EVP_sha256());
}

static void test_tls12_ecdsa_aes256(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", false, E_AES256, EVP_sha384());
}

static void test_tls12_ecdsa_chacha(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", false, E_CHACHA, EVP_sha256());
}

static void test_tls12_rsa_aes128(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", true, E_AES128, EVP_sha256());
}

static void test_tls12_rsa_aes256(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-RSA-AES256-GCM-SHA384", true, E_AES256, EVP_sha384());
}

static void test_tls12_rsa_chacha(void **s)
{
	run_case(TLS1_2_VERSION, "ECDHE-RSA-CHACHA20-POLY1305", true, E_CHACHA, EVP_sha256());
}

/* --- failure paths --------------------------------------------------------------------- */

static void client_reads(struct pair *p, int want_data);

static void test_keylog_chained(void **s)
{
	struct pair p;

	pair_handshake(&p, &O13);
	/* the test's own callback still saw every line (5 per side in TLS 1.3) */
	assert_true(K.lines >= 10);
	pair_free(&p);
}

static void test_no_ulp_leaves_socket(void **s)
{
	struct ktls_conn *c = (struct ktls_conn *)0x1;
	struct pair p;

	pair_handshake(&p, &O13);
	fake_reset();
	F.fail_at = 0;
	F.fail_err = ENOENT;
	assert_int_equal(ktls_install_with(&fake_ops, p.s, p.fds[0], &c), -KTLS_E_NO_ULP);
	assert_int_equal(F.ncalls, 1); /* nothing after the failed ULP */
	assert_true(ktls_err_fallback_safe(-KTLS_E_NO_ULP));
	assert_ptr_equal(c, (struct ktls_conn *)0x1);
	pair_free(&p);
}

static void test_rx_fail_after_tx_is_error(void **s)
{
	struct ktls_conn *c = NULL;
	char buf[4096];
	struct pair p;
	int rc;

	pair_handshake(&p, &O13);
	fake_reset();
	F.fail_at = 2;
	F.fail_err = EINVAL;
	rc = ktls_install_with(&fake_ops, p.s, p.fds[0], &c);
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(F.ncalls, 3);
	assert_null(c);
	assert_false(ktls_err_fallback_safe(rc)); /* the socket changed: close, never relay */
	/*
	 * TX is the kernel's now: a record OpenSSL wrote (the close_notify of a caller that
	 * closes as it would without kTLS) would be encrypted again as data. Nothing may come.
	 */
	while (recv(p.fds[1], buf, sizeof(buf), MSG_DONTWAIT) > 0)
		; /* the server's tickets, written before the install */
	ERR_clear_error();
	SSL_shutdown(p.s);
	assert_int_equal(recv(p.fds[1], buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	pair_free(&p);
}

/* TLS_TX refused after the ULP went on: no TLS_RX tried, OpenSSL muted, no fallback. */
static void test_tx_fail_after_ulp_is_error(void **s)
{
	struct ktls_conn *c = NULL;
	struct pair p;
	int rc;

	pair_handshake(&p, &O13);
	fake_reset();
	F.fail_at = 1;
	F.fail_err = ENOMEM;
	rc = ktls_install_with(&fake_ops, p.s, p.fds[0], &c);
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(F.ncalls, 2);
	assert_int_equal(F.calls[1].name, TLS_TX);
	assert_null(c);
	assert_false(ktls_err_fallback_safe(rc));
	assert_ptr_not_equal(SSL_get_wbio(p.s), SSL_get_rbio(p.s));
	pair_free(&p);
}

static void test_peer_fin_before_install_leaves_socket(void **s)
{
	struct ktls_conn *c = NULL;
	struct pair p;

	pair_handshake(&p, &O13);
	fake_reset();
	F.fail_at = 0;
	F.fail_err = ENOTCONN; /* TCP_ULP on a CLOSE_WAIT socket */
	assert_int_equal(ktls_install_with(&fake_ops, p.s, p.fds[0], &c), -KTLS_E_NOT_ESTABLISHED);
	assert_int_equal(F.ncalls, 1);
	assert_true(ktls_err_fallback_safe(-KTLS_E_NOT_ESTABLISHED));
	assert_null(c);
	/* untouched: OpenSSL still writes to the socket, the userspace relay can take over */
	assert_ptr_equal(SSL_get_wbio(p.s), SSL_get_rbio(p.s));
	assert_int_equal(SSL_write(p.s, "x", 1), 1);
	client_reads(&p, 1);
	assert_non_null(strstr(ktls_strerror(-KTLS_E_NOT_ESTABLISHED), "half-closed"));
	pair_free(&p);
}

static void test_pending_refused(void **s)
{
	struct ktls_conn *c = NULL;
	char b[2];
	struct pair p;

	pair_handshake(&p, &O13);
	assert_int_equal(SSL_write(p.s, "ab", 2), 2);
	assert_int_equal(SSL_read(p.c, b, 1), 1);
	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.c, p.fds[1], &c), -KTLS_E_PENDING);
	assert_int_equal(F.ncalls, 0);
	pair_free(&p);
}

static void test_not_prepared_no_secrets(void **s)
{
	struct hs_opts o = O13;
	struct ktls_conn *c = NULL;
	struct pair p;

	o.prepare_client = false;
	pair_handshake(&p, &o);
	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.c, p.fds[1], &c), -KTLS_E_NO_SECRETS);
	assert_int_equal(F.ncalls, 0);
	pair_free(&p);
}

/* Client reads what the server sent after the handshake through OpenSSL: n records. */
static void client_reads(struct pair *p, int want_data)
{
	char b[64];
	int r = SSL_read(p->c, b, sizeof(b));

	if (want_data) {
		assert_int_equal(r, want_data);
	} else {
		assert_true(r <= 0);
		assert_int_equal(SSL_get_error(p->c, r), SSL_ERROR_WANT_READ);
	}
}

static void test_split_install_after_tickets_and_data(void **s)
{
	struct expect e = E_AES128;
	uint8_t want_tx[64], want_rx[64];
	struct ktls_conn *c = NULL;
	struct pair p;

	e.md = EVP_sha256();
	pair_handshake(&p, &O13);
	fake_reset();
	assert_int_equal(ktls_install_dirs_with(&fake_ops, p.c, p.fds[1], KTLS_DIR_TX, &c), 0);
	assert_int_equal(F.ncalls, 2); /* ULP + TX, no RX yet */
	expect_tls13(&e, K.c_ap, 32, want_tx);
	assert_memory_equal(F.calls[1].val, want_tx, e.info_len);
	/* OpenSSL must not write on the socket any more: its write BIO discards */
	assert_ptr_not_equal(SSL_get_wbio(p.c), SSL_get_rbio(p.c));

	client_reads(&p, 0); /* both tickets, then nothing */
	assert_int_equal(SSL_write(p.s, "hello", 5), 5);
	client_reads(&p, 5); /* a data record, the caller's to relay */
	assert_int_equal(ktls_conn_install_rx(c, p.c), 0);
	assert_int_equal(F.ncalls, 3);
	assert_int_equal(F.calls[2].name, TLS_RX);
	expect_tls13_seq(&e, K.s_ap, 32, 3, want_rx);
	assert_memory_equal(F.calls[2].val, want_rx, e.info_len);
	assert_int_equal(ktls_conn_install_rx(c, p.c), -EALREADY);
	ktls_conn_free(c);
	pair_free(&p);
}

static void test_split_install_tls12(void **s)
{
	struct hs_opts o = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", false, true, true };
	uint8_t cli[64], srv[64];
	struct expect e = E_AES128;
	struct ktls_conn *c = NULL;
	struct pair p;

	e.md = EVP_sha256();
	pair_handshake(&p, &o);
	expect_tls12(&e, p.s, cli, srv);
	fake_reset();
	assert_int_equal(ktls_install_dirs_with(&fake_ops, p.c, p.fds[1], KTLS_DIR_TX, &c), 0);
	assert_memory_equal(F.calls[1].val, cli, e.info_len); /* TX seq 1 */
	assert_int_equal(SSL_write(p.s, "ab", 2), 2);
	assert_int_equal(SSL_write(p.s, "cd", 2), 2);
	client_reads(&p, 2);
	client_reads(&p, 2);
	assert_int_equal(ktls_conn_install_rx(c, p.c), 0);
	/* RX seq 3: Finished was 0, two data records; the explicit nonce follows it */
	srv[e.info_len - 1] = 3;
	srv[4 + 7] = 3;
	assert_memory_equal(F.calls[2].val, srv, e.info_len);
	ktls_conn_free(c);
	pair_free(&p);
}

static void test_split_install_partial_record_pending(void **s)
{
	struct ktls_conn *c = NULL;
	char b[1];
	struct pair p;

	pair_handshake(&p, &O13);
	client_reads(&p, 0);
	fake_reset();
	assert_int_equal(ktls_install_dirs_with(&fake_ops, p.c, p.fds[1], KTLS_DIR_TX, &c), 0);
	assert_int_equal(SSL_write(p.s, "xyz", 3), 3);
	assert_int_equal(SSL_read(p.c, b, 1), 1); /* two bytes of the record left in OpenSSL */
	assert_int_equal(ktls_conn_install_rx(c, p.c), -KTLS_E_PENDING);
	assert_int_equal(F.ncalls, 2);
	ktls_conn_free(c);
	pair_free(&p);
}

static void test_key_update_through_openssl_refused(void **s)
{
	struct ktls_conn *c = NULL;
	struct pair p;

	pair_handshake(&p, &O13);
	fake_reset();
	assert_int_equal(ktls_install_dirs_with(&fake_ops, p.c, p.fds[1], KTLS_DIR_TX, &c), 0);
	assert_int_equal(SSL_key_update(p.s, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	assert_int_equal(SSL_write(p.s, "k", 1), 1);
	client_reads(&p, 1);
	assert_int_equal(ktls_conn_install_rx(c, p.c), -KTLS_E_SEQUENCE);
	assert_int_equal(F.ncalls, 2); /* RX never set with stale keys */
	ktls_conn_free(c);
	/* a full install refuses it too, before touching the socket */
	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.c, p.fds[1], &c), -KTLS_E_SEQUENCE);
	assert_int_equal(F.ncalls, 0);
	pair_free(&p);
}

static void test_cbc_unsupported(void **s)
{
	struct hs_opts o = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256", false, true, true };
	struct ktls_conn *c = NULL;
	struct pair p;

	pair_handshake(&p, &o);
	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, p.s, p.fds[0], &c),
			 -KTLS_E_UNSUPPORTED_CIPHER);
	assert_int_equal(F.ncalls, 0);
	pair_free(&p);
}

static void test_prepare_leaves_tickets_alone(void **s)
{
	struct pair p;

	/* tickets are counted, not forbidden: whether to send them is the caller's choice */
	pair_handshake(&p, &O13);
	assert_int_equal(SSL_CTX_get_num_tickets(p.sctx), 2);
	pair_free(&p);
}

/* Fallback is safe exactly for the errors returned before the kernel saw a key. */
static void test_fallback_safe(void **s)
{
	static const int safe[] = {
		-KTLS_E_NO_ULP,		-KTLS_E_UNSUPPORTED_CIPHER, -KTLS_E_UNSUPPORTED_VERSION,
		-KTLS_E_PENDING,	-KTLS_E_NO_SECRETS,	    -KTLS_E_SEQUENCE,
		-KTLS_E_NOT_ESTABLISHED
	};
	/* 0, errno values, the other library errors, a positive code: all mean close */
	static const int unsafe[] = { 0,
				      -EINVAL,
				      -ENOMEM,
				      -EBUSY,
				      -EIO,
				      -KTLS_E_PROTOCOL,
				      -KTLS_E_REKEY_UNSUPPORTED,
				      -KTLS_E_BASE,
				      -KTLS_E_MAX,
				      KTLS_E_NO_ULP };

	for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
		assert_true(ktls_err_fallback_safe(safe[i]));
	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++)
		assert_false(ktls_err_fallback_safe(unsafe[i]));
}

static void test_strerror(void **s)
{
	assert_non_null(strstr(ktls_strerror(-KTLS_E_NO_ULP), "ULP"));
	assert_string_equal(ktls_strerror(-EBADMSG), strerror(EBADMSG));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls13_aes128),
		cmocka_unit_test(test_tls13_aes256),
		cmocka_unit_test(test_tls13_chacha),
		cmocka_unit_test(test_tls12_ecdsa_aes128),
		cmocka_unit_test(test_tls12_ecdsa_aes256),
		cmocka_unit_test(test_tls12_ecdsa_chacha),
		cmocka_unit_test(test_tls12_rsa_aes128),
		cmocka_unit_test(test_tls12_rsa_aes256),
		cmocka_unit_test(test_tls12_rsa_chacha),
		cmocka_unit_test(test_keylog_chained),
		cmocka_unit_test(test_no_ulp_leaves_socket),
		cmocka_unit_test(test_rx_fail_after_tx_is_error),
		cmocka_unit_test(test_tx_fail_after_ulp_is_error),
		cmocka_unit_test(test_peer_fin_before_install_leaves_socket),
		cmocka_unit_test(test_pending_refused),
		cmocka_unit_test(test_not_prepared_no_secrets),
		cmocka_unit_test(test_split_install_after_tickets_and_data),
		cmocka_unit_test(test_split_install_tls12),
		cmocka_unit_test(test_split_install_partial_record_pending),
		cmocka_unit_test(test_key_update_through_openssl_refused),
		cmocka_unit_test(test_cbc_unsupported),
		cmocka_unit_test(test_prepare_leaves_tickets_alone),
		cmocka_unit_test(test_fallback_safe),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

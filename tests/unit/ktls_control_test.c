// SPDX-License-Identifier: MIT
/*
 * Non-data records on an installed connection through the faked seam (ktls_fixture.h):
 * alerts and close_notify both ways, NewSessionTicket framing across records, KeyUpdate
 * followed and answered (crypto_info bytes computed here), a failed rekey, zero-length
 * reads, and a kernel that cannot rekey.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/tls.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "ktlsd/ktls.h"
#include "ktls_fixture.h"

/* --- control records ------------------------------------------------------------------- */

static struct pair CP;

static struct ktls_conn *control_conn(void)
{
	struct ktls_conn *c = NULL;

	pair_handshake(&CP, &O13);
	fake_reset();
	assert_int_equal(ktls_install_with(&fake_ops, CP.c, CP.fds[1], &c), 0);
	fake_reset();
	return c;
}

static void test_close_notify_and_alert(void **s)
{
	struct ktls_conn *c = control_conn();
	const uint8_t cn[2] = { 1, 0 }, fatal[2] = { 2, 42 };
	enum ktls_control ctrl;
	uint8_t alert = 0xff;

	queue(21, fatal, 2);
	queue(21, cn, 2);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_ALERT);
	assert_int_equal(alert, 42);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_CLOSE_NOTIFY);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), -EAGAIN);

	assert_int_equal(ktls_conn_send_close_notify(c), 0);
	assert_int_equal(ktls_conn_send_alert(c, 2, 40), 0);
	assert_int_equal(F.nsent, 2);
	assert_int_equal(F.sent[0].type, 21);
	assert_int_equal(F.sent[0].len, 2);
	assert_memory_equal(F.sent[0].data, cn, 2);
	assert_int_equal(F.sent[1].data[1], 40);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_data_not_consumed(void **s)
{
	struct ktls_conn *c = control_conn();
	enum ktls_control ctrl;
	uint8_t alert;

	queue(23, (const uint8_t *)"hello", 5);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_DATA);
	assert_int_equal(F.inpos, 0); /* left for the relay */
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_tickets_framing(void **s)
{
	struct ktls_conn *c = control_conn();
	/* two 10-byte tickets in one record, then a third split 2 | 2+10 across records */
	uint8_t two[28] = { 4, 0, 0, 10 }, a[2] = { 4, 0 }, b[12] = { 0, 10 };
	uint8_t ku[5] = { 24, 0, 0, 1, 0 };
	enum ktls_control ctrl;
	uint8_t alert;

	two[14] = 4;
	two[17] = 10;
	queue(22, two, sizeof(two));
	queue(22, a, sizeof(a));
	queue(22, b, sizeof(b));
	queue(22, ku, sizeof(ku)); /* framing must be back in sync for this one */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
		assert_int_equal(ctrl, KTLS_CTRL_TICKET);
	}
	F.rekey = 0;
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), -KTLS_E_REKEY_UNSUPPORTED);
	assert_int_equal(F.ncalls, 0); /* nothing tried on a kernel that can't */
	assert_int_equal(F.nsent, 0);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_garbage_handshake(void **s)
{
	struct ktls_conn *c = control_conn();
	uint8_t hello[4] = { 1, 0, 0, 0 }, ccs[1] = { 1 };
	enum ktls_control ctrl;
	uint8_t alert;

	queue(22, hello, 4);
	queue(20, ccs, 1);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), -KTLS_E_PROTOCOL);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), -KTLS_E_PROTOCOL);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_key_update_requested(void **s)
{
	struct ktls_conn *c = control_conn();
	uint8_t ku[5] = { 24, 0, 0, 1, 1 }, next_s[32], next_c[32], want_rx[64], want_tx[64];
	struct expect e = E_AES128;
	enum ktls_control ctrl;
	uint8_t alert;

	/* the client follows the server's update and answers with its own */
	e.md = EVP_sha256();
	hkdf_label(e.md, K.s_ap, 32, "traffic upd", next_s, 32);
	hkdf_label(e.md, K.c_ap, 32, "traffic upd", next_c, 32);
	expect_tls13(&e, next_s, 32, want_rx);
	expect_tls13(&e, next_c, 32, want_tx);
	F.rekey = 1;
	queue(22, ku, 5);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_KEY_UPDATE);
	assert_int_equal(F.ncalls, 1);
	assert_int_equal(F.calls[0].name, TLS_RX);
	assert_memory_equal(F.calls[0].val, want_rx, e.info_len);
	/* the answer is owed, not sent: the caller knows when nothing else writes TX */
	assert_int_equal(F.nsent, 0);
	assert_true(ktls_conn_key_update_owed(c));
	assert_int_equal(ktls_conn_tx_generation(c), 0);
	F.send_err = EAGAIN; /* send buffer full: nothing sent, nothing installed, still owed */
	assert_int_equal(ktls_conn_update_tx(c, false), -EAGAIN);
	assert_int_equal(F.ncalls, 1);
	assert_true(ktls_conn_key_update_owed(c));
	assert_int_equal(ktls_conn_update_tx(c, false), 0);
	assert_false(ktls_conn_key_update_owed(c));
	assert_int_equal(F.ncalls, 2);
	assert_int_equal(F.nsent, 1);
	assert_int_equal(F.sent[0].type, 22);
	assert_int_equal(F.sent[0].len, 5);
	assert_memory_equal(F.sent[0].data, "\x18\x00\x00\x01\x00", 5);
	assert_int_equal(F.calls[1].name, TLS_TX);
	assert_memory_equal(F.calls[1].val, want_tx, e.info_len);
	assert_int_equal(ktls_conn_rx_generation(c), 1);
	assert_int_equal(ktls_conn_tx_generation(c), 1);

	/* a second update chains from the new secret, not the original */
	fake_reset();
	F.rekey = 1;
	assert_int_equal(ktls_conn_update_tx(c, true), 0);
	hkdf_label(e.md, next_c, 32, "traffic upd", next_c, 32);
	expect_tls13(&e, next_c, 32, want_tx);
	assert_memory_equal(F.sent[0].data, "\x18\x00\x00\x01\x01", 5);
	assert_int_equal(F.calls[0].name, TLS_TX);
	assert_memory_equal(F.calls[0].val, want_tx, e.info_len);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_update_tx_install_fail_stops_tx(void **s)
{
	struct ktls_conn *c = control_conn();

	F.rekey = 1;
	F.fail_at = 0;
	F.fail_err = ENOMEM;
	assert_int_equal(ktls_conn_update_tx(c, false), -ENOMEM);
	assert_int_equal(F.nsent, 1); /* the KeyUpdate went out: the peer reads with the new key */
	/* so nothing more under the old one, close_notify included */
	assert_int_equal(ktls_conn_send_close_notify(c), -EPIPE);
	assert_int_equal(F.nsent, 1);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_zero_read_empty_record_or_end(void **s)
{
	struct ktls_conn *c = control_conn();
	uint8_t ku[5] = { 24, 0, 0, 1, 0 };
	enum ktls_control ctrl;
	uint8_t alert;

	F.rx_seq = 5;
	assert_int_equal(ktls_conn_zero_read(c), 0); /* first zero: can't tell yet */
	F.rx_seq = 6;
	assert_int_equal(ktls_conn_zero_read(c), 0); /* a record was consumed: empty one */
	F.rx_seq = 9;
	assert_int_equal(ktls_conn_zero_read(c), 0); /* data in between, then an empty one */
	assert_int_equal(ktls_conn_zero_read(c), 1); /* nothing consumed: end of stream */

	/* the same sequence number under the next key is not "nothing consumed" */
	F.rekey = 1;
	queue(22, ku, 5);
	assert_int_equal(ktls_conn_recv_control(c, &ctrl, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_KEY_UPDATE);
	assert_int_equal(ktls_conn_zero_read(c), 0);
	assert_int_equal(ktls_conn_zero_read(c), 1);

	/* more than KTLS_MAX_EMPTY_RECORDS empty records in a row: refused */
	for (int i = 1; i < KTLS_MAX_EMPTY_RECORDS; i++) {
		F.rx_seq++;
		assert_int_equal(ktls_conn_zero_read(c), 0);
	}
	F.rx_seq++;
	assert_int_equal(ktls_conn_zero_read(c), -KTLS_E_PROTOCOL);
	ktls_conn_free(c);
	pair_free(&CP);
}

static void test_update_tx_unsupported_sends_nothing(void **s)
{
	struct ktls_conn *c = control_conn();

	F.rekey = 0;
	assert_int_equal(ktls_conn_update_tx(c, false), -KTLS_E_REKEY_UNSUPPORTED);
	assert_int_equal(F.nsent, 0);
	assert_int_equal(F.ncalls, 0);
	ktls_conn_free(c);
	pair_free(&CP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_close_notify_and_alert),
		cmocka_unit_test(test_data_not_consumed),
		cmocka_unit_test(test_tickets_framing),
		cmocka_unit_test(test_garbage_handshake),
		cmocka_unit_test(test_key_update_requested),
		cmocka_unit_test(test_update_tx_install_fail_stops_tx),
		cmocka_unit_test(test_zero_read_empty_record_or_end),
		cmocka_unit_test(test_update_tx_unsupported_sends_nothing),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

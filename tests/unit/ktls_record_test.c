// SPDX-License-Identifier: MIT
/*
 * libktls's userspace records (record.c) against OpenSSL over a socketpair, after a real
 * handshake (ktls_fixture.c): data both ways for each TLS 1.3 suite, the server's tickets
 * skipped, KeyUpdate both ways, and a record sealed here with keys derived independently
 * from the keylog secret. Then what a hostile peer can send: a flipped bit, oversized and
 * malformed headers, an inner plaintext over 2^14, no content type, empty records past the
 * limit, a ticket sent to a server, data inside a handshake message, alerts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "ktlsd/ktls.h"
#include "ktls_fixture.h"

enum { BUF = 1 << 17 };

static uint8_t in[BUF], out[BUF];
static struct pair P;

/* Everything readable on fd (non-blocking) into in. */
static size_t drain(int fd)
{
	size_t len = 0;
	ssize_t n;

	while ((n = read(fd, in + len, BUF - len)) > 0)
		len += (size_t)n;
	return len;
}

/* Write all of buf to fd (the socketpair has room for what tests send). */
static void put(int fd, const uint8_t *buf, size_t len)
{
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

/* The next record of in[*pos..len): rc, and what it was. */
static int next(struct ktls_conn *c, size_t *pos, size_t len, enum ktls_control *ctrl, size_t *n,
		uint8_t *alert)
{
	size_t used = 0;
	int rc = ktls_rec_unseal(c, in + *pos, len - *pos, &used, out, sizeof(out), n, ctrl, alert);

	*pos += used;
	return rc;
}

/* Handshake, then side (server or client) leaves OpenSSL for userspace records. */
static struct ktls_conn *rec_side(const struct hs_opts *o, bool server)
{
	struct ktls_conn *c = NULL;
	SSL **ssl = server ? &P.s : &P.c;

	pair_handshake(&P, o);
	assert_int_equal(ktls_rec_new(*ssl, KTLS_DIR_TX | KTLS_DIR_RX, &c), 0);
	SSL_free(*ssl);
	*ssl = NULL;
	return c;
}

static void data_both_ways(const struct hs_opts *o)
{
	struct ktls_conn *s = rec_side(o, true);
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert, buf[64];
	ssize_t r;

	assert_int_equal(SSL_write(P.c, "hello", 5), 5);
	len = drain(P.fds[0]);
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_DATA);
	assert_int_equal(n, 5);
	assert_memory_equal(out, "hello", 5);
	assert_int_equal(pos, len);

	/* Back: the client reads the server's two tickets first, then our record (whose
	 * sequence number counts them). */
	memcpy(buf + KTLS_REC_HDR, "world", 5);
	r = ktls_rec_seal(s, 23, buf, 5);
	assert_int_equal(r, 5 + KTLS_REC_OVERHEAD);
	put(P.fds[0], buf, (size_t)r);
	assert_int_equal(SSL_read(P.c, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "world", 5);
	ktls_conn_free(s);
	pair_free(&P);
}

static void test_aes128(void **st)
{
	data_both_ways(&O13);
}

static void test_aes256(void **st)
{
	struct hs_opts o = O13;

	o.cipher = "TLS_AES_256_GCM_SHA384";
	data_both_ways(&o);
}

static void test_chacha(void **st)
{
	struct hs_opts o = O13;

	o.cipher = "TLS_CHACHA20_POLY1305_SHA256";
	data_both_ways(&o);
}

/* A client takes over before reading the tickets: they are skipped, data follows. */
static void test_client_skips_tickets(void **st)
{
	struct ktls_conn *c = rec_side(&O13, false);
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	int tickets = 0;
	uint8_t alert;

	assert_int_equal(SSL_write(P.s, "data", 4), 4);
	len = drain(P.fds[1]);
	for (;;) {
		assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), 0);
		if (ctrl != KTLS_CTRL_TICKET)
			break;
		tickets++;
	}
	assert_int_equal(tickets, 2); /* OpenSSL's default */
	assert_int_equal(ctrl, KTLS_CTRL_DATA);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "data", 4);
	ktls_conn_free(c);
	pair_free(&P);
}

/* A client seals from the start but reads through OpenSSL until its tickets are in; then
 * RX moves over at the counted sequence number. */
static void test_client_split(void **st)
{
	struct ktls_conn *c = NULL;
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert, buf[64];
	ssize_t r;

	pair_handshake(&P, &O13);
	assert_int_equal(ktls_rec_new(P.c, KTLS_DIR_TX, &c), 0);
	memcpy(buf + KTLS_REC_HDR, "z", 1);
	r = ktls_rec_seal(c, 23, buf, 1);
	put(P.fds[1], buf, (size_t)r);
	assert_int_equal(SSL_read(P.s, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'z');

	assert_int_equal(SSL_write(P.s, "x", 1), 1);
	assert_int_equal(SSL_read(P.c, buf, sizeof(buf)), 1); /* tickets, then x */
	assert_int_equal(ktls_conn_install_rx(c, P.c), 0);
	SSL_free(P.c);
	P.c = NULL;
	assert_int_equal(SSL_write(P.s, "y", 1), 1);
	len = drain(P.fds[1]);
	assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_DATA);
	assert_int_equal(out[0], 'y');
	ktls_conn_free(c);
	pair_free(&P);
}

/* OpenSSL updates its keys and asks for ours: followed, owed, answered. */
static void test_key_update(void **st)
{
	struct ktls_conn *s = rec_side(&O13, true);
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert, buf[128];
	ssize_t r, r2;

	assert_int_equal(SSL_key_update(P.c, SSL_KEY_UPDATE_REQUESTED), 1);
	assert_int_equal(SSL_write(P.c, "after", 5), 5);
	len = drain(P.fds[0]);
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_KEY_UPDATE);
	assert_true(ktls_conn_key_update_owed(s));
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_DATA);
	assert_memory_equal(out, "after", 5);
	assert_int_equal(ktls_conn_rx_generation(s), 1);

	r = ktls_rec_seal_key_update(s, buf, sizeof(buf));
	assert_int_equal(r, 5 + KTLS_REC_OVERHEAD);
	assert_false(ktls_conn_key_update_owed(s));
	assert_int_equal(ktls_conn_tx_generation(s), 1);
	memcpy(buf + r + KTLS_REC_HDR, "back", 4);
	r2 = ktls_rec_seal(s, 23, buf + r, 4);
	assert_true(r2 > 0);
	put(P.fds[0], buf, (size_t)(r + r2));
	assert_int_equal(SSL_read(P.c, buf, sizeof(buf)), 4); /* under our new key */
	assert_memory_equal(buf, "back", 4);
	ktls_conn_free(s);
	pair_free(&P);
}

/* A record sealed here with the client's key derived from the keylog secret (no libktls
 * code), sequence 0: it opens; one with 2^14 + 1 bytes of content is record_overflow. */
static void seal_independent(size_t n, size_t pad, uint8_t *rec)
{
	uint8_t key[16], iv[12];
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	size_t body = n + 1 + pad + 16;
	int outl;

	hkdf_label(EVP_sha256(), K.c_ap, K.c_ap_len, "key", key, sizeof(key));
	hkdf_label(EVP_sha256(), K.c_ap, K.c_ap_len, "iv", iv, sizeof(iv));
	rec[0] = 23, rec[1] = 3, rec[2] = 3, rec[3] = (uint8_t)(body >> 8), rec[4] = (uint8_t)body;
	memset(rec + 5, 'x', n);
	rec[5 + n] = 23;
	memset(rec + 5 + n + 1, 0, pad);
	assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_128_gcm(), NULL, key, iv), 1);
	assert_int_equal(EVP_EncryptUpdate(x, NULL, &outl, rec, 5), 1);
	assert_int_equal(EVP_EncryptUpdate(x, rec + 5, &outl, rec + 5, (int)(n + 1 + pad)), 1);
	assert_int_equal(EVP_EncryptFinal_ex(x, rec + 5 + n + 1 + pad, &outl), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, rec + 5 + n + 1 + pad),
			 1);
	EVP_CIPHER_CTX_free(x);
}

static void test_independent_vector(void **st)
{
	for (int over = 0; over < 2; over++) {
		struct ktls_conn *s = rec_side(&O13, true);
		size_t n = over ? KTLS_REC_PLAIN_MAX + 1 : 100, len = n + KTLS_REC_OVERHEAD,
		       pos = 0;
		enum ktls_control ctrl;
		uint8_t alert;

		assert_true(K.c_ap_len == 32);
		seal_independent(n, 0, in);
		if (over) {
			assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert),
					 -KTLS_E_RECORD_OVERFLOW);
			assert_int_equal(ktls_rec_alert(-KTLS_E_RECORD_OVERFLOW), 22);
		} else {
			assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
			assert_int_equal(n, 100);
			assert_int_equal(out[99], 'x');
		}
		ktls_conn_free(s);
		pair_free(&P);
	}
}

/*
 * Padding does not stretch the limit: TLSInnerPlaintext (content, type, zeros) is at most
 * 2^14 + 1 bytes (RFC 8446 5.4), as the kernel's TLS_RX enforces. A full record with no
 * padding opens; a short one padded past the limit, or a full one padded at all, is
 * record_overflow.
 */
static void test_padding_limit(void **st)
{
	const size_t cases[][3] = {
		/* content, padding, 0 if it opens */
		{ KTLS_REC_PLAIN_MAX, 0, 0 },
		{ KTLS_REC_PLAIN_MAX, 1, 1 },
		{ 100, KTLS_REC_PLAIN_MAX, 1 },
		{ 0, KTLS_REC_INNER_MAX - 1, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ktls_conn *s = rec_side(&O13, true);
		size_t len = cases[i][0] + cases[i][1] + KTLS_REC_OVERHEAD, pos = 0, n;
		enum ktls_control ctrl;
		uint8_t alert;
		int rc;

		seal_independent(cases[i][0], cases[i][1], in);
		rc = next(s, &pos, len, &ctrl, &n, &alert);
		if (cases[i][2]) {
			assert_int_equal(rc, -KTLS_E_RECORD_OVERFLOW);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(n, cases[i][0]);
		}
		ktls_conn_free(s);
		pair_free(&P);
	}
}

static void test_tampered(void **st)
{
	struct ktls_conn *s = rec_side(&O13, true);
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert;

	assert_int_equal(SSL_write(P.c, "secret", 6), 6);
	len = drain(P.fds[0]);
	in[KTLS_REC_HDR + 2] ^= 1;
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), -KTLS_E_BAD_RECORD);
	assert_int_equal(pos, 0);
	assert_int_equal(ktls_rec_alert(-KTLS_E_BAD_RECORD), 20);
	ktls_conn_free(s);
	pair_free(&P);
}

static void test_headers(void **st)
{
	struct ktls_conn *s = rec_side(&O13, true);
	const uint8_t big[5] = { 23, 3, 3, 0x41, 0x01 }; /* 2^14 + 257 */
	const uint8_t plain[5] = { 22, 3, 3, 0, 20 };	 /* unprotected handshake */
	const uint8_t ccs[5] = { 20, 3, 3, 0, 1 };	 /* change_cipher_spec */
	const uint8_t version[5] = { 23, 3, 1, 0, 20 };	 /* legacy version 0x0301 */
	const uint8_t tiny[5] = { 23, 3, 3, 0, 16 };	 /* a tag and no content type */
	const uint8_t *bad[] = { plain, ccs, version, tiny };
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert;

	memcpy(in, big, 5);
	assert_int_equal(next(s, &pos, 5, &ctrl, &n, &alert), -KTLS_E_RECORD_OVERFLOW);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(in, bad[i], 5);
		assert_int_equal(next(s, &pos, 5, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);
	}
	/* Incomplete: nothing used, nothing decided. */
	assert_int_equal(SSL_write(P.c, "abc", 3), 3);
	len = drain(P.fds[0]);
	assert_int_equal(next(s, &pos, 4, &ctrl, &n, &alert), -EAGAIN);
	assert_int_equal(next(s, &pos, len - 1, &ctrl, &n, &alert), -EAGAIN);
	assert_int_equal(pos, 0);
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(n, 3);
	ktls_conn_free(s);
	pair_free(&P);
}

/* Both ends on userspace records: what OpenSSL would not send can be. */
static void both_sides(struct ktls_conn **s, struct ktls_conn **c)
{
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert;

	pair_handshake(&P, &O13);
	assert_int_equal(ktls_rec_new(P.s, KTLS_DIR_TX | KTLS_DIR_RX, s), 0);
	assert_int_equal(ktls_rec_new(P.c, KTLS_DIR_TX | KTLS_DIR_RX, c), 0);
	len = drain(P.fds[1]); /* the server's tickets, for the client's sequence */
	while (pos < len) {
		assert_int_equal(next(*c, &pos, len, &ctrl, &n, &alert), 0);
		assert_int_equal(ctrl, KTLS_CTRL_TICKET);
	}
}

static void test_empty_records(void **st)
{
	struct ktls_conn *s, *c;
	enum ktls_control ctrl;
	size_t len = 0, pos = 0, n;
	uint8_t alert;
	ssize_t r;

	pair_handshake(&P, &O13);
	assert_int_equal(ktls_rec_new(P.s, KTLS_DIR_TX | KTLS_DIR_RX, &s), 0);
	assert_int_equal(ktls_rec_new(P.c, KTLS_DIR_TX | KTLS_DIR_RX, &c), 0);
	/* 32 empty, one with a byte (the run restarts), 32 empty, then one too many. */
	for (int i = 0; i < 66; i++) {
		in[len + KTLS_REC_HDR] = 'z';
		r = ktls_rec_seal(c, 23, in + len, i == 32 ? 1 : 0);
		assert_true(r > 0);
		len += (size_t)r;
	}
	for (int i = 0; i < 65; i++) {
		assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
		assert_int_equal(ctrl, KTLS_CTRL_DATA);
		assert_int_equal(n, i == 32 ? 1 : 0);
	}
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);
	ktls_conn_free(s);
	ktls_conn_free(c);
	pair_free(&P);
}

/* KeyUpdates move no data either: they count toward the same run as empty records. */
static void test_key_update_flood(void **st)
{
	struct ktls_conn *s, *c;
	enum ktls_control ctrl;
	size_t len = 0, pos = 0, n;
	uint8_t alert;
	ssize_t r;

	pair_handshake(&P, &O13);
	assert_int_equal(ktls_rec_new(P.s, KTLS_DIR_TX | KTLS_DIR_RX, &s), 0);
	assert_int_equal(ktls_rec_new(P.c, KTLS_DIR_TX | KTLS_DIR_RX, &c), 0);
	/* 20 KeyUpdates and 12 empty records; a byte; 32 KeyUpdates; one empty too many. */
	for (int i = 0; i < 66; i++) {
		bool update = i < 20 || (i > 32 && i < 65);

		in[len + KTLS_REC_HDR] = 'z';
		r = update ? ktls_rec_seal_key_update(c, in + len, BUF - len)
			   : ktls_rec_seal(c, 23, in + len, i == 32 ? 1 : 0);
		assert_true(r > 0);
		len += (size_t)r;
	}
	for (int i = 0; i < 65; i++) {
		bool update = i < 20 || (i > 32 && i < 65);

		assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
		assert_int_equal(ctrl, update ? KTLS_CTRL_KEY_UPDATE : KTLS_CTRL_DATA);
	}
	assert_int_equal(ktls_conn_rx_generation(s), 52);
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);
	ktls_conn_free(s);
	ktls_conn_free(c);
	pair_free(&P);
}

static void test_hostile_handshake_records(void **st)
{
	const uint8_t nst[13] = { 4, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0 };
	struct ktls_conn *s, *c;
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert;
	ssize_t r;

	both_sides(&s, &c);
	/* A ticket sent to a server. */
	memcpy(in + KTLS_REC_HDR, nst, sizeof(nst));
	r = ktls_rec_seal(c, 22, in, sizeof(nst));
	assert_int_equal(next(s, &pos, (size_t)r, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);

	/* Half a ticket's header, then data: the message is interrupted. */
	pos = 0;
	memcpy(in + KTLS_REC_HDR, nst, 2);
	r = ktls_rec_seal(s, 22, in, 2);
	len = (size_t)r;
	in[len + KTLS_REC_HDR] = 'd';
	len += (size_t)ktls_rec_seal(s, 23, in + len, 1);
	assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_TICKET);
	assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);

	/* No content type: the inner plaintext is all padding. */
	pos = 0;
	r = ktls_rec_seal(s, 0, in, 0);
	assert_int_equal(next(c, &pos, (size_t)r, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);
	ktls_conn_free(s);
	ktls_conn_free(c);
	pair_free(&P);
}

/*
 * No other record may come inside a handshake message (RFC 8446 5.1), an alert no more
 * than data: a close_notify after half a ticket (its header, or part of its body) would
 * end a stream cut inside a message as if it were whole.
 */
static void test_alert_inside_handshake(void **st)
{
	const uint8_t nst[13] = { 4, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0 };

	for (size_t cut = 2; cut <= 6; cut += 4) {
		struct ktls_conn *s, *c;
		enum ktls_control ctrl;
		size_t len, pos = 0, n;
		uint8_t alert;

		both_sides(&s, &c);
		memcpy(in + KTLS_REC_HDR, nst, cut);
		len = (size_t)ktls_rec_seal(s, 22, in, cut);
		len += (size_t)ktls_rec_seal_alert(s, 1, 0, in + len, sizeof(in) - len);
		assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), 0);
		assert_int_equal(ctrl, KTLS_CTRL_TICKET);
		assert_int_equal(next(c, &pos, len, &ctrl, &n, &alert), -KTLS_E_PROTOCOL);
		ktls_conn_free(s);
		ktls_conn_free(c);
		pair_free(&P);
	}
}

static void test_alerts(void **st)
{
	struct ktls_conn *s = rec_side(&O13, true);
	enum ktls_control ctrl;
	size_t len, pos = 0, n;
	uint8_t alert = 0xff, buf[64];
	ssize_t r;

	assert_int_equal(SSL_shutdown(P.c), 0); /* close_notify sent */
	len = drain(P.fds[0]);
	assert_int_equal(next(s, &pos, len, &ctrl, &n, &alert), 0);
	assert_int_equal(ctrl, KTLS_CTRL_CLOSE_NOTIFY);

	/* Ours: the client's OpenSSL reads our fatal alert as one. */
	r = ktls_rec_seal_alert(s, 2, 40, buf, sizeof(buf));
	assert_int_equal(r, 2 + KTLS_REC_OVERHEAD);
	put(P.fds[0], buf, (size_t)r);
	assert_true(SSL_read(P.c, buf, sizeof(buf)) <= 0);
	assert_int_equal(SSL_get_error(P.c, -1), SSL_ERROR_SSL);
	/* After a fatal alert nothing more is sealed. */
	ktls_rec_stop_tx(s);
	assert_int_equal(ktls_rec_seal(s, 23, buf, 1), -EPIPE);
	ktls_conn_free(s);
	pair_free(&P);
}

static void test_tls12_refused(void **st)
{
	struct hs_opts o = O13;
	struct ktls_conn *c = NULL;

	o.version = TLS1_2_VERSION;
	o.cipher = "ECDHE-ECDSA-AES128-GCM-SHA256";
	pair_handshake(&P, &o);
	assert_int_equal(ktls_rec_new(P.s, KTLS_DIR_TX | KTLS_DIR_RX, &c),
			 -KTLS_E_UNSUPPORTED_VERSION);
	assert_null(c);
	pair_free(&P);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aes128),
		cmocka_unit_test(test_aes256),
		cmocka_unit_test(test_chacha),
		cmocka_unit_test(test_client_skips_tickets),
		cmocka_unit_test(test_client_split),
		cmocka_unit_test(test_key_update),
		cmocka_unit_test(test_independent_vector),
		cmocka_unit_test(test_padding_limit),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_empty_records),
		cmocka_unit_test(test_key_update_flood),
		cmocka_unit_test(test_hostile_handshake_records),
		cmocka_unit_test(test_alert_inside_handshake),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_tls12_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

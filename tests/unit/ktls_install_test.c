// SPDX-License-Identifier: MIT
/*
 * ktls_install and control records through a faked seam. Real OpenSSL handshakes run over
 * an AF_UNIX socketpair in one thread; the fake setsockopt records what the kernel would
 * have been given. Expected crypto_info bytes are computed here independently: TLS 1.3
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

/* --- fake seam ----------------------------------------------------------------------- */

struct call {
	int level, name;
	uint8_t val[64];
	socklen_t len;
};

struct rec {
	uint8_t type;
	uint8_t data[64];
	size_t len;
};

static struct fake {
	struct call calls[8];
	int ncalls;
	int fail_at;  /* index of the setsockopt call that fails, -1 none */
	int fail_err; /* positive errno */
	int rekey;    /* rekey_supported() answer */
	struct rec sent[4];
	int nsent;
	struct rec inq[8];
	int nin, inpos;
	int send_err;	 /* positive errno for the next sendmsg, 0 none */
	uint64_t rx_seq; /* what getsockopt(TLS_RX) reports as the next RX sequence */
} F;

static void fake_reset(void)
{
	memset(&F, 0, sizeof(F));
	F.fail_at = -1;
}

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int i = F.ncalls;

	assert_true(i < 8);
	F.calls[i].level = level;
	F.calls[i].name = name;
	F.calls[i].len = len;
	memcpy(F.calls[i].val, val, len < 64 ? len : 64);
	F.ncalls++;
	return i == F.fail_at ? -F.fail_err : 0;
}

/* Only TLS_RX of an AES-128-GCM connection: the rec_seq a zero read compares. */
static int fake_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct tls12_crypto_info_aes_gcm_128 ci;

	if (level != SOL_TLS || name != TLS_RX || *len < sizeof(ci))
		return -ENOPROTOOPT;
	memset(&ci, 0, sizeof(ci));
	ci.info.version = TLS_1_3_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	for (int i = 0; i < 8; i++)
		ci.rec_seq[i] = (uint8_t)(F.rx_seq >> (56 - 8 * i));
	memcpy(val, &ci, sizeof(ci));
	*len = sizeof(ci);
	return 0;
}

static uint8_t cmsg_type(const struct msghdr *m)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR((struct msghdr *)m, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_SET_RECORD_TYPE)
			return *CMSG_DATA(cm);
	return 23;
}

static ssize_t fake_sendmsg(int fd, const struct msghdr *m, int flags)
{
	struct rec *r;

	if (F.send_err) {
		int e = F.send_err;

		F.send_err = 0;
		return -e;
	}
	r = &F.sent[F.nsent++];

	r->type = cmsg_type(m);
	r->len = m->msg_iov[0].iov_len;
	memcpy(r->data, m->msg_iov[0].iov_base, r->len);
	return (ssize_t)r->len;
}

static ssize_t fake_recvmsg(int fd, struct msghdr *m, int flags)
{
	struct rec *r;
	struct cmsghdr *cm;
	size_t n;

	if (F.inpos == F.nin)
		return -EAGAIN;
	r = &F.inq[F.inpos];
	n = r->len < m->msg_iov[0].iov_len ? r->len : m->msg_iov[0].iov_len;
	memcpy(m->msg_iov[0].iov_base, r->data, n);
	cm = CMSG_FIRSTHDR(m);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_GET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = r->type;
	m->msg_controllen = CMSG_SPACE(1);
	if (!(flags & MSG_PEEK))
		F.inpos++;
	return (ssize_t)n;
}

static int fake_rekey(void)
{
	return F.rekey;
}

static const struct ktls_ops fake_ops = {
	fake_setsockopt, fake_getsockopt, fake_sendmsg, fake_recvmsg, fake_rekey,
};

static void queue(uint8_t type, const uint8_t *d, size_t len)
{
	struct rec *r = &F.inq[F.nin++];

	r->type = type;
	r->len = len;
	memcpy(r->data, d, len);
}

/* --- handshake fixture ----------------------------------------------------------------- */

/* What this test's own keylog callback saw (to check chaining and compute expectations). */
static struct seen {
	uint8_t c_ap[48], s_ap[48], ms[48];
	size_t c_ap_len, s_ap_len, ms_len;
	int lines;
} K;

static void hex_after(const char *line, int field, uint8_t *out, size_t *ret_len)
{
	const char *p = line;
	size_t n = 0;
	unsigned int v;

	for (int i = 0; i < field; i++)
		p = strchr(p, ' ') + 1;
	while (n < 48 && sscanf(p, "%2x", &v) == 1) {
		out[n++] = (uint8_t)v;
		p += 2;
	}
	*ret_len = n;
}

static void test_keylog(const SSL *ssl, const char *line)
{
	K.lines++;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		hex_after(line, 2, K.c_ap, &K.c_ap_len);
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		hex_after(line, 2, K.s_ap, &K.s_ap_len);
	else if (!strncmp(line, "CLIENT_RANDOM ", 14))
		hex_after(line, 2, K.ms, &K.ms_len);
}

static EVP_PKEY *pkey_ec, *pkey_rsa;
static X509 *cert_ec, *cert_rsa;

static int group_setup(void **state)
{
	pkey_ec = EVP_EC_gen("P-256");
	pkey_rsa = EVP_RSA_gen(2048);
	cert_ec = tu_self_signed(pkey_ec, "ktls-test", -60, 3600);
	cert_rsa = tu_self_signed(pkey_rsa, "ktls-test", -60, 3600);
	return pkey_ec && pkey_rsa && cert_ec && cert_rsa ? 0 : -1;
}

static int group_teardown(void **state)
{
	X509_free(cert_ec);
	X509_free(cert_rsa);
	EVP_PKEY_free(pkey_ec);
	EVP_PKEY_free(pkey_rsa);
	return 0;
}

struct pair {
	SSL_CTX *sctx, *cctx;
	SSL *s, *c;
	int fds[2];
};

struct hs_opts {
	int version;
	const char *cipher; /* TLS 1.3 ciphersuite or TLS 1.2 cipher list */
	bool rsa;
	bool prepare_server, prepare_client;
};

static void pair_handshake(struct pair *p, const struct hs_opts *o)
{
	bool sdone = false, cdone = false;

	memset(&K, 0, sizeof(K));
	p->sctx = SSL_CTX_new(TLS_server_method());
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->sctx);
	assert_non_null(p->cctx);
	SSL_CTX_set_keylog_callback(p->sctx, test_keylog);
	SSL_CTX_set_keylog_callback(p->cctx, test_keylog);
	assert_int_equal(SSL_CTX_use_certificate(p->sctx, o->rsa ? cert_rsa : cert_ec), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(p->sctx, o->rsa ? pkey_rsa : pkey_ec), 1);
	for (int i = 0; i < 2; i++) {
		SSL_CTX *ctx = i ? p->cctx : p->sctx;

		SSL_CTX_set_min_proto_version(ctx, o->version);
		SSL_CTX_set_max_proto_version(ctx, o->version);
		if (o->version == TLS1_3_VERSION)
			assert_int_equal(SSL_CTX_set_ciphersuites(ctx, o->cipher), 1);
		else
			assert_int_equal(SSL_CTX_set_cipher_list(ctx, o->cipher), 1);
	}
	if (o->prepare_server)
		assert_int_equal(ktls_ctx_prepare(p->sctx, true), 0);
	if (o->prepare_client)
		assert_int_equal(ktls_ctx_prepare(p->cctx, false), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds), 0);
	fcntl(p->fds[0], F_SETFL, O_NONBLOCK);
	fcntl(p->fds[1], F_SETFL, O_NONBLOCK);
	p->s = SSL_new(p->sctx);
	p->c = SSL_new(p->cctx);
	SSL_set_fd(p->s, p->fds[0]);
	SSL_set_fd(p->c, p->fds[1]);
	SSL_set_accept_state(p->s);
	SSL_set_connect_state(p->c);
	for (int i = 0; i < 1000 && !(sdone && cdone); i++) {
		int r;

		if (!cdone) {
			r = SSL_do_handshake(p->c);
			cdone = r == 1;
			if (r <= 0)
				assert_int_equal(SSL_get_error(p->c, r), SSL_ERROR_WANT_READ);
		}
		if (!sdone) {
			r = SSL_do_handshake(p->s);
			sdone = r == 1;
			if (r <= 0)
				assert_int_equal(SSL_get_error(p->s, r), SSL_ERROR_WANT_READ);
		}
	}
	assert_true(sdone && cdone);
	assert_int_equal(SSL_version(p->s), o->version);
}

static void pair_free(struct pair *p)
{
	SSL_free(p->s);
	SSL_free(p->c);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
	close(p->fds[0]);
	close(p->fds[1]);
}

/* --- independent expectations ---------------------------------------------------------- */

static void hkdf_label(const EVP_MD *md, const uint8_t *secret, size_t sl, const char *label,
		       uint8_t *out, size_t out_len)
{
	uint8_t info[64], in[128], t[EVP_MAX_MD_SIZE];
	size_t il = 0, ll = 6 + strlen(label);
	unsigned int tl;

	info[il++] = 0;
	info[il++] = (uint8_t)out_len;
	info[il++] = (uint8_t)ll;
	memcpy(info + il, "tls13 ", 6);
	memcpy(info + il + 6, label, strlen(label));
	il += ll;
	info[il++] = 0;
	memcpy(in, info, il);
	in[il] = 1;
	HMAC(md, secret, (int)sl, in, il + 1, t, &tl);
	assert_true(out_len <= tl); /* every key/iv here fits in one block */
	memcpy(out, t, out_len);
}

static void prf(const EVP_MD *md, const uint8_t *secret, size_t sl, const uint8_t *ls, size_t lsl,
		uint8_t *out, size_t out_len)
{
	uint8_t a[EVP_MAX_MD_SIZE], t[EVP_MAX_MD_SIZE], in[EVP_MAX_MD_SIZE + 128];
	unsigned int al, tl;
	size_t done = 0;

	HMAC(md, secret, (int)sl, ls, lsl, a, &al);
	while (done < out_len) {
		memcpy(in, a, al);
		memcpy(in + al, ls, lsl);
		HMAC(md, secret, (int)sl, in, al + lsl, t, &tl);
		memcpy(out + done, t, out_len - done < tl ? out_len - done : tl);
		done += out_len - done < tl ? out_len - done : tl;
		HMAC(md, secret, (int)sl, a, al, a, &al);
	}
}

struct expect {
	uint16_t cipher_type;
	size_t key_len, salt_len, iv_len, info_len;
	const EVP_MD *md;
};

/* Layout of tls12_crypto_info_*: info(4) iv key salt rec_seq(8). */
static void build_info(uint8_t *out, const struct expect *e, uint16_t version, const uint8_t *key,
		       const uint8_t *salt, const uint8_t *iv, uint64_t seq)
{
	size_t o = 0;

	memset(out, 0, 64);
	memcpy(out, &version, 2);
	memcpy(out + 2, &e->cipher_type, 2);
	o = 4;
	memcpy(out + o, iv, e->iv_len);
	o += e->iv_len;
	memcpy(out + o, key, e->key_len);
	o += e->key_len;
	if (e->salt_len)
		memcpy(out + o, salt, e->salt_len);
	o += e->salt_len;
	for (int i = 7; i >= 0; i--, seq >>= 8)
		out[o + i] = (uint8_t)seq;
}

static void expect_tls13_seq(const struct expect *e, const uint8_t *secret, size_t sl, uint64_t seq,
			     uint8_t *out)
{
	uint8_t key[32], nonce[12];

	hkdf_label(e->md, secret, sl, "key", key, e->key_len);
	hkdf_label(e->md, secret, sl, "iv", nonce, 12);
	build_info(out, e, TLS_1_3_VERSION, key, nonce, nonce + e->salt_len, seq);
}

static void expect_tls13(const struct expect *e, const uint8_t *secret, size_t sl, uint8_t *out)
{
	expect_tls13_seq(e, secret, sl, 0, out);
}

/* TLS 1.2: client and server write crypto_info from K.ms and the session randoms. */
static void expect_tls12(const struct expect *e, SSL *ssl, uint8_t *cli, uint8_t *srv)
{
	uint8_t ls[13 + 64], block[88];
	size_t fl = e->salt_len ? 4 : 12, kl = e->key_len;
	uint8_t seq1[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };

	memcpy(ls, "key expansion", 13);
	SSL_get_server_random(ssl, ls + 13, 32);
	SSL_get_client_random(ssl, ls + 45, 32);
	assert_int_equal(K.ms_len, 48);
	prf(e->md, K.ms, 48, ls, sizeof(ls), block, 2 * kl + 2 * fl);
	if (e->salt_len) {
		build_info(cli, e, TLS_1_2_VERSION, block, block + 2 * kl, seq1, 1);
		build_info(srv, e, TLS_1_2_VERSION, block + kl, block + 2 * kl + fl, seq1, 1);
	} else {
		build_info(cli, e, TLS_1_2_VERSION, block, NULL, block + 2 * kl, 1);
		build_info(srv, e, TLS_1_2_VERSION, block + kl, NULL, block + 2 * kl + fl, 1);
	}
}

static const struct expect E_AES128 = {
	TLS_CIPHER_AES_GCM_128, 16, 4, 8, sizeof(struct tls12_crypto_info_aes_gcm_128), NULL
};
static const struct expect E_AES256 = {
	TLS_CIPHER_AES_GCM_256, 32, 4, 8, sizeof(struct tls12_crypto_info_aes_gcm_256), NULL
};
static const struct expect E_CHACHA = { TLS_CIPHER_CHACHA20_POLY1305,
					32,
					0,
					12,
					sizeof(struct tls12_crypto_info_chacha20_poly1305),
					NULL };

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

static const struct hs_opts O13 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", false, true, true };

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
		cmocka_unit_test(test_peer_fin_before_install_leaves_socket),
		cmocka_unit_test(test_pending_refused),
		cmocka_unit_test(test_not_prepared_no_secrets),
		cmocka_unit_test(test_split_install_after_tickets_and_data),
		cmocka_unit_test(test_split_install_tls12),
		cmocka_unit_test(test_split_install_partial_record_pending),
		cmocka_unit_test(test_key_update_through_openssl_refused),
		cmocka_unit_test(test_cbc_unsupported),
		cmocka_unit_test(test_prepare_leaves_tickets_alone),
		cmocka_unit_test(test_close_notify_and_alert),
		cmocka_unit_test(test_data_not_consumed),
		cmocka_unit_test(test_tickets_framing),
		cmocka_unit_test(test_garbage_handshake),
		cmocka_unit_test(test_key_update_requested),
		cmocka_unit_test(test_update_tx_install_fail_stops_tx),
		cmocka_unit_test(test_zero_read_empty_record_or_end),
		cmocka_unit_test(test_update_tx_unsupported_sends_nothing),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

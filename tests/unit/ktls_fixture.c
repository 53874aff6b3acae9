// SPDX-License-Identifier: MIT
/*
 * The fixture libktls's install and control tests share (ktls_fixture.h): a faked socket
 * seam that records what the kernel would have been given, real OpenSSL handshakes over an
 * AF_UNIX socketpair, and crypto_info bytes computed independently of libktls.
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
#include "../../ktls/ktls_compat.h"
#include "tls_test_util.h"
#include "ktls_fixture.h"

/* --- fake seam ----------------------------------------------------------------------- */

struct fake F;

void fake_reset(void)
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

const struct ktls_ops fake_ops = {
	fake_setsockopt, fake_getsockopt, fake_sendmsg, fake_recvmsg, fake_rekey,
};

void queue(uint8_t type, const uint8_t *d, size_t len)
{
	struct rec *r = &F.inq[F.nin++];

	r->type = type;
	r->len = len;
	memcpy(r->data, d, len);
}

/* --- handshake fixture ----------------------------------------------------------------- */

struct seen K;

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

int group_setup(void **state)
{
	pkey_ec = EVP_EC_gen("P-256");
	pkey_rsa = EVP_RSA_gen(2048);
	cert_ec = tu_self_signed(pkey_ec, "ktls-test", -60, 3600);
	cert_rsa = tu_self_signed(pkey_rsa, "ktls-test", -60, 3600);
	return pkey_ec && pkey_rsa && cert_ec && cert_rsa ? 0 : -1;
}

int group_teardown(void **state)
{
	X509_free(cert_ec);
	X509_free(cert_rsa);
	EVP_PKEY_free(pkey_ec);
	EVP_PKEY_free(pkey_rsa);
	return 0;
}

void pair_handshake(struct pair *p, const struct hs_opts *o)
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

void pair_free(struct pair *p)
{
	SSL_free(p->s);
	SSL_free(p->c);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
	close(p->fds[0]);
	close(p->fds[1]);
}

/* --- independent expectations ---------------------------------------------------------- */

void hkdf_label(const EVP_MD *md, const uint8_t *secret, size_t sl, const char *label, uint8_t *out,
		size_t out_len)
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

void expect_tls13_seq(const struct expect *e, const uint8_t *secret, size_t sl, uint64_t seq,
		      uint8_t *out)
{
	uint8_t key[32], nonce[12];

	hkdf_label(e->md, secret, sl, "key", key, e->key_len);
	hkdf_label(e->md, secret, sl, "iv", nonce, 12);
	build_info(out, e, TLS_1_3_VERSION, key, nonce, nonce + e->salt_len, seq);
}

void expect_tls13(const struct expect *e, const uint8_t *secret, size_t sl, uint8_t *out)
{
	expect_tls13_seq(e, secret, sl, 0, out);
}

/* TLS 1.2: client and server write crypto_info from K.ms and the session randoms. */
void expect_tls12(const struct expect *e, SSL *ssl, uint8_t *cli, uint8_t *srv)
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

const struct expect E_AES128 = {
	TLS_CIPHER_AES_GCM_128, 16, 4, 8, sizeof(struct tls12_crypto_info_aes_gcm_128), NULL
};
const struct expect E_AES256 = {
	TLS_CIPHER_AES_GCM_256, 32, 4, 8, sizeof(struct tls12_crypto_info_aes_gcm_256), NULL
};
const struct expect E_CHACHA = { TLS_CIPHER_CHACHA20_POLY1305,
				 32,
				 0,
				 12,
				 sizeof(struct tls12_crypto_info_chacha20_poly1305),
				 NULL };

const struct hs_opts O13 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", false, true, true };

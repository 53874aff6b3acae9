// SPDX-License-Identifier: MIT
/*
 * PROXY protocol v2 encoder: exact bytes written out by hand from the spec for each family,
 * with and without the TLS identity TLVs, then the same headers read back by an
 * independent parser (tests/fuzz/pp2_decode.h), and every limit's error with the caller's
 * buffer left as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy_v2.h"
#include "../fuzz/pp2_decode.h"

static struct pp2_decoded dec; /* 256 KiB: not on the stack */

#define SIG 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a

static void set4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
}

static void set6(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
}

static void setun(struct sockaddr_storage *ss, const char *path)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;

	/* Junk after the path, as getpeername leaves in a reused sockaddr_storage. */
	memset(ss, 0x5a, sizeof(*ss));
	un->sun_family = AF_UNIX;
	strcpy(un->sun_path, path);
}

static struct proxy_v2_info *info_new(void)
{
	struct proxy_v2_info *in = calloc(1, sizeof(*in));

	assert_non_null(in);
	return in;
}

static void encode_ok(const struct proxy_v2_info *in, uint8_t *buf, size_t cap, size_t *len)
{
	*len = 0;
	assert_int_equal(proxy_v2_encode(in, buf, cap, len), 0);
	assert_int_equal(pp2_decode(buf, *len, &dec), 0);
	assert_int_equal(dec.hdr_len, *len);
}

static void test_ipv4_exact(void **state)
{
	static const uint8_t want[] = {
		SIG,  0x21, 0x11, 0x00, 0x0c, /* PROXY, TCP4, 12 bytes follow */
		192,  0,    2,	  1,	      /* src 192.0.2.1 */
		127,  0,    0,	  1,	      /* dst 127.0.0.1 */
		0x9c, 0x40,		      /* src port 40000 */
		0x20, 0xfb,		      /* dst port 8443 */
	};
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	set4(&in->src, "192.0.2.1", 40000);
	set4(&in->dst, "127.0.0.1", 8443);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(dec.fam, 0x11);
	assert_int_equal(dec.sport, 40000);
	assert_int_equal(dec.dport, 8443);
	assert_false(dec.ssl);
	free(in);
}

static void test_ipv6_exact(void **state)
{
	static const uint8_t want[] = {
		SIG,  0x21, 0x21, 0x00, 0x24, /* PROXY, TCP6, 36 bytes follow */
		0x20, 0x01, 0x0d, 0xb8, 0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* 2001:db8::1 */
		0,    0,    0,	  0,	0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* ::1 */
		0x00, 0x50,							  /* 80 */
		0xff, 0xff,							  /* 65535 */
	};
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	set6(&in->src, "2001:db8::1", 80);
	set6(&in->dst, "::1", 65535);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	free(in);
}

/* A v4 client on a dual-stack listener: both sent as IPv6, the v4 one v4-mapped. */
static void test_mixed_families_mapped(void **state)
{
	static const uint8_t want_src[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3
	};
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	set4(&in->src, "10.1.2.3", 1234);
	set6(&in->dst, "2001:db8::2", 443);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(dec.fam, 0x21);
	assert_memory_equal(dec.src, want_src, 16);
	assert_int_equal(dec.sport, 1234);
	assert_int_equal(dec.dport, 443);

	setun(&in->dst, "/run/x");
	memset(buf, 0xaa, sizeof(buf));
	len = 77;
	assert_int_equal(proxy_v2_encode(in, buf, sizeof(buf), &len), -EINVAL);
	assert_int_equal(len, 77);
	assert_int_equal(buf[0], 0xaa);
	free(in);
}

static void test_unix_exact(void **state)
{
	uint8_t want[16 + 216] = { SIG, 0x21, 0x31, 0x00, 0xd8 }; /* PROXY, UNIX stream, 216 */
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	char longest[109];
	size_t len;

	memcpy(want + 16, "/run/client.sock", 16);
	memcpy(want + 16 + 108, "/run/ktlsd.sock", 15);
	setun(&in->src, "/run/client.sock");
	setun(&in->dst, "/run/ktlsd.sock");
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, sizeof(want));
	/* The 0x5a junk after each path must not leak: the rest of each 108 bytes is zero. */
	assert_memory_equal(buf, want, sizeof(want));

	/* A 108-byte path without terminator fills its field exactly. */
	memset(longest, 'p', 108);
	longest[108] = '\0';
	memcpy(((struct sockaddr_un *)&in->src)->sun_path, longest, 108);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_memory_equal(dec.src_path, longest, 108);
	assert_memory_equal(dec.dst_path, "/run/ktlsd.sock\0", 16);
	free(in);
}

static void fill_identity(struct proxy_v2_info *in)
{
	set4(&in->src, "192.0.2.1", 40000);
	set4(&in->dst, "127.0.0.1", 8443);
	in->ssl = true;
	in->cert = true;
	in->version = "TLSv1.3";
	in->cn = "client";
	in->cipher = "TLS_AES_128_GCM_SHA256";
	in->uri = "spiffe://example.org/client";
}

static void test_identity_exact(void **state)
{
	/* clang-format off */
	static const uint8_t want[] = {
		SIG, 0x21, 0x11, 0x00, 12 + 3 + 5 + 10 + 9 + 25 + 30,
		192, 0, 2, 1, 127, 0, 0, 1, 0x9c, 0x40, 0x20, 0xfb,
		0x20, 0x00, 5 + 10 + 9 + 25,	/* PP2_TYPE_SSL */
		0x07,				/* SSL | CERT_CONN | CERT_SESS */
		0x00, 0x00, 0x00, 0x00,		/* verify: ok */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x22, 0x00, 0x06, 'c', 'l', 'i', 'e', 'n', 't',
		0x23, 0x00, 0x16, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2', '8', '_',
			'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6',
		0xe0, 0x00, 0x1b, 's', 'p', 'i', 'f', 'f', 'e', ':', '/', '/', 'e', 'x', 'a', 'm',
			'p', 'l', 'e', '.', 'o', 'r', 'g', '/', 'c', 'l', 'i', 'e', 'n', 't',
	};
	/* clang-format on */
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	fill_identity(in);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_true(dec.ssl);
	assert_int_equal(dec.client, 0x07);
	assert_int_equal(dec.verify, 0);
	assert_string_equal(dec.version.s, "TLSv1.3");
	assert_string_equal(dec.cn.s, "client");
	assert_string_equal(dec.cipher.s, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(dec.spiffe.s, "spiffe://example.org/client");
	assert_int_equal(dec.n_unknown, 0);
	assert_false(dec.crc_present);
	free(in);
}

/* TLS without a client certificate, and an identity with only some names. */
static void test_identity_partial(void **state)
{
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	fill_identity(in);
	in->cert = false;
	in->cn = NULL;
	in->uri = NULL;
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, 16 + 12 + 3 + 5 + 10 + 25);
	assert_true(dec.ssl);
	assert_int_equal(dec.client, 0x01);
	assert_false(dec.cn.set);
	assert_false(dec.spiffe.set);
	assert_true(dec.cipher.set);

	/* A URI but no TLS TLV at all: only the custom TLV follows the addresses. */
	fill_identity(in);
	in->ssl = false;
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, 16 + 12 + 30);
	assert_false(dec.ssl);
	assert_string_equal(dec.spiffe.s, "spiffe://example.org/client");
	free(in);
}

static void test_local(void **state)
{
	static const uint8_t want[] = { SIG, 0x20, 0x00, 0x00, 0x00 };
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	in->local = true; /* families are ignored: even AF_UNSPEC is fine */
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));

	/* PROXY with no address is not encodable. */
	in->local = false;
	assert_int_equal(proxy_v2_encode(in, buf, sizeof(buf), &len), -EINVAL);
	free(in);
}

static void test_crc32c(void **state)
{
	struct proxy_v2_info *in = info_new();
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	/* The check value of CRC-32C (RFC 3720 B.4 / the "123456789" catalogue entry). */
	assert_int_equal(proxy_v2_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);
	assert_int_equal(pp2_test_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);

	fill_identity(in);
	in->crc32c = true;
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(len, 16 + 12 + 3 + 5 + 10 + 9 + 25 + 30 + 7);
	/* Last TLV, type 0x03, 4 bytes. */
	assert_int_equal(buf[len - 7], 0x03);
	assert_int_equal(buf[len - 6], 0x00);
	assert_int_equal(buf[len - 5], 0x04);
	assert_true(dec.crc_present);
	assert_true(dec.crc_ok);

	/* One flipped bit anywhere is caught. */
	buf[20] ^= 0x01;
	assert_int_equal(pp2_decode(buf, len, &dec), 0);
	assert_false(dec.crc_ok);
	free(in);
}

static char *str_of(size_t n, char c)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Fails with rc, and neither the buffer nor *ret_len changed. */
static void encode_fails(const struct proxy_v2_info *in, size_t cap, int rc)
{
	uint8_t buf[PROXY_V2_MAX_LEN + 64], ref[sizeof(buf)];
	size_t len = 12345;

	memset(buf, 0xaa, sizeof(buf));
	memcpy(ref, buf, sizeof(buf));
	assert_int_equal(proxy_v2_encode(in, buf, cap, &len), rc);
	assert_int_equal(len, 12345);
	assert_memory_equal(buf, ref, sizeof(buf));
}

static void test_string_limits(void **state)
{
	struct proxy_v2_info *in = info_new();
	char *max = str_of(PROXY_V2_MAX_STR, 'x');
	char *over = str_of(PROXY_V2_MAX_STR + 1, 'x');
	char *huge = str_of(70000, 'x'); /* past what a TLV length can even say */
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	fill_identity(in);
	in->cn = max;
	in->uri = max;
	encode_ok(in, buf, sizeof(buf), &len);
	assert_int_equal(dec.cn.len, PROXY_V2_MAX_STR);
	assert_int_equal(dec.spiffe.len, PROXY_V2_MAX_STR);

	in->cn = over;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	in->cn = "client";
	in->uri = over;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	in->uri = huge;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	in->uri = NULL;
	in->cipher = over;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	in->cipher = NULL;
	in->version = over;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	/* Checked even when the SSL TLV is off: a bad input is an error, not ignored. */
	in->ssl = false;
	encode_fails(in, PROXY_V2_MAX_LEN, -ENAMETOOLONG);
	free(max);
	free(over);
	free(huge);
	free(in);
}

static void test_header_limits(void **state)
{
	struct proxy_v2_info *in = info_new();
	char *max = str_of(PROXY_V2_MAX_STR, 'y');
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len, need;

	/* Unix addresses and every string at its maximum: 16 + 216 + 8 + 4 * 258 + 7 bytes. */
	setun(&in->src, "/a");
	setun(&in->dst, "/b");
	in->ssl = in->cert = in->crc32c = true;
	in->version = in->cn = in->cipher = in->uri = max;
	encode_fails(in, sizeof(buf) + 64, -EMSGSIZE);

	/* Just under the bound fits. */
	in->crc32c = false;
	in->version = "TLSv1.3";
	encode_ok(in, buf, sizeof(buf), &len);
	need = len;
	assert_true(need <= PROXY_V2_MAX_LEN);

	/* cap one short: -ENOBUFS; exactly enough: fine. */
	encode_fails(in, need - 1, -ENOBUFS);
	encode_fails(in, 0, -ENOBUFS);
	encode_ok(in, buf, need, &len);
	assert_int_equal(len, need);
	free(max);
	free(in);
}

/* The verified identity goes in as given: the CN and SPIFFE TLVs, or neither. */
static void test_set_peer(void **state)
{
	struct proxy_v2_info *in = info_new(), *ref = info_new();
	char *over = str_of(PROXY_V2_MAX_STR + 1, 'u');
	uint8_t buf[PROXY_V2_MAX_LEN];
	size_t len;

	fill_identity(in);
	in->cn = in->uri = NULL;
	in->cert = false;
	assert_int_equal(proxy_v2_info_set_peer("client", "spiffe://example.org/client", in), 0);
	assert_true(in->cert);
	assert_string_equal(in->cn, "client");
	assert_string_equal(in->uri, "spiffe://example.org/client");
	assert_ptr_equal(in->cn, in->cn_buf);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_string_equal(dec.cn.s, "client");
	assert_string_equal(dec.spiffe.s, "spiffe://example.org/client");
	assert_int_equal(dec.client, 0x07);

	/* An identity that was neither a CN nor a SPIFFE ID: no name TLV, still a cert. */
	assert_int_equal(proxy_v2_info_set_peer(NULL, NULL, in), 0);
	assert_true(in->cert);
	assert_null(in->cn);
	assert_null(in->uri);
	encode_ok(in, buf, sizeof(buf), &len);
	assert_false(dec.spiffe.set);
	assert_false(dec.cn.set);

	/* Too long an identity: error, info untouched. */
	memcpy(ref, in, sizeof(*in));
	assert_int_equal(proxy_v2_info_set_peer(NULL, over, in), -ENAMETOOLONG);
	assert_int_equal(proxy_v2_info_set_peer(over, NULL, in), -ENAMETOOLONG);
	assert_memory_equal(in, ref, sizeof(*in));
	free(over);
	free(in);
	free(ref);
}

/* Addresses from a real loopback connection; no handshake, so no certificate. */
static void test_from_ssl(void **state)
{
	struct proxy_v2_info *in = info_new(), *ref = info_new();
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sockaddr_in cl, srv;
	socklen_t alen = sizeof(a);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl;
	int lfd, cfd, afd;

	assert_non_null(ctx);
	ssl = SSL_new(ctx);
	assert_non_null(ssl);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&srv, &alen), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&srv, sizeof(srv)), 0);
	alen = sizeof(cl);
	assert_int_equal(getsockname(cfd, (struct sockaddr *)&cl, &alen), 0);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);

	assert_int_equal(proxy_v2_info_from_ssl(ssl, afd, NULL, NULL, in), 0);
	assert_true(in->ssl);
	assert_false(in->cert);
	assert_null(in->cn);
	assert_non_null(in->version);
	assert_int_equal(in->src.ss_family, AF_INET);
	assert_int_equal(((struct sockaddr_in *)&in->src)->sin_port, cl.sin_port);
	assert_int_equal(((struct sockaddr_in *)&in->dst)->sin_port, srv.sin_port);

	/* Not a socket: the errno comes back and *ret_info is untouched. */
	memcpy(ref, in, sizeof(*in));
	assert_int_equal(proxy_v2_info_from_ssl(ssl, -1, NULL, NULL, in), -EBADF);
	assert_memory_equal(in, ref, sizeof(*in));
	close(afd);
	close(cfd);
	close(lfd);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	free(in);
	free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_exact),
		cmocka_unit_test(test_ipv6_exact),
		cmocka_unit_test(test_mixed_families_mapped),
		cmocka_unit_test(test_unix_exact),
		cmocka_unit_test(test_identity_exact),
		cmocka_unit_test(test_identity_partial),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_string_limits),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_set_peer),
		cmocka_unit_test(test_from_ssl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

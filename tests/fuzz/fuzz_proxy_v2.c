// SPDX-License-Identifier: MIT
/*
 * PROXY v2 encoder: a random proxy_v2_info and buffer size from the input, encoded, then
 * read back by the independent test parser (pp2_decode.h), which must see exactly what
 * went in. The expected outcome (size or error) is worked out here from the spec's
 * layout, not from the encoder: success must give that many bytes, failure must give
 * the right error with the buffer and *ret_len untouched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_v2.h"
#include "pp2_decode.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

struct in_stream {
	const uint8_t *p;
	size_t n;
};

static uint8_t take8(struct in_stream *s)
{
	uint8_t v = 0;

	if (s->n) {
		v = *s->p++;
		s->n--;
	}
	return v;
}

static void take(struct in_stream *s, void *dst, size_t len)
{
	size_t k = len < s->n ? len : s->n;

	memset(dst, 0, len);
	memcpy(dst, s->p, k);
	s->p += k;
	s->n -= k;
}

/* A string of a length the input chooses (up to 300, past PROXY_V2_MAX_STR), no NULs;
 * NULL when the input says absent. */
static char *take_str(struct in_stream *s)
{
	uint8_t c = take8(s);
	size_t len, i;
	char *str;

	if (!(c & 1))
		return NULL;
	len = (size_t)take8(s) + (c & 2 ? 45 : 0);
	str = malloc(len + 1);
	if (!str)
		abort();
	take(s, str, len);
	for (i = 0; i < len; i++)
		if (!str[i])
			str[i] = (char)('a' + i % 26);
	str[len] = '\0';
	return str;
}

static void take_addr(struct in_stream *s, struct sockaddr_storage *ss, unsigned fam)
{
	memset(ss, 0, sizeof(*ss));
	switch (fam) {
	case 0: {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		take(s, &in->sin_addr, 4);
		take(s, &in->sin_port, 2);
		break;
	}
	case 1: {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		take(s, &in6->sin6_addr, 16);
		take(s, &in6->sin6_port, 2);
		break;
	}
	case 2: {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;

		/* Path bytes, NULs and all, plus junk past sun_path as getpeername leaves it. */
		un->sun_family = AF_UNIX;
		take(s, un->sun_path, take8(s) % (sizeof(un->sun_path) + 1));
		break;
	}
	default:
		ss->ss_family = (sa_family_t)take8(s); /* anything, usually invalid */
	}
}

static size_t str_tlv(const char *s)
{
	return s ? 3 + strlen(s) : 0;
}

static void check_str(const struct pp2_str *got, const char *want)
{
	CHECK(got->set == (want != NULL));
	if (want)
		CHECK(got->len == strlen(want) && !memcmp(got->s, want, got->len));
}

static void check_addr(const uint8_t *got, uint16_t got_port, const struct sockaddr_storage *ss,
		       bool six)
{
	uint8_t want[16] = { 0 };
	uint16_t port;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		if (six) {
			want[10] = want[11] = 0xff;
			memcpy(want + 12, &in->sin_addr, 4);
		} else {
			memcpy(want, &in->sin_addr, 4);
		}
		port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(want, &in6->sin6_addr, 16);
		port = ntohs(in6->sin6_port);
	}
	CHECK(!memcmp(got, want, six ? 16 : 4));
	CHECK(got_port == port);
}

static void check_path(const uint8_t *got, const struct sockaddr_storage *ss)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
	size_t n = strnlen(un->sun_path, sizeof(un->sun_path));

	CHECK(!memcmp(got, un->sun_path, n));
	for (size_t i = n; i < 108; i++)
		CHECK(got[i] == 0);
}

static struct pp2_decoded dec;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in_stream s = { data, size };
	struct proxy_v2_info *in = calloc(1, sizeof(*in));
	uint8_t flags, fams, *buf, *ref;
	size_t cap, len = 0xdead, addr_len = 0, want_len;
	char *strs[4];
	int r, want_r = 0;
	unsigned fs, fd;

	if (!in)
		return 0;
	flags = take8(&s);
	fams = take8(&s);
	cap = (size_t)take8(&s) << 8 | take8(&s);
	cap %= PROXY_V2_MAX_LEN + 64;
	in->local = flags & 1;
	in->ssl = flags & 2;
	in->cert = flags & 4;
	in->crc32c = flags & 8;
	fs = fams & 3;
	fd = flags & 16 ? fs : (fams >> 2) & 3; /* mostly matching families */
	take_addr(&s, &in->src, fs);
	take_addr(&s, &in->dst, fd);
	for (int i = 0; i < 4; i++)
		strs[i] = take_str(&s);
	in->version = strs[0];
	in->cn = strs[1];
	in->cipher = strs[2];
	in->uri = strs[3];

	/* Expected outcome, in the encoder's documented order of checks. */
	sa_family_t a = in->src.ss_family, b = in->dst.ss_family;
	bool ip = (a == AF_INET || a == AF_INET6) && (b == AF_INET || b == AF_INET6);
	bool six = ip && !(a == AF_INET && b == AF_INET);

	if (in->local)
		addr_len = 0;
	else if (ip)
		addr_len = six ? 36 : 12;
	else if (a == AF_UNIX && b == AF_UNIX)
		addr_len = 216;
	else
		want_r = -EINVAL;
	for (int i = 0; i < 4 && !want_r; i++)
		if (strs[i] && strlen(strs[i]) > PROXY_V2_MAX_STR)
			want_r = -ENAMETOOLONG;
	want_len = 16 + addr_len + str_tlv(in->uri) + (in->crc32c ? 7 : 0) +
		   (in->ssl ? 8 + str_tlv(in->version) + str_tlv(in->cn) + str_tlv(in->cipher) : 0);
	if (!want_r && want_len > PROXY_V2_MAX_LEN)
		want_r = -EMSGSIZE;
	if (!want_r && want_len > cap)
		want_r = -ENOBUFS;

	/* Exact-size buffer: ASan flags any write past cap. */
	buf = malloc(cap ? cap : 1);
	ref = malloc(cap ? cap : 1);
	if (!buf || !ref)
		abort();
	memset(buf, 0xa5, cap);
	memcpy(ref, buf, cap);
	r = proxy_v2_encode(in, buf, cap, &len);
	CHECK(r == want_r);
	if (r) {
		CHECK(len == 0xdead);
		CHECK(!memcmp(buf, ref, cap));
		goto out;
	}
	CHECK(len == want_len);
	CHECK(pp2_decode(buf, len, &dec) == 0);
	CHECK(dec.hdr_len == len);
	CHECK(dec.ver_cmd == (in->local ? 0x20 : 0x21));
	CHECK(dec.n_unknown == 0);
	if (in->local) {
		CHECK(dec.fam == 0x00);
	} else if (addr_len == 12 || addr_len == 36) {
		CHECK(dec.fam == (six ? 0x21 : 0x11));
		check_addr(dec.src, dec.sport, &in->src, six);
		check_addr(dec.dst, dec.dport, &in->dst, six);
	} else {
		CHECK(dec.fam == 0x31);
		check_path(dec.src_path, &in->src);
		check_path(dec.dst_path, &in->dst);
	}
	CHECK(dec.ssl == in->ssl);
	if (in->ssl) {
		CHECK(dec.client == (in->cert ? 0x07 : 0x01));
		CHECK(dec.verify == 0);
		check_str(&dec.version, in->version);
		check_str(&dec.cn, in->cn);
		check_str(&dec.cipher, in->cipher);
	}
	check_str(&dec.spiffe, in->uri);
	CHECK(dec.crc_present == in->crc32c);
	if (in->crc32c)
		CHECK(dec.crc_ok);
out:
	free(buf);
	free(ref);
	for (int i = 0; i < 4; i++)
		free(strs[i]);
	free(in);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * PROXY protocol v2 encoder. The header is sized completely before the first byte is
 * written, so a failure leaves the caller's buffer as it was and nothing is ever truncated.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <openssl/x509v3.h>

#include "proxy_v2.h"

#define TLV_HDR 3 /* type, length (big-endian 16 bits) */
#define SSL_HDR 5 /* client flags, verify (big-endian 32 bits) */

uint32_t proxy_v2_crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;
	size_t i;
	int k;

	/* Bitwise: headers are at most PROXY_V2_MAX_LEN bytes, a table would not pay off. */
	for (i = 0; i < len; i++) {
		crc ^= p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* Bytes a string TLV adds into *ret_len, 0 when s is NULL (TLV omitted). Returns 0 or
 * -ENAMETOOLONG. */
static int str_tlv_len(const char *s, size_t *ret_len)
{
	size_t n;

	if (!s) {
		*ret_len = 0;
		return 0;
	}
	n = strnlen(s, PROXY_V2_MAX_STR + 1);
	if (n > PROXY_V2_MAX_STR)
		return -ENAMETOOLONG;
	*ret_len = TLV_HDR + n;
	return 0;
}

static uint8_t *put_tlv_hdr(uint8_t *p, uint8_t type, size_t len)
{
	p[0] = type;
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	return p + TLV_HDR;
}

static uint8_t *put_str_tlv(uint8_t *p, uint8_t type, const char *s)
{
	size_t n;

	if (!s)
		return p;
	n = strlen(s);
	p = put_tlv_hdr(p, type, n);
	memcpy(p, s, n);
	return p + n;
}

static void v4_mapped(const struct sockaddr_in *in, struct sockaddr_in6 *ret_in6)
{
	memset(ret_in6, 0, sizeof(*ret_in6));
	ret_in6->sin6_family = AF_INET6;
	ret_in6->sin6_port = in->sin_port;
	ret_in6->sin6_addr.s6_addr[10] = 0xff;
	ret_in6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(&ret_in6->sin6_addr.s6_addr[12], &in->sin_addr, 4);
}

static void put_unix_path(uint8_t *p, const struct sockaddr_storage *ss)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
	/* Abstract names start with NUL and have no terminator: their length is only in the
	 * socklen we do not have, so they come out as zeros rather than with trailing junk. */
	size_t n = strnlen(un->sun_path, sizeof(un->sun_path));

	memset(p, 0, PROXY_V2_UNIX_PATH);
	memcpy(p, un->sun_path, n);
}

/* Family byte and address block length for in, or -EINVAL. */
static int addr_kind(const struct proxy_v2_info *in, uint8_t *ret_fam, size_t *ret_len)
{
	sa_family_t s = in->src.ss_family, d = in->dst.ss_family;

	if (in->local) {
		*ret_fam = PROXY_V2_AF_UNSPEC;
		*ret_len = 0;
	} else if (s == AF_INET && d == AF_INET) {
		*ret_fam = PROXY_V2_TCP4;
		*ret_len = 12;
	} else if ((s == AF_INET || s == AF_INET6) && (d == AF_INET || d == AF_INET6)) {
		*ret_fam = PROXY_V2_TCP6;
		*ret_len = 36;
	} else if (s == AF_UNIX && d == AF_UNIX) {
		*ret_fam = PROXY_V2_UNIX_STREAM;
		*ret_len = 2 * PROXY_V2_UNIX_PATH;
	} else {
		return -EINVAL;
	}
	return 0;
}

static uint8_t *put_addrs(uint8_t *p, const struct proxy_v2_info *in, uint8_t fam)
{
	struct sockaddr_in6 s6, d6;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&in->src;
	const struct sockaddr_in *d4 = (const struct sockaddr_in *)&in->dst;

	switch (fam) {
	case PROXY_V2_TCP4:
		/* Already in network order, as the spec wants. */
		memcpy(p, &s4->sin_addr, 4);
		memcpy(p + 4, &d4->sin_addr, 4);
		memcpy(p + 8, &s4->sin_port, 2);
		memcpy(p + 10, &d4->sin_port, 2);
		return p + 12;
	case PROXY_V2_TCP6:
		if (in->src.ss_family == AF_INET)
			v4_mapped(s4, &s6);
		else
			memcpy(&s6, &in->src, sizeof(s6));
		if (in->dst.ss_family == AF_INET)
			v4_mapped(d4, &d6);
		else
			memcpy(&d6, &in->dst, sizeof(d6));
		memcpy(p, &s6.sin6_addr, 16);
		memcpy(p + 16, &d6.sin6_addr, 16);
		memcpy(p + 32, &s6.sin6_port, 2);
		memcpy(p + 34, &d6.sin6_port, 2);
		return p + 36;
	case PROXY_V2_UNIX_STREAM:
		put_unix_path(p, &in->src);
		put_unix_path(p + PROXY_V2_UNIX_PATH, &in->dst);
		return p + 2 * PROXY_V2_UNIX_PATH;
	default:
		return p;
	}
}

/* The size of each part of the header for in, worked out before a byte is written. */
struct layout {
	uint8_t fam;
	size_t addr_len, ssl_len, total;
};

/* Returns 0, or -EINVAL, -ENAMETOOLONG, -EMSGSIZE or -ENOBUFS (see proxy_v2_encode). */
static int layout_of(const struct proxy_v2_info *in, size_t cap, struct layout *ret_lay)
{
	const char *strs[4] = { in->version, in->cn, in->cipher, in->uri };
	size_t slen[4];
	struct layout l = { .ssl_len = 0 };
	int rc;

	rc = addr_kind(in, &l.fam, &l.addr_len);
	if (rc)
		return rc;
	for (size_t i = 0; i < 4; i++) {
		rc = str_tlv_len(strs[i], &slen[i]);
		if (rc)
			return rc;
	}
	if (in->ssl)
		l.ssl_len = TLV_HDR + SSL_HDR + slen[0] + slen[1] + slen[2];
	l.total = PROXY_V2_FIXED_LEN + l.addr_len + l.ssl_len + slen[3] +
		  (in->crc32c ? TLV_HDR + 4 : 0);
	if (l.total > PROXY_V2_MAX_LEN)
		return -EMSGSIZE;
	if (l.total > cap)
		return -ENOBUFS;
	*ret_lay = l;
	return 0;
}

/* PP2_TYPE_SSL and its sub-TLVs, ssl_len bytes in all. */
static uint8_t *put_ssl_tlv(uint8_t *p, const struct proxy_v2_info *in, size_t ssl_len)
{
	p = put_tlv_hdr(p, PP2_TYPE_SSL, ssl_len - TLV_HDR);
	*p++ = PP2_CLIENT_SSL | (in->cert ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
	/* verify: 0 means the certificate was verified; ktlsd relays no other peer. */
	memset(p, 0, 4);
	p += 4;
	p = put_str_tlv(p, PP2_SUBTYPE_SSL_VERSION, in->version);
	p = put_str_tlv(p, PP2_SUBTYPE_SSL_CN, in->cn);
	return put_str_tlv(p, PP2_SUBTYPE_SSL_CIPHER, in->cipher);
}

/* The last TLV at p: the CRC-32C of the whole header from buf, taken with its own field 0. */
static uint8_t *put_crc32c_tlv(uint8_t *buf, uint8_t *p)
{
	uint8_t *at = put_tlv_hdr(p, PP2_TYPE_CRC32C, 4);
	uint32_t crc;

	memset(at, 0, 4);
	crc = proxy_v2_crc32c(buf, (size_t)(at + 4 - buf));
	at[0] = (uint8_t)(crc >> 24);
	at[1] = (uint8_t)(crc >> 16);
	at[2] = (uint8_t)(crc >> 8);
	at[3] = (uint8_t)crc;
	return at + 4;
}

int proxy_v2_encode(const struct proxy_v2_info *in, uint8_t *buf, size_t cap, size_t *ret_len)
{
	struct layout l;
	uint8_t *p = buf;
	int rc;

	rc = layout_of(in, cap, &l);
	if (rc)
		return rc;
	memcpy(p, PROXY_V2_SIG, PROXY_V2_SIG_LEN);
	p += PROXY_V2_SIG_LEN;
	*p++ = in->local ? PROXY_V2_CMD_LOCAL : PROXY_V2_CMD_PROXY;
	*p++ = l.fam;
	*p++ = (uint8_t)((l.total - PROXY_V2_FIXED_LEN) >> 8);
	*p++ = (uint8_t)(l.total - PROXY_V2_FIXED_LEN);
	p = put_addrs(p, in, l.fam);
	if (in->ssl)
		p = put_ssl_tlv(p, in, l.ssl_len);
	p = put_str_tlv(p, PROXY_V2_TYPE_SPIFFE, in->uri);
	if (in->crc32c)
		p = put_crc32c_tlv(buf, p);
	*ret_len = (size_t)(p - buf);
	return 0;
}

int proxy_v2_info_set_peer(const char *cn, const char *uri, struct proxy_v2_info *info)
{
	if ((cn && strlen(cn) > PROXY_V2_MAX_STR) || (uri && strlen(uri) > PROXY_V2_MAX_STR))
		return -ENAMETOOLONG;
	info->cert = true;
	info->cn = NULL;
	info->uri = NULL;
	if (cn) {
		snprintf(info->cn_buf, sizeof(info->cn_buf), "%s", cn);
		info->cn = info->cn_buf;
	}
	if (uri) {
		snprintf(info->uri_buf, sizeof(info->uri_buf), "%s", uri);
		info->uri = info->uri_buf;
	}
	return 0;
}

int proxy_v2_info_from_ssl(SSL *ssl, int fd, const char *id_cn, const char *id_uri,
			   struct proxy_v2_info *ret_info)
{
	/* Built aside so that *ret_info stays untouched on failure. */
	struct proxy_v2_info info;
	socklen_t len;
	int r;

	memset(&info, 0, sizeof(info));
	len = sizeof(info.src);
	if (getpeername(fd, (struct sockaddr *)&info.src, &len) < 0)
		return -errno;
	len = sizeof(info.dst);
	if (getsockname(fd, (struct sockaddr *)&info.dst, &len) < 0)
		return -errno;
	info.ssl = true;
	info.version = SSL_get_version(ssl);
	info.cipher = SSL_get_cipher_name(ssl);
	if (SSL_get0_peer_certificate(ssl)) {
		r = proxy_v2_info_set_peer(id_cn, id_uri, &info);
		if (r < 0)
			return r;
	}
	*ret_info = info;
	/* cn and uri pointed into the local copy. */
	if (ret_info->cn)
		ret_info->cn = ret_info->cn_buf;
	if (ret_info->uri)
		ret_info->uri = ret_info->uri_buf;
	return 0;
}

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

/* Bytes a string TLV adds, or -ENAMETOOLONG; 0 when s is NULL (TLV omitted). */
static long str_tlv_len(const char *s)
{
	size_t n;

	if (!s)
		return 0;
	n = strnlen(s, PROXY_V2_MAX_STR + 1);
	if (n > PROXY_V2_MAX_STR)
		return -ENAMETOOLONG;
	return (long)(TLV_HDR + n);
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

int proxy_v2_encode(const struct proxy_v2_info *in, uint8_t *buf, size_t cap, size_t *ret_len)
{
	const char *strs[4] = { in->version, in->cn, in->cipher, in->uri };
	long slen[4];
	size_t addr_len, ssl_len = 0, total, i;
	uint8_t fam, *p, *crc_at = NULL;
	int r;

	r = addr_kind(in, &fam, &addr_len);
	if (r < 0)
		return r;
	for (i = 0; i < 4; i++) {
		slen[i] = str_tlv_len(strs[i]);
		if (slen[i] < 0)
			return (int)slen[i];
	}
	if (in->ssl)
		ssl_len = TLV_HDR + SSL_HDR + (size_t)(slen[0] + slen[1] + slen[2]);
	total = PROXY_V2_FIXED_LEN + addr_len + ssl_len + (size_t)slen[3] +
		(in->crc32c ? TLV_HDR + 4 : 0);
	if (total > PROXY_V2_MAX_LEN)
		return -EMSGSIZE;
	if (total > cap)
		return -ENOBUFS;

	p = buf;
	memcpy(p, PROXY_V2_SIG, PROXY_V2_SIG_LEN);
	p += PROXY_V2_SIG_LEN;
	*p++ = in->local ? PROXY_V2_CMD_LOCAL : PROXY_V2_CMD_PROXY;
	*p++ = fam;
	*p++ = (uint8_t)((total - PROXY_V2_FIXED_LEN) >> 8);
	*p++ = (uint8_t)(total - PROXY_V2_FIXED_LEN);
	p = put_addrs(p, in, fam);
	if (in->ssl) {
		p = put_tlv_hdr(p, PP2_TYPE_SSL, ssl_len - TLV_HDR);
		*p++ = PP2_CLIENT_SSL |
		       (in->cert ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
		/* verify: 0 means the certificate was verified; ktlsd relays no other peer. */
		memset(p, 0, 4);
		p += 4;
		p = put_str_tlv(p, PP2_SUBTYPE_SSL_VERSION, in->version);
		p = put_str_tlv(p, PP2_SUBTYPE_SSL_CN, in->cn);
		p = put_str_tlv(p, PP2_SUBTYPE_SSL_CIPHER, in->cipher);
	}
	p = put_str_tlv(p, PROXY_V2_TYPE_SPIFFE, in->uri);
	if (in->crc32c) {
		p = put_tlv_hdr(p, PP2_TYPE_CRC32C, 4);
		crc_at = p;
		memset(p, 0, 4);
		p += 4;
	}
	if (crc_at) {
		uint32_t crc = proxy_v2_crc32c(buf, total);

		crc_at[0] = (uint8_t)(crc >> 24);
		crc_at[1] = (uint8_t)(crc >> 16);
		crc_at[2] = (uint8_t)(crc >> 8);
		crc_at[3] = (uint8_t)crc;
	}
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

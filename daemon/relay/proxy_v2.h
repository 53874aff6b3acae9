/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol version 2 header (HAProxy's docs/proxy-protocol.txt, section 2.2), sent to
 * the backend before the first relayed byte so that it learns who the client was and which
 * identity the mTLS handshake verified. Encoding only: ktlsd never parses PROXY headers.
 *
 * What is emitted:
 *   - the 12-byte signature, ver/cmd 0x21 (PROXY) or 0x20 (LOCAL), family/transport 0x11
 *     (TCP over IPv4), 0x21 (TCP over IPv6) or 0x31 (UNIX stream, 108-byte paths);
 *   - PP2_TYPE_SSL (0x20) when ssl is set: client = PP2_CLIENT_SSL, plus
 *     PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS when a certificate was presented (on a
 *     resumed session the certificate is the one the session was made with),
 *     verify = 0 (ktlsd only relays verified peers), and the sub-TLVs
 *     PP2_SUBTYPE_SSL_VERSION, PP2_SUBTYPE_SSL_CN and PP2_SUBTYPE_SSL_CIPHER for the
 *     strings that are set;
 *   - PROXY_V2_TYPE_SPIFFE (0xE0, the first of the spec's PP2_TYPE_MIN_CUSTOM..
 *     PP2_TYPE_MAX_CUSTOM range reserved for application-specific data) carrying the
 *     peer's verified URI identity, e.g. spiffe://example.org/client, when uri is set;
 *   - PP2_TYPE_CRC32C (0x03) last when crc32c is set: CRC-32C (Castagnoli) of the whole
 *     header computed with the checksum field zeroed, stored big-endian.
 *
 * Limits: every string is at most PROXY_V2_MAX_STR bytes (longer: -ENAMETOOLONG) and the
 * whole header at most PROXY_V2_MAX_LEN bytes (longer: -EMSGSIZE); nothing is truncated.
 */
#ifndef KTLSD_DAEMON_PROXY_V2_H
#define KTLSD_DAEMON_PROXY_V2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

/* Wire constants from the spec, for the encoder and for tests that parse its output. */
#define PROXY_V2_SIG	     "\r\n\r\n\0\r\nQUIT\n"
#define PROXY_V2_SIG_LEN     12
#define PROXY_V2_FIXED_LEN   16 /* signature, ver/cmd, family, length */
#define PROXY_V2_CMD_LOCAL   0x20
#define PROXY_V2_CMD_PROXY   0x21
#define PROXY_V2_AF_UNSPEC   0x00
#define PROXY_V2_TCP4	     0x11
#define PROXY_V2_TCP6	     0x21
#define PROXY_V2_UNIX_STREAM 0x31
#define PROXY_V2_UNIX_PATH   108

#define PP2_TYPE_CRC32C		0x03
#define PP2_TYPE_SSL		0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN	0x22
#define PP2_SUBTYPE_SSL_CIPHER	0x23
#define PP2_CLIENT_SSL		0x01
#define PP2_CLIENT_CERT_CONN	0x02
#define PP2_CLIENT_CERT_SESS	0x04
/* ktlsd's own TLV: the peer's URI SAN (SPIFFE ID), in the spec's custom range 0xE0-0xEF. */
#define PROXY_V2_TYPE_SPIFFE 0xE0

/*
 * Bounds chosen so that the largest possible header is still one small write: a CN is at
 * most 64 characters (RFC 5280 ub-common-name) and SPIFFE IDs in practice well under 255.
 */
#define PROXY_V2_MAX_STR 255
#define PROXY_V2_MAX_LEN 1024

struct proxy_v2_info {
	bool local; /* LOCAL command (no client behind it): addresses are not sent */
	/* Client and the address it connected to; both AF_INET, both AF_INET6 (an AF_INET one
	 * is then sent as v4-mapped), or both AF_UNIX (pathname sockets: the path up to its
	 * NUL; abstract and unnamed sockets are sent as all zeros). */
	struct sockaddr_storage src, dst;
	bool ssl;  /* the client connection was TLS: emit PP2_TYPE_SSL */
	bool cert; /* ...and the client presented a (verified) certificate */
	/* NUL-terminated; NULL omits the TLV. */
	const char *version; /* "TLSv1.3" */
	const char *cipher;  /* "TLS_AES_128_GCM_SHA256" */
	const char *cn;	     /* subject CN, when the identity policy matched the CN */
	const char *uri;     /* the URI SAN the identity policy matched */
	bool crc32c;	     /* append PP2_TYPE_CRC32C */
	/* Storage proxy_v2_info_from_ssl() points cn and uri into. */
	char cn_buf[PROXY_V2_MAX_STR + 1];
	char uri_buf[PROXY_V2_MAX_STR + 1];
};

/*
 * Writes the header for *in into buf. Returns 0 and sets *ret_len, or -EINVAL (bad
 * address family or mismatched families), -ENAMETOOLONG (a string over PROXY_V2_MAX_STR),
 * -EMSGSIZE (header over PROXY_V2_MAX_LEN) or -ENOBUFS (over cap). buf and *ret_len are
 * untouched on failure.
 */
int proxy_v2_encode(const struct proxy_v2_info *in, uint8_t *buf, size_t cap, size_t *ret_len);

/*
 * For a server-side connection after its handshake: src/dst from getpeername/getsockname
 * of fd, version and cipher from ssl (OpenSSL's static strings) and, when the peer
 * presented a certificate, the identity the policy verified: id_cn when that was a CN,
 * id_uri when it was a SPIFFE ID (NULL leaves the TLV out). Never a name picked from the
 * certificate: it may carry others the policy did not look at. Returns 0, -errno from
 * getpeername/getsockname, or -ENAMETOOLONG for a name over PROXY_V2_MAX_STR; *ret_info
 * is untouched on failure.
 */
int proxy_v2_info_from_ssl(SSL *ssl, int fd, const char *id_cn, const char *id_uri,
			   struct proxy_v2_info *ret_info);

/* Sets cert and the verified cn and uri (either may be NULL) in *info. Returns 0 or
 * -ENAMETOOLONG (info untouched). */
int proxy_v2_info_set_peer(const char *cn, const char *uri, struct proxy_v2_info *info);

/* CRC-32C (Castagnoli), as PP2_TYPE_CRC32C uses it; exposed for tests. */
uint32_t proxy_v2_crc32c(const uint8_t *p, size_t len);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * A strict PROXY protocol v2 parser for tests: the unit test and the encoder fuzzer read
 * proxy_v2_encode()'s output back with it. Written from HAProxy's docs/proxy-protocol.txt
 * without looking at the encoder or including its header (constants are spelled out here),
 * so that a misreading of the spec in one does not hide in the other. Header-only so the
 * fuzz script can compile it without the CMake build.
 */
#ifndef KTLSD_TESTS_PP2_DECODE_H
#define KTLSD_TESTS_PP2_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct pp2_str {
	bool set;
	size_t len;
	char s[65536];
};

struct pp2_decoded {
	size_t hdr_len; /* 16 + the length field */
	uint8_t ver_cmd, fam;
	uint8_t src[16], dst[16]; /* 4 or 16 bytes used */
	uint16_t sport, dport;	  /* host order */
	uint8_t src_path[108], dst_path[108];
	bool ssl;
	uint8_t client;
	uint32_t verify;
	struct pp2_str version, cn, cipher, spiffe;
	bool crc_present, crc_ok;
	unsigned n_unknown; /* TLVs of types this parser does not know */
};

/* Reflected CRC-32C, table-driven (the encoder computes it bit by bit). */
static inline uint32_t pp2_test_crc32c(const uint8_t *p, size_t len)
{
	static uint32_t table[256];
	static bool ready;
	uint32_t crc = 0xffffffffu;
	size_t i;

	if (!ready) {
		for (uint32_t n = 0; n < 256; n++) {
			uint32_t c = n;

			for (int k = 0; k < 8; k++)
				c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
			table[n] = c;
		}
		ready = true;
	}
	for (i = 0; i < len; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

static inline int pp2_take_str(struct pp2_str *dst, const uint8_t *v, size_t len)
{
	if (dst->set)
		return -1; /* duplicate */
	dst->set = true;
	dst->len = len;
	memcpy(dst->s, v, len);
	dst->s[len] = '\0';
	return 0;
}

/*
 * Parses one header at the start of buf (len bytes available). Returns 0, or a negative
 * number naming the check that failed (different numbers per check, for messages).
 */
static inline int pp2_decode(const uint8_t *buf, size_t len, struct pp2_decoded *d)
{
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t body, addr_len, off;

	memset(d, 0, sizeof(*d));
	if (len < 16)
		return -1;
	if (memcmp(buf, sig, 12))
		return -2;
	d->ver_cmd = buf[12];
	d->fam = buf[13];
	if ((d->ver_cmd >> 4) != 2 || (d->ver_cmd & 0xf) > 1)
		return -3;
	body = (size_t)buf[14] << 8 | buf[15];
	d->hdr_len = 16 + body;
	if (d->hdr_len > len)
		return -4;
	switch (d->fam) {
	case 0x00:
		addr_len = 0;
		break;
	case 0x11:
		addr_len = 12;
		break;
	case 0x21:
		addr_len = 36;
		break;
	case 0x31:
		addr_len = 216;
		break;
	default:
		return -5;
	}
	/* LOCAL may carry any family; PROXY must carry a real one. */
	if ((d->ver_cmd & 0xf) == 1 && d->fam == 0x00)
		return -6;
	if (body < addr_len)
		return -7;
	buf += 16;
	if (d->fam == 0x11) {
		memcpy(d->src, buf, 4);
		memcpy(d->dst, buf + 4, 4);
		d->sport = (uint16_t)(buf[8] << 8 | buf[9]);
		d->dport = (uint16_t)(buf[10] << 8 | buf[11]);
	} else if (d->fam == 0x21) {
		memcpy(d->src, buf, 16);
		memcpy(d->dst, buf + 16, 16);
		d->sport = (uint16_t)(buf[32] << 8 | buf[33]);
		d->dport = (uint16_t)(buf[34] << 8 | buf[35]);
	} else if (d->fam == 0x31) {
		memcpy(d->src_path, buf, 108);
		memcpy(d->dst_path, buf + 108, 108);
	}
	for (off = addr_len; off < body;) {
		const uint8_t *t = buf + off;
		size_t vlen;

		if (body - off < 3)
			return -8;
		vlen = (size_t)t[1] << 8 | t[2];
		if (vlen > body - off - 3)
			return -9;
		switch (t[0]) {
		case 0x20: { /* PP2_TYPE_SSL: client, verify, sub-TLVs */
			size_t so;

			if (d->ssl)
				return -10;
			if (vlen < 5)
				return -11;
			d->ssl = true;
			d->client = t[3];
			d->verify = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 |
				    (uint32_t)t[6] << 8 | t[7];
			for (so = 5; so < vlen;) {
				const uint8_t *s = t + 3 + so;
				size_t sl;
				struct pp2_str *dst;

				if (vlen - so < 3)
					return -12;
				sl = (size_t)s[1] << 8 | s[2];
				if (sl > vlen - so - 3)
					return -13;
				if (s[0] == 0x21)
					dst = &d->version;
				else if (s[0] == 0x22)
					dst = &d->cn;
				else if (s[0] == 0x23)
					dst = &d->cipher;
				else
					dst = NULL;
				if (dst && pp2_take_str(dst, s + 3, sl))
					return -14;
				if (!dst)
					d->n_unknown++;
				so += 3 + sl;
			}
			break;
		}
		case 0x03: { /* PP2_TYPE_CRC32C over the header with the field zeroed */
			uint8_t copy[65536 + 16];
			uint32_t want;
			size_t at = 16 + off + 3;

			if (vlen != 4 || d->crc_present)
				return -15;
			d->crc_present = true;
			want = (uint32_t)t[3] << 24 | (uint32_t)t[4] << 16 | (uint32_t)t[5] << 8 |
			       t[6];
			memcpy(copy, buf - 16, d->hdr_len);
			memset(copy + at, 0, 4);
			d->crc_ok = pp2_test_crc32c(copy, d->hdr_len) == want;
			break;
		}
		case 0xe0: /* ktlsd: SPIFFE ID */
			if (pp2_take_str(&d->spiffe, t + 3, vlen))
				return -16;
			break;
		default:
			d->n_unknown++;
		}
		off += 3 + vlen;
	}
	return 0;
}

#endif

// SPDX-License-Identifier: MIT
/*
 * libktls's control-record parser (ktls/control.c), the only code in libktls that reads
 * bytes the peer chose: alerts, NewSessionTicket framing across records, KeyUpdate.
 * The input is a connection setup byte and a queue of records the fake recvmsg hands out
 * one per call, as the kernel does with TLS_GET_RECORD_TYPE (MSG_PEEK leaves a record in
 * place; a record longer than the buffer is cut, as with MSG_TRUNC).
 *
 *   byte 0: bit 0 TLS 1.3 (else 1.2), bit 1 the kernel can rekey, bit 2 SHA-384 suite,
 *           bit 3 setsockopt fails, bit 4 sendmsg fails
 *   then records: type (1 byte), length (2 bytes, big-endian), body
 *
 * Checked: no crash or sanitizer report; the result is one of the documented codes; a
 * KEY_UPDATE result moved the RX generation by exactly one and nothing else does; an
 * ALERT result carries a nonzero code; our answer to a peer's KeyUpdate never asks for
 * another one (that would let two peers ping-pong); partial header state stays < 4 bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ktls_internal.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

struct feed {
	const uint8_t *p;
	size_t n;
	uint8_t flags;
	unsigned sent_key_updates;
};

static struct feed in;

/* The record at the head of the queue: type, body and the bytes it takes in the input. */
static bool head(uint8_t *ret_type, const uint8_t **ret_body, size_t *ret_len, size_t *ret_total)
{
	size_t len;

	if (in.n < 3)
		return false;
	len = (size_t)in.p[1] << 8 | in.p[2];
	if (len > in.n - 3)
		len = in.n - 3;
	*ret_type = in.p[0];
	*ret_body = in.p + 3;
	*ret_len = len;
	*ret_total = 3 + len;
	return true;
}

static ssize_t fake_recvmsg(int fd, struct msghdr *m, int flags)
{
	const uint8_t *body;
	size_t len, total, k;
	uint8_t type;
	struct cmsghdr *cm;

	(void)fd;
	if (!head(&type, &body, &len, &total))
		return -EAGAIN;
	k = len < m->msg_iov[0].iov_len ? len : m->msg_iov[0].iov_len;
	memcpy(m->msg_iov[0].iov_base, body, k);
	cm = CMSG_FIRSTHDR(m);
	CHECK(cm && m->msg_controllen >= CMSG_LEN(1));
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_GET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = type;
	if (!(flags & MSG_PEEK)) {
		in.p += total;
		in.n -= total;
	}
	return (ssize_t)k;
}

static ssize_t fake_sendmsg(int fd, const struct msghdr *m, int flags)
{
	const uint8_t *b = m->msg_iov[0].iov_base;

	(void)fd;
	(void)flags;
	/* The only record control.c sends on its own is the answer to a KeyUpdate. */
	CHECK(m->msg_iovlen == 1 && m->msg_iov[0].iov_len == 5);
	CHECK(b[0] == 24 && b[1] == 0 && b[2] == 0 && b[3] == 1 && b[4] == 0);
	in.sent_key_updates++;
	if (in.flags & 0x10)
		return -EPIPE;
	return 5;
}

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	(void)fd;
	(void)val;
	CHECK(level == SOL_TLS && (name == TLS_TX || name == TLS_RX) && len > 0);
	return in.flags & 0x08 ? -ENOMEM : 0;
}

static int fake_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	(void)fd;
	(void)level;
	(void)name;
	(void)val;
	(void)len;
	return -ENOPROTOOPT;
}

static int fake_rekey_supported(void)
{
	return in.flags & 0x02 ? 1 : 0;
}

static const struct ktls_ops fuzz_ops = {
	fake_setsockopt, fake_getsockopt, fake_sendmsg, fake_recvmsg, fake_rekey_supported,
};

static const struct ktls_suite suite128 = {
	TLS_CIPHER_AES_GCM_128, "SHA256", 16, 4, 8, 4, sizeof(struct tls12_crypto_info_aes_gcm_128),
};
static const struct ktls_suite suite256 = {
	TLS_CIPHER_AES_GCM_256, "SHA384", 32, 4, 8, 4, sizeof(struct tls12_crypto_info_aes_gcm_256),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ktls_conn c;

	if (size < 1)
		return 0;
	memset(&c, 0, sizeof(c));
	in = (struct feed){ .p = data + 1, .n = size - 1, .flags = data[0] };
	c.ops = &fuzz_ops;
	c.fd = 3;
	c.version = in.flags & 0x01 ? TLS1_3_VERSION : TLS1_2_VERSION;
	c.suite = in.flags & 0x04 ? &suite256 : &suite128;
	c.secret_len = in.flags & 0x04 ? 48 : 32;
	c.rx_installed = true;
	if (c.version == TLS1_3_VERSION) {
		c.secrets = ktls_slot_alloc();
		CHECK(c.secrets);
		memset(c.secrets->tx, 0x11, sizeof(c.secrets->tx));
		memset(c.secrets->rx, 0x22, sizeof(c.secrets->rx));
	}
	for (int calls = 0; calls < 4096; calls++) {
		enum ktls_control ctrl = (enum ktls_control) - 1;
		uint64_t rx_gen = c.rx_gen, tx_gen = c.tx_gen;
		uint8_t alert = 0xee, type;
		const uint8_t *body;
		size_t len, total;
		int rc = ktls_conn_recv_control(&c, &ctrl, &alert);

		CHECK(c.hs_hdr_len < 4);
		if (rc == -EAGAIN)
			break;
		if (rc < 0) {
			CHECK(rc == -KTLS_E_PROTOCOL || rc == -KTLS_E_REKEY_UNSUPPORTED ||
			      rc == -KTLS_E_UNSUPPORTED_VERSION || rc == -ECONNRESET ||
			      rc == -ENOMEM || rc == -EPIPE || rc == -EIO);
			/* The caller ends the connection on any error: so does this model. */
			break;
		}
		CHECK(c.rx_gen == rx_gen + (ctrl == KTLS_CTRL_KEY_UPDATE));
		CHECK(c.tx_gen - tx_gen <= (ctrl == KTLS_CTRL_KEY_UPDATE));
		switch (ctrl) {
		case KTLS_CTRL_ALERT:
			CHECK(alert != 0);
			break;
		case KTLS_CTRL_CLOSE_NOTIFY:
			CHECK(alert == 0);
			break;
		case KTLS_CTRL_DATA:
			/* Left for the relay: consume it as the relay would. */
			CHECK(head(&type, &body, &len, &total) && type == 23);
			in.p += total;
			in.n -= total;
			break;
		case KTLS_CTRL_TICKET:
		case KTLS_CTRL_KEY_UPDATE:
			CHECK(c.version == TLS1_3_VERSION);
			break;
		default:
			abort();
		}
	}
	CHECK(in.sent_key_updates <= c.rx_gen);
	ktls_slot_free(c.secrets);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * Capture. OpenSSL 3.0 has no getter for TLS 1.3 traffic secrets nor for record sequence
 * numbers; its keylog and message callbacks are the supported ways out.
 *  - The keylog callback parses the secret straight into per-SSL ex_data and never writes
 *    it anywhere; OpenSSL clears its own copy of the line after the call. A keylog callback
 *    the application had set before is still called. (TLS 1.2 needs no secret captured:
 *    the master secret is read from the session at install.)
 *  - The message callback counts, per direction, the records after that direction's
 *    Finished message. OpenSSL reports a record's header (SSL3_RT_HEADER) before the
 *    messages inside it, so the Finished record itself is not counted; every later record
 *    used the application keys. Each record is reported once even when a non-blocking
 *    write or read is retried.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ktlsd/ktls.h"
#include "ktls_internal.h"

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int ssl_idx = -1; /* SSL ex_data: struct ktls_captured */
static int ctx_idx = -1; /* SSL_CTX ex_data: the application's previous keylog callback */

static void captured_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			  void *argp)
{
	OPENSSL_clear_free(ptr, sizeof(struct ktls_captured));
}

static void idx_init(void)
{
	ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, captured_free);
	ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

struct ktls_captured *ktls_captured_get(const SSL *ssl)
{
	pthread_once(&idx_once, idx_init);
	if (ssl_idx < 0)
		return NULL;
	return SSL_get_ex_data(ssl, ssl_idx);
}

/* The capture of ssl, created on first use; NULL on allocation failure (install then
 * reports the missing secret or sequence instead of guessing). */
static struct ktls_captured *captured_get_or_new(const SSL *ssl)
{
	struct ktls_captured *cap = ktls_captured_get(ssl);

	if (cap)
		return cap;
	cap = OPENSSL_zalloc(sizeof(*cap));
	/* Cast: OpenSSL passes a const SSL but ex_data lives on it. */
	if (cap && !SSL_set_ex_data((SSL *)ssl, ssl_idx, cap)) {
		OPENSSL_free(cap);
		cap = NULL;
	}
	return cap;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "LABEL <client_random hex> <secret hex>": decode the secret into out. */
static int parse_secret(const char *p, uint8_t *out, uint8_t *ret_len)
{
	size_t n = 0;

	p = strchr(p, ' ');
	if (!p)
		return -EINVAL;
	p = strchr(p + 1, ' ');
	if (!p)
		return -EINVAL;
	p++;
	while (p[0] && p[1] && n < KTLS_SECRET_MAX) {
		int hi = hexval(p[0]), lo = hexval(p[1]);

		if (hi < 0 || lo < 0)
			break;
		out[n++] = (uint8_t)(hi << 4 | lo);
		p += 2;
	}
	if (n == 0 || (*p && *p != '\n')) {
		OPENSSL_cleanse(out, KTLS_SECRET_MAX);
		return -EINVAL;
	}
	*ret_len = (uint8_t)n;
	return 0;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
	static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sl[] = "SERVER_TRAFFIC_SECRET_0 ";
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	void (*prev)(const SSL *, const char *) = NULL;
	struct ktls_captured *cap;

	if (ctx_idx >= 0) {
		void *p = SSL_CTX_get_ex_data(ctx, ctx_idx);

		memcpy(&prev, &p, sizeof(prev) < sizeof(p) ? sizeof(prev) : sizeof(p));
	}
	if (!strncmp(line, cl, sizeof(cl) - 1) || !strncmp(line, sl, sizeof(sl) - 1)) {
		cap = captured_get_or_new(ssl);
		if (cap) {
			if (line[0] == 'C')
				parse_secret(line, cap->client, &cap->client_len);
			else
				parse_secret(line, cap->server, &cap->server_len);
		}
	}
	if (prev)
		prev(ssl, line);
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	const uint8_t *b = buf;
	struct ktls_captured *cap;
	bool *fin;

	if (content_type != SSL3_RT_HEADER && content_type != SSL3_RT_HANDSHAKE)
		return;
	cap = captured_get_or_new(ssl);
	if (!cap)
		return;
	fin = write_p ? &cap->tx_fin : &cap->rx_fin;
	if (content_type == SSL3_RT_HEADER) {
		if (*fin)
			(*(write_p ? &cap->tx_records : &cap->rx_records))++;
		return;
	}
	if (len < 1)
		return;
	if (b[0] == SSL3_MT_FINISHED)
		*fin = true;
	else if (b[0] == SSL3_MT_KEY_UPDATE && *fin)
		cap->rekeyed = true;
}

int ktls_ctx_prepare(SSL_CTX *ctx, bool server)
{
	void (*prev)(const SSL *, const char *);
	void *p = NULL;
	int rc;

	(void)server; /* both roles are prepared alike since tickets are counted */
	pthread_once(&idx_once, idx_init);
	if (ssl_idx < 0 || ctx_idx < 0)
		return -ENOMEM;
	rc = ktls_kdf_init();
	if (rc < 0)
		return rc;
	prev = SSL_CTX_get_keylog_callback(ctx);
	if (prev != keylog_cb) {
		memcpy(&p, &prev, sizeof(prev) < sizeof(p) ? sizeof(prev) : sizeof(p));
		if (!SSL_CTX_set_ex_data(ctx, ctx_idx, p))
			return -ENOMEM;
		SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	}
	/* OpenSSL 3.0 has no getter to chain an earlier message callback: this one owns it. */
	SSL_CTX_set_msg_callback(ctx, msg_cb);
	/* Renegotiation (TLS 1.2) cannot be followed in the kernel. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	return 0;
}

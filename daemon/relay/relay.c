// SPDX-License-Identifier: MIT
/* Which relay takes a connection, and what goes to the backend before the first byte. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "ktlsd/ktls.h"
#include "proxy_v2.h"
#include "relays.h"

/*
 * PROXY v2 header with the client's addresses and verified identity, sent to the backend
 * before any relayed byte. The backend socket was just connected, so its empty send buffer
 * takes the whole header (<= PROXY_V2_MAX_LEN) in one send: a short write is an error.
 * An identity too long for the header fails the connection rather than being cut.
 */
static int proxy_header_send(struct conn *c)
{
	/* The verified identity, under the TLV its kind has; the SPIFFE TLV only for an ID. */
	const char *id = c->id.id;
	const char *id_cn = c->id.id_kind == POLICY_CN ? id : NULL;
	const char *id_uri =
		c->id.id_kind == POLICY_URI && id && policy_spiffe_id_valid(id, strlen(id)) ? id
											    : NULL;
	struct proxy_v2_info pi;
	uint8_t hdr[PROXY_V2_MAX_LEN];
	size_t len;
	ssize_t n;
	int rc;

	rc = proxy_v2_info_from_ssl(c->ssl, c->tfd, id_cn, id_uri, &pi);
	if (rc)
		return rc;
	rc = proxy_v2_encode(&pi, hdr, sizeof(hdr), &len);
	if (rc)
		return rc;
	n = send(c->pfd, hdr, len, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

void relay_ssl_handed_over(struct conn *c)
{
	SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c->ssl);
	c->ssl = NULL;
}

void relay_begin(struct worker *w, struct conn *c)
{
	if (conn_is_server(c) && c->svc->cfg->proxy_protocol) {
		int rc = proxy_header_send(c);

		if (rc) {
			conn_count(w, c, STAT_PROXY_HEADER_FAILURES);
			conn_fail(w, c, "proxy header failed: %s", strerror(-rc));
			return;
		}
	}
	if (c->svc->use_ktls) {
		int rc = relay_ktls_ops.start(w, c);

		if (c->ktls)
			conn_count(w, c, STAT_KTLS_OK);
		if (!rc || c->closing)
			return;
		if (!relay_ktls_fallback_ok(w, c, rc)) {
			conn_count(w, c, STAT_KTLS_FAILED);
			conn_fail(w, c, "ktls install failed: %s", ktls_strerror(rc));
			return;
		}
		conn_count(w, c, STAT_KTLS_FALLBACKS);
		c->note = ktls_strerror(rc);
	}
	/* libktls's records where it can take the session, else OpenSSL's. */
	if (relay_rec_ops.start(w, c) && !c->closing)
		relay_us_ops.start(w, c);
}

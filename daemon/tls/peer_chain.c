// SPDX-License-Identifier: MIT
/* A peer's chain kept as DER past the handshake, and judged again after a reload. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "peer_chain.h"
#include "tlsctx.h"

static int der_append(X509 *x, uint8_t **buf, uint32_t *len)
{
	int n = i2d_X509(x, NULL);
	uint8_t *grown, *p;

	if (n <= 0)
		return -ENOMEM;
	grown = realloc(*buf, *len + (size_t)n);
	if (!grown)
		return -ENOMEM;
	*buf = grown;
	p = grown + *len;
	if (i2d_X509(x, &p) != n)
		return -ENOMEM;
	*len += (uint32_t)n;
	return 0;
}

/*
 * Appends x unless it is the leaf again (a client's view of the chain starts with the leaf,
 * a server's does not): the same object, or the same DER. Not X509_cmp: it makes OpenSSL
 * decode every extension and hash the whole of a certificate the handshake never looked
 * at (the CA a client sends along, whose trust store copy was used), ~34 K instructions.
 * Returns 1 if x was kept, 0 if it was the leaf, or -ENOMEM.
 */
static int chain_append(X509 *x, X509 *leaf, uint32_t leaf_len, uint8_t **buf, uint32_t *len)
{
	uint32_t at = *len;
	int rc;

	if (x == leaf)
		return 0;
	rc = der_append(x, buf, len);
	if (rc)
		return rc;
	if (*len - at == leaf_len && !memcmp(*buf + at, *buf, leaf_len)) {
		uint8_t *fit = realloc(*buf, at); /* exactly its length again */

		*buf = fit ? fit : *buf;
		*len = at;
		return 0;
	}
	return 1;
}

/* The session app data tls_session_shed_chain writes: this tag, then DER. */
static const uint8_t shed_tag[4] = { 'k', 'c', 'h', '1' };

/* What tls_session_shed_chain kept of the chain, if anything: DER, after the leaf. */
static int shed_append(SSL *ssl, uint8_t **buf, uint32_t *len)
{
	const SSL_SESSION *sess = SSL_get0_session(ssl);
	const uint8_t *data;
	void *p = NULL;
	size_t n = 0;
	uint8_t *grown;

	if (!sess || !SSL_SESSION_get0_ticket_appdata((SSL_SESSION *)sess, &p, &n) ||
	    n <= sizeof(shed_tag) || memcmp(p, shed_tag, sizeof(shed_tag)))
		return 0;
	data = (const uint8_t *)p + sizeof(shed_tag);
	n -= sizeof(shed_tag);
	if (n > UINT32_MAX - *len)
		return -ENOMEM;
	grown = realloc(*buf, *len + n);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + *len, data, n);
	*buf = grown;
	*len += (uint32_t)n;
	return 0;
}

/* tls_peer_chain_der, and where the leaf's DER ends in it. */
static int chain_der(SSL *ssl, uint8_t **ret_der, uint32_t *ret_len, uint32_t *ret_leaf_len)
{
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	uint8_t *buf = NULL;
	uint32_t len = 0, leaf_len;
	int rc, kept = 1;

	if (!leaf)
		return -ENOENT;
	rc = der_append(leaf, &buf, &len);
	leaf_len = len;
	if (!rc && (!chain || !sk_X509_num(chain)))
		rc = shed_append(ssl, &buf, &len);
	for (int i = 0; !rc && chain && i < sk_X509_num(chain) && kept < PEER_CHAIN_MAX_CERTS;
	     i++) {
		int r = chain_append(sk_X509_value(chain, i), leaf, leaf_len, &buf, &len);

		if (r < 0)
			rc = r;
		else
			kept += r;
	}
	if (rc) {
		free(buf);
		return rc;
	}
	*ret_der = buf;
	*ret_len = len;
	*ret_leaf_len = leaf_len;
	return 0;
}

int tls_peer_chain_der(SSL *ssl, uint8_t **ret_der, uint32_t *ret_len)
{
	uint32_t leaf_len;

	return chain_der(ssl, ret_der, ret_len, &leaf_len);
}

int tls_session_shed_chain(SSL *ssl, SSL_SESSION *sess)
{
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	X509 *leaf = SSL_get0_peer_certificate(ssl);
	uint8_t *der;
	uint32_t len, leaf_len;
	int rc;
	X509 *x;

	if (SSL_get0_session(ssl) != sess || !leaf || !chain || !sk_X509_num(chain))
		return 0;
	rc = chain_der(ssl, &der, &len, &leaf_len);
	if (rc)
		return rc;
	/* The tag goes where the leaf was: [leaf][rest] -> [tag][rest]. */
	if (len > leaf_len && leaf_len >= sizeof(shed_tag)) {
		uint32_t at = leaf_len - (uint32_t)sizeof(shed_tag);

		memcpy(der + at, shed_tag, sizeof(shed_tag));
		if (!SSL_SESSION_set1_ticket_appdata(sess, der + at, len - at))
			rc = -ENOMEM;
	}
	free(der);
	if (rc)
		return rc;
	while ((x = sk_X509_pop(chain)))
		X509_free(x);
	return 0;
}

/* der back into a leaf and the rest of its chain (untrusted: the store decides). */
static int chain_parse(const uint8_t *der, uint32_t len, X509 **ret_leaf,
		       STACK_OF(X509) * *ret_rest)
{
	const unsigned char *p = der, *end = der + len;
	STACK_OF(X509) *rest = sk_X509_new_null();
	X509 *leaf = d2i_X509(NULL, &p, end - p);

	if (!leaf || !rest)
		goto out_free;
	while (p < end) {
		X509 *x = d2i_X509(NULL, &p, end - p);

		if (!x || !sk_X509_push(rest, x)) {
			X509_free(x);
			goto out_free;
		}
	}
	*ret_leaf = leaf;
	*ret_rest = rest;
	return 0;

out_free:
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
	ERR_clear_error();
	return -EINVAL;
}

/* X509_verify_cert with the SSL purpose of the peer's role, dates not checked. */
static int chain_verify(SSL_CTX *ctx, bool server, X509 *leaf, STACK_OF(X509) * rest, int *ret_err)
{
	X509_STORE_CTX *xs = X509_STORE_CTX_new();
	int ok;

	if (!xs)
		return -ENOMEM;
	if (!X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(ctx), leaf, rest)) {
		X509_STORE_CTX_free(xs);
		return -ENOMEM;
	}
	/* The parameters a handshake of ctx uses: peer's purpose, depth, CRL flags. */
	X509_STORE_CTX_set_default(xs, server ? "ssl_client" : "ssl_server");
	X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xs), SSL_CTX_get0_param(ctx));
	X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(xs), 8);
	X509_STORE_CTX_set_flags(xs, X509_V_FLAG_NO_CHECK_TIME);
	ok = X509_verify_cert(xs);
	*ret_err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(xs);
	X509_STORE_CTX_free(xs);
	ERR_clear_error();
	return 0;
}

int tls_peer_recheck(SSL_CTX *ctx, bool server, const uint8_t *der, uint32_t len, char *why,
		     size_t whylen)
{
	X509 *leaf = NULL;
	STACK_OF(X509) *rest = NULL;
	int rc, verr = X509_V_OK;

	rc = chain_parse(der, len, &leaf, &rest);
	if (rc) {
		snprintf(why, whylen, "peer certificate kept for re-evaluation does not parse");
		return rc;
	}
	rc = chain_verify(ctx, server, leaf, rest, &verr);
	if (rc) {
		snprintf(why, whylen, "out of memory");
	} else if (verr == X509_V_ERR_CERT_REVOKED) {
		snprintf(why, whylen, "certificate revoked");
		rc = -EKEYREVOKED;
	} else if (verr != X509_V_OK) {
		snprintf(why, whylen, "certificate no longer trusted: %s",
			 X509_verify_cert_error_string(verr));
		rc = -EPERM;
	} else if (tls_policy_verdict(leaf, SSL_CTX_get_app_data(ctx)) != POLICY_ALLOW) {
		snprintf(why, whylen, "identity no longer allowed");
		rc = -EACCES;
	}
	X509_free(leaf);
	sk_X509_pop_free(rest, X509_free);
	return rc;
}

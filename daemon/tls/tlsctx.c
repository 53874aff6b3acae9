// SPDX-License-Identifier: MIT
/*
 * SSL_CTX construction and the verify callback. Everything costly (PEM parsing, trust
 * store, cipher lists) happens here once per service so a handshake does no config work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "ktlsd/ktls.h"
#include "filewatch.h"
#include "libctx.h"
#include "ocsp.h"
#include "peer_chain.h"
#include "pkcs11_key.h"
#include "sess_cache.h"
#include "ticket_keys.h"
#include "tlsctx.h"

/* TLS 1.2: forward secret key exchange and AEAD only (these also map onto kTLS). */
static const char TLS12_CIPHERS[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char TLS13_SUITES[] =
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;
static int ssl_cache_idx = -1; /* SSL ex_data: the worker's struct sess_cache (client) */
static int ctx_keys_idx = -1;  /* SSL_CTX ex_data: its struct ticket_keys, freed with it */

static void keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	ticket_keys_free(ptr);
}

static void idx_init(void)
{
	ssl_cache_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ctx_keys_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, keys_free);
}

static bool name_ok(const ASN1_STRING *a)
{
	const unsigned char *d = ASN1_STRING_get0_data(a);
	int len = ASN1_STRING_length(a);

	return d && len > 0 && !memchr(d, '\0', (size_t)len);
}

/*
 * A subject attribute compares byte for byte only in a type whose bytes are its
 * characters: a BMPString CN whose UTF-16 bytes spell "client" is not "client".
 */
static bool subject_name_ok(const ASN1_STRING *a)
{
	switch (ASN1_STRING_type(a)) {
	case V_ASN1_UTF8STRING:
	case V_ASN1_PRINTABLESTRING:
	case V_ASN1_IA5STRING:
		return name_ok(a);
	default:
		return false;
	}
}

static struct peer_name name_of(const ASN1_STRING *a)
{
	return (struct peer_name){ (const char *)ASN1_STRING_get0_data(a),
				   (size_t)ASN1_STRING_length(a) };
}

static void add_san(struct peer_identity *id, const GENERAL_NAME *gn)
{
	const ASN1_STRING *a;

	switch (gn->type) {
	case GEN_URI:
		a = gn->d.uniformResourceIdentifier;
		if (name_ok(a) && id->n_uri < PEER_MAX_NAMES)
			id->uri[id->n_uri++] = name_of(a);
		else
			id->n_uri_skipped++;
		break;
	case GEN_DNS:
		a = gn->d.dNSName;
		if (name_ok(a) && id->n_dns < PEER_MAX_NAMES)
			id->dns[id->n_dns++] = name_of(a);
		break;
	case GEN_IPADD:
		a = gn->d.iPAddress;
		if ((ASN1_STRING_length(a) == 4 || ASN1_STRING_length(a) == 16) &&
		    id->n_ip < PEER_MAX_NAMES)
			id->ip[id->n_ip++] = name_of(a);
		break;
	default:
		break;
	}
}

void tls_identity_from_x509(X509 *x, struct peer_identity *ret_id, GENERAL_NAMES **ret_sans)
{
	struct peer_identity id;
	GENERAL_NAMES *sans;
	const X509_NAME *subj = X509_get_subject_name(x);
	int i;

	memset(&id, 0, sizeof(id));
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++)
		add_san(&id, sk_GENERAL_NAME_value(sans, i));
	for (i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
		const ASN1_STRING *a = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));

		if (subject_name_ok(a)) {
			id.cn = name_of(a);
			break;
		}
	}
	for (i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_organizationalUnitName, i)) >= 0;) {
		const ASN1_STRING *a = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));

		if (subject_name_ok(a) && id.n_ou < PEER_MAX_NAMES)
			id.ou[id.n_ou++] = name_of(a);
	}
	*ret_id = id;
	*ret_sans = sans;
}

void tls_peer_clear(struct tls_peer *peer)
{
	free(peer->id);
	free(peer->claimed_uri);
	free(peer->claimed_dns);
	free(peer->claimed_cn);
	peer->id = peer->claimed_uri = peer->claimed_dns = peer->claimed_cn = NULL;
}

static char *dup_name(const struct peer_name *n)
{
	return n->len ? strndup(n->s, n->len) : NULL;
}

/* An IP SAN as text, for the log. */
static char *dup_ip(const struct peer_name *n)
{
	char buf[INET6_ADDRSTRLEN];

	if (!inet_ntop(n->len == 4 ? AF_INET : AF_INET6, n->s, buf, sizeof(buf)))
		return NULL;
	return strdup(buf);
}

/* All URI SANs, ' ' between them. */
static char *join_uris(const struct peer_identity *id)
{
	size_t len = 0, off = 0;
	char *s;

	if (!id->n_uri)
		return NULL;
	for (size_t i = 0; i < id->n_uri; i++)
		len += id->uri[i].len + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	for (size_t i = 0; i < id->n_uri; i++) {
		memcpy(s + off, id->uri[i].s, id->uri[i].len);
		off += id->uri[i].len;
		s[off++] = ' ';
	}
	s[off - 1] = '\0';
	return s;
}

static void peer_claims(struct tls_peer *peer, const struct peer_identity *id)
{
	tls_peer_clear(peer);
	peer->claimed_uri = join_uris(id);
	peer->claimed_dns = id->n_dns ? dup_name(&id->dns[0]) : NULL;
	peer->claimed_cn = dup_name(&id->cn);
}

static void peer_admit(struct tls_peer *peer, const struct policy_match *m)
{
	tls_peer_clear(peer);
	peer->id_kind = m->kind;
	peer->id = m->kind == POLICY_IP ? dup_ip(&m->name) : dup_name(&m->name);
}

/*
 * The policy's verdict on certificate x; an unverified chain is never asked about and
 * reads POLICY_DENY_NO_MATCH. With peer, the decision is recorded there: on admission
 * peer->id is the matched name, otherwise the certificate's names are kept as claims.
 */
static enum policy_verdict peer_decide(X509 *x, const struct policy *pol, bool verified,
				       struct tls_peer *peer)
{
	struct peer_identity id;
	struct policy_match m;
	enum policy_verdict v = POLICY_DENY_NO_MATCH;
	GENERAL_NAMES *sans = NULL;

	tls_identity_from_x509(x, &id, &sans);
	if (verified)
		v = policy_check(pol, &id, &m);
	if (peer && v == POLICY_ALLOW) {
		peer_admit(peer, &m);
	} else if (peer) {
		peer_claims(peer, &id);
		peer->verdict = v;
	}
	GENERAL_NAMES_free(sans);
	return v;
}

enum policy_verdict tls_policy_verdict(X509 *x, const struct policy *pol)
{
	return peer_decide(x, pol, true, NULL);
}

int tls_peer_from_session(SSL *ssl, const struct policy *pol, struct tls_peer *peer)
{
	X509 *x = SSL_get0_peer_certificate(ssl);

	if (!x)
		return -ENOENT;
	return peer_decide(x, pol, true, peer) == POLICY_ALLOW ? 0 : -EACCES;
}

/*
 * Runs inside OpenSSL's chain verification: at depth 0 record who the peer is and, once
 * the chain itself is good, apply the policy. Failing here makes OpenSSL send the alert.
 */
static int verify_cb(int preverify_ok, X509_STORE_CTX *xctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	const struct policy *pol = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct tls_peer *peer = SSL_get_app_data(ssl);
	X509 *x;

	if (X509_STORE_CTX_get_error_depth(xctx) != 0)
		return preverify_ok;
	x = X509_STORE_CTX_get_current_cert(xctx);
	if (!x)
		return preverify_ok;
	/* Called again at depth 0 for each further error: the last word decides. */
	if (peer_decide(x, pol, preverify_ok, peer) != POLICY_ALLOW && preverify_ok) {
		if (peer)
			peer->denied = true;
		X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
		preverify_ok = 0;
	}
	return preverify_ok;
}

/* --- resumption ------------------------------------------------------------------------ */

void tls_set_session_cache(SSL *ssl, struct sess_cache *cache)
{
	pthread_once(&idx_once, idx_init);
	SSL_set_ex_data(ssl, ssl_cache_idx, cache);
}

/* Client: every ticket the server sends (TLS 1.3: after the handshake) lands here. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct sess_cache *cache = SSL_get_ex_data(ssl, ssl_cache_idx);
	struct tls_peer *peer = SSL_get_app_data(ssl);

	if (!cache)
		return 0;
	sess_cache_put(cache, sess); /* takes our reference */
	if (peer && peer->tickets < UINT8_MAX)
		peer->tickets++;
	return 1;
}

/*
 * Server: a ticket decrypted under one of our keys still has to name a client we would
 * admit now. The chain is not re-verified on resumption, so the leaf inside must still be
 * in date and allowed by the policy; otherwise the client gets a full handshake.
 */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
				       size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	const struct policy *pol = arg;
	X509 *x;

	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	x = SSL_SESSION_get0_peer(ss);
	if (!x || X509_cmp_current_time(X509_get0_notAfter(x)) <= 0 ||
	    peer_decide(x, pol, true, NULL) != POLICY_ALLOW)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	/*
	 * Tickets are single use (RFC 8446 C.4) and the client dropped this one: a fresh one
	 * replaces it (OpenSSL sends none on resumption unless told to renew), one, where a
	 * full handshake sends two.
	 */
	SSL_set_num_tickets(ssl, 1);
	return SSL_TICKET_RETURN_USE_RENEW;
}

/*
 * Server, session cache: a session must not outlive the client certificate it was made
 * with (the chain is not verified again on resumption), and keeps the rest of the chain
 * as DER only. OpenSSL does not store sessions itself (SSL_SESS_CACHE_NO_INTERNAL_STORE):
 * sess goes into the cache here, finished, so no other worker's handshake can find it (a
 * TLS 1.2 client knows its session ID before this) while it is being changed.
 */
static int server_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	X509 *x = SSL_SESSION_get0_peer(sess);
	int days = 0, secs = 0;
	long left = 0;

	(void)tls_session_shed_chain(ssl, sess); /* failing, it keeps the decoded chain */
	if (x) {
		if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
			return 0;
		left = (long)days * 86400 + secs;
		if (left <= 0)
			return 0;
		if (left < SSL_SESSION_get_timeout(sess))
			SSL_SESSION_set_timeout(sess, left);
	}
	SSL_CTX_add_session(SSL_get_SSL_CTX(ssl), sess); /* takes its own reference */
	return 0;					 /* none kept here */
}

/*
 * Server, resumption = cache: sessions stay in this process, parsed, and a TLS 1.3 ticket
 * (or a TLS 1.2 session ID) only names one. With OpenSSL 3.0 this is the cheap way:
 * a stateless ticket carries the client certificate, which OpenSSL decodes again for
 * every ticket it issues and every one it accepts. Bounded by --session-cache, oldest
 * dropped first.
 */
static void session_cache_setup(const struct service_config *s, SSL_CTX *ctx)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_cache_size(ctx, s->session_cache);
	SSL_CTX_set_timeout(ctx, (long)s->ticket_lifetime_s);
	SSL_CTX_sess_set_new_cb(ctx, server_new_session_cb);
	SSL_CTX_set_num_tickets(ctx, 1);
}

static int resumption_setup(const struct service_config *s, SSL_CTX *ctx, char *err, size_t errlen)
{
	struct ticket_keys *tk = NULL;
	int rc;

	pthread_once(&idx_once, idx_init);
	if (ssl_cache_idx < 0 || ctx_keys_idx < 0)
		goto out_nomem;
	if (s->role == ROLE_CLIENT) {
		/* No internal store: each worker keeps its own bounded cache per target. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
		return 0;
	}
	if (s->resumption_cache) {
		session_cache_setup(s, ctx);
		return 0;
	}
	rc = ticket_keys_new(s->ticket_lifetime_s, &tk);
	if (rc) {
		snprintf(err, errlen, "session ticket keys for %s: %s", s->name, strerror(-rc));
		return rc;
	}
	if (!SSL_CTX_set_ex_data(ctx, ctx_keys_idx, tk)) {
		ticket_keys_free(tk);
		goto out_nomem;
	}
	rc = ticket_keys_attach(ctx, tk);
	if (rc == 0 && !SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_dec_cb, s->policy))
		rc = -ENOMEM;
	if (rc) {
		snprintf(err, errlen, "session tickets for %s: %s", s->name, strerror(-rc));
		return rc;
	}
	/* Stateless tickets only: no server-side session cache to lock or bound. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 2);
	return 0;

out_nomem:
	snprintf(err, errlen, "session resumption for %s: out of memory", s->name);
	return -ENOMEM;
}

static void openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : "unknown OpenSSL error");
	ERR_clear_error();
}

static int fail(char *err, size_t errlen, const char *what, const char *file)
{
	char why[160];

	openssl_reason(why, sizeof(why));
	snprintf(err, errlen, "%s %s: %s", what, file, why);
	return -EINVAL;
}

/*
 * Private key passwords. OpenSSL's default callback prompts on the terminal, which a
 * daemon must never do (it would hang, or read a password typed for something else):
 * ours hands over the password file's content or nothing, and records that a password
 * was asked for, which is how an encrypted key is told from a broken one.
 */
#define KEY_PASS_MAX 1024

struct key_pass {
	char buf[KEY_PASS_MAX];
	int len;
	bool asked;
};

static int key_pass_cb(char *buf, int size, int rwflag, void *u)
{
	struct key_pass *kp = u;

	kp->asked = true;
	if (kp->len <= 0 || kp->len > size)
		return -1;
	memcpy(buf, kp->buf, (size_t)kp->len);
	return kp->len;
}

/* The whole file is the password, less one trailing newline (CRLF too). */
static int key_pass_read(const char *path, struct key_pass *ret_kp, char *err, size_t errlen)
{
	char buf[KEY_PASS_MAX + 2]; /* room to see that a file is too long, newline apart */
	FILE *f = fopen(path, "re");
	bool bad;
	size_t n;

	if (!f) {
		snprintf(err, errlen, "key-password-file %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	n = fread(buf, 1, sizeof(buf), f);
	bad = ferror(f);
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "key-password-file %s: cannot read it", path);
		goto out_cleanse;
	}
	if (n && buf[n - 1] == '\n')
		n--;
	if (n && buf[n - 1] == '\r')
		n--;
	if (n >= KEY_PASS_MAX) {
		snprintf(err, errlen, "key-password-file %s: longer than %d bytes", path,
			 KEY_PASS_MAX - 1);
		bad = true;
	} else if (!n) {
		snprintf(err, errlen, "key-password-file %s: empty", path);
		bad = true;
	} else {
		memcpy(ret_kp->buf, buf, n);
		ret_kp->len = (int)n;
	}
out_cleanse:
	OPENSSL_cleanse(buf, sizeof(buf));
	return bad ? -EINVAL : 0;
}

/* A key in a token (pkcs11: URI): the PIN comes from key-password-file, if any. */
static int key_load_pkcs11(SSL_CTX *ctx, const struct service_config *s, struct key_pass *kp,
			   char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	char shown[512];
	int rc;

	/*
	 * Without a PIN the provider falls back to asking on the terminal (pkcs11-provider
	 * 1.0 reads stdin): a daemon must never prompt, so a PIN source is required.
	 */
	if (!s->key_password_file && !strstr(s->key, "pin-value=") &&
	    !strstr(s->key, "pin-source=")) {
		tls_key_display(s->key, shown, sizeof(shown));
		snprintf(err, errlen,
			 "key %s: no PIN: give key-password-file (the token's PIN) or pin-source= "
			 "in the URI",
			 shown);
		return -EINVAL;
	}
	rc = tls_pkcs11_key_load(s->key, key_pass_cb, kp, &pkey, err, errlen);
	if (rc)
		return rc;
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		unsigned long e = ERR_peek_last_error();

		tls_key_display(s->key, shown, sizeof(shown));
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, errlen, "key %s does not match cert %s", shown, s->cert);
			rc = -EINVAL;
		} else {
			rc = fail(err, errlen, "key", shown);
		}
	}
	EVP_PKEY_free(pkey);
	return rc;
}

/*
 * SSL_CTX_use_PrivateKey_file, but the file is read in OpenSSL's default library context:
 * the handshake context (libctx.c) has no decoders for private keys, PEM or encrypted
 * ones. OpenSSL copies the key into the handshake context's key manager on first use.
 */
static int key_file_use(SSL_CTX *ctx, const char *file, struct key_pass *kp)
{
	BIO *b = BIO_new_file(file, "r");
	EVP_PKEY *pkey = b ? PEM_read_bio_PrivateKey(b, NULL, key_pass_cb, kp) : NULL;
	int ok = pkey ? SSL_CTX_use_PrivateKey(ctx, pkey) : 0;

	EVP_PKEY_free(pkey);
	BIO_free(b);
	return ok;
}

static int key_load(SSL_CTX *ctx, const struct service_config *s, struct key_pass *kp, char *err,
		    size_t errlen)
{
	unsigned long e;

	if (tls_key_is_pkcs11(s->key))
		return key_load_pkcs11(ctx, s, kp, err, errlen);
	if (key_file_use(ctx, s->key, kp) == 1)
		return 0;
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
		ERR_clear_error();
		snprintf(err, errlen, "key %s does not match cert %s", s->key, s->cert);
		return -EINVAL;
	}
	if (!kp->asked)
		return fail(err, errlen, "key", s->key);
	ERR_clear_error();
	if (s->key_password_file)
		snprintf(err, errlen, "key %s: cannot decrypt it with key-password-file %s", s->key,
			 s->key_password_file);
	else
		snprintf(err, errlen, "key %s is encrypted: give --key-password-file", s->key);
	return -EINVAL;
}

/* Certificate chain and key, with key_pass_cb (never a prompt) for whatever is encrypted. */
static int creds_load(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	struct key_pass kp = { .len = 0 };
	int rc = 0;

	if (s->key_password_file) {
		rc = key_pass_read(s->key_password_file, &kp, err, errlen);
		if (rc)
			goto out_cleanse;
	}
	SSL_CTX_set_default_passwd_cb(ctx, key_pass_cb);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &kp);
	if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
		if (kp.asked) {
			ERR_clear_error();
			snprintf(err, errlen,
				 "cert %s is encrypted: ktlsd takes a plain certificate", s->cert);
			rc = -EINVAL;
		} else {
			rc = fail(err, errlen, "cert", s->cert);
		}
	} else {
		kp.asked = false;
		rc = key_load(ctx, s, &kp, err, errlen);
	}
	/* The callback and kp do not outlive this function. */
	SSL_CTX_set_default_passwd_cb(ctx, NULL);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
out_cleanse:
	OPENSSL_cleanse(&kp, sizeof(kp));
	return rc;
}

/* Certificate and key, and that the two belong together. */
static int identity_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	int rc = creds_load(ctx, s, err, errlen);

	if (rc)
		return rc;
	if (SSL_CTX_check_private_key(ctx) != 1) {
		char shown[512];

		ERR_clear_error();
		tls_key_display(s->key, shown, sizeof(shown));
		snprintf(err, errlen, "key %s does not match cert %s", shown, s->cert);
		return -EINVAL;
	}
	return 0;
}

/* One parsed trust store for all handshakes of this service. */
static int trust_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);

	if (X509_STORE_load_file(store, s->cacert) != 1)
		return fail(err, errlen, "cacert", s->cacert);
	if (sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) == 0) {
		snprintf(err, errlen, "cacert %s: no CA certificate in file", s->cacert);
		return -EINVAL;
	}
	if (s->role == ROLE_SERVER) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->cacert);

		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
	}
	return 0;
}

/*
 * A CRL whose issuer is in the trust store must be signed by it: a CRL for the wrong CA, or
 * a forged one, is an error now rather than every handshake failing later. A CRL of an
 * intermediate (not in cacert) is checked when a chain through it is.
 */
static int crl_issuer_check(X509_STORE *store, X509_CRL *crl, const char *file, char *err,
			    size_t errlen)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
	bool found = false;

	for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

		if (!ca || X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)))
			continue;
		found = true;
		if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
			return 0;
	}
	ERR_clear_error();
	if (!found)
		return 0;
	snprintf(err, errlen, "crl %s: signature does not verify with its issuer's key in cacert",
		 file);
	return -EINVAL;
}

/* Every CRL of one PEM file into store (at least one). */
static int crl_file_load(X509_STORE *store, const char *file, char *err, size_t errlen)
{
	BIO *b = BIO_new_file(file, "r");
	X509_CRL *crl;
	int n = 0, rc = 0;

	if (!b)
		return fail(err, errlen, "crl", file);
	while (!rc && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL))) {
		rc = crl_issuer_check(store, crl, file, err, errlen);
		if (!rc && X509_STORE_add_crl(store, crl) != 1)
			rc = fail(err, errlen, "crl", file);
		X509_CRL_free(crl);
		n++;
	}
	BIO_free(b);
	if (rc)
		return rc;
	ERR_clear_error(); /* the end of the file reads as "no start line" */
	if (!n) {
		snprintf(err, errlen, "crl %s: no CRL in file (expected PEM X509 CRL)", file);
		return -EINVAL;
	}
	return 0;
}

/*
 * With CRLs, every certificate of the chain is checked (CRL_CHECK_ALL), as Envoy does: a CA
 * in the chain without a CRL fails the handshake ("unable to get certificate CRL") rather
 * than its certificates going unchecked. An expired CRL fails too: revocation fails closed.
 */
static int crl_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);

	for (unsigned i = 0; i < s->n_crl; i++) {
		int rc = crl_file_load(store, s->crl[i], err, errlen);

		if (rc)
			return rc;
	}
	if (s->n_crl)
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/*
 * The chain we send, built once. With no chain certificates in the --cert file, OpenSSL
 * otherwise builds one from the trust store for every handshake (ssl_add_cert_chain: an
 * X509_verify_cert with its signature check, ~11% of a full handshake's instructions).
 * Same certificates on the wire: what that per-handshake build finds, errors ignored
 * as there (a server certificate from another CA goes out alone).
 */
static int chain_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	STACK_OF(X509) *chain = NULL;

	if (!SSL_CTX_get0_certificate(ctx))
		return 0; /* a client without a certificate (the agent's unauthenticated role) */
	if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && sk_X509_num(chain) > 0)
		return 0; /* the file's chain goes out as it is, never rebuilt */
	if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
						  SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0)
		return fail(err, errlen, "certificate chain of", s->cert);
	ERR_clear_error();
	return 0;
}

/*
 * Where the handshake ends, application data begins: from here on OpenSSL wipes each
 * record buffer it releases (CLEANSE_PLAINTEXT, see protocol_setup). During the
 * handshake those buffers hold only handshake messages, which a wipe would not protect
 * (the client's certificate stays in the session anyway): with RELEASE_BUFFERS they are
 * released after each flight, and wiping each whole buffer (~18 KB) every time cost
 * ~1% of a handshake (docs/speed.md). OpenSSL reads one record at a time (no read-ahead)
 * and ktlsd accepts no early data, so no application record is in a buffer before this.
 */
/*
 * Server, session cache: a TLS 1.3 ticket is used once (RFC 8446 C.4), as in tickets mode
 * (ticket_dec_cb), and the cache holds one session per client, not one per resumption.
 * A stateful ticket names the cached session, which the connection resumes with; the new
 * ticket's session is a copy made after the client's Finished. So once that Finished is
 * read and verified (the loop callback comes before the next state is entered; not the
 * exit one, which a failed or partial read also makes), the cached one goes. TLS 1.2
 * resumes the cached session by the same ID: it stays. (Post-handshake client auth, which
 * ktlsd does not use, would come back to this state with the new session.)
 */
static void cache_single_use(const SSL *ssl)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

	if (SSL_get_state(ssl) == TLS_ST_SR_FINISHED && SSL_session_reused(ssl) &&
	    SSL_version(ssl) >= TLS1_3_VERSION &&
	    (SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER))
		SSL_CTX_remove_session(ctx, (SSL_SESSION *)SSL_get0_session(ssl));
}

static void info_cb(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if (where & SSL_CB_HANDSHAKE_DONE)
		SSL_set_options((SSL *)ssl, SSL_OP_CLEANSE_PLAINTEXT);
	else if (where == SSL_CB_ACCEPT_LOOP) /* SSL_CB_ACCEPT_EXIT shares its state bit */
		cache_single_use(ssl);
}

/* Versions, suites and groups, and the options every connection runs with. */
static int protocol_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	if (SSL_CTX_set_min_proto_version(ctx, s->min_tls) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1)
		return fail(err, errlen, "TLS parameters for", s->name);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/*
	 * CLEANSE_PLAINTEXT: OpenSSL decrypts records in place and, with RELEASE_BUFFERS,
	 * frees that buffer unwiped: a core or a later heap bug would find plaintext there.
	 * Set on each connection as its handshake completes (info_cb).
	 */
	SSL_CTX_set_info_callback(ctx, info_cb);
	/* Idle connections must stay small: OpenSSL frees its record buffers between uses. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return 0;
}

/* Resumption as configured, or no session state kept or sent at all. */
static int session_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	/* Tickets are bound to this service: another service's do not resume here. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)s->name,
				       (unsigned)strnlen(s->name, SSL_MAX_SID_CTX_LENGTH));
	if (s->resumption)
		return resumption_setup(s, ctx, err, errlen);
	/* No cache bookkeeping per handshake. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (s->role == ROLE_SERVER)
		SSL_CTX_set_num_tickets(ctx, 0);
	return 0;
}

/* The peer must present a chain that verifies and that s->policy admits (verify_cb). */
static void verify_setup(SSL_CTX *ctx, const struct service_config *s)
{
	bool server = s->role == ROLE_SERVER;

	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   verify_cb);
	SSL_CTX_set_verify_depth(ctx, 8);
	SSL_CTX_set_app_data(ctx, s->policy);
}

/*
 * Whether s keeps OpenSSL's default library context rather than the handshake one
 * (libctx.c): a PKCS#11 key, whose operations run in the pkcs11 provider loaded there, and
 * a FIPS configuration (openssl.cnf's provider sections apply to the default context only).
 */
static bool wants_default_libctx(const struct service_config *s)
{
	return tls_key_is_pkcs11(s->key) || EVP_default_properties_is_fips_enabled(NULL) ||
	       OSSL_PROVIDER_available(NULL, "fips");
}

static int ctx_new(const struct service_config *s, SSL_CTX **ret_ctx)
{
	bool server = s->role == ROLE_SERVER;
	OSSL_LIB_CTX *libctx = NULL;
	SSL_CTX *ctx;
	int rc;

	if (!wants_default_libctx(s)) {
		rc = tls_libctx_get(&libctx);
		if (rc)
			return rc;
	}
	ctx = SSL_CTX_new_ex(libctx, NULL, server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return -ENOMEM;
	*ret_ctx = ctx;
	return 0;
}

/*
 * OpenSSL opens every file with a blocking read: a FIFO put in a file's place (by whoever
 * can write its directory) would hang the start, or a reload's thread, for good. Missing or
 * unreadable files are left to the loaders, whose messages say which.
 */
static int files_regular(const struct service_config *s, char *err, size_t errlen)
{
	const struct {
		const char *what, *path;
	} f[] = {
		{ "cert", s->cert },
		{ "key", tls_key_is_pkcs11(s->key) ? NULL : s->key },
		{ "cacert", s->cacert },
		{ "key-password-file", s->key_password_file },
		{ "ocsp-staple", s->ocsp_staple },
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) + s->n_crl; i++) {
		bool crl = i >= sizeof(f) / sizeof(f[0]);
		const char *path = crl ? s->crl[i - sizeof(f) / sizeof(f[0])] : f[i].path;
		FILE *fp = path ? file_open_regular(path) : NULL;

		if (fp)
			fclose(fp);
		else if (path && errno == EINVAL) {
			snprintf(err, errlen, "%s %s: not a regular file", crl ? "crl" : f[i].what,
				 path);
			return -EINVAL;
		}
	}
	return 0;
}

int tls_ctx_build(const struct service_config *s, bool for_ktls, SSL_CTX **ret_ctx, char *err,
		  size_t errlen)
{
	bool server = s->role == ROLE_SERVER;
	SSL_CTX *ctx;
	int rc;

	ERR_clear_error();
	rc = files_regular(s, err, errlen);
	if (rc)
		return rc;
	rc = ctx_new(s, &ctx);
	if (rc) {
		snprintf(err, errlen, "cannot create TLS context");
		return rc;
	}
	/* A client without a certificate (the handshake agent's xprtsec=tls clients) is fine. */
	rc = s->cert || server ? identity_setup(ctx, s, err, errlen) : 0;
	if (rc)
		goto out_free_ctx;
	rc = trust_setup(ctx, s, err, errlen);
	if (!rc)
		rc = chain_setup(ctx, s, err, errlen);
	if (!rc)
		rc = crl_setup(ctx, s, err, errlen);
	if (rc)
		goto out_free_ctx;
	rc = protocol_setup(ctx, s, err, errlen);
	if (rc)
		goto out_free_ctx;
	rc = session_setup(ctx, s, err, errlen);
	if (rc)
		goto out_free_ctx;
	verify_setup(ctx, s);
	/* After the certificate and trust store: the staple is checked against them. */
	rc = ocsp_staple_setup(ctx, s, err, errlen);
	if (rc)
		goto out_free_ctx;
	if (for_ktls) {
		rc = ktls_ctx_prepare(ctx, server);
		if (rc) {
			snprintf(err, errlen, "kTLS preparation for %s: %s", s->name,
				 ktls_strerror(rc));
			goto out_free_ctx;
		}
	}
	*ret_ctx = ctx;
	return 0;

out_free_ctx:
	SSL_CTX_free(ctx);
	return rc;
}

size_t tls_ctx_files(const struct service_config *s, const char **ret_files)
{
	size_t n = 0;

	ret_files[n++] = s->cert;
	if (!tls_key_is_pkcs11(s->key))
		ret_files[n++] = s->key;
	ret_files[n++] = s->cacert;
	if (s->key_password_file)
		ret_files[n++] = s->key_password_file;
	if (s->ocsp_staple)
		ret_files[n++] = s->ocsp_staple;
	return n;
}

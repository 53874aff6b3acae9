// SPDX-License-Identifier: MIT
/*
 * The library context the services' SSL_CTXs run in.
 *
 * OpenSSL 3.0 decodes the public key of every certificate it parses (d2i_X509: each one
 * a peer sends, two per mTLS handshake with the usual leaf + CA) through a decoder chain
 * built for that one call, OSSL_DECODER_CTX_new_for_pkey, and building it walks every
 * decoder of the library context and, several times, its whole method store (every
 * cipher, digest, MAC, KDF... fetched so far, ~210 with libssl's fetches): 3.0 has no
 * decoder cache (3.1 has). In OpenSSL's default context that is 1.2 M instructions per
 * certificate in ktlsd (1.56 M with the key's own decoding): over a third of a full
 * handshake. In this context, 0.17 M (0.49 M); docs/speed.md has the measurements.
 *
 * Here one provider, "ktlsd-tls", is loaded: OpenSSL's default provider (loaded into a
 * private context of its own) seen through a view that lists, of some operations, only
 * the algorithms TLS with ktlsd's settings uses (KEEP below); every other operation (KEM,
 * encoders, store loaders) passes through whole, and so do the provider's parameters
 * and its TLS group list. Decoders: only DER
 * SubjectPublicKeyInfo (how a certificate's key is read) of the key types that sign.
 * Private keys, PEM and encrypted keys are read in OpenSSL's default context
 * (tlsctx.c), never in this one.
 *
 * The algorithms are the default provider's code, unchanged, running in its own
 * context: the same code verifies the same chains. What the view leaves out cannot be
 * used at all (a certificate with a DH or SM2 key, or signed with SHAKE, does not verify;
 * an ffdhe group is not offered): it fails closed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <openssl/core_dispatch.h>
#include <openssl/err.h>
#include <openssl/provider.h>

#include "libctx.h"

#define VIEW_NAME "ktlsd-tls"
#define VIEW_MAX  64 /* per list; the default provider of 3.0 has at most 124 (ciphers) */
#define KEEP_MAX  16

/*
 * What the view lists, by any of an algorithm's names:
 * - key types that sign certificates or handshakes (RSA, RSA-PSS, EC, Ed25519, Ed448,
 *   DSA), the key exchange groups ktlsd offers (X25519; P-256 and P-384 are EC) and HMAC
 *   (libssl's TLS 1.3 PSK binder is an HMAC EVP_PKEY). Not DH or X448 (groups ktlsd does
 *   not offer), nor SM2;
 * - the record ciphers of ktlsd's suites (tlsctx.c) and libssl's own ticket cipher;
 * - SHA-1, SHA-2, MD5 and MD5-SHA1 (libssl requires both). A certificate signed with
 *   SHA-3 still verifies: the signature's own code fetches its digest in the default
 *   provider's context (unit.tls.libctx checks RSA with SHA3-256);
 * - HMAC (libssl's MAC), the TLS KDFs, RSA decryption (TLS 1.2 RSA key exchange, for
 *   completeness) and the random generators OpenSSL's defaults use (CTR-DRBG fed by
 *   SEED-SRC).
 */
static const struct keep {
	int op;
	const char *names[KEEP_MAX];
} KEEP[] = {
	{ OSSL_OP_KEYMGMT,
	  { "RSA", "RSA-PSS", "EC", "ED25519", "ED448", "DSA", "X25519", "HMAC" } },
	{ OSSL_OP_DECODER, { "RSA", "RSA-PSS", "EC", "ED25519", "ED448", "DSA" } },
	{ OSSL_OP_SIGNATURE, { "RSA", "ECDSA", "ED25519", "ED448", "DSA", "HMAC" } },
	{ OSSL_OP_KEYEXCH, { "ECDH", "X25519" } },
	{ OSSL_OP_ASYM_CIPHER, { "RSA" } },
	{ OSSL_OP_RAND, { "CTR-DRBG", "SEED-SRC" } },
	{ OSSL_OP_CIPHER,
	  { "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305", "AES-128-CBC", "AES-256-CBC" } },
	{ OSSL_OP_DIGEST,
	  { "SHA1", "SHA2-224", "SHA2-256", "SHA2-384", "SHA2-512", "MD5", "MD5-SHA1" } },
	{ OSSL_OP_MAC, { "HMAC" } },
	{ OSSL_OP_KDF, { "HKDF", "TLS13-KDF", "TLS1-PRF" } },
};
#define N_KEEP (sizeof(KEEP) / sizeof(KEEP[0]))

static struct {
	OSSL_LIB_CTX *inner; /* where the default provider itself is loaded */
	OSSL_PROVIDER *deflt;
	OSSL_ALGORITHM lists[N_KEEP][VIEW_MAX + 1]; /* per KEEP entry, {NULL} terminated */
	OSSL_LIB_CTX *libctx;			    /* the view's: what tls_libctx_get hands out */
	int rc;
} view;

static pthread_once_t view_once = PTHREAD_ONCE_INIT;

static const struct keep *keep_of(int op)
{
	for (size_t i = 0; i < N_KEEP; i++)
		if (KEEP[i].op == op)
			return &KEEP[i];
	return NULL;
}

/* names is "SHA2-256:SHA-256:SHA256:2.16.840.1.101.3.4.2.1": is one of them in k? */
static bool name_kept(const char *names, const struct keep *k)
{
	for (const char *p = names; *p; p += *p == ':') {
		size_t len = strcspn(p, ":");

		for (size_t i = 0; i < KEEP_MAX && k->names[i]; i++)
			if (strlen(k->names[i]) == len && !strncasecmp(p, k->names[i], len))
				return true;
		p += len;
	}
	return false;
}

/* One property of a definition ("provider=default,fips=yes,input=der"), exactly. */
static bool has_property(const char *props, const char *want)
{
	size_t len = strlen(want);

	for (const char *p = props; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, want, len) && (p[len] == ',' || p[len] == '\0'))
			return true;
	return false;
}

bool tls_libctx_keeps(int operation_id, const char *names, const char *properties)
{
	const struct keep *k = keep_of(operation_id);

	if (!k)
		return true;
	if (operation_id == OSSL_OP_DECODER &&
	    (!properties || !has_property(properties, "input=der") ||
	     !has_property(properties, "structure=SubjectPublicKeyInfo")))
		return false;
	return name_kept(names, k);
}

/* The default provider's list for KEEP[i]'s operation, less what the view leaves out. */
static int view_list(size_t i)
{
	int op = KEEP[i].op, no_cache = 0, n = 0;
	const OSSL_ALGORITHM *a = OSSL_PROVIDER_query_operation(view.deflt, op, &no_cache);

	for (; a && a->algorithm_names; a++) {
		if (!tls_libctx_keeps(op, a->algorithm_names, a->property_definition))
			continue;
		if (n == VIEW_MAX)
			return -ENOMEM;
		view.lists[i][n++] = *a;
	}
	/* The tables are the provider's static ones (no_cache 0): the copies stay valid. */
	return n ? 0 : -ENOENT;
}

/* The view's own list for op, or NULL where op passes through. */
static const OSSL_ALGORITHM *view_own(int op)
{
	for (size_t i = 0; i < N_KEEP; i++)
		if (KEEP[i].op == op)
			return view.lists[i];
	return NULL;
}

static const OSSL_ALGORITHM *view_query(void *provctx, int op, int *no_cache)
{
	const OSSL_ALGORITHM *own = view_own(op);

	(void)provctx;
	if (own) {
		*no_cache = 0;
		return own;
	}
	return OSSL_PROVIDER_query_operation(view.deflt, op, no_cache);
}

static void view_unquery(void *provctx, int op, const OSSL_ALGORITHM *algs)
{
	(void)provctx;
	if (!view_own(op))
		OSSL_PROVIDER_unquery_operation(view.deflt, op, algs);
}

static const OSSL_PARAM *view_gettable_params(void *provctx)
{
	(void)provctx;
	return OSSL_PROVIDER_gettable_params(view.deflt);
}

static int view_get_params(void *provctx, OSSL_PARAM params[])
{
	(void)provctx;
	return OSSL_PROVIDER_get_params(view.deflt, params);
}

/* libssl learns the TLS groups (TLS-GROUP) a provider has from here. */
static int view_get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb,
				 void *arg)
{
	(void)provctx;
	return OSSL_PROVIDER_get_capabilities(view.deflt, capability, cb, arg);
}

static const OSSL_DISPATCH view_dispatch[] = {
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))view_query },
	{ OSSL_FUNC_PROVIDER_UNQUERY_OPERATION, (void (*)(void))view_unquery },
	{ OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))view_gettable_params },
	{ OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))view_get_params },
	{ OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))view_get_capabilities },
	{ 0, NULL },
};

/*
 * The algorithms run with the default provider's own context (provctx): they are its
 * code and keep its state, in view.inner.
 */
static int view_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
		     const OSSL_DISPATCH **out, void **provctx)
{
	(void)handle;
	(void)in;
	*provctx = OSSL_PROVIDER_get0_provider_ctx(view.deflt);
	*out = view_dispatch;
	return 1;
}

static int view_make(void)
{
	view.inner = OSSL_LIB_CTX_new();
	view.deflt = view.inner ? OSSL_PROVIDER_load(view.inner, "default") : NULL;
	if (!view.deflt)
		return -ENOMEM;
	for (size_t i = 0; i < N_KEEP; i++)
		if (view_list(i))
			return -ENOMEM;
	view.libctx = OSSL_LIB_CTX_new();
	if (!view.libctx || !OSSL_PROVIDER_add_builtin(view.libctx, VIEW_NAME, view_init) ||
	    !OSSL_PROVIDER_load(view.libctx, VIEW_NAME))
		return -ENOMEM;
	return 0;
}

static void view_once_init(void)
{
	view.rc = view_make();
	if (view.rc) {
		/* Half made: nothing of it is used. The providers go with their contexts. */
		OSSL_LIB_CTX_free(view.libctx);
		OSSL_PROVIDER_unload(view.deflt);
		OSSL_LIB_CTX_free(view.inner);
		view.libctx = NULL;
	}
	ERR_clear_error();
}

int tls_libctx_get(OSSL_LIB_CTX **ret_libctx)
{
	pthread_once(&view_once, view_once_init);
	if (view.rc)
		return view.rc;
	*ret_libctx = view.libctx;
	return 0;
}

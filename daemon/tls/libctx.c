// SPDX-License-Identifier: MIT
/*
 * The library context the services' SSL_CTXs run in.
 *
 * OpenSSL 3.0 decodes the public key of every certificate it parses (d2i_X509: each one
 * a peer sends, two per mTLS handshake with the usual leaf + CA) through a decoder chain
 * built for that one call, OSSL_DECODER_CTX_new_for_pkey, and building it walks every
 * decoder and key manager of the library context, several times: 3.0 has no decoder
 * cache (3.1 has). In OpenSSL's default context, 40 decoders and 18 key managers, that is
 * ~1.2 M instructions per certificate, a third of a full handshake.
 *
 * Here one provider, "ktlsd-tls", is loaded: OpenSSL's default provider (loaded into a
 * private context of its own) seen through a view. Every operation passes through whole
 * except two lists:
 * - decoders: DER SubjectPublicKeyInfo, of the key types below that can sign (what a
 *   certificate's key is read with). Private keys, PEM and encrypted keys are read in
 *   OpenSSL's default context (tlsctx.c), never in this one;
 * - key managers: the key types that sign certificates or handshakes (RSA, RSA-PSS, EC,
 *   Ed25519, Ed448, DSA), the TLS key exchange groups ktlsd offers (X25519, P-256, P-384
 *   are EC; X448 too) and HMAC (libssl's TLS 1.3 PSK binder is an HMAC EVP_PKEY). Not DH
 *   (ffdhe groups, which ktlsd does not offer), SM2, or the EVP_PKEY wrappers of other
 *   MACs and KDFs (libssl uses EVP_MAC and EVP_KDF for those).
 * The algorithms themselves are the default provider's, unchanged: the same code
 * verifies the same chains. What the view leaves out cannot be used at all (a
 * certificate with a DH or SM2 key does not verify): it fails closed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <openssl/core_dispatch.h>
#include <openssl/err.h>
#include <openssl/provider.h>

#include "libctx.h"

#define VIEW_NAME "ktlsd-tls"
#define VIEW_MAX 64 /* per list; the default provider of 3.0 has 40 decoders, 18 key managers */

/* Key types that sign certificates or handshakes: their SPKI decoders and key managers. */
static const char *const SIGNING[] = { "RSA", "RSA-PSS", "EC", "ED25519", "ED448", "DSA" };
/* Key managers besides: the key exchange groups, and HMAC (the TLS 1.3 PSK binder). */
static const char *const OTHER_KEYMGMT[] = { "X25519", "X448", "HMAC" };
/* The record ciphers of ktlsd's suites (tlsctx.c), and libssl's own ticket cipher. */
static const char *const CIPHERS[] = { "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305",
				       "AES-128-CBC", "AES-256-CBC" };

static struct {
	OSSL_LIB_CTX *inner; /* where the default provider itself is loaded */
	OSSL_PROVIDER *deflt;
	OSSL_ALGORITHM decoders[VIEW_MAX + 1];
	OSSL_ALGORITHM keymgmts[VIEW_MAX + 1];
	OSSL_ALGORITHM ciphers[VIEW_MAX + 1];
	OSSL_LIB_CTX *libctx; /* the view's: what tls_libctx_get hands out */
	int rc;
} view;

static pthread_once_t view_once = PTHREAD_ONCE_INIT;

/* names is "EC:id-ecPublicKey:1.2.840.10045.2.1": is its first name one of list? */
static bool first_name_in(const char *names, const char *const *list, size_t n)
{
	size_t len = strcspn(names, ":");

	for (size_t i = 0; i < n; i++)
		if (strlen(list[i]) == len && !strncmp(names, list[i], len))
			return true;
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

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

bool tls_libctx_keeps(int operation_id, const char *names, const char *properties)
{
	switch (operation_id) {
	case OSSL_OP_KEYMGMT:
		return first_name_in(names, SIGNING, N_OF(SIGNING)) ||
		       first_name_in(names, OTHER_KEYMGMT, N_OF(OTHER_KEYMGMT));
	case OSSL_OP_CIPHER:
		return first_name_in(names, CIPHERS, N_OF(CIPHERS));
	case OSSL_OP_DECODER:
		return first_name_in(names, SIGNING, N_OF(SIGNING)) &&
		       has_property(properties, "input=der") &&
		       has_property(properties, "structure=SubjectPublicKeyInfo");
	default:
		return true;
	}
}

/* The default provider's list for op, less what the view leaves out, into out. */
static int view_list(int op, OSSL_ALGORITHM *out)
{
	int no_cache = 0, n = 0;
	const OSSL_ALGORITHM *a = OSSL_PROVIDER_query_operation(view.deflt, op, &no_cache);

	for (; a && a->algorithm_names; a++) {
		if (!tls_libctx_keeps(op, a->algorithm_names, a->property_definition))
			continue;
		if (n == VIEW_MAX)
			return -ENOMEM;
		out[n++] = *a;
	}
	/* The tables are the provider's static ones (no_cache 0): the copies stay valid. */
	return n ? 0 : -ENOENT;
}

/* The view's own list for op, or NULL where op passes through. */
static const OSSL_ALGORITHM *view_own(int op)
{
	switch (op) {
	case OSSL_OP_DECODER:
		return view.decoders;
	case OSSL_OP_KEYMGMT:
		return view.keymgmts;
	case OSSL_OP_CIPHER:
		return view.ciphers;
	default:
		return NULL;
	}
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
	if (!view.deflt || view_list(OSSL_OP_DECODER, view.decoders) ||
	    view_list(OSSL_OP_KEYMGMT, view.keymgmts) || view_list(OSSL_OP_CIPHER, view.ciphers))
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

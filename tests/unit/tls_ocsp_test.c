// SPDX-License-Identifier: MIT
/*
 * ocsp_response_check(), the one gate every OCSP response passes (stapled or fetched), with
 * responses built here: what counts as good, and every way a response must not (another
 * signer, a signer without the OCSP signing EKU, another certificate, out of date, an
 * unsuccessful answer, another nonce); the per-worker cache; and that a PKCS#11 URI's PIN
 * never reaches a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <time.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "ocsp.h"
#include "pkcs11_key.h"
#include "tlsctx.h"

/* GOOD(.field = x) overrides one field of the good response's spec on purpose. */
#pragma GCC diagnostic ignored "-Woverride-init"

struct id {
	EVP_PKEY *key;
	X509 *cert;
};

static struct id ca, other_ca, leaf, leaf2, delegated, no_eku;

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* cn's certificate, issued by issuer (NULL: self-signed CA); eku: extendedKeyUsage or NULL. */
static struct id make(const char *cn, const struct id *issuer, const char *eku, long serial)
{
	struct id r = { new_key(), X509_new() };
	X509 *x = r.cert;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, r.key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer->cert : x));
	add_ext(x, issuer ? issuer->cert : x, NID_basic_constraints,
		issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
	add_ext(x, issuer ? issuer->cert : x, NID_key_usage,
		issuer ? "critical,digitalSignature"
		       : "critical,keyCertSign,cRLSign,digitalSignature");
	if (eku)
		add_ext(x, issuer->cert, NID_ext_key_usage, eku);
	assert_true(X509_sign(x, issuer ? issuer->key : r.key, EVP_sha256()) > 0);
	return r;
}

static int setup(void **state)
{
	ca = make("ca", NULL, NULL, 1);
	other_ca = make("other ca", NULL, NULL, 2);
	leaf = make("leaf", &ca, "clientAuth", 10);
	leaf2 = make("leaf2", &ca, "clientAuth", 11);
	delegated = make("responder", &ca, "OCSPSigning", 12);
	no_eku = make("not a responder", &ca, "serverAuth", 13);
	return 0;
}

static void id_free(struct id *i)
{
	X509_free(i->cert);
	EVP_PKEY_free(i->key);
}

static int teardown(void **state)
{
	id_free(&ca);
	id_free(&other_ca);
	id_free(&leaf);
	id_free(&leaf2);
	id_free(&delegated);
	id_free(&no_eku);
	return 0;
}

struct spec {
	const struct id *about; /* the certificate the response is about */
	const struct id *signer;
	int status;
	long this_off, next_off; /* seconds from now; next_off 0: no nextUpdate */
	const char *nonce;	 /* NULL: none */
	int resp_status;
};

static OCSP_RESPONSE *build(const struct spec *sp)
{
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, sp->about->cert, ca.cert);
	ASN1_TIME *t0 = X509_gmtime_adj(NULL, sp->this_off);
	ASN1_TIME *t1 = sp->next_off ? X509_gmtime_adj(NULL, sp->next_off) : NULL;
	ASN1_TIME *rev = X509_gmtime_adj(NULL, -60);
	STACK_OF(X509) *certs = sk_X509_new_null();
	OCSP_RESPONSE *resp;

	if (sp->resp_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		OCSP_BASICRESP_free(bs);
		OCSP_CERTID_free(id);
		ASN1_TIME_free(t0);
		ASN1_TIME_free(t1);
		ASN1_TIME_free(rev);
		sk_X509_free(certs);
		return OCSP_response_create(sp->resp_status, NULL);
	}
	assert_non_null(OCSP_basic_add1_status(
		bs, id, sp->status, OCSP_REVOKED_STATUS_KEYCOMPROMISE,
		sp->status == V_OCSP_CERTSTATUS_REVOKED ? rev : NULL, t0, t1));
	if (sp->nonce)
		assert_int_equal(OCSP_basic_add1_nonce(bs, (unsigned char *)sp->nonce,
						       (int)strlen(sp->nonce)),
				 1);
	sk_X509_push(certs, sp->signer->cert);
	assert_int_equal(
		OCSP_basic_sign(bs, sp->signer->cert, sp->signer->key, EVP_sha256(), certs, 0), 1);
	resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	OCSP_BASICRESP_free(bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(t0);
	ASN1_TIME_free(t1);
	ASN1_TIME_free(rev);
	sk_X509_free(certs);
	return resp;
}

/* The verdict on a response built from sp, for leaf; why goes to ret_why. */
static enum ocsp_verdict check_spec(const struct spec *sp, OCSP_REQUEST *req,
				    struct ocsp_answer *ret)
{
	OCSP_RESPONSE *resp = build(sp);

	ocsp_response_check(resp, req, leaf.cert, ca.cert, time(NULL), ret);
	OCSP_RESPONSE_free(resp);
	return ret->v;
}

#define GOOD(...)                                                       \
	((struct spec){ .about = &leaf,                                 \
			.signer = &ca,                                  \
			.status = V_OCSP_CERTSTATUS_GOOD,               \
			.this_off = -60,                                \
			.next_off = 3600,                               \
			.resp_status = OCSP_RESPONSE_STATUS_SUCCESSFUL, \
			__VA_ARGS__ })

static void test_good_revoked_unknown(void **state)
{
	struct ocsp_answer a;
	struct spec s = GOOD();

	assert_int_equal(check_spec(&s, NULL, &a), OCSP_GOOD);
	assert_true(a.next_update > time(NULL) + 3500);
	s = GOOD(.status = V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_REVOKED);
	assert_non_null(strstr(a.why, "keyCompromise"));
	s = GOOD(.status = V_OCSP_CERTSTATUS_UNKNOWN);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "status unknown"));
	s = GOOD(.next_off = 0);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_GOOD);
	assert_int_equal(a.next_update, 0);
}

static void test_signers(void **state)
{
	struct ocsp_answer a;
	struct spec s = GOOD(.signer = &delegated);

	assert_int_equal(check_spec(&s, NULL, &a), OCSP_GOOD);
	/* Neither another CA nor a certificate of our CA without OCSPSigning may answer. */
	s = GOOD(.signer = &other_ca);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "not signed by the issuer"));
	s = GOOD(.signer = &no_eku);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	/* Not even a revocation from an unauthorized signer counts. */
	s = GOOD(.signer = &other_ca, .status = V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	/* A leaf answering for itself. */
	s = GOOD(.signer = &leaf);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
}

static void test_wrong_cert_and_time(void **state)
{
	struct ocsp_answer a;
	struct spec s = GOOD(.about = &leaf2);

	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_string_equal(a.why, "response is not for this certificate");
	s = GOOD(.this_off = -7200, .next_off = -OCSP_SKEW_S - 10);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "expired"));
	s = GOOD(.this_off = -7200, .next_off = -OCSP_SKEW_S + 30); /* within the skew */
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_GOOD);
	s = GOOD(.this_off = OCSP_SKEW_S + 60, .next_off = 7200);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "not valid yet"));
	/* No nextUpdate and no nonce: an old one is a replay, not news (RFC 5019 4.2 asks
	 * clients to bound its age). */
	s = GOOD(.this_off = -7 * 86400, .next_off = 0);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "too old"));
	s = GOOD(.this_off = -60, .next_off = 0);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_GOOD);
	s = GOOD(.resp_status = OCSP_RESPONSE_STATUS_TRYLATER);
	assert_int_equal(check_spec(&s, NULL, &a), OCSP_NO_ANSWER);
	assert_non_null(strstr(a.why, "trylater"));
}

static void test_nonce(void **state)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	struct ocsp_answer a;
	struct spec s = GOOD(.nonce = "not the one asked for");

	assert_int_equal(OCSP_request_add1_nonce(req, (unsigned char *)"abcdefgh", 8), 1);
	assert_int_equal(check_spec(&s, req, &a), OCSP_NO_ANSWER);
	assert_string_equal(a.why, "nonce does not match the request");
	/* None echoed (a precomputed response): accepted. */
	s = GOOD();
	assert_int_equal(check_spec(&s, req, &a), OCSP_GOOD);
	s = GOOD(.nonce = "abcdefgh");
	assert_int_equal(check_spec(&s, req, &a), OCSP_GOOD);
	OCSP_REQUEST_free(req);
}

static void test_garbage(void **state)
{
	static const unsigned char junk[] = { 0x30, 0x03, 0x0a, 0x01, 0x00 };
	const unsigned char *p = junk;
	OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, sizeof(junk));
	struct ocsp_answer a;

	/* successful status but no body */
	if (resp) {
		ocsp_response_check(resp, NULL, leaf.cert, ca.cert, time(NULL), &a);
		assert_int_equal(a.v, OCSP_NO_ANSWER);
		OCSP_RESPONSE_free(resp);
	}
}

static void test_cache(void **state)
{
	struct ocsp_cache *c = ocsp_cache_new(16);
	struct ocsp_answer a = { .v = OCSP_GOOD, .next_update = 0 }, got;
	time_t now = time(NULL);

	assert_false(ocsp_cache_get(c, leaf.cert, now, &got));
	ocsp_cache_put(c, leaf.cert, now, &a);
	assert_true(ocsp_cache_get(c, leaf.cert, now, &got));
	assert_int_equal(got.v, OCSP_GOOD);
	assert_false(ocsp_cache_get(c, leaf2.cert, now, &got));
	/* without nextUpdate: OCSP_CACHE_NONEXT_S */
	assert_false(ocsp_cache_get(c, leaf.cert, now + OCSP_CACHE_NONEXT_S, &got));
	/* until nextUpdate, at most OCSP_CACHE_MAX_S */
	a.v = OCSP_REVOKED;
	a.next_update = now + 100;
	ocsp_cache_put(c, leaf2.cert, now, &a);
	assert_true(ocsp_cache_get(c, leaf2.cert, now + 99, &got));
	assert_int_equal(got.v, OCSP_REVOKED);
	assert_false(ocsp_cache_get(c, leaf2.cert, now + 100, &got));
	a.next_update = now + 10 * OCSP_CACHE_MAX_S;
	ocsp_cache_put(c, leaf2.cert, now, &a);
	assert_false(ocsp_cache_get(c, leaf2.cert, now + OCSP_CACHE_MAX_S, &got));
	/* "no answer" is never cached */
	a.v = OCSP_NO_ANSWER;
	ocsp_cache_put(c, delegated.cert, now, &a);
	assert_false(ocsp_cache_get(c, delegated.cert, now, &got));
	ocsp_cache_free(c);
	ocsp_cache_free(NULL);
}

static void test_key_display(void **state)
{
	char b[256];

	tls_key_display("/etc/key.pem", b, sizeof(b));
	assert_string_equal(b, "/etc/key.pem");
	tls_key_display("pkcs11:token=t;object=k;pin-value=1234", b, sizeof(b));
	assert_string_equal(b, "pkcs11:token=t;object=k;pin-value=***");
	tls_key_display("pkcs11:token=t?pin-value=1234&module-name=x", b, sizeof(b));
	assert_string_equal(b, "pkcs11:token=t?pin-value=***&module-name=x");
	tls_key_display("pkcs11:object=k?pin-source=file:/run/pin", b, sizeof(b));
	assert_string_equal(b, "pkcs11:object=k?pin-source=***");
	tls_key_display("pkcs11:pin-value=1234", b, 12);
	assert_null(strstr(b, "1234"));
}

/* What a reload watches: every file tls_ctx_build reads, never a pkcs11: URI. */
static void test_ctx_files(void **state)
{
	struct service_config s = { .cert = "c.pem", .key = "k.pem", .cacert = "ca.pem" };
	const char *f[TLS_CTX_FILES_MAX];

	assert_int_equal(tls_ctx_files(&s, f), 3);
	assert_string_equal(f[1], "k.pem");
	s.key = "pkcs11:token=t;object=k";
	s.key_password_file = "pin";
	s.ocsp_staple = "staple.der";
	assert_int_equal(tls_ctx_files(&s, f), 4);
	assert_string_equal(f[0], "c.pem");
	assert_string_equal(f[1], "ca.pem");
	assert_string_equal(f[2], "pin");
	assert_string_equal(f[3], "staple.der");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_revoked_unknown),
		cmocka_unit_test(test_signers),
		cmocka_unit_test(test_wrong_cert_and_time),
		cmocka_unit_test(test_nonce),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_key_display),
		cmocka_unit_test(test_ctx_files),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

// SPDX-License-Identifier: MIT
/*
 * OCSP responses from outside (a responder's reply, a staple file) through the one check
 * they all pass, ocsp_response_check: the input is the DER response. Besides not crashing,
 * no input may ever count: the harness's CA key is made at start and never leaves this
 * process, so nothing the fuzzer writes can be signed by it, and every verdict must be
 * "no answer", with a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "ocsp.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static X509 *ca, *leaf;
static OCSP_REQUEST *req;

static X509 *make(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
	X509 *x = X509_new();

	CHECK(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), issuer ? 2 : 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	CHECK(X509_sign(x, issuer_key, EVP_sha256()) > 0);
	return x;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *ck = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");

	CHECK(ck && lk);
	ca = make("fuzz ca", ck, NULL, ck);
	leaf = make("fuzz leaf", lk, ca, ck);
	req = OCSP_REQUEST_new();
	CHECK(req && OCSP_request_add1_nonce(req, NULL, -1));
	EVP_PKEY_free(ck);
	EVP_PKEY_free(lk);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	OCSP_RESPONSE *resp;
	struct ocsp_answer a;

	if (size > OCSP_RESP_MAX)
		return 0;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)size);
	if (!resp)
		return 0;
	ocsp_response_check(resp, (size & 1) ? req : NULL, leaf, ca, time(NULL), &a);
	CHECK(a.v == OCSP_NO_ANSWER);
	CHECK(a.why[0] && memchr(a.why, '\0', sizeof(a.why)));
	OCSP_RESPONSE_free(resp);
	return 0;
}

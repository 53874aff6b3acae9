// SPDX-License-Identifier: MIT
/*
 * OCSP: the one check every response goes through (ocsp_response_check), stapling our own
 * response, and fetching peers' answers over a non-blocking socket with OpenSSL's HTTP
 * client (OSSL_HTTP_REQ_CTX_nbio_d2i: it reads into its own buffer, bounded by
 * OCSP_RESP_MAX, and never waits; the loop waits instead, with io_uring polls).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "ocsp.h"

static void no_answer(struct ocsp_answer *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void no_answer(struct ocsp_answer *a, const char *fmt, ...)
{
	va_list ap;

	a->v = OCSP_NO_ANSWER;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
}

static const char *openssl_why(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown error";
}

static time_t asn1_to_time(const ASN1_GENERALIZEDTIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

/* Signed by the issuer, or by a responder the issuer made for it (OCSP signing EKU). */
static bool signer_ok(OCSP_BASICRESP *bs, X509 *issuer, struct ocsp_answer *ret)
{
	X509_STORE *store = X509_STORE_new();
	bool ok = false;

	if (!store || !X509_STORE_add_cert(store, issuer)) {
		no_answer(ret, "out of memory");
		goto out_free;
	}
	/* The issuer was just verified (handshake) or comes with our own cert: an anchor. */
	ok = OCSP_basic_verify(bs, NULL, store, OCSP_PARTIAL_CHAIN) > 0;
	if (!ok)
		no_answer(ret, "response not signed by the issuer or its OCSP responder: %s",
			  openssl_why());
out_free:
	X509_STORE_free(store);
	return ok;
}

/* Status of cert in bs and the times around it; false (ret says why) if it has none. */
static bool find_status(OCSP_BASICRESP *bs, X509 *cert, X509 *issuer, time_t now,
			struct ocsp_answer *ret)
{
	ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, issuer);
	int status, reason;
	time_t t0, t1;

	if (!id || !OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd)) {
		OCSP_CERTID_free(id);
		no_answer(ret, "response is not for this certificate");
		return false;
	}
	OCSP_CERTID_free(id);
	t0 = asn1_to_time(thisupd);
	t1 = nextupd ? asn1_to_time(nextupd) : 0;
	if (!t0 || (nextupd && !t1) || t0 > now + OCSP_SKEW_S) {
		no_answer(ret, "response not valid yet (thisUpdate in the future)");
		return false;
	}
	if (t1 && t1 < now - OCSP_SKEW_S) {
		no_answer(ret, "response expired (nextUpdate passed)");
		return false;
	}
	if (!t1 && t0 < now - OCSP_NONEXT_MAX_AGE_S) {
		no_answer(ret, "response without nextUpdate too old (thisUpdate over %d s ago)",
			  OCSP_NONEXT_MAX_AGE_S);
		return false;
	}
	ret->next_update = t1;
	if (status == V_OCSP_CERTSTATUS_GOOD) {
		ret->v = OCSP_GOOD;
	} else if (status == V_OCSP_CERTSTATUS_REVOKED) {
		ret->v = OCSP_REVOKED;
		snprintf(ret->why, sizeof(ret->why), "revoked (%s)",
			 reason >= 0 ? OCSP_crl_reason_str(reason) : "no reason given");
	} else {
		no_answer(ret, "responder does not know the certificate (status unknown)");
	}
	return true;
}

void ocsp_response_check(OCSP_RESPONSE *resp, OCSP_REQUEST *req, X509 *cert, X509 *issuer,
			 time_t now, struct ocsp_answer *ret)
{
	OCSP_BASICRESP *bs = NULL;
	int st = OCSP_response_status(resp);

	memset(ret, 0, sizeof(*ret));
	ERR_clear_error();
	if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		no_answer(ret, "responder answered %s", OCSP_response_status_str(st));
		return;
	}
	bs = OCSP_response_get1_basic(resp);
	if (!bs) {
		no_answer(ret, "not a basic OCSP response");
		goto out_free;
	}
	/* 1: echoed, -1: not echoed (precomputed responses), 2/3: none asked; 0: changed. */
	if (req && OCSP_check_nonce(req, bs) == 0) {
		no_answer(ret, "nonce does not match the request");
		goto out_free;
	}
	if (!signer_ok(bs, issuer, ret))
		goto out_free;
	find_status(bs, cert, issuer, now, ret);
out_free:
	OCSP_BASICRESP_free(bs);
	ERR_clear_error();
}

/* --- stapling ------------------------------------------------------------------------- */

struct staple {
	unsigned char *der;
	int len;
	time_t next_update; /* 0: none given */
	enum log_format fmt;
	char name[64];
	char path[256];
	atomic_bool stale_logged;
};

static pthread_once_t staple_once = PTHREAD_ONCE_INIT;
static int ctx_staple_idx = -1;

static void staple_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct staple *st = ptr;

	if (st)
		OPENSSL_free(st->der);
	free(st);
}

static void staple_idx_init(void)
{
	ctx_staple_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, staple_free);
}

/* The server's status_request callback: a fresh copy for OpenSSL to send and free. */
static int staple_cb(SSL *ssl, void *arg)
{
	struct staple *st = arg;
	unsigned char *copy;

	if (st->next_update && time(NULL) >= st->next_update) {
		if (!atomic_exchange(&st->stale_logged, true)) {
			struct log_kv kv[] = {
				{ "service", st->name },
				{ "file", st->path },
				{ "reason", "OCSP response past its nextUpdate: no longer stapled "
					    "until a fresh one is loaded" },
			};
			log_kv(st->fmt, "warn", "ocsp_staple_stale", kv, 3);
		}
		return SSL_TLSEXT_ERR_NOACK;
	}
	copy = OPENSSL_memdup(st->der, (size_t)st->len);
	if (!copy || !SSL_set_tlsext_status_ocsp_resp(ssl, copy, st->len)) {
		OPENSSL_free(copy);
		return SSL_TLSEXT_ERR_NOACK;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* The whole file, at most OCSP_RESP_MAX bytes. */
static int read_der(const char *path, unsigned char **ret, int *ret_len, char *err, size_t errlen)
{
	unsigned char *buf = OPENSSL_malloc(OCSP_RESP_MAX + 1);
	FILE *f = fopen(path, "rbe");
	size_t n = 0;
	int rc = -EINVAL;

	if (!buf || !f) {
		snprintf(err, errlen, "ocsp-staple %s: %s", path,
			 buf ? strerror(errno) : "out of memory");
		goto out;
	}
	n = fread(buf, 1, OCSP_RESP_MAX + 1, f);
	if (ferror(f))
		snprintf(err, errlen, "ocsp-staple %s: cannot read it", path);
	else if (n > OCSP_RESP_MAX)
		snprintf(err, errlen, "ocsp-staple %s: larger than %d bytes", path, OCSP_RESP_MAX);
	else if (!n)
		snprintf(err, errlen, "ocsp-staple %s: empty", path);
	else
		rc = 0;
out:
	if (f)
		fclose(f);
	if (rc) {
		OPENSSL_free(buf);
		return rc;
	}
	*ret = buf;
	*ret_len = (int)n;
	return 0;
}

/* The issuer of our certificate: in the chain file, or in the trust store. */
static X509 *own_issuer(SSL_CTX *ctx, X509 *cert)
{
	STACK_OF(X509) *chain = NULL;
	X509_STORE_CTX *xctx;
	X509 *issuer = NULL;

	SSL_CTX_get0_chain_certs(ctx, &chain);
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		if (X509_check_issued(c, cert) == X509_V_OK && X509_up_ref(c))
			return c;
	}
	xctx = X509_STORE_CTX_new();
	if (xctx && X509_STORE_CTX_init(xctx, SSL_CTX_get_cert_store(ctx), cert, NULL) &&
	    X509_STORE_CTX_get1_issuer(&issuer, xctx, cert) <= 0)
		issuer = NULL;
	X509_STORE_CTX_free(xctx);
	ERR_clear_error();
	return issuer;
}

/* Parses and checks der for the certificate in ctx; fills st->next_update. */
static int staple_check(SSL_CTX *ctx, const char *path, struct staple *st, char *err, size_t errlen)
{
	const unsigned char *p = st->der;
	OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, st->len);
	X509 *cert = SSL_CTX_get0_certificate(ctx), *issuer = NULL;
	struct ocsp_answer a;
	int rc = -EINVAL;

	if (!resp || p != st->der + st->len) {
		snprintf(err, errlen, "ocsp-staple %s: not a DER OCSP response", path);
		goto out_free;
	}
	issuer = cert ? own_issuer(ctx, cert) : NULL;
	if (!issuer) {
		snprintf(err, errlen,
			 "ocsp-staple %s: the issuer of cert is in neither the cert file's chain "
			 "nor cacert: cannot check the response",
			 path);
		goto out_free;
	}
	ocsp_response_check(resp, NULL, cert, issuer, time(NULL), &a);
	if (a.v == OCSP_GOOD) {
		st->next_update = a.next_update;
		rc = 0;
	} else {
		snprintf(err, errlen, "ocsp-staple %s: %s", path,
			 a.v == OCSP_REVOKED ? "the certificate is revoked" : a.why);
	}
out_free:
	X509_free(issuer);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return rc;
}

int ocsp_staple_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen)
{
	struct staple *st;
	int rc;

	if (!s->ocsp_staple)
		return 0;
	pthread_once(&staple_once, staple_idx_init);
	st = calloc(1, sizeof(*st));
	if (!st || ctx_staple_idx < 0) {
		free(st);
		snprintf(err, errlen, "ocsp-staple: out of memory");
		return -ENOMEM;
	}
	rc = read_der(s->ocsp_staple, &st->der, &st->len, err, errlen);
	if (!rc)
		rc = staple_check(ctx, s->ocsp_staple, st, err, errlen);
	if (!rc && !SSL_CTX_set_ex_data(ctx, ctx_staple_idx, st))
		rc = -ENOMEM;
	if (rc) {
		staple_free(NULL, st, NULL, 0, 0, NULL);
		return rc;
	}
	st->fmt = s->log_format;
	snprintf(st->name, sizeof(st->name), "%s", s->name);
	snprintf(st->path, sizeof(st->path), "%s", s->ocsp_staple);
	SSL_CTX_set_tlsext_status_cb(ctx, staple_cb);
	SSL_CTX_set_tlsext_status_arg(ctx, st);
	return 0;
}

/* --- checking peers ------------------------------------------------------------------- */

X509 *ocsp_peer_issuer(SSL *ssl, X509 *cert)
{
	STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
	X509_STORE_CTX *xctx;
	X509 *issuer = NULL;

	if (chain && sk_X509_num(chain) >= 2) {
		issuer = sk_X509_value(chain, 1);
		return X509_up_ref(issuer) ? issuer : NULL;
	}
	/* Resumed: no chain was verified this time; the store knows the issuer. */
	xctx = X509_STORE_CTX_new();
	if (xctx &&
	    X509_STORE_CTX_init(xctx, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), cert, NULL) &&
	    X509_STORE_CTX_get1_issuer(&issuer, xctx, cert) <= 0)
		issuer = NULL;
	X509_STORE_CTX_free(xctx);
	ERR_clear_error();
	return issuer;
}

struct ocsp_fetch {
	const struct service_config *s; /* outlives the fetch: the connection holds its service */
	unsigned ai;			/* which of the responder's addresses */
	int fd;
	bool connecting;
	BIO *bio;
	OSSL_HTTP_REQ_CTX *rctx;
	OCSP_REQUEST *req;
	X509 *cert, *issuer;
	char responder[128];
};

void ocsp_fetch_free(struct ocsp_fetch *f)
{
	if (!f)
		return;
	OSSL_HTTP_REQ_CTX_free(f->rctx);
	BIO_free(f->bio);
	if (f->fd >= 0)
		close(f->fd);
	OCSP_REQUEST_free(f->req);
	X509_free(f->cert);
	X509_free(f->issuer);
	free(f);
}

static OCSP_REQUEST *request_new(X509 *cert, X509 *issuer)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, issuer);

	if (!req || !id || !OCSP_request_add0_id(req, id)) {
		OCSP_CERTID_free(id);
		OCSP_REQUEST_free(req);
		return NULL;
	}
	/* The id belongs to req now. A nonce binds the answer to this request. */
	if (!OCSP_request_add1_nonce(req, NULL, -1)) {
		OCSP_REQUEST_free(req);
		return NULL;
	}
	return req;
}

/* The POST of f->req to s's responder, over f->bio. */
static int http_setup(struct ocsp_fetch *f, const struct service_config *s)
{
	OSSL_HTTP_REQ_CTX_free(f->rctx);
	BIO_free(f->bio);
	f->rctx = NULL;
	f->bio = BIO_new_socket(f->fd, BIO_NOCLOSE);
	if (!f->bio)
		return -ENOMEM;
	f->rctx = OSSL_HTTP_REQ_CTX_new(f->bio, f->bio, 0);
	if (!f->rctx || !OSSL_HTTP_REQ_CTX_set_request_line(f->rctx, 1, NULL, NULL, s->ocsp_path) ||
	    !OSSL_HTTP_REQ_CTX_add1_header(f->rctx, "Host", s->ocsp_host) ||
	    !OSSL_HTTP_REQ_CTX_set_expected(f->rctx, "application/ocsp-response", 1, 0, 0) ||
	    !OSSL_HTTP_REQ_CTX_set1_req(f->rctx, "application/ocsp-request",
					ASN1_ITEM_rptr(OCSP_REQUEST), (const ASN1_VALUE *)f->req))
		return -ENOMEM;
	OSSL_HTTP_REQ_CTX_set_max_response_length(f->rctx, OCSP_RESP_MAX);
	return 0;
}

/*
 * A non-blocking connect to the responder's address f->ai, or the next ones that fail at
 * once; the request is set up on the new socket. Returns 0 or the last -errno.
 */
static int fetch_connect(struct ocsp_fetch *f)
{
	const struct daemon_addr *a = &f->s->ocsp_addr;
	int rc = -ENOTCONN;

	for (; f->ai < a->n; f->ai++) {
		const struct sockaddr_storage *ss = &a->alt[f->ai].ss;

		if (f->fd >= 0)
			close(f->fd);
		f->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (f->fd < 0)
			return -errno;
		if (!connect(f->fd, (const struct sockaddr *)ss, a->alt[f->ai].len) ||
		    errno == EINPROGRESS) {
			f->connecting = true;
			return http_setup(f, f->s);
		}
		rc = -errno;
	}
	return rc;
}

int ocsp_fetch_fd(const struct ocsp_fetch *f)
{
	return f->fd;
}

int ocsp_fetch_start(const struct service_config *s, X509 *cert, X509 *issuer,
		     struct ocsp_fetch **ret_fetch, int *ret_fd, struct ocsp_answer *ans)
{
	const struct daemon_addr *a = &s->ocsp_addr;
	struct ocsp_fetch *f = calloc(1, sizeof(*f));
	int rc = -ENOMEM;

	memset(ans, 0, sizeof(*ans));
	if (!f)
		goto out_nomem;
	f->fd = -1;
	f->s = s;
	snprintf(f->responder, sizeof(f->responder), "%s", a->text);
	if (!X509_up_ref(cert))
		goto out_nomem;
	f->cert = cert;
	if (!X509_up_ref(issuer))
		goto out_nomem;
	f->issuer = issuer;
	f->req = request_new(cert, issuer);
	if (!f->req)
		goto out_nomem;
	rc = fetch_connect(f);
	if (rc == -ENOMEM)
		goto out_nomem;
	if (rc) {
		no_answer(ans, "responder %s: %s", f->responder, strerror(-rc));
		goto out_free;
	}
	*ret_fd = f->fd;
	*ret_fetch = f;
	return 0;

out_nomem:
	no_answer(ans, "out of memory");
out_free:
	ocsp_fetch_free(f);
	ERR_clear_error();
	return rc;
}

static enum ocsp_step fetch_failed(struct ocsp_fetch *f, struct ocsp_answer *ans, const char *what)
{
	no_answer(ans, "responder %s: %s", f->responder, what);
	ERR_clear_error();
	return OCSP_STEP_DONE;
}

enum ocsp_step ocsp_fetch_step(struct ocsp_fetch *f, int res, time_t now, struct ocsp_answer *ans)
{
	ASN1_VALUE *val = NULL;
	int r, soerr = 0;
	socklen_t sl = sizeof(soerr);

	memset(ans, 0, sizeof(*ans));
	if (res < 0)
		return fetch_failed(f, ans, strerror(-res));
	if (f->connecting) {
		if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
			soerr = errno;
		/* A name with several addresses (localhost: ::1, then 127.0.0.1): the next. */
		if (soerr && f->ai + 1 < f->s->ocsp_addr.n) {
			f->ai++;
			if (!fetch_connect(f))
				return OCSP_STEP_WRITE;
		}
		if (soerr)
			return fetch_failed(f, ans, strerror(soerr));
		f->connecting = false;
	}
	ERR_clear_error();
	r = OSSL_HTTP_REQ_CTX_nbio_d2i(f->rctx, &val, ASN1_ITEM_rptr(OCSP_RESPONSE));
	if (r < 0)
		return BIO_should_write(f->bio) ? OCSP_STEP_WRITE : OCSP_STEP_READ;
	if (r == 0 || !val)
		return fetch_failed(f, ans, openssl_why());
	ocsp_response_check((OCSP_RESPONSE *)val, f->req, f->cert, f->issuer, now, ans);
	OCSP_RESPONSE_free((OCSP_RESPONSE *)val);
	return OCSP_STEP_DONE;
}

/* --- cache ------------------------------------------------------------------------------ */

struct ocsp_entry {
	unsigned char fp[32]; /* SHA-256 of the certificate */
	time_t until;	      /* 0: empty */
	time_t next_update;
	bool revoked;
	char why[48];
};

struct ocsp_cache {
	unsigned cap;
	struct ocsp_entry e[];
};

struct ocsp_cache *ocsp_cache_new(unsigned cap)
{
	struct ocsp_cache *c;

	if (!cap)
		cap = 1;
	c = calloc(1, sizeof(*c) + cap * sizeof(c->e[0]));
	if (c)
		c->cap = cap;
	return c;
}

void ocsp_cache_free(struct ocsp_cache *c)
{
	free(c);
}

static struct ocsp_entry *cache_slot(struct ocsp_cache *c, X509 *cert, unsigned char fp[32])
{
	unsigned int n = 32;
	uint32_t h;

	if (!X509_digest(cert, EVP_sha256(), fp, &n) || n != 32)
		return NULL;
	memcpy(&h, fp, sizeof(h));
	return &c->e[h % c->cap];
}

bool ocsp_cache_get(struct ocsp_cache *c, X509 *cert, time_t now, struct ocsp_answer *ret)
{
	unsigned char fp[32];
	struct ocsp_entry *e = c ? cache_slot(c, cert, fp) : NULL;

	if (!e || !e->until || e->until <= now || memcmp(e->fp, fp, 32))
		return false;
	memset(ret, 0, sizeof(*ret));
	ret->v = e->revoked ? OCSP_REVOKED : OCSP_GOOD;
	ret->next_update = e->next_update;
	snprintf(ret->why, sizeof(ret->why), "%s", e->why);
	return true;
}

void ocsp_cache_put(struct ocsp_cache *c, X509 *cert, time_t now, const struct ocsp_answer *a)
{
	unsigned char fp[32];
	struct ocsp_entry *e;
	time_t until;

	if (!c || a->v == OCSP_NO_ANSWER)
		return;
	e = cache_slot(c, cert, fp);
	if (!e)
		return;
	until = now + (a->next_update ? OCSP_CACHE_MAX_S : OCSP_CACHE_NONEXT_S);
	if (a->next_update && a->next_update < until)
		until = a->next_update;
	if (until <= now)
		return;
	memcpy(e->fp, fp, 32);
	e->until = until;
	e->next_update = a->next_update;
	e->revoked = a->v == OCSP_REVOKED;
	snprintf(e->why, sizeof(e->why), "%.47s", a->why);
}

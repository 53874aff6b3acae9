/* SPDX-License-Identifier: MIT */
/*
 * OCSP (RFC 6960), both ways: stapling a response for our own certificate (a DER file the
 * operator's tooling refreshes; reloaded with the service), and checking a peer's
 * certificate against a responder over plain HTTP without ever blocking a worker (the
 * loop polls the fetch's socket with io_uring, as it does the handshake's).
 *
 * Trust: a response counts only if it parses, is signed by the certificate's issuer or by
 * a responder the issuer delegated (OCSP signing EKU, RFC 6960 4.2.2.2), names exactly this
 * certificate, and is current (thisUpdate <= now <= nextUpdate, 5 minutes of clock skew).
 * Anything else is "no answer": never good.
 */
#ifndef KTLSD_DAEMON_OCSP_H
#define KTLSD_DAEMON_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>

#include "config.h"

/* A response larger than this is refused, read from a file or from a responder. */
#define OCSP_RESP_MAX (64 * 1024)
/* Clock skew allowed on thisUpdate/nextUpdate. */
#define OCSP_SKEW_S 300
/* How long a good or revoked answer is cached at most, and without a nextUpdate. */
#define OCSP_CACHE_MAX_S    3600
#define OCSP_CACHE_NONEXT_S 300
/* A response without nextUpdate is only news while fresh: older ones may be replays of a
 * "good" from before the revocation (plain HTTP, the nonce is optional). */
#define OCSP_NONEXT_MAX_AGE_S 600

enum ocsp_verdict {
	OCSP_GOOD,
	OCSP_REVOKED,
	OCSP_NO_ANSWER, /* unknown status, invalid response, responder down or slow */
};

struct ocsp_answer {
	enum ocsp_verdict v;
	time_t next_update; /* 0: the response had none */
	char why[200];	    /* OCSP_NO_ANSWER: what went wrong; OCSP_REVOKED: the reason */
};

/*
 * Checks resp for cert (issued by issuer) at time now, as described above. req: the
 * request it answers (its nonce must come back unchanged, or not at all: responders that
 * serve precomputed responses never echo one), or NULL for a stapled file. Fills *ret.
 */
void ocsp_response_check(OCSP_RESPONSE *resp, OCSP_REQUEST *req, X509 *cert, X509 *issuer,
			 time_t now, struct ocsp_answer *ret);

/* --- stapling (server) ------------------------------------------------------------------ */

/*
 * Loads s->ocsp_staple for the certificate already in ctx and staples it whenever a client
 * asks (status_request). The response must be good for that certificate now; otherwise
 * -EINVAL with the reason in err. Once its nextUpdate passes while running, it is no
 * longer stapled (one warning line): a stale response is never sent.
 */
int ocsp_staple_setup(SSL_CTX *ctx, const struct service_config *s, char *err, size_t errlen);

/* --- checking peers ------------------------------------------------------------------- */

/*
 * The issuer of the peer's certificate for ssl after a handshake: from the verified chain,
 * or (resumption: none) looked up in the trust store. A new reference, or NULL.
 */
X509 *ocsp_peer_issuer(SSL *ssl, X509 *cert);

/* One request to the responder in flight, on a non-blocking socket. */
struct ocsp_fetch;

enum ocsp_step { OCSP_STEP_READ, OCSP_STEP_WRITE, OCSP_STEP_DONE };

/*
 * Starts asking s's responder about cert: connects (non-blocking) and prepares the POST.
 * Returns 0 with *ret_fetch, and *ret_fd to poll for POLLOUT first; or -errno with ans
 * filled (OCSP_NO_ANSWER).
 */
int ocsp_fetch_start(const struct service_config *s, X509 *cert, X509 *issuer,
		     struct ocsp_fetch **ret_fetch, int *ret_fd, struct ocsp_answer *ans);
/* The socket is ready (res: the poll's result): goes on; DONE fills ans. */
enum ocsp_step ocsp_fetch_step(struct ocsp_fetch *f, int res, time_t now, struct ocsp_answer *ans);
/* The socket to poll now: it changes when the next address is tried. */
int ocsp_fetch_fd(const struct ocsp_fetch *f);
/* Closes the socket too. NULL is fine. */
void ocsp_fetch_free(struct ocsp_fetch *f);

/* A worker's answers, keyed by certificate (SHA-256), direct-mapped: bounded, no lock. */
struct ocsp_cache;

struct ocsp_cache *ocsp_cache_new(unsigned cap);
void ocsp_cache_free(struct ocsp_cache *c);
/* A cached GOOD or REVOKED answer for cert still in date, or false. */
bool ocsp_cache_get(struct ocsp_cache *c, X509 *cert, time_t now, struct ocsp_answer *ret);
/* Keeps a GOOD or REVOKED answer until its nextUpdate (at most OCSP_CACHE_MAX_S). */
void ocsp_cache_put(struct ocsp_cache *c, X509 *cert, time_t now, const struct ocsp_answer *a);

#endif

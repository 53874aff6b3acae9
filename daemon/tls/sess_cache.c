// SPDX-License-Identifier: MIT
/* Client-side session cache: a ring of SSL_SESSION references (see sess_cache.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/x509.h>

#include "sess_cache.h"

int sess_cache_init(struct sess_cache *sc, unsigned cap)
{
	SSL_SESSION **s;

	if (cap == 0)
		return -EINVAL;
	s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(sc, 0, sizeof(*sc));
	sc->s = s;
	sc->cap = cap;
	return 0;
}

void sess_cache_clear(struct sess_cache *sc)
{
	unsigned i;

	for (i = 0; i < sc->n; i++)
		SSL_SESSION_free(sc->s[(sc->head + i) % sc->cap]);
	free(sc->s);
	memset(sc, 0, sizeof(*sc));
}

void sess_cache_put(struct sess_cache *sc, SSL_SESSION *s)
{
	if (!s)
		return;
	/* Holding what cannot resume would only push out sessions that can. */
	if (sc->cap == 0 || !SSL_SESSION_is_resumable(s)) {
		SSL_SESSION_free(s);
		return;
	}
	if (sc->n == sc->cap) {
		SSL_SESSION_free(sc->s[sc->head]);
		sc->s[sc->head] = NULL;
		sc->head = (sc->head + 1) % sc->cap;
		sc->n--;
		sc->evicted++;
	}
	sc->s[(sc->head + sc->n) % sc->cap] = s;
	sc->n++;
}

/*
 * The server would refuse an expired session or one whose certificate has expired (and
 * offering it costs a round of ticket bytes for nothing), so such sessions are dropped
 * here. Age is compared by subtraction: time + timeout can overflow for huge timeouts.
 */
static bool usable(SSL_SESSION *s, time_t now)
{
	X509 *peer = SSL_SESSION_get0_peer(s);

	if (!SSL_SESSION_is_resumable(s))
		return false;
	if ((int64_t)now - (int64_t)SSL_SESSION_get_time(s) >= (int64_t)SSL_SESSION_get_timeout(s))
		return false;
	/* X509_cmp_time: 1 when notAfter is after now, -1 when not, 0 when unparseable. */
	if (peer && X509_cmp_time(X509_get0_notAfter(peer), &now) <= 0)
		return false;
	return true;
}

SSL_SESSION *sess_cache_take(struct sess_cache *sc, time_t now)
{
	while (sc->n > 0) {
		unsigned i = (sc->head + sc->n - 1) % sc->cap;
		SSL_SESSION *s = sc->s[i];

		sc->s[i] = NULL;
		sc->n--;
		if (usable(s, now)) {
			sc->hits++;
			return s;
		}
		SSL_SESSION_free(s);
	}
	sc->misses++;
	return NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * Client-side session cache: the tickets one worker holds for one client service, so the
 * next connection to that backend can resume instead of doing a full handshake.
 *
 * A bounded ring, newest taken first (the freshest ticket has the most lifetime left).
 * Taking removes: TLS 1.3 tickets are single-use (RFC 8446 C.4), and the connection that
 * resumes gets new ones to put back. Not thread-safe by design: each worker thread owns
 * its own caches, so the data path takes no lock.
 */
#ifndef KTLSD_DAEMON_SESS_CACHE_H
#define KTLSD_DAEMON_SESS_CACHE_H

#include <stdint.h>
#include <time.h>
#include <openssl/ssl.h>

struct sess_cache {
	SSL_SESSION **s; /* ring, oldest first */
	unsigned n, cap, head;
	uint64_t hits, misses, evicted;
};

/* cap: at most this many sessions (>= 1). Returns 0, -EINVAL or -ENOMEM. */
int sess_cache_init(struct sess_cache *sc, unsigned cap);
/* Frees all sessions and the array; sc is left empty (cap 0: put then frees at once). */
void sess_cache_clear(struct sess_cache *sc);

/*
 * Takes over the caller's reference to s. A non-resumable session is freed at once. When
 * full, the oldest is evicted (SSL_SESSION_free) and counted in evicted.
 */
void sess_cache_put(struct sess_cache *sc, SSL_SESSION *s);

/*
 * The newest session still usable at time now (the caller's reference, removed from the
 * cache), or NULL. Discards on the way those that are not: SSL_SESSION_get_time +
 * get_timeout <= now, !SSL_SESSION_is_resumable, or a peer certificate whose notAfter is
 * not after now. Counts a hit or a miss.
 */
SSL_SESSION *sess_cache_take(struct sess_cache *sc, time_t now);

#endif

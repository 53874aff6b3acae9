/* SPDX-License-Identifier: MIT */
/*
 * Server session-ticket keys of one service, rotated without a timer thread.
 *
 * A key is {16-byte random name, AES-256-CBC key, HMAC-SHA256 key, creation time}. The
 * current key encrypts tickets for lifetime_s after its creation; the first ticket asked
 * for after that rotates (lazily, on whichever worker thread issues it). A retired key
 * still decrypts until lifetime_s after its nominal retirement, i.e. until 2 * lifetime_s
 * after its creation: every ticket it sealed was issued before creation + lifetime_s and
 * so stays usable for its whole lifetime, and not a second longer. At most two keys can be
 * valid at once, so the ring is current + previous. Keys live in memory only (a restart
 * means full handshakes, which is the point: nothing on disk can decrypt old tickets) and
 * are wiped when replaced and on free. The ring lives in secmem pages: no core file holds
 * it, nor does a forked child; the callback's copy on the stack is wiped before it returns.
 *
 * One ticket_keys is shared by all worker threads serving the service: a mutex covers
 * the ring, held only to look up or copy a key, never across EVP calls.
 */
#ifndef KTLSD_DAEMON_TICKET_KEYS_H
#define KTLSD_DAEMON_TICKET_KEYS_H

#include <stdint.h>
#include <time.h>
#include <openssl/ssl.h>

/* RFC 8446 4.6.1: a ticket lifetime above 7 days is not allowed. */
#define TICKET_KEYS_MAX_LIFETIME 604800u

struct ticket_keys;

/*
 * lifetime_s: ticket lifetime, 1..TICKET_KEYS_MAX_LIFETIME. Keys rotate every lifetime_s
 * and a retired key still decrypts for one more lifetime_s, then is destroyed. Returns 0,
 * -EINVAL (lifetime out of range), -ENOMEM, -ENOTSUP (no AES-256-CBC in the default
 * provider) or -EIO (the random generator failed).
 */
int ticket_keys_new(unsigned lifetime_s, struct ticket_keys **ret_tk);
void ticket_keys_free(struct ticket_keys *tk); /* NULL ok */

/*
 * Installs the ticket callback on ctx using tk and sets SSL_CTX_set_timeout(ctx,
 * lifetime_s). tk must outlive every use of ctx. The callback finds tk through ctx's
 * ex_data, so SSLs must run on ctx itself (not switched to another SSL_CTX by SNI).
 * Tickets must still be enabled on ctx (no SSL_OP_NO_TICKET, SSL_CTX_set_num_tickets > 0).
 * Returns 0 or -ENOMEM/-EINVAL.
 */
int ticket_keys_attach(SSL_CTX *ctx, struct ticket_keys *tk);

/*
 * Tests: replace the clock (default: time()). Call right after ticket_keys_new, before
 * attach: the current key is re-dated to the new clock's now, as the one made by
 * ticket_keys_new was dated by the old clock.
 */
void ticket_keys_set_clock(struct ticket_keys *tk, time_t (*now)(void));

/* Tests/metrics: number of rotations done so far. */
uint64_t ticket_keys_rotations(const struct ticket_keys *tk);

#endif

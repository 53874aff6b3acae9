/* SPDX-License-Identifier: MIT */
/*
 * The relays (struct relay_ops, loop/relay.h) and relay_begin, which the runtime hands
 * the loop: the PROXY v2 header first where configured, then kTLS where the service uses
 * it and the connection allows it, else the userspace relay.
 */
#ifndef KTLSD_DAEMON_RELAYS_H
#define KTLSD_DAEMON_RELAYS_H

#include <stdbool.h>

#include "conn.h"
#include "relay.h"

/* The relays' io_uring ops, numbered from the range the loop leaves them. */
enum relay_op {
	OP_US_T2P = OP_RELAY, /* userspace relay: poll for the TLS peer -> plaintext direction */
	OP_US_P2T,	      /* ... and plaintext -> TLS peer */
	OP_SPLICE_T_IN,	      /* kTLS relay: TLS socket -> pipe (kernel decrypts) */
	OP_SPLICE_P_OUT,      /* pipe -> plaintext socket */
	OP_SPLICE_P_IN,	      /* plaintext socket -> pipe */
	OP_SPLICE_T_OUT,      /* pipe -> TLS socket (kernel encrypts) */
	OP_KPOLL_T2P,	      /* kTLS relay: a splice of this direction hit EAGAIN, wait */
	OP_KPOLL_P2T,
	OP_KPOLL_SPLIT, /* kTLS TX only so far: wait for the server's tickets / first data */
	OP_SM_POLL,	/* sockmap: the plaintext side's end (POLLRDHUP) or error */
	OP_SM_DRAIN,	/* sockmap: that end came; wait for the forwarded bytes to reach TLS */
};

extern const struct relay_ops relay_us_ops;
extern const struct relay_ops relay_rec_ops;
extern const struct relay_ops relay_ktls_ops;
extern const struct relay_ops relay_sockmap_ops; /* relay_ktls.c, with relay_sockmap.c */

void relay_begin(struct worker *w, struct conn *c);

/* relay_ktls_ops.start failed with err: may c go on in userspace (logs why where it
 * matters)? */
bool relay_ktls_fallback_ok(struct worker *w, struct conn *c, int err);

/*
 * SSL_read on c returned ret with neither WANT_* nor close_notify (errno zeroed before
 * the call). 0: the peer closed TCP without close_notify, which ends the TLS -> plaintext
 * direction (c->t2p.eof), counted and logged as a truncation; -EPIPE: any other failure,
 * and c has been failed with its reason.
 */
int relay_tls_read_end(struct worker *w, struct conn *c, int ret);

/*
 * The destination has taken everything buffered for d: make ready for the next read. 0:
 * a buffer is there; -ENODATA: the source had ended, so the destination's write side is
 * now shut (shut_dst, once) and the connection may be done; -ENOMEM: no buffer, and c has
 * been failed. Either error: stop pumping. (The userspace relays.)
 */
/*
 * The keys are libktls's now (the kernel's, or its userspace records'): keep no SSL
 * (memory per idle connection). Freed without SSL_shutdown, OpenSSL would take the session
 * for a broken one and mark the client's newest ticket unusable; nothing is broken, so say
 * the shutdown is done. Nothing goes to the peer.
 */
void relay_ssl_handed_over(struct conn *c);

/* OpenSSL's TLS -> plaintext pump (relay_us.c), until it would block: also the records
 * relay's while a client reads its tickets. */
void relay_us_pump_t2p(struct worker *w, struct conn *c);

/*
 * Sends what d holds from d->off on: t2p to the plaintext side (counted as moved), p2t to
 * the TLS side (already counted when sealed). 0: some went out; -EAGAIN: stop pumping, a
 * POLLOUT poll (op) is queued or c has been failed.
 */
int relay_send_some(struct worker *w, struct conn *c, struct dir *d, unsigned op);
/* The plaintext side's write side: its source ended. */
void relay_shut_plain(struct conn *c);

int relay_dir_next(struct worker *w, struct conn *c, struct dir *d,
		   void (*shut_dst)(struct conn *c));

#endif

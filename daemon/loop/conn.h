/* SPDX-License-Identifier: MIT */
/*
 * A connection and what may be done to it: the API the loop and the relays share. A
 * connection lives in a slot of its worker's table and is freed only once no operation
 * queued for it is in flight (pending == 0); everything here runs on that worker's thread
 * (a handshake step excepted: hs_out below).
 */
#ifndef KTLSD_DAEMON_CONN_H
#define KTLSD_DAEMON_CONN_H

#include <linux/time_types.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "log.h"
#include "ring.h"
#include "service.h"
#include "tlsctx.h"

struct ktls_conn;
struct ocsp_fetch;
struct relay_ops;
struct sess_cache;

#define RELAY_BUF (64 * 1024)

/* One direction of a relay. */
struct sockmap_conn;

struct dir {
	uint8_t *buf; /* userspace: pooled, held only while bytes are in flight */
	uint32_t len, off;
	/* Userspace records, TLS -> plaintext: received records (pooled, held while a record
	 * is incomplete or unopened), rlen bytes of which roff are done. */
	uint8_t *rbuf;
	uint32_t rlen, roff;
	uint32_t dirty; /* how much of buf has held plaintext since it was taken */
	int pipe[2];	/* kTLS: socket -> pipe -> socket, pooled: held while bytes move */
	uint32_t in_pipe, pipe_sz;
	bool eof;	/* source finished */
	bool shut;	/* destination's write side shut (close_notify / FIN sent) */
	bool busy;	/* an operation of this direction is in flight */
	bool writing;	/* kTLS: that operation is a splice into the destination socket */
	bool kernel;	/* sockmap: the kernel forwards this direction, ktlsd watches for its end */
	bool cn_queued; /* userspace records: our close_notify is the last record in buf */
	uint64_t bytes;
};

struct conn {
	uint32_t idx, gen;
	uint16_t pending; /* operations in flight: the slot lives until they all completed */
	bool hs_done, connected, closing, timeout_armed, ktls, counted, fin_without_close_notify,
		cancels_queued, resumed;
	bool in_hs;	  /* counted in svc->handshakes (and the source table where src_counted) */
	bool src_counted; /* counted under src in the worker's per-source table */
	bool relaying;	  /* past the handshake: the idle sweep watches last_io_ns */
	uint8_t src[16];  /* the client's address (IPv6, or IPv4-mapped) for per-source limits */
	uint64_t last_io_ns; /* when bytes last moved either way (the worker's coarse clock) */
	uint8_t addr_i;	     /* which of the target's resolved addresses is being tried */
	struct service *svc; /* held: the service this connection started with */
	uint16_t si;	     /* its slot in the runtime's services (per-worker state) */
	const struct relay_ops *relay; /* set once a relay has taken the connection */
	/*
	 * Server mode: tfd is the accepted client, pfd the backend. Client mode mirrors it:
	 * pfd is the accepted local app, tfd the connection to the remote TLS server. All
	 * code past the handshake only knows "TLS side" and "plaintext side".
	 */
	int tfd, pfd;
	SSL *ssl;
	struct ktls_conn *kc;
	struct sockmap_conn *smc; /* the sockmap relay's map entries (relay/relay_sockmap.c) */
	struct __kernel_timespec deadline;
	struct dir t2p, p2t; /* TLS peer -> plaintext side, and back */
	uint64_t t_start_ns;
	uint64_t hs_start_ns; /* the TLS handshake's first step (client mode: after connect) */
	const char *version, *cipher; /* OpenSSL's static strings */
	char peer[56];		      /* "[v6addr]:port" at most */
	char dst[56];		      /* --intercept: the address the client dialled */
	char *reason;		      /* set once, when the connection ends */
	const char *note;	      /* why kTLS was not used (static text) */
	struct tls_peer id;
	/* The peer's certificates (DER, leaf first) from the end of the handshake: what a
	 * reload judges again (peer_chain.h); the SSL itself may be gone (kTLS). */
	uint8_t *peer_der;
	uint32_t peer_der_len;
	/* The peer's OCSP check (ocsp_check.c), between the handshake and the connect. */
	struct ocsp_fetch *ocsp; /* in flight, with its socket ofd */
	int ofd;
	uint64_t ocsp_deadline_ns;
	struct __kernel_timespec ocsp_ts; /* the poll's linked timeout */
	uint64_t ops_used; /* bit op: op was queued for c (conn_sqe); what conn_fail cancels */
	bool ops_wide;	   /* an op >= 64 was queued: ops_used cannot name it */
	/*
	 * A handshake step on the worker's handshake thread (hs_thread.c), counted in pending
	 * meanwhile. While hs_out, ssl, id, hs_start_ns and the hs_ fields below are that
	 * thread's: the worker reads none of them (and frees nothing) until the step is back.
	 */
	bool hs_out;	       /* the worker's: the step is queued, running or done */
	atomic_bool hs_cancel; /* the worker ended c: a step not yet begun is skipped */
	uint8_t hs_res;	       /* enum hs_result (handshake.c): what the step came to */
	uint8_t hs_class;      /* enum hs_reason of a failed step */
	char *hs_why;	       /* a failed step's reason (NULL: out of memory) */
	SSL_SESSION *hs_sess;  /* client: the ticket to offer, taken from the worker's cache */
	struct conn *hs_next;  /* on the handshake thread's queue or done list */
};

/* Words for log lines: who is on each side of c. */
static inline const char *conn_tls_side(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER ? "client" : "server";
}

static inline const char *conn_plain_side(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER ? "backend" : "app";
}

static inline bool conn_is_server(const struct conn *c)
{
	return c->svc->cfg->role == ROLE_SERVER;
}

/* A new connection in a free slot of w's table, or NULL (out of memory). */
struct conn *conn_new(struct worker *w);
/* Ends c with reason (first one wins); safe to call repeatedly. c is freed later, by the
 * loop, once nothing is pending for it. */
void conn_fail(struct worker *w, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Both directions finished: ends c as closed (or truncated, where it was). */
void conn_maybe_done(struct worker *w, struct conn *c);
/* Frees c if it has ended and nothing is pending: the end of every entry point. */
void conn_check_free(struct worker *w, struct conn *c);
/* Frees c now (the ring is gone, or will not complete anything for it), logging its end. */
void conn_release_now(struct worker *w, struct conn *c, const char *reason);
/* Waits (io_uring poll) for mask on fd; op comes back to whoever owns it. */
void conn_poll(struct worker *w, struct conn *c, unsigned op, int fd, unsigned mask);
/* Bytes moved on c (either way): the idle sweep measures from here. */
void conn_touch(const struct worker *w, struct conn *c);
/* ops takes c over: set once, counted in the service's gauge for ops' kind until c ends. */
void conn_set_relay(struct worker *w, struct conn *c, const struct relay_ops *ops);
/* n plaintext bytes went through d: c's count and its service's bytes in (t2p) or out. */
void conn_moved(const struct worker *w, struct conn *c, struct dir *d, uint64_t n);
/* Counts k for c's service, in this worker's statistics. */
void conn_count(const struct worker *w, struct conn *c, enum service_stat k);
/* A log line in the daemon's format. */
void conn_log(const struct worker *w, const char *level, const char *event, const struct log_kv *kv,
	      int n);
/* c leaves the handshake phase (its relay starts, or it ended): room for the next one. */
void conn_hs_end(struct worker *w, struct conn *c);

/*
 * Relay buffers: RELAY_BUF bytes from a small per-worker pool of secmem pages, wiped when
 * they go back (the d->dirty bytes the relay wrote). conn_buf_get returns NULL when out
 * of memory; conn_buf_put takes a direction without a buffer.
 */
uint8_t *conn_buf_get(struct worker *w);
void conn_buf_put(struct worker *w, struct dir *d);
/* d->buf holds plaintext up to len now (d->len): what conn_buf_put must wipe. */
static inline void conn_buf_filled(struct dir *d, uint32_t len)
{
	d->len = len;
	if (d->len > d->dirty)
		d->dirty = d->len;
}
void conn_buf_pool_free(struct worker *w);

/*
 * Splice pipes for the kTLS relay, from a per-worker pool, so that a connection holds a
 * pipe only while bytes are in flight (an idle one holds its two sockets and nothing
 * else). conn_pipe_get gives d an empty pipe (O_NONBLOCK, PIPE_SZ asked for: d->pipe_sz
 * is what the kernel granted) or -errno; conn_pipe_put takes d's pipe back into the pool
 * only if it is empty (by d->in_pipe and FIONREAD), else closes it: one
 * connection's bytes never reach another. Both take a d without a pipe.
 */
#define PIPE_SZ	      (64u << 10)
#define PIPE_POOL_MAX 64 /* pipes kept per worker: 128 descriptors (cmd_server.c) */
int conn_pipe_get(struct worker *w, struct dir *d);
void conn_pipe_put(struct worker *w, struct dir *d);
void conn_pipe_pool_free(struct worker *w);

/* This worker's ticket cache for c's service, or NULL (server, or resumption off). */
struct sess_cache *conn_sess_cache(struct worker *w, const struct conn *c);

#endif

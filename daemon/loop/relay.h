/* SPDX-License-Identifier: MIT */
/*
 * What the loop knows of a relay: four calls. The loop never names a relay; the runtime
 * (cli) hands it the function that starts one (struct runtime.relay_begin), which sets
 * c->relay. From then on completions of ops >= OP_RELAY go to c->relay->on_cqe, an ending
 * connection's close_notify goes through close_notify, and its resources through release.
 */
#ifndef KTLSD_DAEMON_RELAY_H
#define KTLSD_DAEMON_RELAY_H

struct worker;
struct conn;

struct relay_ops {
	/* How every view calls it, as --relay does: conn_end lines, /metrics, /connections
	 * ("splice", "sockmap", "userspace"); and the service gauge (enum service_gauge) of
	 * the connections it carries. */
	const char *kind;
	int gauge;
	/* Who protects the records once it runs: "kernel" (kTLS), "ktlsd" (libktls's
	 * userspace records) or "openssl" (the SSL kept): conn_end's records=. */
	const char *records;
	/* Takes c over once the handshake and the target connect are done. 0: relaying; <0:
	 * c was not touched (the caller may try another relay) or has been failed. */
	int (*start)(struct worker *w, struct conn *c);
	/* A completion of one of this relay's ops (op >= OP_RELAY) for c. */
	void (*on_cqe)(struct worker *w, struct conn *c, unsigned op, int res);
	/* c is ending with its TLS session up: tell the peer (close_notify), best effort. */
	void (*close_notify)(struct worker *w, struct conn *c);
	/* c is being freed: drop what the relay holds for it. */
	void (*release)(struct worker *w, struct conn *c);
	/* Optional: c looks idle to the sweep, but bytes may move where the loop does not see
	 * them (the sockmap relay): bring c->last_io_ns up to date before it decides. */
	void (*refresh_idle)(struct worker *w, struct conn *c);
};

#endif

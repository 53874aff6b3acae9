/* SPDX-License-Identifier: MIT */
/*
 * `ktlsd agent`: serves the kernel's TLS handshake upcalls (NFS xprtsec=tls|mtls, NVMe/TCP)
 * with OpenSSL in one io_uring loop, many handshakes in flight, no fork. Needs Linux 6.5+
 * (the "handshake" netlink family); kTLS install through libktls.
 */
#ifndef KTLSD_DAEMON_AGENT_H
#define KTLSD_DAEMON_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "log.h"
#include "upcall_nl.h"

/* The TLS side, built once by the caller (cmd_agent.c) with tls_ctx_build. */
struct agent_tls {
	SSL_CTX *server;      /* serverhello requests (nfsd); NULL: refused, no --cert */
	SSL_CTX *client;      /* clienthello requests (NFS client); NULL: refused */
	bool client_cert;     /* client has --client-cert: used where the consumer asks x509 */
	bool verify_peername; /* no --verify-* rule: the server must match the kernel's PEERNAME */
	const char *psk_keyring; /* PSKs where the kernel names no KEYRING (default ".nvme") */
};

struct filewatch;

/*
 * Reload: SIGHUP, or a change of a watched file once its debounce ran out, calls fn on the
 * agent's own thread between completions. fn may therefore swap the contexts in the
 * agent_tls the loop reads without a lock (a handshake in flight holds its SSL_CTX by
 * reference, through its SSL) and may set up watch's inotify anew.
 */
struct agent_reload {
	struct filewatch *watch; /* its inotify and timer join the loop; NULL: SIGHUP only */
	void (*fn)(void *arg, const char *why);
	void *arg;
};

struct agent_opts {
	unsigned max_handshakes; /* in flight at once; more stay queued in the kernel */
	unsigned timeout_ms;	 /* used where the kernel gives no TIMEOUT, and the cap on it */
	enum log_format log_format;
	const struct agent_reload *reload; /* NULL: no reload */
	/* Once the ring exists, limited to the agent's operations: the sandbox's last step
	 * (no further io_uring). 0, or -errno to stop the agent. NULL: nothing. */
	int (*ring_ready)(void *arg);
	void *ring_arg;
};

/*
 * Counters the admin room can expose (service="agent"); written by the agent's one thread,
 * read as plain 64-bit loads.
 */
struct agent_stats {
	uint64_t accepted;    /* requests taken with ACCEPT */
	uint64_t ok;	      /* DONE with status 0 */
	uint64_t refused;     /* peer certificate untrusted or not allowed by the rules */
	uint64_t failed;      /* any other handshake failure */
	uint64_t timeouts;    /* the request's TIMEOUT passed */
	uint64_t unsupported; /* a request this agent cannot serve (no certificate for the role) */
	uint64_t ktls_errors; /* handshake done, kTLS install failed */
	uint64_t done_errors; /* the kernel refused our DONE (consumer gave up meanwhile) */
	uint64_t peer_keys;   /* REMOTE_AUTH keys added */
	uint64_t in_flight;
};

/*
 * Runs until SIGINT/SIGTERM (SIGHUP: reload), then finishes (fails) the handshakes in flight so every
 * ACCEPT gets its DONE. Returns 0, or -errno if the loop could not be set up.
 */
int agent_run(const struct agent_opts *o, const struct agent_tls *tls, struct upcall_nl *nl,
	      struct agent_stats *stats);

#endif

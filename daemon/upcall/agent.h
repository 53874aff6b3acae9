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
#include <stdio.h>
#include <openssl/ssl.h>

#include "hs_want.h"
#include "log.h"
#include "service.h"
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

/* Who asked for a handshake (the well-known port tells: 2049, 4420; else tlshd). */
enum agent_consumer { AGENT_NFS, AGENT_NVME, AGENT_TLSHD, AGENT_CONSUMER_MAX };
/* How a request ended, as the agent_handshake log line's outcome= says it. */
enum agent_outcome {
	AGENT_OK,
	AGENT_REFUSED,
	AGENT_FAILED,
	AGENT_TIMEOUT,
	AGENT_UNSUPPORTED,
	AGENT_OUTCOME_MAX
};

/*
 * The agent's counts, for /metrics (ktlsd agent --admin). Everything a proxied service
 * counts goes to svc (service="agent", stats block 0: ktlsd_handshakes_total by reason, the
 * duration histogram, kTLS installs, requests in flight as connections_active{relay=
 * "handshake"}), so the admin room writes it unchanged; what only the agent has is here.
 * Written by the agent's one thread with relaxed stores, read by the admin thread with
 * relaxed loads: no lock, no read-modify-write on the handshake path.
 */
struct agent_stats {
	struct service *svc; /* held; NULL: counted nowhere but here */
	_Atomic uint64_t hs[AGENT_CONSUMER_MAX][2][AGENT_OUTCOME_MAX]; /* [.][server][.] */
	_Atomic uint64_t done_errors; /* the kernel refused our DONE (consumer gave up) */
	_Atomic uint64_t peer_keys;   /* REMOTE_AUTH keys added */
};

/* One request that ended (agent_stats_end). */
struct agent_end {
	const char *consumer; /* "nfs", "nvme", "tlshd" */
	bool server;
	const char *outcome;   /* "ok", "refused", "failed", "timeout", "unsupported" */
	enum hs_reason reason; /* what /metrics says for a failed one */
	uint64_t us;	       /* from ACCEPT to the end */
	int done_rc;	       /* upcall_nl_done's */
};

/* The counting, in agent_metrics.c (its own module so the unit test reaches it). */
void agent_stats_begin(struct agent_stats *st);
void agent_stats_end(struct agent_stats *st, const struct agent_end *e);
void agent_stats_ktls(struct agent_stats *st, bool ok);
void agent_stats_peer_key(struct agent_stats *st);
/* "nfs" -> AGENT_NFS ...; anything else AGENT_TLSHD. */
enum agent_consumer agent_consumer_of(const char *name);
/* "ok" -> AGENT_OK ...; anything else AGENT_FAILED. */
enum agent_outcome agent_outcome_of(const char *name);
/* The ktlsd_agent_* series (arg: the struct agent_stats), for admin_set_metrics_extra. */
void agent_metrics_write(FILE *f, void *arg);

/*
 * Runs until SIGINT/SIGTERM (SIGHUP: reload), then finishes (fails) the handshakes in flight so every
 * ACCEPT gets its DONE. Returns 0, or -errno if the loop could not be set up.
 */
int agent_run(const struct agent_opts *o, const struct agent_tls *tls, struct upcall_nl *nl,
	      struct agent_stats *stats);

#endif

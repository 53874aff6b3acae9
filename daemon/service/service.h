/* SPDX-License-Identifier: MIT */
/*
 * A service: what one [service] section (or one command line) runs, built once and then
 * immutable: its configuration, its SSL_CTX (with policy and ticket keys inside), whether
 * it tries kTLS, and its limits. Refcounted: the runtime holds one reference and every
 * connection holds one on the service it started with, so a reload can build a new
 * service and swap it in while connections on the old one finish under the old rules.
 *
 * Statistics are per worker: each worker writes only its own cache-line-aligned block,
 * with plain relaxed stores (no locked read-modify-write on the hot path); readers sum the
 * blocks. Admission checks (max-conns, max-handshakes) read the other workers' gauges, so
 * a limit can be overshot by at most one connection per other worker at the boundary.
 */
#ifndef KTLSD_DAEMON_SERVICE_H
#define KTLSD_DAEMON_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "config.h"
#include "hs_want.h"

/* Counters, in the order the counters line and (later) /metrics list them. */
enum service_stat {
	STAT_ACCEPTED,
	STAT_REFUSED_MAX_CONNS,
	STAT_REFUSED_HANDSHAKES, /* over max_handshakes */
	STAT_REFUSED_PER_SOURCE, /* over max_handshakes_per_source */
	STAT_ACCEPT_PAUSES,	 /* accepting paused on EMFILE/ENFILE */
	STAT_HANDSHAKE_TIMEOUTS,
	STAT_HANDSHAKE_FAILURES,
	STAT_DENIED, /* chain valid, identity policy said no */
	STAT_TARGET_CONNECT_FAILURES,
	STAT_KTLS_FALLBACKS,
	STAT_REKEY_CLOSES,
	STAT_PROXY_HEADER_FAILURES,
	STAT_RESUMED,
	STAT_TRUNCATED,	     /* peer's FIN came without close_notify */
	STAT_IDLE_TIMEOUTS,  /* established, no bytes for idle_timeout_s */
	STAT_RECHECK_CLOSES, /* closed by a reload: revoked, untrusted or no longer allowed */
	STAT_OCSP_GOOD,	     /* peer's certificate good (fetched or cached) */
	STAT_OCSP_REVOKED,   /* peer refused: revoked */
	STAT_OCSP_NO_ANSWER, /* no usable answer: refused (fail closed) or admitted (open) */
	STAT_OCSP_CACHED,    /* answered from the worker's cache */
	STAT_HANDSHAKES_OK,
	STAT_KTLS_OK,		/* kTLS installed (TX+RX, or TX first where tickets come later) */
	STAT_KTLS_FAILED,	/* an install failed and the connection was refused */
	STAT_BYTES_IN,		/* plaintext from the TLS peer, relayed to the other side */
	STAT_BYTES_OUT,		/* plaintext toward the TLS peer */
	STAT_SOCKMAP_FALLBACKS, /* --relay sockmap/auto: this connection spliced instead */
	STAT_RATE_PAUSES,	/* accepting paused by max_handshakes_per_second */
	STAT_RATE_PAUSED_US,	/* time accepting stood paused by it, us (summed over workers) */
	STAT_MAX
};

/* Handshake durations: upper bounds of the histogram's buckets, in microseconds (+Inf
 * is the count). Prometheus' usual latency buckets, from 1 ms to 10 s. */
#define HS_BUCKETS 13
extern const uint32_t service_hs_bucket_us[HS_BUCKETS];

/* Gauges: connections open, and of those still before their relay (handshake, connect). */
/* Gauges: connections open, those still before their relay (handshake, connect), and those
 * on each kind of relay (relay_ops.gauge). */
enum service_gauge {
	GAUGE_LIVE,
	GAUGE_HANDSHAKES,
	GAUGE_RELAY_SPLICE,
	GAUGE_RELAY_USERSPACE,
	GAUGE_RELAY_SOCKMAP,
	GAUGE_MAX
};

struct service_stats {
	_Atomic uint64_t n[STAT_MAX];
	_Atomic uint64_t hs_fail[HS_REASON_MAX];
	_Atomic uint64_t hs_bucket[HS_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
	_Atomic uint64_t hs_sum_us;
	_Atomic uint32_t g[GAUGE_MAX];
} __attribute__((aligned(64)));

/*
 * The statistics of one service slot, shared by every generation of that service: a
 * reload builds a new service that counts on into the same blocks, so counters never go
 * back and max-conns covers connections on the old and the new service together.
 */
struct service_counters {
	atomic_uint refs;
	unsigned n_workers;
	struct service_stats w[]; /* [n_workers] */
};

struct sockmap;

struct service {
	atomic_uint refs;
	const struct service_config *cfg;
	SSL_CTX *ctx;
	bool use_ktls;		 /* try kTLS per connection (mode != off and the kernel has it) */
	struct sockmap *sockmap; /* set by cli where this service relays with the sockmap */
	unsigned max_handshakes; /* cfg's, or max_conns where that is 0 */
	unsigned conn_cap;	 /* max_conns, or fewer where the fd limit holds fewer (logged) */
	unsigned n_workers;
	struct service_counters *counters; /* shared with the slot's other generations */
	struct service_stats *stats;	   /* counters->w */
	int64_t cert_not_after;		   /* the service's own certificate's notAfter (Unix s) */
	struct config_ref *cfg_ref;	   /* held where cfg lives in a reloaded configuration */
	bool agent; /* ktlsd agent's counts (service_new_counting): /metrics says mode="agent" */
	struct service_config *own_cfg; /* service_new_counting's copy, freed with it */
};

/*
 * Builds the service for cfg (which must outlive it): its TLS context (tls_ctx_build), and
 * one stats block per worker, or, given prev (the generation it replaces), prev's blocks.
 * kernel_ktls: the kernel can install kTLS. Returns 0, or -EINVAL with an operator-facing
 * message in err, or -ENOMEM.
 */
int service_new(const struct service_config *cfg, bool kernel_ktls, unsigned n_workers,
		const struct service *prev, struct service **ret_service, char *err, size_t errlen);
/*
 * A service that only counts, for `ktlsd agent`: the kernel's handshakes are counted and
 * shown (/metrics) like a service's, in one stats block (worker 0), but it has no listener
 * and builds no TLS context. Its configuration is its own: name and cert (the file shown
 * with the expiry, may be NULL) are copied. ctx (may be NULL) is held for its certificate's
 * notAfter. prev (may be NULL): the generation whose counters it continues (a reload).
 */
int service_new_counting(const char *name, const char *cert, SSL_CTX *ctx,
			 const struct service *prev, struct service **ret_service);
struct service *service_get(struct service *s);
/* Drops a reference; the last one frees the service. NULL is fine. */
void service_put(struct service *s);

/* Called by worker `worker` only. */
static inline void service_count(struct service *s, unsigned worker, enum service_stat k)
{
	_Atomic uint64_t *n = &s->stats[worker].n[k];

	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static inline void service_add(struct service *s, unsigned worker, enum service_stat k,
			       uint64_t delta)
{
	_Atomic uint64_t *n = &s->stats[worker].n[k];

	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + delta,
			      memory_order_relaxed);
}

/* A failed handshake, by reason; counted apart from STAT_HANDSHAKE_FAILURES and the rest. */
static inline void service_count_hs_fail(struct service *s, unsigned worker, enum hs_reason r)
{
	_Atomic uint64_t *n = &s->stats[worker].hs_fail[r < HS_REASON_MAX ? r : HS_OTHER];

	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* A handshake that succeeded after us microseconds: STAT_HANDSHAKES_OK and the histogram. */
void service_count_hs_ok(struct service *s, unsigned worker, uint64_t us);

static inline void service_gauge_add(struct service *s, unsigned worker, enum service_gauge g,
				     int delta)
{
	_Atomic uint32_t *v = &s->stats[worker].g[g];

	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint32_t)delta,
			      memory_order_relaxed);
}

uint64_t service_stat_sum(const struct service *s, enum service_stat k);
uint32_t service_gauge_sum(const struct service *s, enum service_gauge g);
uint64_t service_hs_fail_sum(const struct service *s, enum hs_reason r);
/* The histogram summed over workers: ret_buckets[HS_BUCKETS + 1] cumulative (last: count),
 * and the sum in microseconds. */
void service_hs_hist(const struct service *s, uint64_t *ret_buckets, uint64_t *ret_sum_us);

/* "accepted", "refused_max_conns", ... as the counters line names them. */
const char *service_stat_name(enum service_stat k);

#endif

// SPDX-License-Identifier: MIT
/* Service objects: built once from a service_config, refcounted, statistics per worker. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/x509.h>

#include "service.h"
#include "tlsctx.h"

static struct service_counters *counters_new(unsigned n_workers)
{
	/* The header takes one cache line, so each worker's block starts on its own. */
	size_t size = 64 + sizeof(struct service_stats) * (n_workers ? n_workers : 1);
	struct service_counters *c;

	_Static_assert(offsetof(struct service_counters, w) == 64, "blocks start on a line");
	c = aligned_alloc(64, size);
	if (!c)
		return NULL;
	memset(c, 0, size);
	atomic_init(&c->refs, 1);
	c->n_workers = n_workers;
	return c;
}

static void counters_put(struct service_counters *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		free(c);
}

/* notAfter of the context's own certificate as Unix time, for /metrics; 0 if unreadable. */
static int64_t cert_not_after(SSL_CTX *ctx)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	struct tm tm;

	if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

int service_new(const struct service_config *cfg, bool kernel_ktls, unsigned n_workers,
		const struct service *prev, struct service **ret_service, char *err, size_t errlen)
{
	struct service *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	if (prev && prev->n_workers == n_workers) {
		s->counters = prev->counters;
		atomic_fetch_add_explicit(&s->counters->refs, 1, memory_order_relaxed);
	} else {
		s->counters = counters_new(n_workers);
	}
	if (!s->counters) {
		rc = -ENOMEM;
		goto out_free;
	}
	s->stats = s->counters->w;
	atomic_init(&s->refs, 1);
	s->cfg = cfg;
	s->n_workers = n_workers;
	s->use_ktls = cfg->ktls != KTLS_MODE_OFF && kernel_ktls;
	s->max_handshakes = cfg->max_handshakes ? cfg->max_handshakes : cfg->max_conns;
	s->conn_cap = cfg->max_conns;
	/* Keys are exported either way: to the kernel, or to libktls's userspace records. */
	rc = tls_ctx_build(cfg, true, &s->ctx, err, errlen);
	if (rc)
		goto out_free;
	s->cert_not_after = cert_not_after(s->ctx);
	*ret_service = s;
	return 0;

out_free:
	counters_put(s->counters);
	free(s);
	return rc;
}

static void own_cfg_free(struct service_config *c)
{
	if (c)
		free(c->cert);
	free(c);
}

int service_new_counting(const char *name, const char *cert, SSL_CTX *ctx,
			 const struct service *prev, struct service **ret_service)
{
	struct service *s = calloc(1, sizeof(*s));
	struct service_config *c = calloc(1, sizeof(*c));

	if (!s || !c || (cert && !(c->cert = strdup(cert))))
		goto out_free;
	snprintf(c->name, sizeof(c->name), "%s", name);
	if (prev) {
		s->counters = prev->counters;
		atomic_fetch_add_explicit(&s->counters->refs, 1, memory_order_relaxed);
	} else {
		s->counters = counters_new(1);
	}
	if (!s->counters)
		goto out_free;
	s->stats = s->counters->w;
	atomic_init(&s->refs, 1);
	s->cfg = s->own_cfg = c;
	s->n_workers = 1;
	s->agent = true;
	s->use_ktls = true; /* the agent installs kTLS on every socket it is handed */
	if (ctx && SSL_CTX_up_ref(ctx) == 1) {
		s->ctx = ctx;
		s->cert_not_after = cert_not_after(ctx);
	}
	*ret_service = s;
	return 0;

out_free:
	own_cfg_free(c);
	free(s);
	return -ENOMEM;
}

struct service *service_get(struct service *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void service_put(struct service *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	SSL_CTX_free(s->ctx);
	counters_put(s->counters);
	config_ref_put(s->cfg_ref);
	own_cfg_free(s->own_cfg);
	free(s);
}

uint64_t service_stat_sum(const struct service *s, enum service_stat k)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < s->n_workers; i++)
		sum += atomic_load_explicit(&s->stats[i].n[k], memory_order_relaxed);
	return sum;
}

uint32_t service_gauge_sum(const struct service *s, enum service_gauge g)
{
	uint32_t sum = 0;

	for (unsigned i = 0; i < s->n_workers; i++)
		sum += atomic_load_explicit(&s->stats[i].g[g], memory_order_relaxed);
	return sum;
}

const char *service_stat_name(enum service_stat k)
{
	static const char *const names[STAT_MAX] = {
		[STAT_ACCEPTED] = "accepted",
		[STAT_REFUSED_MAX_CONNS] = "refused_max_conns",
		[STAT_REFUSED_HANDSHAKES] = "refused_handshakes",
		[STAT_REFUSED_PER_SOURCE] = "refused_per_source",
		[STAT_ACCEPT_PAUSES] = "accept_pauses",
		[STAT_HANDSHAKE_TIMEOUTS] = "handshake_timeouts",
		[STAT_HANDSHAKE_FAILURES] = "handshake_failures",
		[STAT_DENIED] = "denied",
		[STAT_TARGET_CONNECT_FAILURES] = "target_connect_failures",
		[STAT_KTLS_FALLBACKS] = "ktls_fallbacks",
		[STAT_REKEY_CLOSES] = "rekey_closes",
		[STAT_PROXY_HEADER_FAILURES] = "proxy_header_failures",
		[STAT_RESUMED] = "resumed",
		[STAT_TRUNCATED] = "truncated",
		[STAT_IDLE_TIMEOUTS] = "idle_timeouts",
		[STAT_RECHECK_CLOSES] = "recheck_closes",
		[STAT_OCSP_GOOD] = "ocsp_good",
		[STAT_OCSP_REVOKED] = "ocsp_revoked",
		[STAT_OCSP_NO_ANSWER] = "ocsp_no_answer",
		[STAT_OCSP_CACHED] = "ocsp_cached",
		[STAT_HANDSHAKES_OK] = "handshakes_ok",
		[STAT_KTLS_OK] = "ktls_installs",
		[STAT_KTLS_FAILED] = "ktls_install_failures",
		[STAT_BYTES_IN] = "bytes_in",
		[STAT_BYTES_OUT] = "bytes_out",
		[STAT_SOCKMAP_FALLBACKS] = "sockmap_fallbacks",
		[STAT_RATE_PAUSES] = "rate_pauses",
		[STAT_RATE_PAUSED_US] = "rate_paused_us",
	};

	return k < STAT_MAX ? names[k] : "?";
}

const uint32_t service_hs_bucket_us[HS_BUCKETS] = {
	1000,	2500,	5000,	 10000,	  25000,   50000,    100000,
	250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

void service_count_hs_ok(struct service *s, unsigned worker, uint64_t us)
{
	struct service_stats *st = &s->stats[worker];
	unsigned b = 0;

	while (b < HS_BUCKETS && us > service_hs_bucket_us[b])
		b++;
	service_count(s, worker, STAT_HANDSHAKES_OK);
	atomic_store_explicit(&st->hs_bucket[b],
			      atomic_load_explicit(&st->hs_bucket[b], memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&st->hs_sum_us,
			      atomic_load_explicit(&st->hs_sum_us, memory_order_relaxed) + us,
			      memory_order_relaxed);
}

uint64_t service_hs_fail_sum(const struct service *s, enum hs_reason r)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < s->n_workers; i++)
		sum += atomic_load_explicit(&s->stats[i].hs_fail[r], memory_order_relaxed);
	return sum;
}

void service_hs_hist(const struct service *s, uint64_t *ret_buckets, uint64_t *ret_sum_us)
{
	uint64_t sum = 0, acc = 0;

	for (unsigned b = 0; b <= HS_BUCKETS; b++) {
		for (unsigned i = 0; i < s->n_workers; i++)
			acc += atomic_load_explicit(&s->stats[i].hs_bucket[b],
						    memory_order_relaxed);
		ret_buckets[b] = acc;
	}
	for (unsigned i = 0; i < s->n_workers; i++)
		sum += atomic_load_explicit(&s->stats[i].hs_sum_us, memory_order_relaxed);
	*ret_sum_us = sum;
}

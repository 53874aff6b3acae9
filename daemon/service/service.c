// SPDX-License-Identifier: MIT
/* Service objects: built once from a service_config, refcounted, statistics per worker. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"
#include "tlsctx.h"

int service_new(const struct service_config *cfg, bool kernel_ktls, unsigned n_workers,
		struct service **ret_service, char *err, size_t errlen)
{
	struct service *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->stats = aligned_alloc(64, sizeof(*s->stats) * (n_workers ? n_workers : 1));
	if (!s->stats) {
		rc = -ENOMEM;
		goto out_free;
	}
	memset(s->stats, 0, sizeof(*s->stats) * (n_workers ? n_workers : 1));
	atomic_init(&s->refs, 1);
	s->cfg = cfg;
	s->n_workers = n_workers;
	s->use_ktls = cfg->ktls != KTLS_MODE_OFF && kernel_ktls;
	s->max_handshakes = cfg->max_handshakes ? cfg->max_handshakes : cfg->max_conns;
	s->conn_cap = cfg->max_conns;
	rc = tls_ctx_build(cfg, s->use_ktls, &s->ctx, err, errlen);
	if (rc)
		goto out_free;
	*ret_service = s;
	return 0;

out_free:
	free(s->stats);
	free(s);
	return rc;
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
	free(s->stats);
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
	};

	return k < STAT_MAX ? names[k] : "?";
}

// SPDX-License-Identifier: MIT
/*
 * What `ktlsd agent` counts, and the series only it has (ktlsd_agent_*). The rest of its
 * /metrics is the admin room's, from the "agent" service these counts go into, so the
 * names and labels are those of proxied services. One writer (the agent's thread): each
 * counter is a relaxed load and store, which the admin thread reads with relaxed loads.
 */
#include <string.h>

#include "agent.h"

static const char *const consumer_names[AGENT_CONSUMER_MAX] = { "nfs", "nvme", "tlshd" };
static const char *const outcome_names[AGENT_OUTCOME_MAX] = { "ok", "refused", "failed", "timeout",
							      "unsupported" };

static void bump(_Atomic uint64_t *n)
{
	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

enum agent_consumer agent_consumer_of(const char *name)
{
	for (int i = 0; name && i < AGENT_CONSUMER_MAX; i++)
		if (!strcmp(name, consumer_names[i]))
			return (enum agent_consumer)i;
	return AGENT_TLSHD;
}

enum agent_outcome agent_outcome_of(const char *name)
{
	for (int i = 0; name && i < AGENT_OUTCOME_MAX; i++)
		if (!strcmp(name, outcome_names[i]))
			return (enum agent_outcome)i;
	return AGENT_FAILED;
}

/* An ACCEPTed request: a connection handed over, in its handshake until it ends. */
void agent_stats_begin(struct agent_stats *st)
{
	if (!st->svc)
		return;
	service_count(st->svc, 0, STAT_ACCEPTED);
	service_gauge_add(st->svc, 0, GAUGE_LIVE, 1);
	service_gauge_add(st->svc, 0, GAUGE_HANDSHAKES, 1);
}

/*
 * A request's DONE: ok is what the consumer got status 0 for (handshake, peer key and kTLS
 * all done), so handshakes_total{result="ok"} equals the outcome=ok log lines; anything
 * else is a failed handshake with its reason.
 */
void agent_stats_end(struct agent_stats *st, const struct agent_end *e)
{
	enum agent_outcome o = agent_outcome_of(e->outcome);

	bump(&st->hs[agent_consumer_of(e->consumer)][e->server][o]);
	if (e->done_rc)
		bump(&st->done_errors);
	if (!st->svc)
		return;
	service_gauge_add(st->svc, 0, GAUGE_LIVE, -1);
	service_gauge_add(st->svc, 0, GAUGE_HANDSHAKES, -1);
	if (o == AGENT_OK) {
		service_count_hs_ok(st->svc, 0, e->us);
		return;
	}
	service_count_hs_fail(st->svc, 0, o == AGENT_TIMEOUT ? HS_TIMEOUT : e->reason);
	if (o == AGENT_TIMEOUT)
		service_count(st->svc, 0, STAT_HANDSHAKE_TIMEOUTS);
	else
		service_count(st->svc, 0,
			      e->reason == HS_IDENTITY ? STAT_DENIED : STAT_HANDSHAKE_FAILURES);
}

void agent_stats_ktls(struct agent_stats *st, bool ok)
{
	if (st->svc)
		service_count(st->svc, 0, ok ? STAT_KTLS_OK : STAT_KTLS_FAILED);
}

void agent_stats_peer_key(struct agent_stats *st)
{
	bump(&st->peer_keys);
}

static void family(FILE *f, const char *name, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
}

static unsigned long long load(const _Atomic uint64_t *n)
{
	return (unsigned long long)atomic_load_explicit(n, memory_order_relaxed);
}

void agent_metrics_write(FILE *f, void *arg)
{
	struct agent_stats *st = arg;

	family(f, "ktlsd_agent_handshakes_total",
	       "Kernel handshake requests ended, by consumer, role and outcome (as logged).");
	for (int c = 0; c < AGENT_CONSUMER_MAX; c++)
		for (int r = 1; r >= 0; r--)
			for (int o = 0; o < AGENT_OUTCOME_MAX; o++)
				fprintf(f,
					"ktlsd_agent_handshakes_total{service=\"agent\","
					"consumer=\"%s\",role=\"%s\",outcome=\"%s\"} %llu\n",
					consumer_names[c], r ? "server" : "client",
					outcome_names[o], load(&st->hs[c][r][o]));
	family(f, "ktlsd_agent_done_errors_total",
	       "DONE replies the kernel refused (the consumer had given up).");
	fprintf(f, "ktlsd_agent_done_errors_total{service=\"agent\"} %llu\n",
		load(&st->done_errors));
	family(f, "ktlsd_agent_peer_keys_total",
	       "Verified client certificates put into a kernel key for REMOTE_AUTH.");
	fprintf(f, "ktlsd_agent_peer_keys_total{service=\"agent\"} %llu\n", load(&st->peer_keys));
}

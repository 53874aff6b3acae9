// SPDX-License-Identifier: MIT
#include <stdio.h>

#include "commands.h"
#include "log.h"
#include "relay_mode.h"

/*
 * Only where asked: on 6.1 the kernel's sockmap -> kTLS TX redirect was seen to stall with
 * bytes queued (2 of 6 runs of vm.sockmap.facts' tx_redirect) and then to oops at
 * teardown (NULL dereference in tls_sw_do_sendpage), and ktlsd's bulk transfers stalled
 * on the sockmap relay on 6.12 under load. Splice is the default until kernels fix that.
 */
static bool wants_sockmap(const struct service *s)
{
	return s->cfg->relay == RELAY_MODE_SOCKMAP && s->use_ktls;
}

static int refuse(const char *cfgpath, const struct service_config *sc, const char *why)
{
	if (cfgpath)
		fprintf(stderr, "ktlsd: %s:%d: [service %s]: relay = sockmap: %s\n", cfgpath,
			sc->line, sc->name, why);
	else
		fprintf(stderr, "ktlsd: --relay sockmap: %s\n", why);
	return EXIT_USAGE;
}

/* --relay sockmap without kTLS has nothing to forward into: refused, not ignored. */
static int check_ktls(const struct runtime *rt, const char *cfgpath)
{
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];

		if (s->cfg->relay == RELAY_MODE_SOCKMAP && !s->use_ktls)
			return refuse(cfgpath, s->cfg,
				      s->cfg->ktls == KTLS_MODE_OFF ? "needs kTLS (--ktls is off)"
								    : "needs kTLS, which this "
								      "kernel lacks");
	}
	return 0;
}

static void log_auto_splice(const struct runtime *rt, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "--relay auto: splicing (the sockmap relay is %s)", why);
	struct log_kv kv[] = { { "msg", msg } };

	log_kv(rt->cfg->log_format, "info", "relay_auto", kv, 1);
}

static void log_sockmap_experimental(const struct runtime *rt)
{
	struct log_kv kv[] = { { "msg", "--relay sockmap is experimental: on 6.1 the kernel's "
					"sockmap -> kTLS redirect can stall, then oops at "
					"teardown (docs/bpf.md); --relay splice is the safe "
					"choice" } };

	log_kv(rt->cfg->log_format, "warn", "relay_sockmap_experimental", kv, 1);
}

int relay_mode_setup(struct runtime *rt, const char *cfgpath, struct sockmap **ret_sm)
{
	bool any = false, autos = false, p2t = false, t2p = false;
	const char *why = NULL;
	int rc = check_ktls(rt, cfgpath);

	*ret_sm = NULL;
	for (size_t i = 0; !rc && i < rt->n_svc; i++) {
		any |= wants_sockmap(rt->svc[i]);
		autos |= rt->svc[i]->cfg->relay == RELAY_MODE_AUTO && rt->svc[i]->use_ktls;
	}
	if (autos)
		log_auto_splice(rt, "opt-in only: --relay sockmap");
	if (rc || !any)
		return rc;
	if (sockmap_probe(&p2t, &t2p, &why) || !p2t)
		for (size_t i = 0; i < rt->n_svc; i++)
			if (wants_sockmap(rt->svc[i]))
				return refuse(cfgpath, rt->svc[i]->cfg, why);
	log_sockmap_experimental(rt);
	rc = sockmap_open(ret_sm);
	if (rc) {
		fprintf(stderr, "ktlsd: sockmap relay: %s\n", sockmap_strerror(rc));
		return EXIT_RUNTIME;
	}
	for (size_t i = 0; i < rt->n_svc; i++)
		if (wants_sockmap(rt->svc[i]))
			rt->svc[i]->sockmap = *ret_sm;
	return 0;
}

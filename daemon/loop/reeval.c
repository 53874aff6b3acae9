// SPDX-License-Identifier: MIT
/*
 * Reload, the worker's half: a slot's new service swapped in on the worker's own thread
 * (worker_call, between two batches, so the data path takes no lock), and every
 * established connection of that slot judged again by the new service: its trust store,
 * CRLs and rules. A connection they no longer admit is closed at once, close_notify
 * first (through its relay: userspace or kTLS alike), with the reason on its conn_end
 * line. Connections that pass keep the service they started with.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "peer_chain.h"
#include "sess_cache.h"
#include "worker.h"

int worker_conn_recheck(struct worker *w, struct conn *c, struct service *s)
{
	char why[192];
	int rc;

	if (!c->peer_der) {
		/* Nothing to judge it by: a trust boundary fails closed. */
		snprintf(why, sizeof(why), "peer certificate not kept: cannot re-evaluate");
		rc = -ENOENT;
	} else {
		rc = tls_peer_recheck(s->ctx, s->cfg->role == ROLE_SERVER, c->peer_der,
				      c->peer_der_len, why, sizeof(why));
	}
	if (!rc)
		return 0;
	conn_count(w, c, STAT_RECHECK_CLOSES);
	conn_fail(w, c, "%s", why);
	return rc;
}

/*
 * A client service's tickets were issued by servers the old rules admitted: none is
 * offered under the new ones (a resumed handshake checks no certificate).
 */
static void sess_reset(struct worker *w, size_t si)
{
	const struct service_config *sc = w->svcs[si].cur->cfg;

	if (!w->sess)
		return;
	sess_cache_clear(&w->sess[si]);
	if (sc->role == ROLE_CLIENT && sc->resumption && sc->session_cache &&
	    sess_cache_init(&w->sess[si], sc->session_cache)) {
		/* Out of memory: this worker resumes nothing for the slot (cap 0). */
	}
}

void worker_swap_services(struct worker *w, void *arg)
{
	struct worker_swap *sw = arg;

	for (size_t si = 0; si < sw->n && si < w->rt->n_svc; si++) {
		struct service *old = w->svcs[si].cur;

		if (!sw->svc[si] || sw->svc[si] == old)
			continue;
		w->svcs[si].cur = service_get(sw->svc[si]);
		service_put(old);
		sess_reset(w, si);
	}
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];
		struct service *s;

		/* Handshakes still running are judged when they finish (handshake.c). */
		if (!c || c->closing || !c->hs_done || c->si >= sw->n)
			continue;
		s = sw->svc[c->si];
		if (!s || worker_conn_recheck(w, c, s) == 0)
			continue;
		sw->closed++;
		conn_check_free(w, c);
	}
}

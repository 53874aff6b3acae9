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
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "ocsp.h"
#include "peer_chain.h"
#include "sess_cache.h"
#include "worker.h"

#define WHY_MAX 192

static int verdict(struct service *s, const struct conn *c, char *why)
{
	if (!c->peer_der) {
		/* Nothing to judge it by: a trust boundary fails closed. */
		snprintf(why, WHY_MAX, "peer certificate not kept: cannot re-evaluate");
		return -ENOENT;
	}
	return tls_peer_recheck(s->ctx, s->cfg->role == ROLE_SERVER, c->peer_der, c->peer_der_len,
				why, WHY_MAX);
}

static int close_for(struct worker *w, struct conn *c, int rc, const char *why)
{
	if (!rc)
		return 0;
	conn_count(w, c, STAT_RECHECK_CLOSES);
	conn_fail(w, c, "%s", why);
	return rc;
}

int worker_conn_recheck(struct worker *w, struct conn *c, struct service *s)
{
	char why[WHY_MAX];

	return close_for(w, c, verdict(s, c, why), why);
}

/*
 * Verdicts of one pass by (service, chain): many connections share a peer certificate, and
 * with OpenSSL 3 parsing and verifying one costs milliseconds (measured: 2.6 ms, 3.9 ms with
 * a CRL, on this project's loaded 2-core CI machine), which a worker would otherwise spend
 * per connection while its data path waits.
 */
#define MEMO_N 32

struct memo {
	const struct service *s;
	uint8_t *der; /* a copy: the connection it came from may be freed in the pass */
	uint32_t len;
	int rc;
	char why[WHY_MAX];
};

struct memos {
	struct memo m[MEMO_N];
	unsigned next;
};

static int verdict_memo(struct memos *ms, struct service *s, const struct conn *c, char *why)
{
	struct memo *m;
	int rc;

	for (unsigned i = 0; c->peer_der && i < MEMO_N; i++) {
		m = &ms->m[i];
		if (m->der && m->s == s && m->len == c->peer_der_len &&
		    !memcmp(m->der, c->peer_der, m->len)) {
			memcpy(why, m->why, WHY_MAX);
			return m->rc;
		}
	}
	rc = verdict(s, c, why);
	if (!c->peer_der || rc == -ENOMEM)
		return rc;
	m = &ms->m[ms->next++ % MEMO_N];
	free(m->der);
	m->der = malloc(c->peer_der_len);
	if (m->der) {
		memcpy(m->der, c->peer_der, c->peer_der_len);
		m->s = s;
		m->len = c->peer_der_len;
		m->rc = rc;
		memcpy(m->why, why, WHY_MAX);
	}
	return rc;
}

/*
 * A client service's tickets were issued by servers the old rules admitted: none is
 * offered under the new ones (a resumed handshake checks no certificate). Nor is an OCSP
 * answer cached under the old ones used.
 */
static void caches_reset(struct worker *w, size_t si)
{
	const struct service_config *sc = w->svcs[si].cur ? w->svcs[si].cur->cfg : NULL;

	/*
	 * The peers' OCSP answers were verified against the old trust anchors and responder:
	 * the new generation asks again (one fetch per peer and worker), and a SIGHUP is a way
	 * to make ktlsd forget a "good" it was told.
	 */
	ocsp_cache_free(w->svcs[si].ocsp);
	w->svcs[si].ocsp = NULL;
	if (!w->sess)
		return;
	sess_cache_clear(&w->sess[si]);
	if (sc && sc->role == ROLE_CLIENT && sc->resumption && sc->session_cache &&
	    sess_cache_init(&w->sess[si], sc->session_cache)) {
		/* Out of memory: this worker resumes nothing for the slot (cap 0). */
	}
}

/*
 * A slot's per-worker arrays grow by copy: a client connection's SSL points at its slot's
 * ticket cache once its handshake is done (handshake.c), so every such SSL is pointed at
 * the cache's new place. One out on the handshake thread is not touched: it has none yet.
 */
static int grow(void **arr, size_t size, size_t old, size_t n)
{
	char *a = calloc(n, size);

	if (!a)
		return -ENOMEM;
	if (*arr)
		memcpy(a, *arr, old * size);
	free(*arr);
	*arr = a;
	return 0;
}

void worker_grow(struct worker *w, void *arg)
{
	struct worker_swap *sw = arg;
	size_t old = w->rt->n_svc;

	if (sw->n <= old)
		return;
	if (grow((void **)&w->listen_fd, sizeof(int), old, sw->n) ||
	    grow((void **)&w->svcs, sizeof(*w->svcs), old, sw->n) ||
	    (w->sess && grow((void **)&w->sess, sizeof(*w->sess), old, sw->n))) {
		sw->err = -ENOMEM;
		return;
	}
	for (size_t si = old; si < sw->n; si++) {
		w->listen_fd[si] = -1;
		if (RAND_bytes((unsigned char *)&w->svcs[si].src.seed, sizeof(uint64_t)) != 1)
			sw->err = -EIO;
	}
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];

		if (c && !c->hs_out && c->ssl && !conn_is_server(c) && SSL_is_init_finished(c->ssl))
			tls_set_session_cache(c->ssl, conn_sess_cache(w, c));
	}
}

/* A removed service: no new connections; those it has run on under its old rules. */
static void slot_stop(struct worker *w, size_t si)
{
	if (w->listen_fd[si] >= 0) {
		io_uring_prep_cancel_fd(ring_ignore_sqe(w), w->listen_fd[si],
					IORING_ASYNC_CANCEL_ALL);
		/* The cancel looks the fd up when it runs: submit before closing. */
		io_uring_submit(&w->ring);
		close(w->listen_fd[si]);
		w->listen_fd[si] = -1;
	}
	service_put(w->svcs[si].cur);
	w->svcs[si].cur = NULL;
	caches_reset(w, si);
}

/* An added service: its listener (opened by the reload) starts accepting here. */
static void slot_start(struct worker *w, size_t si, struct service *s, int fd)
{
	w->svcs[si].cur = service_get(s);
	w->listen_fd[si] = fd;
	caches_reset(w, si);
	listener_arm(w, si);
}

static void slots_swap(struct worker *w, struct worker_swap *sw)
{
	size_t old = w->rt->n_svc;

	for (size_t si = 0; si < sw->n; si++) {
		struct service *prev = si < old ? w->svcs[si].cur : NULL;

		if (sw->removed && sw->removed[si]) {
			if (prev)
				slot_stop(w, si);
		} else if (si >= old) {
			slot_start(w, si, sw->svc[si], sw->listen_fd[w->id * sw->n + si]);
			sw->listen_fd[w->id * sw->n + si] = -1; /* the worker's now */
		} else if (sw->svc[si] && sw->svc[si] != prev) {
			w->svcs[si].cur = service_get(sw->svc[si]);
			service_put(prev);
			caches_reset(w, si);
		}
	}
}

void worker_swap_services(struct worker *w, void *arg)
{
	struct worker_swap *sw = arg;
	struct memos *ms = calloc(1, sizeof(*ms));
	char why[WHY_MAX];

	slots_swap(w, sw);
	for (uint32_t i = 0; i < w->n_slots; i++) {
		struct conn *c = w->slots[i];
		struct service *s;

		/* Handshakes still running are judged when they finish (handshake.c). */
		if (!c || c->closing || !c->hs_done || c->si >= sw->n)
			continue;
		s = sw->removed && sw->removed[c->si] ? NULL : sw->svc[c->si];
		if (!s ||
		    !close_for(w, c, ms ? verdict_memo(ms, s, c, why) : verdict(s, c, why), why))
			continue;
		sw->closed++;
		conn_check_free(w, c);
	}
	for (unsigned i = 0; ms && i < MEMO_N; i++)
		free(ms->m[i].der);
	free(ms);
}

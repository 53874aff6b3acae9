// SPDX-License-Identifier: MIT
/*
 * Accepting: each worker's multishot accept on its own SO_REUSEPORT listener per service,
 * and admission: max-conns, max-handshakes and handshakes per client address are checked
 * before a connection gets a slot; a refused socket is closed at once and counted, its
 * log line rate-limited. Out of descriptors, accepting pauses 100 ms (the connections wait
 * in the listen backlog) instead of spinning on EMFILE. Past max-handshakes-per-second
 * (this worker's share) accepting pauses too, until the bucket has room: the multishot
 * accept is cancelled and armed again by a timeout, so the backlog holds the new
 * connections as HAProxy's rate-limit sessions does; none is accepted and then dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"

static void peer_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	}
}

/* Closed at once: a refused socket holds nothing, and its log line is rate-limited. */
static void accept_refuse(struct worker *w, size_t si, int fd, const char *peer, int kind,
			  const char *why)
{
	const struct service *s = worker_service(w, si);
	struct ratelim *rl = &w->svcs[si].rl[kind];
	unsigned suppressed;
	char sup[16];

	close(fd);
	if (!ratelim_pass(rl, w->now_ns, &suppressed))
		return;
	snprintf(sup, sizeof(sup), "%u", suppressed);
	struct log_kv kv[] = {
		{ "service", s->cfg->name },
		{ "peer", peer },
		{ "reason", why },
		{ "suppressed", suppressed ? sup : NULL }, /* refused since the last such line */
	};
	log_kv(w->rt->cfg->log_format, "warn", "conn_refused", kv, 4);
}

/*
 * Room for one more connection and handshake of s from src (NULL: unknown address): true
 * with it counted, false with the refusal counted and *ret_kind / *ret_why saying which.
 * Handshakes have their own limit below max_conns, and per source, so that sockets that
 * stall their handshake (from one address above all) cannot take every place.
 */
static bool accept_admit(struct worker *w, size_t si, const uint8_t *src, int *ret_kind,
			 const char **ret_why)
{
	struct service *s = worker_service(w, si);
	struct src_table *t = &w->svcs[si].src;
	unsigned per_src = s->cfg->role == ROLE_SERVER ? s->cfg->max_handshakes_per_source : 0;

	if (service_gauge_sum(s, GAUGE_LIVE) >= s->cfg->max_conns) {
		service_count(s, w->id, STAT_REFUSED_MAX_CONNS);
		*ret_kind = RL_MAX_CONNS;
		*ret_why = "max-conns reached";
		return false;
	}
	if (service_gauge_sum(s, GAUGE_HANDSHAKES) >= s->max_handshakes) {
		service_count(s, w->id, STAT_REFUSED_HANDSHAKES);
		*ret_kind = RL_HANDSHAKES;
		*ret_why = "max-handshakes reached";
		return false;
	}
	if (per_src && src && src_count(t, src) >= per_src) {
		service_count(s, w->id, STAT_REFUSED_PER_SOURCE);
		*ret_kind = RL_PER_SOURCE;
		*ret_why = "max-handshakes-per-source reached";
		return false;
	}
	service_gauge_add(s, w->id, GAUGE_LIVE, 1);
	service_gauge_add(s, w->id, GAUGE_HANDSHAKES, 1);
	return true;
}

/* One deadline covers everything before the relay: handshake and connect. */
static void deadline_arm(struct worker *w, struct conn *c)
{
	const struct service_config *sc = c->svc->cfg;
	unsigned ms = sc->handshake_timeout_ms + (conn_is_server(c) ? 0 : sc->connect_timeout_ms);

	c->deadline.tv_sec = ms / 1000;
	c->deadline.tv_nsec = (long long)(ms % 1000) * 1000000;
	io_uring_prep_timeout(conn_sqe(w, c, OP_HS_TIMEOUT), &c->deadline, 0, 0);
	c->timeout_armed = true;
}

/* The rate's pause began or went on: one log line per 10 s per worker and service. */
static void rate_log(struct worker *w, size_t si, uint64_t wait_ns)
{
	const struct service *s = worker_service(w, si);
	unsigned suppressed;
	char sup[16], rate[16], ms[24];

	if (!ratelim_pass(&w->svcs[si].rl[RL_RATE], w->now_ns, &suppressed))
		return;
	snprintf(sup, sizeof(sup), "%u", suppressed);
	snprintf(rate, sizeof(rate), "%u", s->cfg->max_handshakes_per_second);
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(wait_ns / 1000000));
	struct log_kv kv[] = {
		{ "service", s->cfg->name },
		{ "limit", rate },
		{ "action", "accepting paused" },
		{ "pause_ms", ms },
		{ "suppressed", suppressed ? sup : NULL }, /* pauses since the last line */
	};
	log_kv(w->rt->cfg->log_format, "warn", "rate_limited", kv, 5);
}

/* The resume timer for wait_ns from now; submitted at once, as reloads move svcs. */
static void rate_timer(struct worker *w, size_t si, uint64_t wait_ns)
{
	struct worker_svc *ws = &w->svcs[si];
	struct io_uring_sqe *sqe = ring_sqe(w);

	ws->pause_ts.tv_sec = (long long)(wait_ns / NS);
	ws->pause_ts.tv_nsec = (long long)(wait_ns % NS);
	io_uring_prep_timeout(sqe, &ws->pause_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_RATE_RESUME, (uint32_t)si));
	io_uring_submit(&w->ring);
}

/*
 * One more handshake of si against its rate: past it, accepting stops (sockets already
 * taken are still served) and a timer resumes it once the bucket has room.
 */
static void rate_take(struct worker *w, size_t si)
{
	struct worker_svc *ws = &w->svcs[si];
	const struct service_config *sc = worker_service(w, si)->cfg;
	uint64_t wait =
		hs_rate_take(&ws->rate, w->now_ns,
			     hs_rate_interval(sc->max_handshakes_per_second, w->rt->cfg->threads));

	if (!wait || ws->paused_ns)
		return;
	ws->paused_ns = w->now_ns;
	service_count(worker_service(w, si), w->id, STAT_RATE_PAUSES);
	/* A single accept is not armed again while paused; a multishot one (armed before a
	 * reload set the rate) is cancelled. */
	if (ws->accept_armed && ws->accept_multishot)
		io_uring_prep_cancel64(ring_ignore_sqe(w), ring_ud_raw(OP_ACCEPT, (uint32_t)si), 0);
	rate_timer(w, si, wait);
	rate_log(w, si, wait);
}

/* c counts against its source address's handshakes; false if out of memory. */
static bool conn_src_take(struct worker *w, size_t si, struct conn *c, const uint8_t src[16])
{
	if (src_add(&w->svcs[si].src, src))
		return false;
	memcpy(c->src, src, sizeof(c->src));
	c->src_counted = true;
	return true;
}

static void accept_one(struct worker *w, size_t si, int fd)
{
	struct service *s = worker_service(w, si);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	uint8_t src[16];
	char peer[sizeof(((struct conn *)0)->peer)] = "";
	const char *why;
	struct conn *c;
	int kind;
	bool have_src = false;
	bool per_src = s->cfg->role == ROLE_SERVER && s->cfg->max_handshakes_per_source;

	if (!getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		peer_format(&ss, peer, sizeof(peer));
		have_src = src_key(&ss, src);
	}
	if (!accept_admit(w, si, have_src ? src : NULL, &kind, &why)) {
		accept_refuse(w, si, fd, peer, kind, why);
		return;
	}
	service_count(s, w->id, STAT_ACCEPTED);
	rate_take(w, si);
	c = conn_new(w);
	if (!c) {
		service_gauge_add(s, w->id, GAUGE_HANDSHAKES, -1);
		service_gauge_add(s, w->id, GAUGE_LIVE, -1);
		close(fd);
		return;
	}
	c->counted = true;
	c->in_hs = true;
	c->svc = service_get(s);
	c->si = (uint16_t)si;
	c->t_start_ns = loop_now_ns();
	memcpy(c->peer, peer, sizeof(c->peer));
	sl = sizeof(ss);
	/* sk_lookup kept the address the client dialled as the socket's own (--intercept) */
	if (s->cfg->n_intercepts && !getsockname(fd, (struct sockaddr *)&ss, &sl))
		peer_format(&ss, c->dst, sizeof(c->dst));
	if (per_src && have_src && !conn_src_take(w, si, c, src)) {
		close(fd);
		conn_fail(w, c, "out of memory");
		conn_check_free(w, c);
		return;
	}
	/* TCP options: inherited from our listeners; systemd's listened before ktlsd ran. */
	if (s->cfg->listen_systemd)
		conn_tcp_opts(fd);
	deadline_arm(w, c);
	if (conn_is_server(c))
		c->tfd = fd;
	else
		c->pfd = fd;
	handshake_begin(w, c);
	conn_check_free(w, c);
}

/*
 * Under a rate, one socket per accept: a multishot accept armed again after a pause takes
 * the whole backlog at once, a burst the rate was there to spread out.
 */
void listener_arm(struct worker *w, size_t si)
{
	struct worker_svc *ws = &w->svcs[si];
	struct io_uring_sqe *sqe;

	if (ws->accept_armed)
		return;
	ws->accept_armed = true;
	ws->accept_multishot = !worker_service(w, si)->cfg->max_handshakes_per_second;
	sqe = ring_sqe(w);
	if (ws->accept_multishot)
		io_uring_prep_multishot_accept(sqe, w->listen_fd[si], NULL, NULL,
					       SOCK_NONBLOCK | SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, w->listen_fd[si], NULL, NULL,
				     SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_ACCEPT, (uint32_t)si));
}

/*
 * Accepting failed, typically out of descriptors (EMFILE/ENFILE) or memory: the connection
 * stays in the listen backlog, so pause 100 ms rather than spin on the error, and say so
 * at most once per 10 s.
 */
static void accept_failed(struct worker *w, uint32_t si, int err, bool more)
{
	struct ratelim *rl = &w->svcs[si].rl[RL_ACCEPT];
	unsigned suppressed;
	char sup[16];
	struct io_uring_sqe *sqe;

	if (!more) {
		service_count(worker_service(w, si), w->id, STAT_ACCEPT_PAUSES);
		sqe = ring_sqe(w);
		io_uring_prep_timeout(sqe, &w->accept_backoff, 0, 0);
		io_uring_sqe_set_data64(sqe, ring_ud_raw(OP_ACCEPT_RETRY, si));
	}
	if (!ratelim_pass(rl, w->now_ns, &suppressed))
		return;
	snprintf(sup, sizeof(sup), "%u", suppressed);
	struct log_kv kv[] = {
		{ "service", worker_service(w, si)->cfg->name },
		{ "error", strerror(-err) },
		{ "action", more ? NULL : "accepting paused 100 ms" },
		{ "suppressed", suppressed ? sup : NULL }, /* failures since the last line */
	};
	log_kv(w->rt->cfg->log_format, "warn", "accept_failed", kv, 4);
}

void listener_on_accept(struct worker *w, uint32_t si, int res, unsigned flags)
{
	/* A service a reload removed: its cancelled accept's last completions. */
	if (!worker_service(w, si)) {
		if (res >= 0)
			close(res);
		return;
	}
	if (!(flags & IORING_CQE_F_MORE))
		w->svcs[si].accept_armed = false;
	if (res >= 0) {
		accept_one(w, si, res);
	} else if (res != -ECANCELED && !w->draining) {
		accept_failed(w, si, res, flags & IORING_CQE_F_MORE);
		return;
	}
	/* A multishot accept that ended (no F_MORE) is armed again, as liburing's examples do,
	 * unless the rate paused it (its timer arms it). */
	if (!(flags & IORING_CQE_F_MORE) && !w->draining && !w->svcs[si].paused_ns)
		listener_arm(w, si);
}

void listener_on_retry(struct worker *w, uint32_t si)
{
	if (!w->draining && worker_service(w, si) && !w->svcs[si].paused_ns)
		listener_arm(w, si);
}

/* A rate pause's timer: accepting resumes if the bucket has room by now, else waits on. */
void listener_on_resume(struct worker *w, uint32_t si)
{
	struct worker_svc *ws = &w->svcs[si];
	const struct service *s = worker_service(w, si);
	uint64_t wait;

	if (!s)
		return;
	wait = hs_rate_wait(
		&ws->rate, w->now_ns,
		hs_rate_interval(s->cfg->max_handshakes_per_second, w->rt->cfg->threads));
	if (wait && !w->draining) {
		rate_timer(w, si, wait);
		return;
	}
	service_add(worker_service(w, si), w->id, STAT_RATE_PAUSED_US,
		    (w->now_ns - ws->paused_ns) / 1000);
	ws->paused_ns = 0;
	if (!w->draining)
		listener_arm(w, si);
}

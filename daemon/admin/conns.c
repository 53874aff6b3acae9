// SPDX-License-Identifier: MIT
/*
 * /connections: each worker copies what it has of its connections into a buffer owned
 * here, on its own thread between two batches of completions (worker_call), up to the
 * request's limit; the kernel's view of each socket is asked for afterwards, here, so the
 * workers spend only a copy. The admin thread never reads a worker's table itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <jansson.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "admin.h"
#include "relay.h"

struct conn_info {
	char service[64];
	char peer[56];
	char *id; /* the verified identity (heap), under its kind */
	enum policy_kind id_kind;
	const char *version, *cipher, *relay; /* static strings (OpenSSL's, the relays') */
	bool resumed, sockets;
	uint64_t age_ms, bytes_in, bytes_out;
	struct sockaddr_storage local, remote; /* the TLS side's socket, for sock_diag */
};

struct gather {
	struct conn_info *v;
	size_t n, cap, total;
};

static void conn_copy(struct worker *w, const struct conn *c, struct conn_info *ci)
{
	socklen_t l = sizeof(ci->local), r = sizeof(ci->remote);

	memset(ci, 0, sizeof(*ci));
	memcpy(ci->service, c->svc->cfg->name, sizeof(ci->service));
	memcpy(ci->peer, c->peer, sizeof(ci->peer));
	if (c->hs_done && c->id.id) {
		ci->id = strdup(c->id.id);
		ci->id_kind = c->id.id_kind;
	}
	ci->version = c->version;
	ci->cipher = c->cipher;
	ci->relay = c->relay ? c->relay->kind : NULL;
	ci->resumed = c->resumed;
	ci->age_ms = (loop_now_ns() - c->t_start_ns) / 1000000;
	ci->bytes_in = c->t2p.bytes;
	ci->bytes_out = c->p2t.bytes;
	ci->sockets = c->tfd >= 0 && !getsockname(c->tfd, (struct sockaddr *)&ci->local, &l) &&
		      !getpeername(c->tfd, (struct sockaddr *)&ci->remote, &r);
}

/* On the worker's thread (worker_call): copy, up to the cap, and count the rest. */
static void gather_on_worker(struct worker *w, void *arg)
{
	struct gather *g = arg;

	for (uint32_t i = 0; i < w->n_slots; i++) {
		const struct conn *c = w->slots[i];

		if (!c || c->closing)
			continue;
		g->total++;
		if (g->n < g->cap)
			conn_copy(w, c, &g->v[g->n++]);
	}
}

static bool have_net_admin(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	unsigned long long eff = 0;
	char line[128];

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return eff & (1ull << 12); /* CAP_NET_ADMIN */
}

/* "kernel": the socket's ULP as sock_diag reports it; null without a ULP. */
static json_t *kernel_view(struct nl_sock *sk, const char *why_not, const struct conn_info *ci)
{
	struct ulp_view v;
	int rc;

	if (why_not)
		return json_pack("{ss}", "error", why_not);
	if (!ci->sockets)
		return json_null();
	rc = sockdiag_ulp(sk, &ci->local, &ci->remote, &v);
	if (rc < 0)
		return json_pack("{ss}", "error", strerror(-rc));
	if (rc == 0)
		return json_pack("{ss}", "error", "socket gone");
	if (!v.ulp[0])
		return json_null();
	if (!v.tls)
		return json_pack("{ss}", "ulp", v.ulp);
	return json_pack("{ss ss ss ss ss}", "ulp", v.ulp, "version", tls_version_name(v.version),
			 "cipher", tls_cipher_name(v.cipher), "tx", tls_conf_name(v.txconf), "rx",
			 tls_conf_name(v.rxconf));
}

static json_t *conn_json(struct nl_sock *sk, const char *why_not, const struct conn_info *ci)
{
	const char *id = ci->id;

	return json_pack(
		"{ss ss s:s? s:s? s:s? s:s? s:s? sb s:s? sf sI sI so}", "service", ci->service,
		"peer", ci->peer, "uri", ci->id_kind == POLICY_URI ? id : NULL, "dns",
		ci->id_kind == POLICY_DNS ? id : NULL, "cn", ci->id_kind == POLICY_CN ? id : NULL,
		"tls_version", ci->version, "cipher", ci->cipher, "resumed", ci->resumed, "relay",
		ci->relay, "age_s", (double)ci->age_ms / 1000.0, "bytes_in",
		(json_int_t)ci->bytes_in, "bytes_out", (json_int_t)ci->bytes_out, "kernel",
		kernel_view(sk, why_not, ci));
}

static const char *diag_open(struct nl_sock **ret_sk)
{
	struct nl_sock *sk;

	*ret_sk = NULL;
	if (!have_net_admin())
		return "no CAP_NET_ADMIN: the kernel shows a socket's ULP state only to it";
	sk = nl_socket_alloc();
	if (!sk)
		return "out of memory";
	if (nl_connect(sk, NETLINK_SOCK_DIAG)) {
		nl_socket_free(sk);
		return "cannot open a NETLINK_SOCK_DIAG socket";
	}
	/* One answer per request, no ACK after it to trip the next read. */
	nl_socket_disable_auto_ack(sk);
	*ret_sk = sk;
	return NULL;
}

char *connections_json(struct worker *w, unsigned n, unsigned limit)
{
	struct gather g = { .cap = limit };
	struct nl_sock *sk = NULL;
	const char *why_not;
	json_t *arr, *doc;
	char *out = NULL;

	g.v = calloc(limit ? limit : 1, sizeof(*g.v));
	if (!g.v)
		return NULL;
	for (unsigned i = 0; i < n; i++)
		worker_call(&w[i], gather_on_worker, &g);
	why_not = diag_open(&sk);
	arr = json_array();
	for (size_t i = 0; arr && i < g.n; i++)
		json_array_append_new(arr, conn_json(sk, why_not, &g.v[i]));
	doc = json_pack("{so sI sb}", "connections", arr ? arr : json_array(), "total",
			(json_int_t)g.total, "truncated", g.total > g.n);
	if (doc)
		out = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	nl_socket_free(sk);
	for (size_t i = 0; i < g.n; i++)
		free(g.v[i].id);
	free(g.v);
	return out;
}

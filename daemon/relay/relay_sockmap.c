// SPDX-License-Identifier: MIT
/*
 * The sockmap relay's maps and its probe (bpf/relay.bpf.c; docs/bpf.md has the kernel
 * facts this rests on). Per connection: the TLS socket joins `targets` before TCP_ULP
 * (the kernel refuses later), and once kTLS is installed the plaintext socket joins
 * `socks` with peer = the TLS socket: from then on its bytes go to the TLS socket inside
 * the kernel. The map calls are syscalls made once per connection, not per byte.
 */
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ktlsd_bpf.h"
#include "relay.skel.h"
#include "relays.h"
#include "relay_sockmap.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's, as libbpf passes it on */
#endif

struct sockmap {
	struct relay_bpf *skel;
	int socks, targets, peer, sent;
};

/* What one connection put in the maps: what to take out again, sockets closed or not. */
struct sockmap_conn {
	uint64_t tcookie, pcookie;
	struct ktlsd_relay_tuple tuple;
	bool target, linked;
};

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

const char *sockmap_strerror(int err)
{
	switch (-err) {
	case EPERM:
	case EACCES:
		return "not permitted: the sockmap relay needs CAP_BPF and CAP_NET_ADMIN (or root)";
	case EINVAL:
	case ENOTSUPP:
	case EOPNOTSUPP:
		return "this kernel cannot load the sockmap relay's programs";
	default:
		return strerror(-err);
	}
}

const char *sockmap_conn_strerror(int err)
{
	switch (-err) {
	case EOPNOTSUPP: /* sock_map_sk_state_allowed(): ESTABLISHED only */
		return "the socket is past ESTABLISHED (its peer half-closed already)";
	case E2BIG:
	case ENOSPC:
		return "the maps are full";
	default:
		return strerror(-err);
	}
}

int sockmap_open(struct sockmap **ret_sm)
{
	struct sockmap *sm = calloc(1, sizeof(*sm));
	int err = 0;

	if (!sm)
		return -ENOMEM;
	libbpf_set_print(libbpf_quiet);
	sm->skel = relay_bpf__open_and_load();
	if (!sm->skel) {
		err = -errno;
		goto out_free;
	}
	sm->socks = bpf_map__fd(sm->skel->maps.socks);
	sm->targets = bpf_map__fd(sm->skel->maps.targets);
	sm->peer = bpf_map__fd(sm->skel->maps.peer);
	sm->sent = bpf_map__fd(sm->skel->maps.sent);
	if (bpf_prog_attach(bpf_program__fd(sm->skel->progs.relay_parser), sm->socks,
			    BPF_SK_SKB_STREAM_PARSER, 0) ||
	    bpf_prog_attach(bpf_program__fd(sm->skel->progs.relay_verdict), sm->socks,
			    BPF_SK_SKB_STREAM_VERDICT, 0) ||
	    bpf_prog_attach(bpf_program__fd(sm->skel->progs.relay_count), sm->targets,
			    BPF_SK_MSG_VERDICT, 0)) {
		err = -errno;
		goto out_free;
	}
	*ret_sm = sm;
	return 0;
out_free:
	sockmap_close(sm);
	return err;
}

void sockmap_close(struct sockmap *sm)
{
	if (!sm)
		return;
	relay_bpf__destroy(sm->skel);
	free(sm);
}

static int fd_cookie(int fd, uint64_t *ret)
{
	socklen_t l = sizeof(*ret);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, ret, &l) ? -errno : 0;
}

/* The key relay_count sees for fd (ports host order, addresses network order). */
static int fd_tuple(int fd, struct ktlsd_relay_tuple *ret)
{
	struct sockaddr_storage l, r;
	socklen_t ll = sizeof(l), rl = sizeof(r);

	memset(ret, 0, sizeof(*ret));
	if (getsockname(fd, (struct sockaddr *)&l, &ll) ||
	    getpeername(fd, (struct sockaddr *)&r, &rl))
		return -errno;
	ret->family = r.ss_family;
	if (r.ss_family == AF_INET) {
		ret->lport = ntohs(((struct sockaddr_in *)&l)->sin_port);
		ret->rport = ntohs(((struct sockaddr_in *)&r)->sin_port);
		ret->rip[0] = ((struct sockaddr_in *)&r)->sin_addr.s_addr;
		ret->lip[0] = ((struct sockaddr_in *)&l)->sin_addr.s_addr;
	} else {
		ret->lport = ntohs(((struct sockaddr_in6 *)&l)->sin6_port);
		ret->rport = ntohs(((struct sockaddr_in6 *)&r)->sin6_port);
		memcpy(ret->rip, &((struct sockaddr_in6 *)&r)->sin6_addr, 16);
		memcpy(ret->lip, &((struct sockaddr_in6 *)&l)->sin6_addr, 16);
	}
	return 0;
}

static int target_add(struct sockmap *sm, int tfd, struct sockmap_conn *smc)
{
	uint64_t v = (uint64_t)tfd, zero = 0;
	int err = fd_cookie(tfd, &smc->tcookie);

	if (!err)
		err = fd_tuple(tfd, &smc->tuple);
	if (err)
		return err;
	if (bpf_map_update_elem(sm->sent, &smc->tuple, &zero, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(sm->targets, &smc->tcookie, &v, BPF_ANY)) {
		err = -errno;
		bpf_map_delete_elem(sm->sent, &smc->tuple);
		return err;
	}
	smc->target = true;
	return 0;
}

/*
 * peer first, then the map: the verdict must find where to send the very first skb.
 * Bytes that came before the join sit in the receive queue, unseen by the stream parser
 * until the next data_ready; setting SO_RCVLOWAT makes TCP call data_ready now
 * (tcp_set_rcvlowat), so an app's request written before the handshake ended is sent.
 */
static int source_link(struct sockmap *sm, int pfd, struct sockmap_conn *smc)
{
	struct ktlsd_relay_peer p = { .peer_cookie = smc->tcookie };
	uint64_t v = (uint64_t)pfd;
	int one = 1, err = fd_cookie(pfd, &smc->pcookie);

	if (err)
		return err;
	if (bpf_map_update_elem(sm->peer, &smc->pcookie, &p, BPF_ANY))
		return -errno;
	smc->linked = true;
	if (bpf_map_update_elem(sm->socks, &smc->pcookie, &v, BPF_ANY))
		return -errno;
	setsockopt(pfd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	return 0;
}

static void smc_unlink(struct sockmap *sm, struct sockmap_conn *smc)
{
	if (smc->linked) {
		bpf_map_delete_elem(sm->socks, &smc->pcookie);
		bpf_map_delete_elem(sm->peer, &smc->pcookie);
	}
	if (smc->target) {
		bpf_map_delete_elem(sm->targets, &smc->tcookie);
		bpf_map_delete_elem(sm->sent, &smc->tuple);
	}
	smc->linked = smc->target = false;
}

static bool smc_drained(struct sockmap *sm, const struct sockmap_conn *smc, uint64_t *ret_fwd)
{
	struct ktlsd_relay_peer p = { 0 };
	uint64_t sent = 0;

	bpf_map_lookup_elem(sm->peer, &smc->pcookie, &p);
	bpf_map_lookup_elem(sm->sent, &smc->tuple, &sent);
	*ret_fwd = p.redirected;
	return sent >= p.redirected;
}

int sockmap_conn_pre(struct sockmap *sm, struct conn *c)
{
	struct sockmap_conn *smc = calloc(1, sizeof(*smc));
	int err;

	if (!smc)
		return -ENOMEM;
	err = target_add(sm, c->tfd, smc);
	if (err) {
		free(smc);
		return err;
	}
	c->smc = smc;
	return 0;
}

int sockmap_conn_link(struct sockmap *sm, struct conn *c)
{
	int err = source_link(sm, c->pfd, c->smc);

	if (!err)
		c->p2t.kernel = true;
	return err;
}

bool sockmap_conn_drained(struct sockmap *sm, const struct conn *c, uint64_t *ret_fwd)
{
	return smc_drained(sm, c->smc, ret_fwd);
}

void sockmap_conn_unlink(struct sockmap *sm, struct conn *c)
{
	if (!c->smc)
		return;
	smc_unlink(sm, c->smc);
	free(c->smc);
	c->smc = NULL;
}

/* A connected loopback pair, or -errno. */
static int tcp_pair(int fds[2])
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

	fds[0] = fds[1] = -1;
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &sl))
		err = -errno;
	if (!err && (fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		err = -errno;
	if (!err && connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)))
		err = -errno;
	if (!err && (fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		err = -errno;
	close(l);
	return err;
}

/* TLS 1.3 AES-GCM-128 TX with a throwaway all-zero key: the probe only counts bytes. */
static int probe_ktls_tx(int fd)
{
	struct tls12_crypto_info_aes_gcm_128 ci = { 0 };

	ci.info.version = TLS_1_3_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) ||
	    setsockopt(fd, SOL_TLS, TLS_TX, &ci, sizeof(ci)))
		return -errno;
	return 0;
}

/* One byte into the plaintext pair's far end must leave the TLS pair's far end as a
 * 23-byte record (5 header + 1 + 1 content type + 16 tag). */
static bool probe_forward(int send_fd, int recv_fd)
{
	struct pollfd p = { recv_fd, POLLIN, 0 };
	char buf[64];
	size_t got = 0;

	if (send(send_fd, "x", 1, MSG_NOSIGNAL) != 1)
		return false;
	while (got < 23 && poll(&p, 1, 1000) == 1) {
		ssize_t n = recv(recv_fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got == 23;
}

static int probe_run(struct sockmap *sm, int tls[2], int plain[2], bool *ret_p2t,
		     const char **ret_why)
{
	struct sockmap_conn smc = { 0 };
	int err;

	err = target_add(sm, tls[1], &smc);
	if (err) {
		*ret_why = "a socket cannot join the target map";
		return 0;
	}
	if (probe_ktls_tx(tls[1])) {
		*ret_why = "the kernel refuses kTLS on a socket in a sockmap (7.x: EINVAL)";
		goto out;
	}
	if (source_link(sm, plain[1], &smc)) {
		*ret_why = "a socket cannot join the source map";
		goto out;
	}
	*ret_p2t = probe_forward(plain[0], tls[0]);
	if (!*ret_p2t)
		*ret_why = "bytes forwarded into a kTLS socket did not come out";
out:
	smc_unlink(sm, &smc);
	return 0;
}

int sockmap_probe(bool *ret_p2t, bool *ret_t2p, const char **ret_why)
{
	struct sockmap *sm = NULL;
	int tls[2] = { -1, -1 }, plain[2] = { -1, -1 };
	int err = sockmap_open(&sm);

	*ret_p2t = *ret_t2p = false;
	*ret_why = NULL;
	if (err) {
		*ret_why = sockmap_strerror(err);
		return err;
	}
	err = tcp_pair(tls);
	if (!err)
		err = tcp_pair(plain);
	if (!err)
		err = probe_run(sm, tls, plain, ret_p2t, ret_why);
	else
		*ret_why = "no loopback TCP";
	for (int i = 0; i < 2; i++) {
		if (tls[i] >= 0)
			close(tls[i]);
		if (plain[i] >= 0)
			close(plain[i]);
	}
	sockmap_close(sm);
	return err;
}

// SPDX-License-Identifier: MIT
/*
 * ktlsd server / client / --config / check-config: turn a run_config into services
 * (SSL_CTX built once each), listeners, and worker threads; then wait for signals.
 * SIGTERM drains (stop accepting, let connections finish up to the drain deadline),
 * SIGINT stops at once. Exit status: 0 ok, 1 runtime failure, 2 usage/config/cert error or
 * a listen address that cannot be had (in use, not on this host, privileged).
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "ktlsd/ktls.h"
#include "ktlsd/probe.h"
#include "log.h"
#include "sysprobe.h"
#include "tlsctx.h"
#include "worker.h"

static int usage_error(const char *msg)
{
	fprintf(stderr, "ktlsd: %s\n", msg);
	return EXIT_USAGE;
}

static const char *ktls_mode_name(enum ktls_mode m)
{
	return m == KTLS_MODE_REQUIRE ? "require" : m == KTLS_MODE_OFF ? "off" : "auto";
}

static void services_free(struct runtime *rt)
{
	for (size_t i = 0; rt->svc && i < rt->n_svc; i++)
		service_put(rt->svc[i]);
	free(rt->svc);
	rt->svc = NULL;
}

/* Builds every service (its TLS context above all); errors are configuration errors. */
static int services_build(struct runtime *rt, const char *cfgpath, bool check_only)
{
	char err[CONFIG_ERR_MAX];
	int ktls_err = rt->caps.ulp_err;

	rt->kernel_ktls = rt->caps.ulp;
	rt->n_svc = rt->cfg->n_svc;
	rt->svc = calloc(rt->n_svc, sizeof(*rt->svc));
	if (!rt->svc)
		return EXIT_RUNTIME;
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service_config *sc = &rt->cfg->svc[i];
		int rc;

		if (sc->ktls == KTLS_MODE_REQUIRE && !rt->kernel_ktls && !check_only) {
			fprintf(stderr,
				"ktlsd: --ktls require: this kernel has no kTLS (TCP_ULP \"tls\": "
				"%s; CONFIG_TLS off or the tls module unavailable)\n",
				strerror(ktls_err));
			return EXIT_USAGE;
		}
		rc = service_new(sc, rt->kernel_ktls, rt->cfg->threads, &rt->svc[i], err,
				 sizeof(err));
		if (rc == -ENOMEM)
			return EXIT_RUNTIME;
		if (rc) {
			if (cfgpath)
				fprintf(stderr, "ktlsd: %s:%d: [service %s]: %s\n", cfgpath,
					sc->line, sc->name, err);
			else
				fprintf(stderr, "ktlsd: %s\n", err);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/*
 * Listener ownership. Each worker has its own SO_REUSEPORT socket per service so the kernel
 * spreads accepts without a shared queue. But SO_REUSEPORT lets any socket of the same user
 * join the group: a second ktlsd on the same port would silently take a share of the
 * connections. So before the group is opened, a guard socket binds the address without
 * SO_REUSEPORT, which fails with EADDRINUSE while anything listens there, reuseport or not
 * (its SO_REUSEADDR only lets the TIME_WAIT leftovers of an earlier run pass). The guard is
 * closed and the group opened; a socket bound in between would still join it, so once all
 * of ours listen, sock_diag lists the port's listeners, and one that overlaps ours and is
 * not ours makes us give up. Both sides of such a race may refuse; neither shares. Where
 * the kernel cannot be asked (no inet_diag, a seccomp filter) the guard stands alone.
 */
static int listener_guard(const struct daemon_addr *a)
{
	int fd = socket(a->alt[0].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->alt[0].ss, a->alt[0].len))
		rc = -errno;
	close(fd);
	return rc;
}

static int listener_open(const struct daemon_addr *a, int *ret_fd)
{
	int fd = socket(a->alt[0].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One listener per worker: the kernel load-balances accepts, no shared queue. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)&a->alt[0].ss, a->alt[0].len) || listen(fd, 4096)) {
		int e = errno;

		close(fd);
		return -e;
	}
	*ret_fd = fd;
	return 0;
}

/* Our listening sockets of one service, as sock_diag names them. */
struct listen_set {
	const struct daemon_addr *addr;
	bool v6only; /* ours is [::] but takes no IPv4 (net.ipv6.bindv6only) */
	unsigned n;
	uint32_t inode[];
};

static bool listen_set_has(const struct listen_set *ls, uint32_t inode)
{
	for (unsigned i = 0; i < ls->n; i++)
		if (ls->inode[i] == inode)
			return true;
	return false;
}

/* Whether a listener sock_diag reported takes connections meant for ours. */
static bool diag_overlaps(const struct listen_set *ls, const struct inet_diag_msg *m, int attr_len)
{
	const struct daemon_addr *a = ls->addr;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	bool v6only = false;

	for (const struct rtattr *at = (const struct rtattr *)(m + 1); RTA_OK(at, attr_len);
	     at = RTA_NEXT(at, attr_len))
		if (at->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(at) >= 1)
			v6only = *(const uint8_t *)RTA_DATA(at);
	if (m->idiag_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = m->id.idiag_sport;
		memcpy(&in->sin_addr, m->id.idiag_src, 4);
		len = sizeof(*in);
		if (ls->v6only)
			return false;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = m->id.idiag_sport;
		memcpy(&in6->sin6_addr, m->id.idiag_src, 16);
		len = sizeof(*in6);
		if (v6only && a->alt[0].ss.ss_family == AF_INET)
			return false;
	}
	return addr_listen_overlap((const struct sockaddr *)&a->alt[0].ss, a->alt[0].len,
				   (const struct sockaddr *)&ss, len);
}

/* -EADDRINUSE if a listener of this family that is not ours overlaps ours; 0 if none;
 * another -errno if the kernel could not be asked. */
static int diag_scan(const struct listen_set *ls, int family)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req = {
		.nlh = { .nlmsg_len = sizeof(req),
			 .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			 .nlmsg_seq = 1 },
		.r = { .sdiag_family = (uint8_t)family,
		       .sdiag_protocol = IPPROTO_TCP,
		       .idiag_states = 1u << TCP_LISTEN },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr h;
		char b[32768];
	} buf;
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), rc = 0;

	if (nl < 0)
		return -errno;
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		rc = -errno;
		goto out_close;
	}
	for (;;) {
		int len = (int)recv(nl, &buf, sizeof(buf), 0);

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0) {
			rc = len < 0 ? -errno : -EIO;
			goto out_close;
		}
		for (struct nlmsghdr *h = &buf.h; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				goto out_close;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				rc = h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error ? e->error
											  : -EIO;
				goto out_close;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
				continue;
			if (diag_overlaps(ls, m, (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)))) &&
			    !listen_set_has(ls, m->idiag_inode)) {
				rc = -EADDRINUSE;
				goto out_close;
			}
		}
	}
out_close:
	close(nl);
	return rc;
}

/* After listen(): is every listener on our address one of ours? See the guard's comment. */
static int listeners_exclusive(const struct daemon_addr *a, struct worker *w, unsigned n, size_t s)
{
	struct listen_set *ls = calloc(1, sizeof(*ls) + n * sizeof(ls->inode[0]));
	int rc = 0, v6only = 0;
	socklen_t olen = sizeof(v6only);

	if (!ls)
		return -ENOMEM;
	ls->addr = a;
	for (unsigned i = 0; i < n; i++) {
		struct stat st;

		if (fstat(w[i].listen_fd[s], &st)) {
			rc = -errno;
			goto out_free;
		}
		ls->inode[ls->n++] = (uint32_t)st.st_ino;
	}
	if (a->alt[0].ss.ss_family == AF_INET6 &&
	    !getsockopt(w[0].listen_fd[s], IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen))
		ls->v6only = v6only;
	rc = diag_scan(ls, AF_INET);
	if (!rc)
		rc = diag_scan(ls, AF_INET6);
	if (rc != -EADDRINUSE)
		rc = 0; /* not asked, not refused: the guard has done what it could */
out_free:
	free(ls);
	return rc;
}

/* What an operator can act on, for bind()/listen() errors in particular. */
static const char *listen_strerror(int err)
{
	switch (err) {
	case EADDRINUSE:
		return "address in use";
	case EADDRNOTAVAIL:
		return "address not available (no interface has it)";
	case EACCES:
		return "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)";
	default:
		return strerror(err);
	}
}

/*
 * Opens service s's listener in every worker, or says in one line why not. The address is
 * the operator's to fix (exit 2) unless the process ran out of something (exit 1).
 */
static int service_listen(const struct service_config *sc, const char *cfgpath, struct worker *w,
			  unsigned n, size_t s)
{
	int err = listener_guard(&sc->listen_addr);

	for (unsigned i = 0; !err && i < n; i++)
		err = listener_open(&sc->listen_addr, &w[i].listen_fd[s]);
	if (!err)
		err = listeners_exclusive(&sc->listen_addr, w, n, s);
	if (!err)
		return 0;
	if (cfgpath)
		fprintf(stderr, "ktlsd: %s:%d: [service %s]: listen %s: %s\n", cfgpath, sc->line,
			sc->name, sc->listen, listen_strerror(-err));
	else
		fprintf(stderr, "ktlsd: listen %s: %s\n", sc->listen, listen_strerror(-err));
	switch (-err) {
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case ENOBUFS:
		return EXIT_RUNTIME;
	default:
		return EXIT_USAGE;
	}
}

/*
 * Descriptors a connection holds at most: its two sockets, and the kTLS relay's two pipes
 * (four fds). Beside them: stdio, and per worker its ring, eventfd and one listener per
 * service; NOFILE_SPARE covers what libraries open (OpenSSL's files) and the socket a
 * worker accepts only to refuse it.
 */
#define FDS_PER_CONN	  2
#define FDS_PER_CONN_KTLS 6
#define NOFILE_SPARE	  32

static unsigned fds_per_conn(const struct service *s)
{
	return s->use_ktls ? FDS_PER_CONN_KTLS : FDS_PER_CONN;
}

/*
 * The soft RLIMIT_NOFILE goes up to the hard one (the soft default, 1024, would hold some
 * 500 connections). An explicit max-conns the limit cannot hold is refused (exit 2): it
 * would end in EMFILE under load, far from its cause. A default max-conns is kept and the
 * number of connections the limit holds is logged: past it, accepting pauses until
 * descriptors free up. Sets each service's conn_cap.
 */
static int nofile_setup(struct runtime *rt, const char *cfgpath, rlim_t *ret_limit)
{
	struct rlimit rl;
	uint64_t fixed, avail, need = 0, per_default = 0;
	size_t n_default = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return EXIT_RUNTIME;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };

		/* RLIM_INFINITY is above fs.nr_open and refused: then the soft one stays. */
		if (!setrlimit(RLIMIT_NOFILE, &up))
			rl = up;
	}
	fixed = 3 + NOFILE_SPARE + (uint64_t)rt->cfg->threads * (rt->n_svc + 2);
	avail = rl.rlim_cur > fixed ? rl.rlim_cur - fixed : 0;
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];
		const struct service_config *sc = s->cfg;
		uint64_t n = (uint64_t)sc->max_conns * fds_per_conn(s);

		if (!sc->max_conns_set) {
			n_default++;
			continue;
		}
		need += n;
		if (fixed + need <= rl.rlim_cur)
			continue;
		if (cfgpath)
			fprintf(stderr, "ktlsd: %s:%d: [service %s]: ", cfgpath, sc->line,
				sc->name);
		else
			fprintf(stderr, "ktlsd: --");
		fprintf(stderr,
			"max-conns %u needs %llu file descriptors (%u per connection%s, %llu "
			"for the daemon) but RLIMIT_NOFILE is %llu: raise the limit (ulimit -n, "
			"systemd LimitNOFILE=) or lower max-conns\n",
			sc->max_conns, (unsigned long long)(fixed + need), fds_per_conn(s),
			s->use_ktls ? " with kTLS" : "", (unsigned long long)fixed,
			(unsigned long long)rl.rlim_cur);
		return EXIT_USAGE;
	}
	/* Services left at the default share what the explicit ones leave. */
	if (n_default)
		per_default = (avail - need) / n_default;
	for (size_t i = 0; i < rt->n_svc; i++) {
		struct service *s = rt->svc[i];
		uint64_t cap = per_default / fds_per_conn(s);

		s->conn_cap = s->cfg->max_conns_set || cap >= s->cfg->max_conns ? s->cfg->max_conns
										: (unsigned)cap;
		s->max_handshakes =
			s->cfg->max_handshakes ? s->cfg->max_handshakes : s->cfg->max_conns;
	}
	*ret_limit = rl.rlim_cur;
	return 0;
}

/* io_uring may be disabled by a seccomp profile or sysctl: say so before anything else. */
static int io_uring_check(const struct sys_caps *caps)
{
	if (!caps->uring) {
		if (caps->uring_err == EPERM || caps->uring_err == ENOSYS)
			fprintf(stderr,
				"ktlsd: io_uring is not available (%s): it is disabled by "
				"kernel.io_uring_disabled or blocked by a seccomp profile "
				"(container "
				"runtimes block it by default)\n",
				strerror(caps->uring_err));
		else
			fprintf(stderr, "ktlsd: io_uring setup failed: %s\n",
				strerror(caps->uring_err));
		return EXIT_RUNTIME;
	}
	if (!caps->uring_accept_multishot) {
		fprintf(stderr, "ktlsd: this kernel's io_uring lacks multishot accept (Linux 5.19+ "
				"needed)\n");
		return EXIT_RUNTIME;
	}
	return 0;
}

static void log_start(struct runtime *rt, rlim_t nofile)
{
	char threads[16], fds[24];

	snprintf(threads, sizeof(threads), "%u", rt->cfg->threads);
	snprintf(fds, sizeof(fds), "%llu", (unsigned long long)nofile);
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];
		const struct service_config *sc = s->cfg;
		char cap[16], hs[16], idle[16];

		snprintf(cap, sizeof(cap), "%u", s->conn_cap);
		snprintf(hs, sizeof(hs), "%u", s->max_handshakes);
		snprintf(idle, sizeof(idle), "%u", sc->idle_timeout_s);
		struct log_kv kv[] = {
			{ "service", sc->name },
			{ "mode", sc->role == ROLE_SERVER ? "server" : "client" },
			{ "listen", sc->listen },
			{ "target", sc->target },
			{ "ktls", ktls_mode_name(sc->ktls) },
			{ "kernel_ktls", rt->kernel_ktls ? "yes" : "no" },
			{ "threads", threads },
			{ "resumption", sc->resumption ? "yes" : "no" },
			{ "server_name", sc->role == ROLE_CLIENT ? sc->server_name : NULL },
			/* no --verify-* rule given: the server must carry the name it is dialled by */
			{ "verify_dns", sc->default_dns_rule ? sc->server_name : NULL },
			{ "verify_ip", sc->default_ip_rule ? sc->target_addr.host : NULL },
			/* connections this service can hold: max-conns, or fewer if the fd limit
			 * says so */
			{ "max_conns", cap },
			{ "max_handshakes", hs },
			{ "idle_timeout_s", idle },
			{ "nofile", fds },
		};

		log_kv(rt->cfg->log_format, "info", "listening", kv,
		       (int)(sizeof(kv) / sizeof(kv[0])));
		if (s->conn_cap < sc->max_conns) {
			char msg[256];

			snprintf(msg, sizeof(msg),
				 "RLIMIT_NOFILE %s holds about %u connections, fewer than the "
				 "default "
				 "max-conns %u: past them accepting pauses until descriptors free "
				 "up "
				 "(raise LimitNOFILE= / ulimit -n, or set max-conns)",
				 fds, s->conn_cap, sc->max_conns);
			struct log_kv w[] = { { "service", sc->name }, { "msg", msg } };

			log_kv(rt->cfg->log_format, "warn", "nofile_low", w, 2);
		}
	}
	for (size_t i = 0; i < rt->n_svc; i++) {
		if (rt->svc[i]->cfg->ktls == KTLS_MODE_AUTO && !rt->kernel_ktls) {
			struct log_kv kv[] = {
				{ "msg", "kernel has no kTLS: relaying in userspace (SSL_read/"
					 "SSL_write); connections log ktls=off" }
			};

			log_kv(rt->cfg->log_format, "warn", "ktls_unavailable", kv, 1);
			break;
		}
	}
}

/* Until the admin endpoint exists, the limit counters reach operators here, at exit. */
static void log_counters(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];
		char v[STAT_MAX][24];
		struct log_kv kv[STAT_MAX + 1] = { { "service", s->cfg->name } };

		for (int k = 0; k < STAT_MAX; k++) {
			snprintf(v[k], sizeof(v[k]), "%llu",
				 (unsigned long long)service_stat_sum(s, (enum service_stat)k));
			kv[k + 1].key = service_stat_name((enum service_stat)k);
			kv[k + 1].val = v[k];
		}
		log_kv(rt->cfg->log_format, "info", "counters", kv, STAT_MAX + 1);
	}
}

static void workers_signal(struct worker *w, unsigned n, int cmd)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < n; i++) {
		atomic_store(&w[i].cmd, cmd);
		if (write(w[i].evfd, &one, sizeof(one)) < 0) {
			/* An eventfd write only fails on overflow: the worker is awake anyway. */
		}
	}
}

static int run(struct run_config *cfg, const char *cfgpath)
{
	struct runtime rt = { .cfg = cfg };
	struct sys_caps caps;
	struct worker *w = NULL;
	pthread_barrier_t ready;
	unsigned n = cfg->threads, started = 0;
	sigset_t set;
	int rc, sig = 0;
	rlim_t nofile = 0;

	if (cfg->allow_core_dumps) {
		struct log_kv kv[] = { { "msg", "--allow-core-dumps: a core file of this process "
						"holds its private keys and session secrets" } };

		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		log_kv(cfg->log_format, "warn", "core_dumps_allowed", kv, 1);
	}
	/* Try, don't guess: what this kernel supports decides kTLS and io_uring use. */
	if (sysprobe(&caps)) {
		fprintf(stderr, "ktlsd: cannot probe kernel capabilities\n");
		return EXIT_RUNTIME;
	}
	rt.caps = caps.ktls;
	rc = services_build(&rt, cfgpath, false);
	if (rc)
		goto out_free_services;
	rc = io_uring_check(&caps);
	if (rc)
		goto out_free_services;
	/* Before the workers start: an accept takes the fd limit in force when it is armed. */
	rc = nofile_setup(&rt, cfgpath, &nofile);
	if (rc)
		goto out_free_services;

	/* Workers inherit a mask with these blocked; only this thread takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	w = calloc(n, sizeof(*w));
	if (!w) {
		rc = EXIT_RUNTIME;
		goto out_free_services;
	}
	for (unsigned i = 0; i < n; i++) {
		w[i].id = i;
		w[i].rt = &rt;
		w[i].evfd = -1;
		w[i].ready = &ready;
		w[i].listen_fd = calloc(rt.n_svc, sizeof(int));
		if (!w[i].listen_fd) {
			rc = EXIT_RUNTIME;
			goto out_free_workers;
		}
		for (size_t s = 0; s < rt.n_svc; s++)
			w[i].listen_fd[s] = -1;
	}
	for (size_t s = 0; s < rt.n_svc; s++) {
		rc = service_listen(&cfg->svc[s], cfgpath, w, n, s);
		if (rc)
			goto out_free_workers;
	}
	pthread_barrier_init(&ready, NULL, n + 1);
	for (unsigned i = 0; i < n; i++) {
		if (worker_start(&w[i])) {
			fprintf(stderr, "ktlsd: cannot start worker thread\n");
			_exit(EXIT_RUNTIME); /* the barrier cannot complete any more */
		}
		started++;
	}
	pthread_barrier_wait(&ready);
	for (unsigned i = 0; i < n; i++) {
		if (w[i].init_rc) {
			fprintf(stderr, "ktlsd: worker %u: io_uring setup failed: %s\n", i,
				strerror(-w[i].init_rc));
			_exit(EXIT_RUNTIME);
		}
	}
	log_start(&rt, nofile);

	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		if (sig == SIGHUP) {
			struct log_kv kv[] = { { "msg", "SIGHUP: reload is not supported yet" } };

			log_kv(cfg->log_format, "warn", "reload_ignored", kv, 1);
			continue;
		}
		break;
	}
	{
		struct log_kv kv[] = { { "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT" },
				       { "action", sig == SIGTERM ? "drain" : "stop" } };

		log_kv(cfg->log_format, "info", "shutdown", kv, 2);
	}
	workers_signal(w, n, sig == SIGTERM ? CMD_DRAIN : CMD_STOP);
	for (unsigned i = 0; i < started; i++)
		pthread_join(w[i].thread, NULL);
	log_counters(&rt);
	{
		struct log_kv kv[] = { { "msg", "all workers stopped" } };

		log_kv(cfg->log_format, "info", "exit", kv, 1);
	}
	rc = 0;
	pthread_barrier_destroy(&ready);

out_free_workers:
	for (unsigned i = 0; w && i < n; i++) {
		for (size_t s = 0; w[i].listen_fd && s < rt.n_svc; s++)
			if (w[i].listen_fd[s] >= 0)
				close(w[i].listen_fd[s]);
		free(w[i].listen_fd);
		if (w[i].evfd >= 0)
			close(w[i].evfd);
	}
	free(w);
out_free_services:
	services_free(&rt);
	return rc;
}

static int cmd_role(enum service_role role, int argc, char **argv)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];
	int rc = config_from_argv(role, argc, argv, &cfg, err, sizeof(err));

	if (rc == 1)
		return 0;
	if (rc)
		return usage_error(err);
	rc = run(&cfg, NULL);
	config_free(&cfg);
	return rc;
}

int cmd_server(int argc, char **argv)
{
	return cmd_role(ROLE_SERVER, argc, argv);
}

int cmd_client(int argc, char **argv)
{
	return cmd_role(ROLE_CLIENT, argc, argv);
}

static const char *config_path(int argc, char **argv)
{
	/* ktlsd --config FILE | --config=FILE */
	if (!strncmp(argv[1], "--config=", 9))
		return argc == 2 ? argv[1] + 9 : NULL;
	return argc == 3 ? argv[2] : NULL;
}

int cmd_config(int argc, char **argv)
{
	const char *path = config_path(argc, argv);
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];
	int rc;

	if (!path || !*path)
		return usage_error("usage: ktlsd --config FILE");
	if (config_from_file(path, &cfg, err, sizeof(err)))
		return usage_error(err);
	rc = run(&cfg, path);
	config_free(&cfg);
	return rc;
}

int cmd_check_config(int argc, char **argv)
{
	struct run_config cfg;
	struct runtime rt = { .cfg = &cfg };
	char err[CONFIG_ERR_MAX];
	int rc;

	if (argc != 2)
		return usage_error("usage: ktlsd check-config FILE");
	if (config_from_file(argv[1], &cfg, err, sizeof(err)))
		return usage_error(err);
	/* Certificates, keys and CAs are loaded exactly as the daemon would. */
	ktls_probe(&rt.caps);
	rc = services_build(&rt, argv[1], true);
	services_free(&rt);
	if (!rc)
		printf("%s: ok (%zu service%s)\n", argv[1], cfg.n_svc, cfg.n_svc == 1 ? "" : "s");
	config_free(&cfg);
	return rc;
}

// SPDX-License-Identifier: MIT
/*
 * ktlsd server / client / --config / check-config: the runtime. It turns a run_config into
 * services (SSL_CTX built once each), listeners, and worker threads, and wires the rooms
 * together (the loop gets relay_begin from here: it never names a relay).
 *
 * Threads: the main thread builds everything, blocks SIGTERM/SIGINT/SIGHUP (the workers
 * inherit that mask, so only it takes them), starts one worker per --threads and waits on
 * a barrier until every worker's ring is armed, logs "listening", then waits for signals
 * and file changes (reload.c: SIGHUP and changed files rebuild the services). SIGTERM drains (workers stop accepting, connections finish up to the drain deadline),
 * SIGINT stops at once; either way it tells each worker through its eventfd, joins them,
 * and logs the counters. Nothing else is shared with the workers but the immutable
 * services and their per-worker statistics.
 *
 * Exit status: 0 ok, 1 runtime failure, 2 usage/config/cert error or a listen address
 * that cannot be had (in use, not on this host, privileged).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "commands.h"
#include "listen.h"
#include "ktlsd/ktls.h"
#include "ktlsd/probe.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "relay_mode.h"
#include "steer.h"
#include "sysprobe.h"
#include "tlsctx.h"
#include "relays.h"
#include "sandbox.h"
#include "worker.h"

void service_error(const char *cfgpath, const struct service_config *sc, const char *msg)
{
	if (cfgpath)
		fprintf(stderr, "ktlsd: %s:%d: [service %s]: %s\n", cfgpath, sc->line, sc->name,
			msg);
	else
		fprintf(stderr, "ktlsd: %s\n", msg);
}

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
		rc = service_new(sc, rt->kernel_ktls, rt->cfg->threads, NULL, &rt->svc[i], err,
				 sizeof(err));
		if (rc == -ENOMEM)
			return EXIT_RUNTIME;
		if (rc) {
			service_error(cfgpath, sc, err);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/*
 * Descriptors a connection holds: its two sockets. The kTLS relay's pipes come from a
 * per-worker pool while bytes are in flight (conn_pipe_get): each worker keeps up to
 * PIPE_POOL_MAX of them, reserved below; a pipe a worker cannot get ends that connection
 * with reason "pipe: ...". Beside them: stdio, and per worker its ring, two eventfds (its
 * mailbox, its handshake thread) and one listener per service; NOFILE_SPARE covers what
 * libraries open (OpenSSL's files) and the socket a worker accepts only to refuse it.
 */
#define FDS_PER_CONN	  2
#define FDS_PER_CONN_KTLS 2
#define FDS_PIPE_POOL	  (2 * PIPE_POOL_MAX)
#define NOFILE_SPARE	  32

static unsigned fds_per_conn(const struct service *s)
{
	return s->use_ktls ? FDS_PER_CONN_KTLS : FDS_PER_CONN;
}

/* The pipe pools' descriptors, where a service relays with kTLS. */
static uint64_t pipe_fds(const struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_svc; i++)
		if (rt->svc[i]->use_ktls)
			return (uint64_t)rt->cfg->threads * FDS_PIPE_POOL;
	return 0;
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
	fixed = 3 + NOFILE_SPARE + (uint64_t)rt->cfg->threads * (rt->n_svc + 3) + pipe_fds(rt);
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

/* One "listening" line per service: what it runs with, limits as the fd limit left them. */
static void log_listening(const struct runtime *rt, const struct service *s, const char *fds)
{
	const struct service_config *sc = s->cfg;
	char threads[16], cap[16], hs[16], idle[16];

	snprintf(threads, sizeof(threads), "%u", rt->cfg->threads);
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
		{ "relay", s->sockmap	 ? "sockmap"
			   : s->use_ktls ? "splice"
					 : "userspace" },
		{ "threads", threads },
		{ "resumption", sc->resumption ? "yes" : "no" },
		{ "server_name", sc->role == ROLE_CLIENT ? sc->server_name : NULL },
		/* no --verify-* rule given: the server must carry the name it is dialled by */
		{ "verify_dns", sc->default_dns_rule ? sc->server_name : NULL },
		{ "verify_ip", sc->default_ip_rule ? sc->target_addr.host : NULL },
		/* connections this service can hold: max-conns, or fewer if the fd limit says so */
		{ "max_conns", cap },
		{ "max_handshakes", hs },
		{ "idle_timeout_s", idle },
		{ "nofile", fds },
	};

	log_kv(rt->cfg->log_format, "info", "listening", kv, (int)(sizeof(kv) / sizeof(kv[0])));
}

static void log_start(struct runtime *rt, rlim_t nofile)
{
	char fds[24], msg[256];

	snprintf(fds, sizeof(fds), "%llu", (unsigned long long)nofile);
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];

		log_listening(rt, s, fds);
		if (s->conn_cap >= s->cfg->max_conns)
			continue;
		snprintf(msg, sizeof(msg),
			 "RLIMIT_NOFILE %s holds about %u connections, fewer than the default "
			 "max-conns %u: past them accepting pauses until descriptors free up "
			 "(raise LimitNOFILE= / ulimit -n, or set max-conns)",
			 fds, s->conn_cap, s->cfg->max_conns);
		struct log_kv w[] = { { "service", s->cfg->name }, { "msg", msg } };

		log_kv(rt->cfg->log_format, "warn", "nofile_low", w, 2);
	}
	for (size_t i = 0; i < rt->n_svc; i++) {
		if (rt->svc[i]->cfg->ktls == KTLS_MODE_AUTO && !rt->kernel_ktls) {
			struct log_kv kv[] = {
				{ "msg",
				  "kernel has no kTLS: relaying in userspace (TLS 1.3 with "
				  "ktlsd's own records, else SSL_read/SSL_write); connections "
				  "log ktls=off and records=ktlsd|openssl" }
			};

			log_kv(rt->cfg->log_format, "warn", "ktls_unavailable", kv, 1);
			break;
		}
	}
}

/* The counters once more at exit, for logs without a scraper. */
static void log_counters(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_svc; i++) {
		const struct service *s = rt->svc[i];
		char v[STAT_MAX][24];

		if (!s)
			continue; /* removed by a reload */
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

/* Probe, build the services, check io_uring and the fd limit: all before any thread. */
static int runtime_prepare(struct runtime *rt, const char *cfgpath, rlim_t *ret_nofile)
{
	struct sys_caps caps;
	int rc;

	if (rt->cfg->allow_core_dumps) {
		struct log_kv kv[] = { { "msg", "--allow-core-dumps: a core file of this process "
						"holds its private keys and session secrets" } };

		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		log_kv(rt->cfg->log_format, "warn", "core_dumps_allowed", kv, 1);
	}
	/* Try, don't guess: what this kernel supports decides kTLS and io_uring use. */
	if (sysprobe(&caps)) {
		fprintf(stderr, "ktlsd: cannot probe kernel capabilities\n");
		return EXIT_RUNTIME;
	}
	rt->caps = caps.ktls;
	rc = services_build(rt, cfgpath, false);
	if (!rc)
		rc = io_uring_check(&caps);
	/* Before the workers start: an accept takes the fd limit in force when it is armed. */
	if (!rc)
		rc = nofile_setup(rt, cfgpath, ret_nofile);
	return rc;
}

static void workers_free(struct worker *w, unsigned n, size_t n_svc)
{
	for (unsigned i = 0; w && i < n; i++) {
		for (size_t s = 0; w[i].listen_fd && s < n_svc; s++)
			if (w[i].listen_fd[s] >= 0)
				close(w[i].listen_fd[s]);
		free(w[i].listen_fd);
		if (w[i].evfd >= 0)
			close(w[i].evfd);
	}
	free(w);
}

/* The workers' state and every service's listeners, opened here so errors exit 2 early. */
static int workers_create(struct runtime *rt, const char *cfgpath, pthread_barrier_t *ready,
			  struct worker **ret_w)
{
	unsigned n = rt->cfg->threads;
	struct worker *w = calloc(n, sizeof(*w));
	int rc = 0;

	if (!w)
		return EXIT_RUNTIME;
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct worker){ .id = i, .rt = rt, .evfd = -1, .ready = ready };
		w[i].listen_fd = malloc(rt->n_svc * sizeof(int));
		if (!w[i].listen_fd) {
			rc = EXIT_RUNTIME;
			goto out_free;
		}
		for (size_t s = 0; s < rt->n_svc; s++)
			w[i].listen_fd[s] = -1;
	}
	for (size_t s = 0; !rc && s < rt->n_svc; s++)
		rc = service_listen(&rt->cfg->svc[s], cfgpath, w, n, s);
	if (!rc) {
		*ret_w = w;
		return 0;
	}
out_free:
	workers_free(w, n, rt->n_svc);
	return rc;
}

/*
 * Starts the n workers and waits (barrier) until each has its ring armed, so "listening"
 * is only logged once accepts are live. A worker that fails after the barrier was set up
 * leaves no way back: exit at once.
 */
static void workers_start(struct worker *w, unsigned n, pthread_barrier_t *ready)
{
	pthread_barrier_init(ready, NULL, n + 1);
	for (unsigned i = 0; i < n; i++) {
		if (worker_start(&w[i])) {
			fprintf(stderr, "ktlsd: cannot start worker thread\n");
			_exit(EXIT_RUNTIME); /* the barrier cannot complete any more */
		}
	}
	pthread_barrier_wait(ready);
	for (unsigned i = 0; i < n; i++) {
		if (w[i].init_rc && w[i].init_hs) {
			fprintf(stderr, "ktlsd: worker %u: cannot start its handshake thread: %s\n",
				i, strerror(-w[i].init_rc));
			_exit(EXIT_RUNTIME);
		}
		if (w[i].init_rc) {
			fprintf(stderr, "ktlsd: worker %u: io_uring setup failed: %s%s\n", i,
				strerror(-w[i].init_rc),
				w[i].init_rc == -ENOMEM
					? " (without CAP_IPC_LOCK the rings count against "
					  "RLIMIT_MEMLOCK: raise LimitMEMLOCK= / ulimit -l)"
					: "");
			_exit(EXIT_RUNTIME);
		}
	}
}

/* The main thread's only job once workers run: the signals (only it takes them), reloads. */
static int signal_wait(struct runtime *rt, struct worker *w, const char *cfgpath,
		       const sigset_t *set)
{
	const struct run_config *cfg = rt->cfg;
	struct reloader rl;
	int sig;

	if (reloader_init(&rl, rt, w, cfg->threads, cfgpath)) {
		struct log_kv kv[] = { { "msg", "out of memory: no reload, no file watching" } };

		log_kv(cfg->log_format, "error", "reload_unavailable", kv, 1);
		while (sigwait(set, &sig) || sig == SIGHUP)
			;
	} else {
		sig = reloader_wait(&rl, set);
	}
	reloader_free(&rl);
	notify_stopping();
	notify_status("%s", sig == SIGTERM ? "draining" : "stopping");
	struct log_kv kv[] = { { "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT" },
			       { "action", sig == SIGTERM ? "drain" : "stop" } };

	log_kv(cfg->log_format, "info", "shutdown", kv, 2);
	return sig;
}

static void workers_join(struct worker *w, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
}

/*
 * The admin endpoint's socket, bound before the sandbox like the listeners. Its address
 * not being ours is a usage error like a listen address: exit 2.
 */
static int admin_open(struct runtime *rt, struct admin **ret_admin)
{
	char err[CONFIG_ERR_MAX];
	int rc;

	*ret_admin = NULL;
	if (!rt->cfg->admin)
		return 0;
	rc = admin_new(rt, ret_admin, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ktlsd: %s\n", err);
		return rc == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
	}
	return 0;
}

/* Serving starts once the workers run (it reaches them through worker_call). */
static int admin_begin(struct runtime *rt, struct worker *w, struct admin *admin)
{
	char err[CONFIG_ERR_MAX];

	if (!admin)
		return 0;
	if (admin_serve(admin, w, rt->cfg->threads, err, sizeof(err))) {
		fprintf(stderr, "ktlsd: %s\n", err);
		return EXIT_RUNTIME;
	}
	struct log_kv kv[] = { { "admin", rt->cfg->admin } };

	log_kv(rt->cfg->log_format, "info", "admin_listening", kv, 1);
	return 0;
}

/*
 * The sandbox (sandbox.h), on this thread before the workers exist so they inherit it.
 * Failing to apply it is fatal: ktlsd never runs with half of what was asked for.
 */
static int sandbox_start(const struct run_config *cfg, const char *cfgpath)
{
	char err[CONFIG_ERR_MAX];
	int rc = sandbox_apply(cfg, cfgpath, err, sizeof(err));

	if (!rc)
		return 0;
	fprintf(stderr, "ktlsd: %s\n", err);
	return rc == -EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
}

/*
 * A rotation tool may send SIGHUP while the services are still being built: its default
 * action would kill the daemon. Held from the start, it reloads once the workers run.
 */
static void hup_hold(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Workers inherit a mask with these blocked; only the main thread takes them. */
static void signals_block(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Every listener accepts: /readyz, the log and systemd hear it. */
static void announce_ready(struct runtime *rt, rlim_t nofile)
{
	atomic_store(&rt->ready, true);
	log_start(rt, nofile);
	notify_status("listening: %zu service%s, %u worker threads", rt->n_svc,
		      rt->n_svc == 1 ? "" : "s", rt->cfg->threads);
	notify_ready();
}

/* SIGTERM drains, SIGINT stops: the workers end, then the admin endpoint, then the tally. */
static void stop(struct runtime *rt, struct worker *w, struct admin *admin, int sig)
{
	/* /readyz says 503 from here: the orchestrator stops sending while connections end. */
	atomic_store(&rt->draining, true);
	workers_signal(w, rt->cfg->threads, sig == SIGTERM ? CMD_DRAIN : CMD_STOP);
	workers_join(w, rt->cfg->threads);
	admin_stop(admin);
	log_counters(rt);
	struct log_kv kv[] = { { "msg", "all workers stopped" } };

	log_kv(rt->cfg->log_format, "info", "exit", kv, 1);
}

/* Every worker's ring exists: no further one may be made (sandbox_seal_rings). */
static int rings_seal(const struct run_config *cfg)
{
	char err[CONFIG_ERR_MAX];

	if (!sandbox_seal_rings(cfg, err, sizeof(err)))
		return 0;
	fprintf(stderr, "ktlsd: %s\n", err);
	return EXIT_RUNTIME;
}

static int run(struct run_config *cfg, const char *cfgpath)
{
	struct admin *admin = NULL;
	struct runtime rt = { .cfg = cfg,
			      .svc_lock = PTHREAD_MUTEX_INITIALIZER,
			      .relay_begin = relay_begin,
			      .ring_ready = sandbox_rings_done };
	struct worker *w = NULL;
	struct steer **steers = NULL;
	struct sockmap *sm = NULL;
	pthread_barrier_t ready;
	sigset_t set;
	rlim_t nofile = 0;
	int rc, sig;

	hup_hold(&set);
	rc = runtime_prepare(&rt, cfgpath, &nofile);
	if (!rc)
		rc = relay_mode_setup(&rt, cfgpath, &sm);
	if (rc)
		goto out_free_services;
	signals_block(&set);
	rc = workers_create(&rt, cfgpath, &ready, &w);
	if (!rc && (rc = steers_attach(cfg, cfgpath, w, &steers)))
		workers_free(w, cfg->threads, rt.n_svc);
	if (rc)
		goto out_free_services;
	rc = admin_open(&rt, &admin);
	/* Listeners bound, keys read: drop what is left before any peer byte is read. */
	if (!rc)
		rc = sandbox_start(cfg, cfgpath);
	if (rc) {
		admin_stop(admin);
		steers_free(steers, cfg->n_svc);
		workers_free(w, cfg->threads, rt.n_svc);
		goto out_free_services;
	}
	workers_start(w, cfg->threads, &ready);
	sandbox_rings_done();
	rc = rings_seal(cfg);
	if (!rc)
		rc = admin_begin(&rt, w, admin);
	if (rc) {
		workers_signal(w, cfg->threads, CMD_STOP);
		workers_join(w, cfg->threads);
		admin_stop(admin);
		goto out_free_workers;
	}
	announce_ready(&rt, nofile);
	sig = signal_wait(&rt, w, cfgpath, &set);
	stop(&rt, w, admin, sig);
out_free_workers:
	pthread_barrier_destroy(&ready);
	steers_free(steers, cfg->n_svc);
	workers_free(w, cfg->threads, rt.n_svc);
out_free_services:
	services_free(&rt);
	sockmap_close(sm);
	return rc;
}

static int cmd_role(enum service_role role, int argc, char **argv)
{
	struct run_config cfg;
	char err[CONFIG_ERR_MAX];
	bool help;
	int rc = config_from_argv(role, argc, argv, &cfg, &help, err, sizeof(err));

	if (rc)
		return usage_error(err);
	if (help)
		return 0;
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
	struct runtime rt = { .cfg = &cfg, .svc_lock = PTHREAD_MUTEX_INITIALIZER };
	char err[CONFIG_ERR_MAX];
	int rc;

	if (argc != 2)
		return usage_error("usage: ktlsd check-config FILE");
	if (config_from_file(argv[1], &cfg, err, sizeof(err)))
		return usage_error(err);
	/* Certificates, keys and CAs are loaded exactly as the daemon would. */
	ktls_probe(&rt.caps);
	rc = services_build(&rt, argv[1], true);
	if (!rc && sandbox_user_check(&cfg, err, sizeof(err)))
		rc = usage_error(err);
	services_free(&rt);
	if (!rc)
		printf("%s: ok (%zu service%s)\n", argv[1], cfg.n_svc, cfg.n_svc == 1 ? "" : "s");
	config_free(&cfg);
	return rc;
}

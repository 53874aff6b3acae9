// SPDX-License-Identifier: MIT
/*
 * The sk_lookup loader (kernel 5.9+). The program is attached through a BPF link to the
 * network namespace the daemon runs in: the link, and with it the steering, goes away
 * when the process exits, however it exits. CAP_BPF + CAP_NET_ADMIN (or root) needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "commands.h"
#include "ktlsd_bpf.h"
#include "log.h"
#include "steer.h"
#include "steer.skel.h"
#include "worker.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's, as libbpf passes it on */
#endif

struct steer {
	struct steer_bpf *skel;
	struct bpf_link *link;
};

/* libbpf's own messages would interleave with the log lines; errors come back as -errno. */
static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static const char *steer_why(int err)
{
	switch (-err) {
	case EPERM:
	case EACCES:
		return "not permitted: --intercept needs CAP_BPF and CAP_NET_ADMIN (or root)";
	case EINVAL:
	case ENOTSUPP:
	case EOPNOTSUPP:
		return "this kernel cannot attach sk_lookup programs (needs 5.9 or later)";
	default:
		return strerror(-err);
	}
}

static int rules_fill(struct steer *st, const struct service_config *sc)
{
	int fd = bpf_map__fd(st->skel->maps.rules);

	for (size_t i = 0; i < sc->n_intercepts; i++) {
		const struct intercept_rule *r = &sc->intercepts[i];
		struct ktlsd_steer_rule v = { .family = (__u32)r->family,
					      .prefix = r->prefix,
					      .port_lo = r->port_lo,
					      .port_hi = r->port_hi };
		__u32 k = (__u32)i;

		memcpy(v.addr, r->addr, sizeof(v.addr));
		if (bpf_map_update_elem(fd, &k, &v, BPF_ANY))
			return -errno;
	}
	return 0;
}

static int steer_load(struct steer *st, const struct service_config *sc, int listen_fd)
{
	__u32 zero = 0;
	__u64 v = (__u64)listen_fd;
	int netns, err;

	st->skel = steer_bpf__open_and_load();
	if (!st->skel)
		return -errno;
	err = rules_fill(st, sc);
	if (err)
		return err;
	if (bpf_map_update_elem(bpf_map__fd(st->skel->maps.listener), &zero, &v, BPF_ANY))
		return -errno;
	netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (netns < 0)
		return -errno;
	st->link = bpf_program__attach_netns(st->skel->progs.steer, netns);
	err = st->link ? 0 : -errno;
	close(netns);
	return err;
}

int steer_attach(const struct service_config *sc, int listen_fd, struct steer **ret_steer,
		 char *err, size_t errlen)
{
	struct steer *st = calloc(1, sizeof(*st));
	int rc;

	if (!st)
		return -ENOMEM;
	libbpf_set_print(libbpf_quiet);
	rc = steer_load(st, sc, listen_fd);
	if (rc) {
		snprintf(err, errlen, "--intercept: loading the sk_lookup program: %s",
			 steer_why(rc));
		steer_free(st);
		return rc;
	}
	*ret_steer = st;
	return 0;
}

void steer_free(struct steer *st)
{
	if (!st)
		return;
	bpf_link__destroy(st->link);
	steer_bpf__destroy(st->skel);
	free(st);
}

static void log_intercept(const struct run_config *cfg, const struct service_config *sc)
{
	char rules[INTERCEPT_MAX * 8], one[64];
	size_t off = 0;

	rules[0] = '\0';
	for (size_t i = 0; i < sc->n_intercepts && off < sizeof(rules); i++) {
		intercept_format(&sc->intercepts[i], one, sizeof(one));
		off += (size_t)snprintf(rules + off, sizeof(rules) - off, "%s%s", i ? "," : "",
					one);
	}
	struct log_kv kv[] = { { "service", sc->name },
			       { "listen", sc->listen },
			       { "rules", rules } };

	log_kv(cfg->log_format, "info", "intercepting", kv, 3);
}

int steers_attach(const struct run_config *cfg, const char *cfgpath, const struct worker *w,
		  struct steer ***ret_steers)
{
	struct steer **st = calloc(cfg->n_svc, sizeof(*st));
	char err[256];
	int rc;

	if (!st)
		return EXIT_RUNTIME;
	for (size_t s = 0; s < cfg->n_svc; s++) {
		const struct service_config *sc = &cfg->svc[s];

		if (!sc->n_intercepts)
			continue;
		rc = steer_attach(sc, w[0].listen_fd[s], &st[s], err, sizeof(err));
		if (rc) {
			service_error(cfgpath, sc, err);
			steers_free(st, cfg->n_svc);
			return rc == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
		}
		log_intercept(cfg, sc);
	}
	*ret_steers = st;
	return 0;
}

void steers_free(struct steer **st, size_t n)
{
	for (size_t i = 0; st && i < n; i++)
		steer_free(st[i]);
	free(st);
}

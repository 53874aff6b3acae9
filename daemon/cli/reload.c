// SPDX-License-Identifier: MIT
/*
 * Reload (reload.h): rebuild every service from its files, switch the workers over only if
 * all of them built, and watch the files so that a rotation needs no signal.
 *
 * Every service is rebuilt, even where only another one's files changed: a build is a few
 * milliseconds and one rule ("a reload re-reads everything") is easier to trust than a
 * dependency graph. What changed is found from SHA-256 fingerprints of the files, which
 * also lets a change event that changed nothing (a touch, a writer's temporary file in
 * the same directory, Kubernetes' ..data symlink dance seen half-way) cost nothing.
 */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "filewatch.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "tlsctx.h"

struct fp_file {
	const char *what; /* "cert", "crl", ... (static) */
	unsigned char sha[32];
	bool ok; /* read; else the build reports why */
};

struct reload_fp {
	size_t n;
	struct fp_file *f;
};

typedef void file_fn(void *arg, const char *what, const char *path);

/* The word for one of sc's files in the reload's "changed" list. */
static const char *file_kind(const struct service_config *sc, const char *f)
{
	return f == sc->cert		    ? "cert"
	       : f == sc->key		    ? "key"
	       : f == sc->cacert	    ? "cacert"
	       : f == sc->key_password_file ? "key-password-file"
	       : f == sc->ocsp_staple	    ? "ocsp-staple"
					    : "file";
}

/*
 * Every file a service reads when it is built, in a fixed order: the one list the watcher
 * and the fingerprints use (tls_ctx_files, and the CRLs).
 */
static void service_files(const struct service_config *sc, file_fn *fn, void *arg)
{
	const char *files[TLS_CTX_FILES_MAX];
	size_t n = tls_ctx_files(sc, files);

	for (size_t i = 0; i < n; i++)
		fn(arg, file_kind(sc, files[i]), files[i]);
	for (unsigned i = 0; i < sc->n_crl; i++)
		fn(arg, "crl", sc->crl[i]);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fp_count(void *arg, const char *what, const char *path)
{
	(*(size_t *)arg)++;
}

static void fp_add(void *arg, const char *what, const char *path)
{
	struct reload_fp *fp = arg;
	struct fp_file *f = &fp->f[fp->n++];

	f->what = what;
	f->ok = file_sha256(path, f->sha);
}

static void fp_clear(struct reload_fp *fp)
{
	free(fp->f);
	fp->f = NULL;
	fp->n = 0;
}

static int fp_build(const struct service_config *sc, struct reload_fp *ret_fp)
{
	size_t n = 0;

	service_files(sc, fp_count, &n);
	ret_fp->f = calloc(n, sizeof(*ret_fp->f));
	ret_fp->n = 0;
	if (!ret_fp->f)
		return -ENOMEM;
	service_files(sc, fp_add, ret_fp);
	return 0;
}

static bool fp_file_differs(const struct fp_file *a, const struct fp_file *b)
{
	return strcmp(a->what, b->what) || a->ok != b->ok || memcmp(a->sha, b->sha, 32);
}

static void appendf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void appendf(char *buf, size_t len, const char *fmt, ...)
{
	size_t off = strnlen(buf, len);
	va_list ap;

	if (off + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + off, len - off, fmt, ap);
	va_end(ap);
}

/* Appends " name:cert,key" to buf for the files that differ between a and b. */
static bool fp_diff(const char *name, const struct reload_fp *a, const struct reload_fp *b,
		    char *buf, size_t len)
{
	size_t n = a->n > b->n ? a->n : b->n;
	const char *last = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct fp_file *f = i < b->n ? &b->f[i] : &a->f[i];

		if (i < a->n && i < b->n && !fp_file_differs(&a->f[i], &b->f[i]))
			continue;
		/* Several CRLs: the kind is named once. */
		if (last && !strcmp(last, f->what))
			continue;
		if (last)
			appendf(buf, len, ",%s", f->what);
		else
			appendf(buf, len, " %s:%s", name, f->what);
		last = f->what;
	}
	return last != NULL;
}

/* Service slots are never reused (an old connection's slot stays its own): a bound. */
#define MAX_SLOTS 256

/*
 * A reload in the making: per slot (the runtime's, then any added), its configuration, new
 * service and fingerprints, or removed.
 */
struct gen {
	size_t n, old;			   /* slots after the reload, and before */
	const struct service_config **cfg; /* NULL: removed (or removed before) */
	struct service **svc;
	struct reload_fp *fp;
	bool *removed;
	int *fds; /* [n_workers * n]: the added slots' listeners */
	unsigned n_workers;
	struct config_ref *ref;	       /* the config file read again, or NULL */
	char err[CONFIG_ERR_MAX + 96]; /* a build's error, and the service it is from */
};

static void gen_free(struct gen *g)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->svc)
			service_put(g->svc[i]);
		if (g->fp)
			fp_clear(&g->fp[i]);
	}
	for (size_t i = 0; g->fds && i < g->n * g->n_workers; i++)
		if (g->fds[i] >= 0)
			close(g->fds[i]);
	free(g->svc);
	free(g->fp);
	free(g->cfg);
	free(g->removed);
	free(g->fds);
	config_ref_put(g->ref);
	memset(g, 0, offsetof(struct gen, err));
}

static int gen_alloc(struct gen *g, size_t n, size_t old, unsigned n_workers)
{
	g->n = n;
	g->old = old;
	g->n_workers = n_workers;
	g->cfg = calloc(n, sizeof(*g->cfg));
	g->svc = calloc(n, sizeof(*g->svc));
	g->fp = calloc(n, sizeof(*g->fp));
	g->removed = calloc(n, sizeof(*g->removed));
	g->fds = malloc(n * n_workers * sizeof(*g->fds));
	if (!g->cfg || !g->svc || !g->fp || !g->removed || !g->fds) {
		snprintf(g->err, sizeof(g->err), "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n * n_workers; i++)
		g->fds[i] = -1;
	return 0;
}

/*
 * The fd limit was checked at start against the numbers then: a default max-conns keeps
 * the cap it had (an added service takes its max-conns); an explicit one is the operator's
 * word (past the fd limit, accepting pauses, as it does at start for a default).
 */
static void limits_carry(struct service *s, const struct service *prev)
{
	const struct service_config *sc = s->cfg;

	s->max_handshakes = sc->max_handshakes ? sc->max_handshakes : sc->max_conns;
	s->conn_cap = sc->max_conns_set || !prev || prev->conn_cap > sc->max_conns ? sc->max_conns
										   : prev->conn_cap;
}

/* The service of slot i, built from g->cfg[i], counting on into the old one's counters. */
static int gen_build_one(struct reloader *r, struct gen *g, size_t i)
{
	const struct service *prev = i < g->old ? r->rt->svc[i] : NULL;
	const struct service_config *sc = g->cfg[i];
	char err[CONFIG_ERR_MAX];
	int rc;

	if (sc->ktls == KTLS_MODE_REQUIRE && !r->rt->kernel_ktls) {
		snprintf(g->err, sizeof(g->err),
			 "[service %s]: ktls require: this kernel has no kTLS", sc->name);
		return -EINVAL;
	}
	rc = service_new(sc, r->rt->kernel_ktls, r->n_workers, prev, &g->svc[i], err, sizeof(err));
	if (rc) {
		snprintf(g->err, sizeof(g->err), "[service %s]: %s", sc->name,
			 rc == -ENOMEM ? "out of memory" : err);
		return rc;
	}
	/* Where cfg lives: the config read again, or wherever the old service's did. */
	if (g->ref)
		g->svc[i]->cfg_ref = config_ref_get(g->ref);
	else if (prev && prev->cfg_ref)
		g->svc[i]->cfg_ref = config_ref_get(prev->cfg_ref);
	limits_carry(g->svc[i], prev);
	return 0;
}

/* An added service's listeners, one per worker, opened now so a taken address fails here. */
static int gen_listen(struct reloader *r, struct gen *g, size_t i)
{
	int fds[r->n_workers];
	int rc = listen_group(&g->cfg[i]->listen_addr, fds, r->n_workers);

	if (rc) {
		snprintf(g->err, sizeof(g->err), "[service %s]: listen %s: %s%s", g->cfg[i]->name,
			 g->cfg[i]->listen, listen_strerror(-rc),
			 rc == -EADDRINUSE ? " (a service removed in the same reload still holds "
					     "it: remove it in one reload, add in the next)"
					   : "");
		return rc;
	}
	for (unsigned w = 0; w < r->n_workers; w++)
		g->fds[w * g->n + i] = fds[w];
	return 0;
}

static int gen_build(struct reloader *r, struct gen *g)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < g->n; i++)
		if (g->cfg[i])
			rc = gen_build_one(r, g, i);
	for (size_t i = g->old; !rc && i < g->n; i++)
		rc = gen_listen(r, g, i);
	return rc;
}

/* " svc:cert,key +added -removed" for what changed; true if anything did. */
static bool gen_changes(const struct reloader *r, const struct gen *g, char *buf, size_t len)
{
	bool any = false;

	buf[0] = '\0';
	for (size_t i = 0; i < g->n; i++) {
		if (g->removed[i] && i < g->old && r->rt->svc[i]) {
			appendf(buf, len, " -%s", r->rt->svc[i]->cfg->name);
			any = true;
		} else if (i >= g->old) {
			appendf(buf, len, " +%s", g->cfg[i]->name);
			any = true;
		} else if (g->cfg[i]) {
			any |= fp_diff(g->cfg[i]->name, &r->fp[i], &g->fp[i], buf, len);
		}
	}
	return any;
}

/* Room for the added slots in the runtime and in every worker: the last step that may fail. */
static int gen_grow(struct reloader *r, struct gen *g)
{
	struct worker_swap sw = { .n = g->n };
	struct service **svc;
	struct reload_fp *fp;

	if (g->n == g->old)
		return 0;
	pthread_mutex_lock(&r->rt->svc_lock);
	svc = realloc(r->rt->svc, g->n * sizeof(*svc));
	if (svc)
		r->rt->svc = svc;
	pthread_mutex_unlock(&r->rt->svc_lock);
	fp = svc ? realloc(r->fp, g->n * sizeof(*fp)) : NULL;
	if (fp)
		r->fp = fp;
	for (unsigned i = 0; fp && !sw.err && i < r->n_workers; i++)
		worker_call(&r->w[i], worker_grow, &sw);
	if (fp && !sw.err) {
		for (size_t i = g->old; i < g->n; i++) {
			r->rt->svc[i] = NULL;
			r->fp[i] = (struct reload_fp){ 0 };
		}
		return 0;
	}
	snprintf(g->err, sizeof(g->err), "out of memory adding services");
	return -ENOMEM;
}

/*
 * The switch: every worker takes the new services (and judges its connections) in turn,
 * then the runtime's references move over. Nothing here can fail.
 */
static unsigned gen_commit(struct reloader *r, struct gen *g)
{
	struct worker_swap sw = {
		.n = g->n, .svc = g->svc, .removed = g->removed, .listen_fd = g->fds
	};

	for (unsigned i = 0; i < r->n_workers; i++)
		worker_call(&r->w[i], worker_swap_services, &sw);
	pthread_mutex_lock(&r->rt->svc_lock);
	for (size_t i = 0; i < g->n; i++) {
		struct reload_fp t = r->fp[i];

		if (!g->svc[i] && !g->removed[i])
			continue;
		service_put(r->rt->svc[i]);
		r->rt->svc[i] = g->svc[i];
		g->svc[i] = NULL;
		r->fp[i] = g->fp[i];
		g->fp[i] = t;
	}
	r->rt->n_svc = g->n;
	pthread_mutex_unlock(&r->rt->svc_lock);
	return sw.closed;
}

/* Keys of [global] a running daemon cannot take: named in the reload's line. */
static void globals_not_live(const struct run_config *a, const struct run_config *b, char *buf,
			     size_t len)
{
	buf[0] = '\0';
	if (a->threads != b->threads)
		appendf(buf, len, "%sthreads", buf[0] ? "," : "");
	if (a->log_format != b->log_format)
		appendf(buf, len, "%slog-format", buf[0] ? "," : "");
	if (a->drain_timeout_ms != b->drain_timeout_ms)
		appendf(buf, len, "%sdrain-timeout", buf[0] ? "," : "");
	if (a->allow_core_dumps != b->allow_core_dumps)
		appendf(buf, len, "%sallow-core-dumps", buf[0] ? "," : "");
	if (a->handshake_thread != b->handshake_thread)
		appendf(buf, len, "%shandshake-thread", buf[0] ? "," : "");
}

/* The running slot that new configuration sc continues (same name, mode and listen), or -1. */
static ssize_t slot_of(const struct reloader *r, const struct service_config *sc)
{
	for (size_t i = 0; i < r->rt->n_svc; i++) {
		const struct service *s = r->rt->svc[i];

		if (s && !strcmp(s->cfg->name, sc->name) && s->cfg->role == sc->role &&
		    !strcmp(s->cfg->listen, sc->listen))
			return (ssize_t)i;
	}
	return -1;
}

/*
 * --config: the file read again. A running service continues where name, mode and listen
 * stay; otherwise it stops (its listener closes, its connections run on) and the new one
 * starts in a slot of its own. Everything else in a section takes effect.
 */
static int gen_from_file(struct reloader *r, struct gen *g)
{
	const struct run_config *nc = &g->ref->cfg;
	size_t old = r->rt->n_svc, add = 0, k = old;
	int rc;

	for (size_t j = 0; j < nc->n_svc; j++)
		add += slot_of(r, &nc->svc[j]) < 0;
	if (old + add > MAX_SLOTS) {
		snprintf(g->err, sizeof(g->err),
			 "%s: more than %d services added over this process's life: restart ktlsd",
			 r->cfgpath, MAX_SLOTS);
		return -E2BIG;
	}
	rc = gen_alloc(g, old + add, old, r->n_workers);
	for (size_t i = 0; !rc && i < old; i++)
		g->removed[i] = true;
	for (size_t j = 0; !rc && j < nc->n_svc; j++) {
		ssize_t i = slot_of(r, &nc->svc[j]);
		size_t at = i >= 0 ? (size_t)i : k++;

		g->cfg[at] = &nc->svc[j];
		g->removed[at] = false;
	}
	return rc;
}

static int cfg_read(struct reloader *r, struct gen *g, bool *ret_changed, char *not_live,
		    size_t len)
{
	unsigned char sha[32];
	struct run_config cfg;

	*ret_changed = !file_sha256(r->cfgpath, sha) || memcmp(sha, r->cfg_sha, 32);
	if (*ret_changed)
		memcpy(r->cfg_sha, sha, 32);
	if (config_from_file(r->cfgpath, &cfg, g->err, sizeof(g->err)))
		return -EINVAL;
	g->ref = config_ref_new(&cfg);
	if (!g->ref) {
		config_free(&cfg);
		snprintf(g->err, sizeof(g->err), "out of memory");
		return -ENOMEM;
	}
	globals_not_live(r->rt->cfg, &g->ref->cfg, not_live, len);
	return gen_from_file(r, g);
}

/* The configuration of every slot: the file's again, or the one each service runs. */
static int gen_configs(struct reloader *r, struct gen *g, bool *ret_cfg_changed, char *not_live,
		       size_t len)
{
	int rc;

	not_live[0] = '\0';
	*ret_cfg_changed = false;
	if (r->cfgpath)
		return cfg_read(r, g, ret_cfg_changed, not_live, len);
	rc = gen_alloc(g, r->rt->n_svc, r->rt->n_svc, r->n_workers);
	for (size_t i = 0; !rc && i < g->n; i++)
		g->cfg[i] = r->rt->svc[i]->cfg;
	return rc;
}

static void log_failed(const struct reloader *r, const char *why, const char *reason)
{
	struct log_kv kv[] = {
		{ "result", "failed" },
		{ "trigger", why },
		{ "reason", reason },
		{ "msg", "the services in use stay as they were" },
	};

	log_kv(r->rt->cfg->log_format, "error", "reload", kv, 4);
}

static void log_ok(const struct reloader *r, const char *why, const char *changed,
		   const char *not_live, unsigned closed, uint64_t t0)
{
	char n[16], cl[16], ms[24];
	struct log_kv kv[] = {
		{ "result", "ok" },
		{ "trigger", why },
		{ "changed", changed[0] ? changed + 1 : "none" },
		/* [global] keys that need a restart, left as they were */
		{ "not_applied", not_live },
		{ "closed", cl }, /* established connections the new services no longer admit */
		{ "reloads", n },
		{ "duration_ms", ms },
	};

	snprintf(n, sizeof(n), "%u", r->reloads);
	snprintf(cl, sizeof(cl), "%u", closed);
	snprintf(ms, sizeof(ms), "%.3f", (double)(now_ns() - t0) / 1e6);
	log_kv(r->rt->cfg->log_format, "info", "reload", kv, 7);
}

static void watch_setup(struct reloader *r);

/* Every slot's fingerprints; then whether anything changed (into changed). */
static int gen_fingerprint(struct reloader *r, struct gen *g, bool cfg_changed, char *changed,
			   size_t len, bool *ret_any)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->cfg[i] && fp_build(g->cfg[i], &g->fp[i])) {
			snprintf(g->err, sizeof(g->err), "out of memory");
			return -ENOMEM;
		}
	}
	*ret_any = gen_changes(r, g, changed, len) || cfg_changed;
	if (cfg_changed)
		appendf(changed, len, " config");
	return 0;
}

int runtime_reload(struct reloader *r, const char *why)
{
	struct gen g = { .n = 0 };
	char changed[512], not_live[96];
	uint64_t t0 = now_ns();
	bool cfg_changed = false, any = false;
	int rc;

	notify_reloading(); /* systemd: RELOADING=1 until the READY=1 below */
	rc = gen_configs(r, &g, &cfg_changed, not_live, sizeof(not_live));

	if (!rc)
		rc = gen_fingerprint(r, &g, cfg_changed, changed, sizeof(changed), &any);
	if (rc)
		goto out_failed;
	/*
	 * An event that changed no content (a touch, an unrelated file) costs nothing; after
	 * a failure, a write back to what is in use still gets its line saying all is well.
	 */
	if (strcmp(why, "SIGHUP") && !any && !r->failed)
		goto out_free;
	rc = gen_build(r, &g);
	if (!rc)
		rc = gen_grow(r, &g);
	if (rc)
		goto out_failed;
	r->reloads++;
	r->failed = false;
	log_ok(r, why, changed, not_live, gen_commit(r, &g), t0);
	if (r->cfgpath)
		watch_setup(r);
	goto out_free;

out_failed:
	r->failed = true;
	log_failed(r, why, g.err);
out_free:
	gen_free(&g);
	notify_status("%s",
		      r->failed ? "last reload failed: serving the previous services" : "serving");
	notify_ready();
	return rc;
}

/* --- watching ------------------------------------------------------------------------ */

static void warn(const struct reloader *r, const char *event, const char *msg)
{
	struct log_kv kv[] = { { "msg", msg } };

	log_kv(r->rt->cfg->log_format, "warn", event, kv, 1);
}

static void watch_dir(void *arg, const char *what, const char *path)
{
	struct reloader *r = arg;
	char dir[4096], msg[4200];
	int rc = filewatch_add(&r->fw, path, dir, sizeof(dir));

	if (!rc)
		return;
	snprintf(msg, sizeof(msg), "cannot watch %s (for %s %s): %s; reload it with SIGHUP", dir,
		 what, path, strerror(-rc));
	warn(r, "reload_watch_failed", msg);
}

/*
 * A watch on every directory holding a file of the services in use (and the config
 * file), in a new inotify instance (filewatch_begin/end: no change falls between).
 */
static void watch_setup(struct reloader *r)
{
	int old, rc = filewatch_begin(&r->fw, &old);

	if (rc) {
		char msg[160];

		snprintf(msg, sizeof(msg), "inotify: %s; files are reloaded on SIGHUP only",
			 strerror(-rc));
		warn(r, "reload_watch_failed", msg);
	} else {
		if (r->cfgpath)
			watch_dir(r, "config", r->cfgpath);
		for (size_t i = 0; i < r->rt->n_svc; i++)
			if (r->rt->svc[i])
				service_files(r->rt->svc[i]->cfg, watch_dir, r);
	}
	filewatch_end(&r->fw, old);
}

int reloader_init(struct reloader *r, struct runtime *rt, struct worker *w, unsigned n_workers,
		  const char *cfgpath)
{
	*r = (struct reloader){ .rt = rt, .w = w, .n_workers = n_workers, .cfgpath = cfgpath };
	filewatch_init(&r->fw);
	r->fp = calloc(rt->n_svc, sizeof(*r->fp));
	if (!r->fp)
		return -ENOMEM;
	for (size_t i = 0; i < rt->n_svc; i++)
		if (fp_build(rt->svc[i]->cfg, &r->fp[i]))
			return -ENOMEM;
	if (cfgpath)
		file_sha256(cfgpath, r->cfg_sha);
	watch_setup(r);
	return 0;
}

void reloader_free(struct reloader *r)
{
	for (size_t i = 0; r->fp && i < r->rt->n_svc; i++)
		fp_clear(&r->fp[i]);
	free(r->fp);
	r->fp = NULL;
	filewatch_free(&r->fw);
}

/* One signal: SIGHUP reloads (0 back), any other ends the loop (its number back). */
static int on_signal(struct reloader *r, int sfd)
{
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo != SIGHUP)
		return (int)si.ssi_signo;
	runtime_reload(r, "SIGHUP");
	return 0;
}

int reloader_wait(struct reloader *r, const sigset_t *set)
{
	int sfd = signalfd(-1, set, SFD_CLOEXEC), sig = 0;
	int wd_ms = (int)(notify_watchdog_period_us() / 1000);
	uint64_t last_wd = now_ns();

	if (sfd < 0) {
		/* No signalfd (seccomp?): signals still work, file changes do not. */
		while (sigwait(set, &sig) || sig == SIGHUP)
			if (sig == SIGHUP)
				runtime_reload(r, "SIGHUP");
		return sig;
	}
	while (!sig) {
		struct pollfd p[3] = { { sfd, POLLIN, 0 },
				       { r->fw.ifd, POLLIN, 0 },
				       { r->fw.tfd, POLLIN, 0 } };
		/* Without a watchdog, no timeout: poll(.., 0) would spin this thread at 100%. */
		int n_ready = poll(p, 3, wd_ms > 0 ? wd_ms : -1);

		/* systemd's watchdog: this thread waking up on time is what WATCHDOG=1 vouches. */
		if (wd_ms > 0 && now_ns() - last_wd >= (uint64_t)wd_ms * 1000000) {
			notify_watchdog();
			last_wd = now_ns();
		}
		if (n_ready <= 0)
			continue;
		if (p[0].revents & POLLIN)
			sig = on_signal(r, sfd);
		if (!sig && (p[1].revents & POLLIN))
			filewatch_on_events(&r->fw);
		if (!sig && (p[2].revents & POLLIN) && filewatch_on_timer(&r->fw))
			runtime_reload(r, "file change");
	}
	close(sfd);
	return sig;
}

// SPDX-License-Identifier: MIT
/* The sandbox's order and its one log line (sandbox.h says what each step does). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "privdrop.h"
#include "sandbox.h"

/*
 * What ktlsd reads besides the configured files: name lookups of targets on a reload
 * (glibc's files and dns backends are built in since 2.34, so no NSS module is loaded), the
 * CPU count a config's default thread count comes from, and for the admin endpoint's
 * metrics this process's own /proc directory (/proc/self resolves to it when the rule is
 * made; /proc/net/tls_stat lies beneath it), /proc/stat (boot time) and the port sysctl.
 */
static const char *const system_paths[] = {
	"/etc/hosts",	 "/etc/resolv.conf", "/etc/nsswitch.conf",
	"/etc/gai.conf", "/etc/host.conf",   "/sys/devices/system/cpu/online",
	"/proc/self",	 "/proc/stat",	     "/proc/sys/net/ipv4/ip_unprivileged_port_start",
};

#define PATHS_MAX 256

struct path_list {
	char *p[PATHS_MAX];
	size_t n;
};

static void paths_free(struct path_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->p[i]);
	l->n = 0;
}

static int paths_add(struct path_list *l, const char *dir)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->p[i], dir))
			return 0;
	if (l->n == PATHS_MAX)
		return -E2BIG;
	l->p[l->n] = strdup(dir);
	return l->p[l->n] ? (l->n++, 0) : -ENOMEM;
}

/*
 * A configured file's directory, as written and as resolved: writers replace a file by
 * renaming a new one into its directory (spiffe-helper, cert-manager, Kubernetes' ..data
 * symlink swap), so the directory is what must stay readable, and a symlinked file is
 * read where it really lives.
 */
static int paths_add_file(struct path_list *l, const char *file)
{
	char buf[PATH_MAX], real[PATH_MAX];
	int rc;

	if (!file)
		return 0;
	snprintf(buf, sizeof(buf), "%s", file);
	if (!realpath(dirname(buf), real))
		return -errno;
	rc = paths_add(l, real);
	if (!rc && realpath(file, buf))
		rc = paths_add(l, dirname(buf));
	return rc;
}

/*
 * A pkcs11: key URI is no file, but its pin-source=file:/path (RFC 7512) is one that
 * pkcs11-provider reads when it logs in, which may be at the first handshake.
 */
static int paths_add_pin_source(struct path_list *l, const char *uri)
{
	const char *p = strstr(uri, "pin-source=");
	char path[PATH_MAX];
	size_t n;

	if (!p)
		return 0;
	p += strlen("pin-source=");
	if (!strncmp(p, "file:", 5))
		p += 5;
	n = strcspn(p, "&;");
	if (p[0] != '/' || n >= sizeof(path))
		return 0;
	memcpy(path, p, n);
	path[n] = '\0';
	return paths_add_file(l, path);
}

static int paths_collect(const struct run_config *cfg, const char *cfgpath, struct path_list *l)
{
	int rc = paths_add_file(l, cfgpath);

	for (size_t i = 0; !rc && i < cfg->n_svc; i++) {
		const struct service_config *s = &cfg->svc[i];

		rc = paths_add_file(l, s->cert);
		/* A pkcs11: URI is no file: the provider opened its token before the drop. */
		if (!rc && s->key && strncmp(s->key, "pkcs11:", 7))
			rc = paths_add_file(l, s->key);
		else if (!rc && s->key)
			rc = paths_add_pin_source(l, s->key);
		if (!rc)
			rc = paths_add_file(l, s->ocsp_staple);
		for (unsigned c = 0; !rc && c < s->n_crl; c++)
			rc = paths_add_file(l, s->crl[c]);
		if (!rc)
			rc = paths_add_file(l, s->cacert);
		if (!rc)
			rc = paths_add_file(l, s->key_password_file);
	}
	for (size_t i = 0; !rc && i < sizeof(system_paths) / sizeof(system_paths[0]); i++)
		rc = paths_add(l, system_paths[i]);
	return rc;
}

int sandbox_user_check(const struct run_config *cfg, char *err, size_t errlen)
{
	uid_t uid;
	gid_t gid;

	return cfg->user ? priv_lookup(cfg->user, &uid, &gid, err, errlen) : 0;
}

/* After the drop: can this process still read each configured file (for a reload)? */
static void warn_unreadable_fmt(enum log_format fmt, const char *path)
{
	int fd;

	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return;
	}
	struct log_kv kv[] = {
		{ "file", path },
		{ "error", strerror(errno) },
		{ "msg", "not readable after the privilege drop: a reload cannot read it again "
			 "(give --user read access, e.g. group-readable)" },
	};

	log_kv(fmt, "warn", "sandbox_unreadable", kv, 3);
}

static void warn_unreadable(const struct run_config *cfg, const char *path)
{
	warn_unreadable_fmt(cfg->log_format, path);
}

static void check_readable(const struct run_config *cfg, const char *cfgpath)
{
	warn_unreadable(cfg, cfgpath);
	for (size_t i = 0; i < cfg->n_svc; i++) {
		const struct service_config *s = &cfg->svc[i];

		warn_unreadable(cfg, s->cert);
		if (s->key && strncmp(s->key, "pkcs11:", 7))
			warn_unreadable(cfg, s->key);
		warn_unreadable(cfg, s->ocsp_staple);
		for (unsigned c = 0; c < s->n_crl; c++)
			warn_unreadable(cfg, s->crl[c]);
		warn_unreadable(cfg, s->cacert);
		warn_unreadable(cfg, s->key_password_file);
	}
}

/* Sanitizer runtimes read /proc and ptrace the process at exit (LeakSanitizer). */
#ifdef KTLSD_SANITIZED
#define SANITIZED true
#else
#define SANITIZED false
#endif

/*
 * Landlock's rule for a directory covers all beneath it: a file kept in /etc opens all of
 * /etc (shadow included) to a compromised ktlsd, which may still be uid 0 (the agent).
 */
static void warn_broad(enum log_format fmt, const struct path_list *l)
{
	static const char *const broad[] = { "/",    "/etc", "/root", "/home",
					     "/usr", "/var", "/tmp",  "/run" };

	for (size_t i = 0; i < l->n; i++)
		for (size_t k = 0; k < sizeof(broad) / sizeof(broad[0]); k++) {
			if (strcmp(l->p[i], broad[k]))
				continue;
			struct log_kv kv[] = {
				{ "dir", l->p[i] },
				{ "msg",
				  "a configured file lives directly in this directory, so the "
				  "sandbox lets ktlsd read everything beneath it: keep ktlsd's "
				  "files in a directory of their own (e.g. /etc/ktlsd)" },
			};

			log_kv(fmt, "warn", "sandbox_broad_read", kv, 2);
		}
}

/* Step 3: returns the ABI in force, 0 when off or unavailable (logged), or -errno. */
static int landlock_step(const struct run_config *cfg, const char *cfgpath, char *err,
			 size_t errlen)
{
	struct path_list l = { 0 };
	int rc;

	if (!cfg->landlock || SANITIZED)
		return 0;
	rc = paths_collect(cfg, cfgpath, &l);
	if (!rc) {
		warn_broad(cfg->log_format, &l);
		rc = landlock_restrict((const char *const *)l.p, l.n);
	}
	paths_free(&l);
	if (rc == -ENOSYS || rc == -EOPNOTSUPP) {
		struct log_kv kv[] = { { "msg", "this kernel has no Landlock (CONFIG_SECURITY_"
						"LANDLOCK, lsm=landlock): running without the file "
						"system sandbox" } };

		log_kv(cfg->log_format, "warn", "landlock_unavailable", kv, 1);
		return 0;
	}
	if (rc < 0)
		snprintf(err, errlen, "landlock: %s", strerror(-rc));
	return rc;
}

int sandbox_apply(const struct run_config *cfg, const char *cfgpath, char *err, size_t errlen)
{
	char abi[16], uid[16], caps[128];
	int rc = priv_drop(cfg, err, errlen), ll = 0;

	if (!rc)
		rc = ll = landlock_step(cfg, cfgpath, err, errlen);
	if (rc >= 0 && cfg->seccomp && !SANITIZED) {
		rc = seccomp_install();
		if (rc)
			snprintf(err, errlen, "seccomp: %s", strerror(-rc));
	}
	if (rc < 0)
		return rc;
	priv_caps_text(cfg, caps, sizeof(caps));
	snprintf(abi, sizeof(abi), "%d", ll);
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	struct log_kv kv[] = {
		{ "user", cfg->user },
		{ "uid", uid },
		{ "caps", caps },
		{ "landlock", ll > 0 ? "on" : "off" },
		{ "landlock_abi", ll > 0 ? abi : NULL },
		{ "seccomp", cfg->seccomp && !SANITIZED ? "on" : "off" },
	};

	log_kv(cfg->log_format, "info", "sandbox", kv, (int)(sizeof(kv) / sizeof(kv[0])));
	check_readable(cfg, cfgpath);
	return 0;
}

int sandbox_seal_rings(const struct run_config *cfg, char *err, size_t errlen)
{
	int rc;

	if (!cfg->seccomp || SANITIZED)
		return 0;
	rc = seccomp_seal_rings();
	if (rc)
		snprintf(err, errlen, "seccomp (no new io_uring): %s", strerror(-rc));
	return rc;
}

/* --- another command's sandbox (sandbox_spec) ------------------------------------------- */

static int spec_landlock(const struct sandbox_spec *s, char *err, size_t errlen)
{
	struct path_list l = { 0 };
	int rc = 0;

	if (!s->landlock || SANITIZED)
		return 0;
	for (size_t i = 0; !rc && i < s->n_files; i++)
		rc = paths_add_file(&l, s->files[i]);
	for (size_t i = 0; !rc && i < s->n_paths; i++)
		rc = paths_add(&l, s->paths[i]);
	if (!rc) {
		warn_broad(s->log_format, &l);
		rc = landlock_restrict((const char *const *)l.p, l.n);
	}
	paths_free(&l);
	if (rc == -ENOSYS || rc == -EOPNOTSUPP) {
		struct log_kv kv[] = { { "msg", "this kernel has no Landlock: running without "
						"the file system sandbox" } };

		log_kv(s->log_format, "warn", "landlock_unavailable", kv, 1);
		return 0;
	}
	if (rc < 0)
		snprintf(err, errlen, "landlock: %s", strerror(-rc));
	return rc;
}

int sandbox_apply_spec(const struct sandbox_spec *s, char *err, size_t errlen)
{
	char abi[16], uid[16], caps[128];
	int rc = priv_drop_caps(s->user, s->caps, s->n_caps, err, errlen), ll = 0;

	if (!rc)
		rc = ll = spec_landlock(s, err, errlen);
	if (rc >= 0 && s->seccomp && !SANITIZED) {
		struct seccomp_keys k = { s->keyctl_ops, s->n_keyctl_ops, s->keys_session_only };

		rc = seccomp_install_extra(s->syscalls, s->n_syscalls, &k);
		if (!rc)
			rc = seccomp_deny(s->deny, s->n_deny);
		if (rc)
			snprintf(err, errlen, "seccomp: %s", strerror(-rc));
	}
	if (rc < 0)
		return rc;
	priv_caps_list_text(s->caps, s->n_caps, caps, sizeof(caps));
	snprintf(abi, sizeof(abi), "%d", ll);
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	struct log_kv kv[] = {
		{ "user", s->user },
		{ "uid", uid },
		{ "caps", caps },
		{ "landlock", ll > 0 ? "on" : "off" },
		{ "landlock_abi", ll > 0 ? abi : NULL },
		{ "seccomp", s->seccomp && !SANITIZED ? "on" : "off" },
	};

	log_kv(s->log_format, "info", "sandbox", kv, (int)(sizeof(kv) / sizeof(kv[0])));
	for (size_t i = 0; i < s->n_files; i++)
		warn_unreadable_fmt(s->log_format, s->files[i]);
	return 0;
}

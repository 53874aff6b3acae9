/* SPDX-License-Identifier: MIT */
/*
 * Least privilege once ktlsd has what it needs from root: listeners bound, keys read.
 * sandbox_apply runs on the main thread before any worker exists, in this order:
 *
 *   1. user:      setgroups/setgid/setuid to --user (with its supplementary groups)
 *   2. caps:      keep only what the configuration needs (sandbox_caps_needed), clear
 *                 the bounding and ambient sets; PR_SET_NO_NEW_PRIVS
 *   3. Landlock:  read-only access to the directories of the configured files and the
 *                 few system files a reload reads; nothing else on the file system
 *   4. seccomp:   the syscall allowlist (seccomp.c), with TSYNC
 *
 * Landlock and seccomp filters are inherited by threads created afterwards, which is why
 * this runs before the workers start (a Landlock domain cannot be put on running threads).
 */
#ifndef KTLSD_DAEMON_SANDBOX_H
#define KTLSD_DAEMON_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"
#include "log.h"

#define SANDBOX_CAPS_MAX 8

/*
 * The capabilities cfg needs after start (CAP_* numbers) into caps[SANDBOX_CAPS_MAX]:
 * CAP_NET_BIND_SERVICE where a listen port is privileged (a reload may bind it again).
 * Returns how many. Whoever adds a feature that needs one (BPF: CAP_BPF, CAP_NET_ADMIN)
 * adds it here, so the systemd unit and the docs can name the same list.
 */
int sandbox_caps_needed(const struct run_config *cfg, int *caps);

/*
 * Resolves cfg->user (a name or a numeric uid) so that check-config can refuse an unknown
 * user. Returns 0 (also without a user) or -EINVAL with err set.
 */
int sandbox_user_check(const struct run_config *cfg, char *err, size_t errlen);

/*
 * Steps 1-4 above. cfgpath: the config file, or NULL on the command line. Logs one
 * event=sandbox line saying what is in force, and a warning for each configured file the
 * sandboxed process can no longer read (a reload would fail on it). Returns 0, or -errno
 * with err set (an unknown user, a failed setuid: ktlsd must not run half-dropped).
 */
int sandbox_apply(const struct run_config *cfg, const char *cfgpath, char *err, size_t errlen);

/*
 * Drops CAP_IPC_LOCK from the calling thread, once the io_uring rings exist: without it
 * the kernel charges ring memory to the user's RLIMIT_MEMLOCK (about 0.5 MiB per ring,
 * summed over all of the user's processes, against a usual 8 MiB), so sandbox_apply
 * keeps it for the rings' creation only. Each worker calls this after its ring_init,
 * the main thread once the workers are up. Capabilities are per thread.
 */
void sandbox_rings_done(void);

/*
 * The same four steps for another command (ktlsd agent), from explicit lists rather than a
 * server configuration. Logs one event=sandbox line (user, uid, caps, landlock, seccomp)
 * and a warning for each file the sandboxed process can no longer read.
 */
struct sandbox_spec {
	const char *user; /* NULL: stay this user (only the capabilities drop) */
	bool landlock, seccomp;
	const int *caps; /* kept after the drop */
	int n_caps;
	const char *const *files; /* read again on a reload: their directories stay readable */
	size_t n_files;		  /* (NULL entries are skipped) */
	const char *const *paths; /* other paths read as they are (e.g. /proc/keys) */
	size_t n_paths;
	const char *const *syscalls; /* allowed beyond the common allowlist (seccomp.c) */
	size_t n_syscalls;
	/* keyctl(2), only these operations (its first argument); none: keyctl stays refused
	 * unless syscalls names it (then every operation). */
	const unsigned *keyctl_ops;
	size_t n_keyctl_ops;
	/* add_key, and keyctl's LINK (where keyctl_ops names it), only into the session
	 * keyring: no key written into a keyring the process came to possess (.nvme). */
	bool keys_session_only;
	/* Refused outright (EPERM) by a second filter, also what the allowlist has: e.g.
	 * socket once every socket the command needs is open. */
	const char *const *deny;
	size_t n_deny;
	enum log_format log_format;
};

int sandbox_apply_spec(const struct sandbox_spec *s, char *err, size_t errlen);

/* --- the steps, for sandbox.c and the tests ------------------------------------------- */

/* Landlock ABI version of this kernel, or -errno (-ENOSYS, -EOPNOTSUPP: not available). */
int landlock_abi(void);

/*
 * Restricts the calling thread (and threads it creates later) to reading the paths in
 * dirs (a directory: everything beneath it; a file: that file). Returns the ABI used, or
 * -errno; -ENOSYS / -EOPNOTSUPP when the kernel lacks Landlock.
 */
int landlock_restrict(const char *const *paths, size_t n);

/* Installs the allowlist on every thread of the process (TSYNC). Returns 0 or -errno. */
int seccomp_install(void);

/* What a command may do with the kernel's keys (sandbox_spec's fields of the same names). */
struct seccomp_keys {
	const unsigned *keyctl_ops;
	size_t n_keyctl_ops;
	bool keys_session_only; /* also allows add_key, into the session keyring only */
};

/* seccomp_install, allowing also the syscalls named in extra (names unknown here skipped)
 * and keyctl/add_key as keys says (NULL: neither, unless extra names them). */
int seccomp_install_extra(const char *const *extra, size_t n_extra,
			  const struct seccomp_keys *keys);

/* A second filter (TSYNC): the syscalls named fail with EPERM. 0 or -errno. */
int seccomp_deny(const char *const *names, size_t n);

/* After the workers' rings exist: no new io_uring (a second filter, TSYNC). 0 or -errno. */
int seccomp_seal_rings(void);

/* seccomp_seal_rings where cfg has seccomp on (and no sanitizer); 0, or -errno with err. */
int sandbox_seal_rings(const struct run_config *cfg, char *err, size_t errlen);

#endif

// SPDX-License-Identifier: MIT
/*
 * The seccomp allowlist: every syscall ktlsd makes after start, and nothing else. A syscall
 * not listed fails with EPERM (a forgotten one degrades one code path instead of killing
 * every connection); the few that only an attacker running code in ktlsd would make (exec,
 * ptrace, reading another process's memory) kill the process.
 *
 * io_uring: the operations a worker submits are carried out by the kernel without passing
 * the filter. ktlsd submits ACCEPT (multishot), CONNECT, POLL_ADD, READ, RECV (multishot),
 * SPLICE, TIMEOUT, TIMEOUT_REMOVE, LINK_TIMEOUT and ASYNC_CANCEL; the filter sees
 * io_uring_enter only. Landlock still applies to them (it sits in the LSM hooks), seccomp
 * does not: each ring is limited to those operations (loop/ring.c), and no ring may be made
 * once they exist (seccomp_seal_rings).
 *
 * To extend: add the syscall to allow[] under the feature's heading.
 */
#include <errno.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "sandbox.h"

static const char *const allow[] = {
	/* memory: malloc, OpenSSL, secmem (madvise DONTDUMP/WIPEONFORK), thread stacks */
	"brk",
	"mmap",
	"munmap",
	"mremap",
	"mprotect",
	"madvise",
	/* threads and time: pthread_create/join, mutexes, the drain, log timestamps */
	"futex",
	"set_robust_list",
	"rseq",
	"set_tid_address",
	"exit",
	"exit_group",
	"gettid",
	"getpid",
	"tgkill",
	"sched_yield",
	"sched_getaffinity",
	"nanosleep",
	"clock_nanosleep",
	"clock_gettime",
	"gettimeofday",
	"sysinfo",
	"getrandom",
	"uname",
	"prlimit64",
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	/* sandbox_rings_done: each thread lowers its own capabilities (never raises) */
	"capget",
	"capset",
	/* signals: the main thread's sigwait; workers keep them blocked */
	"rt_sigprocmask",
	"rt_sigaction",
	"rt_sigtimedwait",
	"rt_sigreturn",
	"sigaltstack",
	"restart_syscall",
	/* descriptors: logs (write), eventfds, relay pipes, files a reload reads (Landlock
	 * decides which) */
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"close",
	"dup",
	"fcntl",
	"pipe2",
	"eventfd2",
	"lseek",
	"fstat",
	"newfstatat",
	"statx",
	"openat",
	"access",
	"faccessat",
	"faccessat2",
	/* the workers' rings */
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
	/* sockets: target connects, kTLS setup (TCP_ULP, TLS_TX/RX), control records
	 * (recvmsg/sendmsg with TLS_GET/SET_RECORD_TYPE), OpenSSL's handshake I/O,
	 * refusing over-limit accepts, listeners and sock_diag on a reload */
	"connect",
	"bind",
	"listen",
	"accept4",
	"setsockopt",
	"getsockopt",
	"getsockname",
	"getpeername",
	"sendto",
	"recvfrom",
	"sendmsg",
	"recvmsg",
	"shutdown",
	/* name lookups of targets and OCSP responders on a reload (glibc's dns backend) */
	"sendmmsg",
	"poll",
	"ppoll",
	/* reload: the main thread's signalfd, the watcher's inotify on the configured files'
	 * directories and its debounce timerfd */
	"signalfd4",
	"timerfd_create",
	"timerfd_settime",
	"timerfd_gettime",
	"inotify_init1",
	"inotify_add_watch",
	"inotify_rm_watch",
	/* admin: libmicrohttpd's thread (epoll, or poll/select), /proc/self/fd for open fds */
	"epoll_create1",
	"epoll_ctl",
	"epoll_wait",
	"epoll_pwait",
	"select",
	"pselect6",
	"getdents64",
	/* the sockmap relay: each connection's sockets go into the maps (bpf/relay.bpf.c) */
	"bpf",
};

/* Only code injected into ktlsd would make these: end the process instead of failing. */
static const char *const fatal[] = {
	"execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
};

/* The address families ktlsd opens sockets in; AF_NETLINK is sock_diag (listen.c). */
static const int families[] = { AF_INET, AF_INET6, AF_UNIX, AF_NETLINK };

static int add_names(scmp_filter_ctx ctx, uint32_t action, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		int rc;

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture (e.g. a legacy alias) */
		rc = seccomp_rule_add(ctx, action, nr, 0);
		if (rc)
			return rc;
	}
	return 0;
}

/* Rules on arguments: threads but no processes; sockets of our families only. */
static int add_arg_rules(scmp_filter_ctx ctx)
{
	int rc;

	/* glibc tries clone3 first and falls back to clone on ENOSYS; clone3's flags are in
	 * memory the filter cannot read, clone's are an argument it can check. */
	rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	/* Only reading the flag (secrets_core_test asks it through gdb); no prctl sets. */
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
				      SCMP_A0(SCMP_CMP_EQ, PR_GET_DUMPABLE));
	/* seccomp_seal_rings: one more filter (a filter can only take away), and libseccomp's
	 * probe of what the kernel supports. */
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
				      SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER));
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
				      SCMP_A0(SCMP_CMP_EQ, SECCOMP_GET_ACTION_AVAIL));
	/* Each worker's handshake thread lowers itself to SCHED_IDLE (loop/hs_thread.c); no
	 * other policy, nor another thread's. */
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sched_setscheduler), 2,
				      SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A1(SCMP_CMP_EQ, SCHED_IDLE));
	for (size_t i = 0; !rc && i < sizeof(families) / sizeof(families[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]));
	return rc;
}

int seccomp_install(void)
{
	return seccomp_install_extra(NULL, 0, NULL);
}

/*
 * A second filter refusing what the allowlist allows the server (filters stack, the
 * stricter answer wins): e.g. the agent's socket, whose every socket is open before.
 */
int seccomp_deny(const char *const *names, size_t n)
{
	scmp_filter_ctx ctx;
	int rc;

	if (!n)
		return 0;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	/* no_new_privs is set since the allowlist, which refuses that prctl. */
	if (!rc)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (!rc)
		rc = add_names(ctx, SCMP_ACT_ERRNO(EPERM), names, n);
	if (!rc)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc > 0 ? -rc : rc;
}

/* A key_serial_t argument: the kernel reads its low 32 bits, whatever the rest holds. */
#define SERIAL_IS(arg, serial) SCMP_CMP((arg), SCMP_CMP_MASKED_EQ, 0xffffffffu, (uint32_t)(serial))

/*
 * keyctl(2) with only these operations: SETPERM, UPDATE, UNLINK, PKEY_SIGN... stay refused.
 * session_only: add_key and LINK write into the session keyring and nowhere else.
 */
static int add_keyctl_ops(scmp_filter_ctx ctx, const struct seccomp_keys *k)
{
	const int link = KEYCTL_LINK, session = KEY_SPEC_SESSION_KEYRING;
	int rc = 0;

	for (size_t i = 0; !rc && k && i < k->n_keyctl_ops; i++) {
		unsigned op = k->keyctl_ops[i];

		if (k->keys_session_only && op == (unsigned)link)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(keyctl), 2,
					      SCMP_A0(SCMP_CMP_EQ, op), SERIAL_IS(2, session));
		else
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(keyctl), 1,
					      SCMP_A0(SCMP_CMP_EQ, op));
	}
	if (!rc && k && k->keys_session_only)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(add_key), 1,
				      SERIAL_IS(4, session));
	return rc;
}

int seccomp_install_extra(const char *const *extra, size_t n_extra, const struct seccomp_keys *keys)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int rc;

	if (!ctx)
		return -ENOMEM;
	/* Every thread, also any a library started: the filter is the process's. */
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!rc)
		rc = add_names(ctx, SCMP_ACT_ALLOW, allow, sizeof(allow) / sizeof(allow[0]));
	if (!rc)
		rc = add_names(ctx, SCMP_ACT_ALLOW, extra, n_extra);
	if (!rc)
		rc = add_keyctl_ops(ctx, keys);
	if (!rc)
		rc = add_names(ctx, SCMP_ACT_KILL_PROCESS, fatal, sizeof(fatal) / sizeof(fatal[0]));
	if (!rc)
		rc = add_arg_rules(ctx);
	if (!rc)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc > 0 ? -rc : rc;
}

/*
 * Once every worker's ring exists (each limited to the loop's operations, loop/ring.c), a
 * new ring is refused: code running in ktlsd would otherwise set up its own, unrestricted,
 * and have the kernel do what the allowlist forbids (a socket of any family, sends). A
 * second filter: seccomp filters stack, the stricter answer wins.
 */
int seccomp_seal_rings(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (!ctx)
		return -ENOMEM;
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	/* no_new_privs is set since seccomp_install, and the allowlist refuses that prctl. */
	if (!rc)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (!rc)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0);
	if (!rc)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc > 0 ? -rc : rc;
}

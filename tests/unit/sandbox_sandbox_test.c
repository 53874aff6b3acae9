// SPDX-License-Identifier: MIT
/*
 * The sandbox's steps, each applied in a forked child (they cannot be undone) that then
 * tries what must still work and what must not; the child's exit status says which check
 * failed (1..), or the signal that killed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <linux/io_uring.h>

#include "privdrop.h"
#include "sandbox.h"

static char dir[64];

/* Runs fn in a child; returns its wait status. */
static int in_child(int (*fn)(void))
{
	int st;
	pid_t r, pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	/* TSan's runtime takes the child's SIGCHLD without SA_RESTART: wait4 can say EINTR. */
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	assert_int_equal(r, pid);
	return st;
}

static int open_errno(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char cert[128], next[128], outside[128];

/* The directory stays readable, also for a file renamed into it after the restriction. */
static int landlock_child(void)
{
	const char *paths[] = { dir };
	int rc = landlock_restrict(paths, 1);

	if (rc <= 0)
		return 10;
	if (open_errno(cert, O_RDONLY))
		return 1;
	if (open_errno(outside, O_RDONLY) != EACCES)
		return 2; /* a file outside the rules */
	if (open_errno("/etc/passwd", O_RDONLY) != EACCES)
		return 3;
	if (open_errno(cert, O_WRONLY) != EACCES)
		return 4; /* read-only even beneath the rule */
	/* The writer (the parent, outside the sandbox) replaces the file by rename. */
	if (rename(next, cert) == 0)
		return 5; /* and we cannot do that ourselves */
	if (kill(getppid(), SIGUSR1))
		return 6;
	for (int i = 0; i < 500 && access(next, F_OK) == 0; i++)
		usleep(10000);
	if (open_errno(cert, O_RDONLY))
		return 7;
	return 0;
}

static void rename_next(int sig)
{
	if (rename(next, cert)) {
		/* the child reports a missing file */
	}
}

static void test_landlock(void **state)
{
	int st, abi = landlock_abi();

	if (abi < 0) {
		fprintf(stderr, "skip: no Landlock in this kernel (%s)\n", strerror(-abi));
		skip();
	}
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(next, sizeof(next), "%s/.cert.pem.new", dir);
	snprintf(outside, sizeof(outside), "%s.outside", dir);
	write_file(cert, "old\n");
	write_file(next, "new\n");
	write_file(outside, "secret\n");
	signal(SIGUSR1, rename_next);
	st = in_child(landlock_child);
	signal(SIGUSR1, SIG_DFL);
	unlink(outside);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("landlock child: %s %d", WIFEXITED(st) ? "check" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void *thread_fn(void *arg)
{
	return arg;
}

static int seccomp_child(void)
{
	static int token;
	pthread_t t;
	void *ret = NULL;
	int fd;

	if (seccomp_install())
		return 10;
	if (pthread_create(&t, NULL, thread_fn, &token) || pthread_join(t, &ret) || ret != &token)
		return 1; /* threads (clone3 -> ENOSYS -> clone with CLONE_THREAD) */
	if (fork() != -1 || errno != EPERM)
		return 2; /* a process: clone without CLONE_THREAD */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 3;
	close(fd);
	if (socket(AF_PACKET, SOCK_RAW, 0) != -1 || errno != EPERM)
		return 4; /* a family ktlsd never uses */
	if (syscall(SYS_chroot, "/") != -1 || errno != EPERM)
		return 5; /* not on the list */
	execl("/bin/true", "true", (char *)NULL);
	return 6; /* exec must have killed us */
}

static void test_seccomp(void **state)
{
	int st;

	/* The sanitizers' runtimes make syscalls of their own (ktlsd runs them without it). */
	if (getenv("KTLSD_SANITIZER")) {
		fprintf(stderr, "skip: seccomp under %s\n", getenv("KTLSD_SANITIZER"));
		skip();
	}
	st = in_child(seccomp_child);

	if (WIFEXITED(st))
		fail_msg("seccomp child exited %d instead of being killed by exec",
			 WEXITSTATUS(st));
	assert_int_equal(WTERMSIG(st), SIGSYS);
}

/* The workers' rings exist: the same allowlist, then no new ring may be made. */
static int seal_child(void)
{
	struct io_uring_params p;

	if (seccomp_install())
		return 10;
	memset(&p, 0, sizeof(p));
	if (syscall(__NR_io_uring_setup, 4, &p) < 0)
		return 11; /* io_uring unavailable here: nothing to seal */
	if (seccomp_seal_rings())
		return 1;
	memset(&p, 0, sizeof(p));
	if (syscall(__NR_io_uring_setup, 4, &p) != -1 || errno != EPERM)
		return 2;
	return 0;
}

static void test_seccomp_seal_rings(void **state)
{
	int st;

	if (getenv("KTLSD_SANITIZER")) {
		fprintf(stderr, "skip: seccomp under %s\n", getenv("KTLSD_SANITIZER"));
		skip();
	}
	st = in_child(seal_child);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 11) {
		fprintf(stderr, "skip: no io_uring here\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

static struct run_config drop_cfg;

static int drop_child(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	char err[256];

	if (priv_drop(&drop_cfg, err, sizeof(err)))
		return 10;
	sandbox_rings_done(); /* CAP_IPC_LOCK was kept for the rings only */
	if (getuid() != 65534 || geteuid() != 65534)
		return 1;
	if (syscall(SYS_capget, &h, d) || d[0].effective || d[0].permitted || d[1].effective)
		return 2;
	if (open_errno(cert, O_RDONLY) != EACCES)
		return 3; /* root's 0600 file */
	if (setuid(0) == 0)
		return 4;
	return 0;
}

static void test_drop_user(void **state)
{
	int st;

	if (geteuid()) {
		fprintf(stderr, "skip: switching users needs root\n");
		skip();
	}
	snprintf(cert, sizeof(cert), "%s/key.pem", dir);
	write_file(cert, "key\n");
	chmod(cert, 0600);
	drop_cfg = (struct run_config){ .user = "65534" };
	st = in_child(drop_child);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("drop child: %s %d", WIFEXITED(st) ? "check" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/*
 * ktlsd agent's sandbox (sandbox_apply_spec): only CAP_NET_ADMIN stays, keyctl is allowed
 * only where the spec names it and then only its operations, no new socket (CAP_NET_ADMIN
 * would reach rtnetlink and nftables through one), and only the named files' directory is
 * readable.
 */
static bool spec_keyctl;

enum { K_JOIN_SESSION = 1, K_DESCRIBE = 6, K_LINK = 8, K_SEARCH = 10, K_READ = 11 };

static int spec_sockets(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);

	if (fd >= 0 || errno != EPERM)
		return 5;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 || errno != EPERM)
		return 6;
	return 0;
}

/* add_key and LINK into the session keyring only (-3); the process keyring (-2) refused. */
static int spec_keys(void)
{
	long key = syscall(SYS_add_key, "user", "ktlsd-test", "x", 1, -3);

	if (spec_keyctl != (key >= 0))
		return 8;
	if (syscall(SYS_add_key, "user", "ktlsd-test", "x", 1, -2) >= 0 || errno != EPERM)
		return 9;
	if (key >= 0 && (syscall(SYS_keyctl, K_LINK, key, -2, 0, 0) >= 0 || errno != EPERM))
		return 12;
	return 0;
}

static int spec_child(void)
{
	static const int caps[] = { CAP_NET_ADMIN };

	static const unsigned ops[] = { K_DESCRIBE, K_LINK, K_SEARCH, K_READ };
	static const char *const deny[] = { "socket", "bpf" };
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	const char *files[] = { cert, NULL };
	struct sandbox_spec s = { .landlock = true,
				  .seccomp = true,
				  .caps = caps,
				  .n_caps = 1,
				  .files = files,
				  .n_files = 2,
				  .keyctl_ops = ops,
				  .n_keyctl_ops = spec_keyctl ? 4 : 0,
				  .keys_session_only = spec_keyctl,
				  .deny = deny,
				  .n_deny = 2 };
	char err[256];
	long k;

	/* A session keyring of the child's own: what it adds does not outlive it. Exit 11
	 * (skip) where keyctl is refused before any sandbox of ours. */
	if (syscall(SYS_keyctl, K_JOIN_SESSION, 0, 0, 0, 0) < 0)
		return 11;
	if (sandbox_apply_spec(&s, err, sizeof(err)))
		return 10;
	sandbox_rings_done();
	if (syscall(SYS_capget, &h, d) || d[0].effective != 1u << CAP_NET_ADMIN ||
	    d[0].permitted != 1u << CAP_NET_ADMIN || d[1].effective || d[1].permitted)
		return 1;
	/* KEYCTL_DESCRIBE of the session keyring: anything but the filter's EPERM. */
	k = syscall(SYS_keyctl, K_DESCRIBE, -3, 0, 0, 0);
	if (spec_keyctl != (k >= 0 || errno != EPERM))
		return 2;
	/* An operation the spec does not name (it would succeed for root otherwise). */
	if (syscall(SYS_keyctl, K_JOIN_SESSION, 0, 0, 0, 0) >= 0 || errno != EPERM)
		return 7;
	k = spec_keys();
	if (k)
		return (int)k;
	if (open_errno(cert, O_RDONLY))
		return 3;
	if (landlock_abi() > 0 && open_errno("/etc/passwd", O_RDONLY) != EACCES)
		return 4;
	return spec_sockets();
}

static void test_spec(void **state)
{
	int st;

	if (geteuid() || getenv("KTLSD_SANITIZER")) {
		fprintf(stderr, "skip: needs root (CAP_NET_ADMIN to keep) and no sanitizer\n");
		skip();
	}
	snprintf(cert, sizeof(cert), "%s/agent.pem", dir);
	write_file(cert, "cert\n");
	for (int i = 0; i < 2; i++) {
		spec_keyctl = i;
		st = in_child(spec_child);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 11) {
			fprintf(stderr, "skip: no keyctl here (a container's own seccomp?)\n");
			skip();
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail_msg("spec child (keyctl %s): %s %d", i ? "allowed" : "not named",
				 WIFEXITED(st) ? "check" : "signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	}
}

/* Capabilities follow the configuration: a privileged listen port keeps one. */
static void test_caps_needed(void **state)
{
	struct service_config svc = { 0 };
	struct run_config cfg = { .svc = &svc, .n_svc = 1 };
	int caps[SANDBOX_CAPS_MAX];
	char err[256];

	assert_int_equal(addr_parse("127.0.0.1:8443", false, &svc.listen_addr, NULL), 0);
	assert_int_equal(sandbox_caps_needed(&cfg, caps), 0);
	assert_int_equal(addr_parse("127.0.0.1:443", false, &svc.listen_addr, NULL), 0);
	assert_int_equal(sandbox_caps_needed(&cfg, caps), 1);
	assert_int_equal(caps[0], CAP_NET_BIND_SERVICE);
	cfg.user = "no-such-user-ktlsd";
	assert_int_equal(sandbox_user_check(&cfg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "user 'no-such-user-ktlsd': no such user");
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/ktlsd-sandbox-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_landlock),	   cmocka_unit_test(test_seccomp),
		cmocka_unit_test(test_seccomp_seal_rings), cmocka_unit_test(test_drop_user),
		cmocka_unit_test(test_caps_needed),	   cmocka_unit_test(test_spec),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

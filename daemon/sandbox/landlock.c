// SPDX-License-Identifier: MIT
/*
 * Landlock, by raw syscalls (Debian 12 has no liblandlock, and its kernel headers predate
 * the newer access rights): read-only access to a few paths, nothing else on the file
 * system. Every file-system right the running kernel knows is handled, so whatever is not
 * granted below is denied: no writes, no exec, no new files, no reading elsewhere.
 *
 * Not restricted here: TCP bind/connect (Landlock ABI 4 could; targets, OCSP responders
 * and the admin endpoint would each need their ports listed), and connecting to unix
 * sockets by path (Landlock does not cover it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule	     445
#define __NR_landlock_restrict_self  446
#endif

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH	  1

/* File-system rights by the ABI that introduced them (include/uapi/linux/landlock.h). */
#define LL_EXECUTE    (1ULL << 0)
#define LL_WRITE_FILE (1ULL << 1)
#define LL_READ_FILE  (1ULL << 2)
#define LL_READ_DIR   (1ULL << 3)
#define LL_ABI1_ALL   ((1ULL << 13) - 1) /* execute .. make_sym */
#define LL_REFER      (1ULL << 13)	 /* ABI 2 */
#define LL_TRUNCATE   (1ULL << 14)	 /* ABI 3 */
#define LL_IOCTL_DEV  (1ULL << 15)	 /* ABI 5 */

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
};

struct ll_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

int landlock_abi(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);

	return abi < 0 ? -errno : (int)abi;
}

static uint64_t handled_fs(int abi)
{
	uint64_t r = LL_ABI1_ALL;

	if (abi >= 2)
		r |= LL_REFER;
	if (abi >= 3)
		r |= LL_TRUNCATE;
	if (abi >= 5)
		r |= LL_IOCTL_DEV;
	return r;
}

/* One read-only rule: beneath a directory, or on one file. A missing path is skipped. */
static int add_read_rule(int ruleset, const char *path)
{
	struct ll_path_beneath_attr pb = { .allowed_access = LL_READ_FILE };
	struct stat st;
	int fd = open(path, O_PATH | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out_close;
	}
	if (S_ISDIR(st.st_mode))
		pb.allowed_access |= LL_READ_DIR;
	pb.parent_fd = fd;
	if (syscall(__NR_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0))
		rc = -errno;
out_close:
	close(fd);
	return rc;
}

int landlock_restrict(const char *const *paths, size_t n)
{
	int abi = landlock_abi(), ruleset, rc = 0;
	struct ll_ruleset_attr attr;

	if (abi < 0)
		return abi;
	attr.handled_access_fs = handled_fs(abi);
	ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (ruleset < 0)
		return -errno;
	for (size_t i = 0; !rc && i < n; i++)
		rc = add_read_rule(ruleset, paths[i]);
	/* Without CAP_SYS_ADMIN a process may only restrict itself with no_new_privs. */
	if (!rc && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		rc = -errno;
	if (!rc && syscall(__NR_landlock_restrict_self, ruleset, 0))
		rc = -errno;
	close(ruleset);
	return rc ? rc : abi;
}

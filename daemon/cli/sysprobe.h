/* SPDX-License-Identifier: MIT */
/*
 * What this kernel offers ktlsd, found by trying, never by guessing from the version:
 * kernel TLS (libktls's ktls_probe(), unchanged), io_uring (the loop cannot run without
 * it) and BPF sockmap. `ktlsd probe` prints it; the server checks io_uring with it.
 *
 * Absence of a feature is a result (false + the errno the kernel gave), not an error:
 * sysprobe() fails only when the kTLS probe could not run at all (no loopback TCP).
 */
#ifndef KTLSD_DAEMON_SYSPROBE_H
#define KTLSD_DAEMON_SYSPROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "ktlsd/probe.h"

struct sys_caps {
	struct ktls_caps ktls;

	/* io_uring */
	bool uring;			/* io_uring_queue_init works */
	int uring_err;			/* EPERM / ENOSYS: seccomp or io_uring_disabled sysctl */
	bool uring_accept_multishot;	/* 5.19 */
	bool uring_splice;		/* 5.7 */
	bool uring_recv_multishot;	/* 6.0 */
	bool uring_setup_defer_taskrun; /* SINGLE_ISSUER | DEFER_TASKRUN, 6.1 */

	/* BPF */
	bool bpf_sockmap; /* BPF_MAP_CREATE of a SOCKMAP */
	int bpf_err;	  /* EPERM without CAP_BPF / CAP_SYS_ADMIN */
};

/*
 * The seam: every io_uring and BPF interaction the probe makes (the kTLS ones are
 * libktls's struct ktls_probe_ops). Each returns 0 (or an fd) / -errno.
 */
struct sysprobe_ops {
	void (*close)(int fd);
	/* Set up and tear down a ring with these IORING_SETUP_* flags. */
	int (*uring_setup)(unsigned int flags);
	/* ret_supported[op] for op < n from IORING_REGISTER_PROBE. */
	int (*uring_opcodes)(bool *ret_supported, size_t n);
	/* Submit one multishot accept / recv and return its first CQE's res (<0: -errno). */
	int (*uring_accept_multishot)(void);
	int (*uring_recv_multishot)(void);
	/* BPF_MAP_CREATE for a map type; returns an fd or -errno. */
	int (*bpf_map_create)(int map_type, unsigned int key_size, unsigned int value_size,
			      unsigned int max_entries);
};

extern const struct sysprobe_ops sysprobe_default_ops;

/* Fill *ret_caps (untouched on failure). 0, or -errno if the probe could not run. */
int sysprobe(struct sys_caps *ret_caps);
int sysprobe_with(const struct ktls_probe_ops *kops, const struct sysprobe_ops *ops,
		  struct sys_caps *ret_caps);

#endif

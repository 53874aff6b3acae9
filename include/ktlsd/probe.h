/* SPDX-License-Identifier: MIT */
/*
 * Kernel capability probe: what this kernel can do for ktlsd, found by trying each
 * feature on throwaway loopback sockets and rings, never by guessing from the version.
 *
 *   struct ktls_caps caps;
 *   if (ktls_probe(&caps) == 0 && caps.rekey) ...
 *
 * Absence of a feature is a result (false + the errno the kernel gave), not an error:
 * ktls_probe() fails only when it could not run at all (no loopback TCP, no memory).
 */
#ifndef KTLSD_PROBE_H
#define KTLSD_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* First index of ktls_caps.tx / .rx. */
enum ktls_probe_version { KTLS_PROBE_TLS12, KTLS_PROBE_TLS13, KTLS_PROBE_NVERSIONS };

/* Second index of ktls_caps.tx / .rx. */
enum ktls_probe_cipher {
	KTLS_PROBE_AES_GCM_128,
	KTLS_PROBE_AES_GCM_256,
	KTLS_PROBE_CHACHA20_POLY1305,
	KTLS_PROBE_NCIPHERS
};

struct ktls_caps {
	/* kTLS */
	bool ulp;    /* TCP_ULP "tls" on a connected TCP socket */
	int ulp_err; /* positive errno when !ulp (ENOENT: no CONFIG_TLS / module) */
	bool tx[KTLS_PROBE_NVERSIONS][KTLS_PROBE_NCIPHERS];
	bool rx[KTLS_PROBE_NVERSIONS][KTLS_PROBE_NCIPHERS];
	bool rekey;	       /* second TLS_TX on an installed TLS 1.3 socket works (6.14+) */
	int rekey_err;	       /* errno of that second TLS_TX when !rekey (EBUSY before 6.14) */
	bool rx_expect_no_pad; /* TLS_RX_EXPECT_NO_PAD accepted (6.0+) */

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

/* Fill *ret_caps (untouched on failure). 0, or -errno if the probe could not run. */
int ktls_probe(struct ktls_caps *ret_caps);

/*
 * Only the rekey question, for the key-install library: 1 if a second TLS_TX on an
 * installed TLS 1.3 socket works (6.14+), 0 if not, -errno if kTLS itself is unavailable.
 */
int ktls_probe_rekey(void);

/* Stable short names ("aes_gcm_128", "tls13", ...) for tables and JSON keys. */
const char *ktls_probe_cipher_name(enum ktls_probe_cipher c);
const char *ktls_probe_version_name(enum ktls_probe_version v);

/*
 * The seam: every kernel interaction the probe makes. Each returns the kernel's answer as
 * 0 (or an fd) / -errno. ktls_probe() uses ktls_probe_default_ops; unit tests pass fakes.
 */
struct ktls_probe_ops {
	/* A connected loopback TCP pair (listen/connect/accept on 127.0.0.1:0). */
	int (*tcp_pair)(int ret_fds[2]);
	int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
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

extern const struct ktls_probe_ops ktls_probe_default_ops;

int ktls_probe_with(const struct ktls_probe_ops *ops, struct ktls_caps *ret_caps);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS capability probe: what this kernel's kTLS can do, found by trying each
 * feature on throwaway loopback sockets, never by guessing from the version. io_uring and
 * BPF are not kernel TLS: the daemon probes those itself.
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
};

extern const struct ktls_probe_ops ktls_probe_default_ops;

int ktls_probe_with(const struct ktls_probe_ops *ops, struct ktls_caps *ret_caps);

#endif

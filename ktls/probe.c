// SPDX-License-Identifier: MIT
/*
 * Kernel TLS capability probe. Each feature is tried on throwaway loopback sockets
 * because distribution kernels backport and configure features independently of their
 * version number (Debian's 6.1 has CONFIG_TLS=m, the host's 6.18 has no TLS at all).
 *
 * kTLS: a socket takes one TLS_TX and one TLS_RX, so every version x cipher cell gets a
 * fresh connected pair; the rekey question is a second TLS_TX on an installed TLS 1.3
 * socket (EBUSY before 6.14). Keys are all-zero dummies: nothing secret is ever in them,
 * and no byte is sent under them.
 */
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "ktlsd/probe.h"
#include "ktls_compat.h"

union probe_crypto_info {
	struct tls_crypto_info info;
	struct tls12_crypto_info_aes_gcm_128 aes128;
	struct tls12_crypto_info_aes_gcm_256 aes256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

static const char *const cipher_names[KTLS_PROBE_NCIPHERS] = {
	[KTLS_PROBE_AES_GCM_128] = "aes_gcm_128",
	[KTLS_PROBE_AES_GCM_256] = "aes_gcm_256",
	[KTLS_PROBE_CHACHA20_POLY1305] = "chacha20_poly1305",
};

static const char *const version_names[KTLS_PROBE_NVERSIONS] = {
	[KTLS_PROBE_TLS12] = "tls12",
	[KTLS_PROBE_TLS13] = "tls13",
};

const char *ktls_probe_cipher_name(enum ktls_probe_cipher c)
{
	return (unsigned int)c < KTLS_PROBE_NCIPHERS ? cipher_names[c] : "unknown";
}

const char *ktls_probe_version_name(enum ktls_probe_version v)
{
	return (unsigned int)v < KTLS_PROBE_NVERSIONS ? version_names[v] : "unknown";
}

/* Dummy crypto_info for one cell; returns its exact size (the kernel insists on it). */
static socklen_t crypto_info_for(enum ktls_probe_version v, enum ktls_probe_cipher c,
				 union probe_crypto_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	ci->info.version = v == KTLS_PROBE_TLS13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
	switch (c) {
	case KTLS_PROBE_AES_GCM_128:
		ci->info.cipher_type = TLS_CIPHER_AES_GCM_128;
		return sizeof(ci->aes128);
	case KTLS_PROBE_AES_GCM_256:
		ci->info.cipher_type = TLS_CIPHER_AES_GCM_256;
		return sizeof(ci->aes256);
	case KTLS_PROBE_CHACHA20_POLY1305:
		ci->info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		return sizeof(ci->chacha);
	case KTLS_PROBE_NCIPHERS:
		break;
	}
	return 0;
}

/* ---- default seam: the real kernel ------------------------------------------------- */

static int real_tcp_pair(int ret_fds[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int lfd, cfd, afd, err;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) < 0) {
		err = -errno;
		goto out_close_listener;
	}
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0) {
		err = -errno;
		goto out_close_listener;
	}
	/* Loopback connect completes against the backlog without an accept first. */
	if (connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		err = -errno;
		goto out_close_client;
	}
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0) {
		err = -errno;
		goto out_close_client;
	}
	close(lfd);
	ret_fds[0] = cfd;
	ret_fds[1] = afd;
	return 0;

out_close_client:
	close(cfd);
out_close_listener:
	close(lfd);
	return err;
}

static int real_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len) < 0 ? -errno : 0;
}

static void real_close(int fd)
{
	close(fd);
}

const struct ktls_probe_ops ktls_probe_default_ops = {
	.tcp_pair = real_tcp_pair,
	.setsockopt = real_setsockopt,
	.close = real_close,
};

/* ---- the probe ---------------------------------------------------------------------- */

static void close_pair(const struct ktls_probe_ops *ops, int fds[2])
{
	ops->close(fds[0]);
	ops->close(fds[1]);
}

static int set_ulp(const struct ktls_probe_ops *ops, int fd)
{
	return ops->setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls") - 1);
}

/*
 * One version x cipher cell on a fresh socket. For the first TLS 1.3 cell that installs,
 * also answer the rekey and EXPECT_NO_PAD questions on the same socket: both are only
 * meaningful after an install.
 */
static int probe_cell(const struct ktls_probe_ops *ops, enum ktls_probe_version v,
		      enum ktls_probe_cipher c, struct ktls_caps *caps, bool *tls13_done)
{
	union probe_crypto_info ci;
	socklen_t len = crypto_info_for(v, c, &ci);
	int fds[2], err;

	err = ops->tcp_pair(fds);
	if (err < 0)
		return err;
	if (set_ulp(ops, fds[0]) < 0)
		goto out_close_pair;
	caps->tx[v][c] = ops->setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, len) == 0;
	caps->rx[v][c] = ops->setsockopt(fds[0], SOL_TLS, TLS_RX, &ci, len) == 0;

	if (v == KTLS_PROBE_TLS13 && !*tls13_done && caps->tx[v][c] && caps->rx[v][c]) {
		int one = 1;

		*tls13_done = true;
		caps->rx_expect_no_pad = ops->setsockopt(fds[0], SOL_TLS, TLS_RX_EXPECT_NO_PAD,
							 &one, sizeof(one)) == 0;
		err = ops->setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, len);
		caps->rekey = err == 0;
		caps->rekey_err = err < 0 ? -err : 0;
	}
	err = 0;
out_close_pair:
	close_pair(ops, fds);
	return err;
}

static int probe_ktls(const struct ktls_probe_ops *ops, struct ktls_caps *caps)
{
	bool tls13_done = false;
	int fds[2], err;
	int v, c;

	err = ops->tcp_pair(fds);
	if (err < 0)
		return err;
	err = set_ulp(ops, fds[0]);
	close_pair(ops, fds);
	if (err < 0) {
		caps->ulp_err = -err;
		caps->rekey_err = -err;
		return 0;
	}
	caps->ulp = true;

	for (v = 0; v < KTLS_PROBE_NVERSIONS; v++) {
		for (c = 0; c < KTLS_PROBE_NCIPHERS; c++) {
			err = probe_cell(ops, v, c, caps, &tls13_done);
			if (err < 0)
				return err;
		}
	}
	if (!tls13_done)
		caps->rekey_err = EOPNOTSUPP; /* nothing installed to rekey */
	return 0;
}

int ktls_probe_with(const struct ktls_probe_ops *ops, struct ktls_caps *ret_caps)
{
	struct ktls_caps caps;
	int err;

	memset(&caps, 0, sizeof(caps));
	err = probe_ktls(ops, &caps);
	if (err < 0)
		return err;
	*ret_caps = caps;
	return 0;
}

int ktls_probe(struct ktls_caps *ret_caps)
{
	return ktls_probe_with(&ktls_probe_default_ops, ret_caps);
}

int ktls_probe_rekey(void)
{
	const struct ktls_probe_ops *ops = &ktls_probe_default_ops;
	union probe_crypto_info ci;
	socklen_t len = crypto_info_for(KTLS_PROBE_TLS13, KTLS_PROBE_AES_GCM_128, &ci);
	int fds[2], rc;

	rc = ops->tcp_pair(fds);
	if (rc < 0)
		return rc;
	rc = set_ulp(ops, fds[0]);
	if (!rc)
		rc = ops->setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, len);
	if (!rc)
		rc = ops->setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, len) ==
		     0; /* EBUSY before 6.14 */
	close_pair(ops, fds);
	return rc;
}

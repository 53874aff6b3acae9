// SPDX-License-Identifier: MIT
/*
 * Kernel capability probe. Each feature is tried on throwaway loopback sockets or rings
 * because distribution kernels backport and configure features independently of their
 * version number (Debian's 6.1 has CONFIG_TLS=m, the host's 6.18 has no TLS at all).
 *
 * kTLS: a socket takes one TLS_TX and one TLS_RX, so every version x cipher cell gets a
 * fresh connected pair; the rekey question is a second TLS_TX on an installed TLS 1.3
 * socket (EBUSY before 6.14). Keys are all-zero dummies: nothing secret is ever in them,
 * and no byte is sent under them.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "ktlsd/probe.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* How long to wait for a CQE the kernel should post at once (loopback, local). */
#define PROBE_CQE_TIMEOUT_MS 1000

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

static int real_uring_setup(unsigned int flags)
{
	struct io_uring ring;
	int err;

	err = io_uring_queue_init(8, &ring, flags);
	if (err < 0)
		return err;
	io_uring_queue_exit(&ring);
	return 0;
}

static int real_uring_opcodes(bool *ret_supported, size_t n)
{
	struct io_uring_probe *p;
	size_t op;

	p = io_uring_get_probe();
	if (!p)
		return -EOPNOTSUPP;
	for (op = 0; op < n; op++)
		ret_supported[op] = op <= 255 && io_uring_opcode_supported(p, (int)op);
	io_uring_free_probe(p);
	return 0;
}

/* First CQE's res, or -ETIME if the kernel posted none in time. */
static int wait_first_cqe(struct io_uring *ring)
{
	struct __kernel_timespec ts = { .tv_sec = PROBE_CQE_TIMEOUT_MS / 1000,
					.tv_nsec = (PROBE_CQE_TIMEOUT_MS % 1000) * 1000000L };
	struct io_uring_cqe *cqe;
	int err, res;

	err = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (err < 0)
		return err;
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

/*
 * Before 5.19 a multishot accept is refused at prep time with -EINVAL; from 5.19 it stays
 * armed and posts one CQE per connection, so make one connection and look at its CQE.
 */
static int real_uring_accept_multishot(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int lfd, cfd, err;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) < 0) {
		err = -errno;
		goto out_close_listener;
	}
	err = io_uring_queue_init(4, &ring, 0);
	if (err < 0)
		goto out_close_listener;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	err = io_uring_submit(&ring);
	if (err < 0)
		goto out_exit_ring;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0) {
		err = -errno;
		goto out_exit_ring;
	}
	if (connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		err = -errno;
		goto out_close_client;
	}
	err = wait_first_cqe(&ring);
	if (err >= 0) {
		close(err); /* the accepted socket */
		err = 0;
	}
out_close_client:
	close(cfd);
out_exit_ring:
	/* Exiting the ring cancels the still-armed accept. */
	io_uring_queue_exit(&ring);
out_close_listener:
	close(lfd);
	return err;
}

/*
 * Multishot recv (6.0) requires buffer selection. With no buffers provided, a kernel that
 * takes the request answers arriving data with -ENOBUFS; an older one refuses it at prep
 * time with -EINVAL. Either way no byte is consumed into memory we own.
 */
static int real_uring_recv_multishot(void)
{
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int fds[2], err;

	err = real_tcp_pair(fds);
	if (err < 0)
		return err;
	err = io_uring_queue_init(4, &ring, 0);
	if (err < 0)
		goto out_close_pair;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv_multishot(sqe, fds[1], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	err = io_uring_submit(&ring);
	if (err < 0)
		goto out_exit_ring;
	if (write(fds[0], "x", 1) != 1) {
		err = -errno;
		goto out_exit_ring;
	}
	err = wait_first_cqe(&ring);
	if (err == -ENOBUFS || err >= 0)
		err = 0;
out_exit_ring:
	io_uring_queue_exit(&ring);
out_close_pair:
	close(fds[0]);
	close(fds[1]);
	return err;
}

static int real_bpf_map_create(int map_type, unsigned int key_size, unsigned int value_size,
			       unsigned int max_entries)
{
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = (uint32_t)map_type;
	attr.key_size = key_size;
	attr.value_size = value_size;
	attr.max_entries = max_entries;
	fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : (int)fd;
}

const struct ktls_probe_ops ktls_probe_default_ops = {
	.tcp_pair = real_tcp_pair,
	.setsockopt = real_setsockopt,
	.close = real_close,
	.uring_setup = real_uring_setup,
	.uring_opcodes = real_uring_opcodes,
	.uring_accept_multishot = real_uring_accept_multishot,
	.uring_recv_multishot = real_uring_recv_multishot,
	.bpf_map_create = real_bpf_map_create,
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

static void probe_uring(const struct ktls_probe_ops *ops, struct ktls_caps *caps)
{
	bool ops_ok[IORING_OP_LAST] = { false };
	int err;

	err = ops->uring_setup(0);
	if (err < 0) {
		caps->uring_err = -err;
		return;
	}
	caps->uring = true;
	caps->uring_setup_defer_taskrun =
		ops->uring_setup(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) == 0;
	if (ops->uring_opcodes(ops_ok, IORING_OP_LAST) == 0)
		caps->uring_splice = ops_ok[IORING_OP_SPLICE];
	caps->uring_accept_multishot =
		ops_ok[IORING_OP_ACCEPT] && ops->uring_accept_multishot() == 0;
	caps->uring_recv_multishot = ops_ok[IORING_OP_RECV] && ops->uring_recv_multishot() == 0;
}

static void probe_bpf(const struct ktls_probe_ops *ops, struct ktls_caps *caps)
{
	int fd;

	fd = ops->bpf_map_create(BPF_MAP_TYPE_SOCKMAP, sizeof(uint32_t), sizeof(uint32_t), 1);
	if (fd < 0) {
		caps->bpf_err = -fd;
		return;
	}
	caps->bpf_sockmap = true;
	ops->close(fd);
}

int ktls_probe_with(const struct ktls_probe_ops *ops, struct ktls_caps *ret_caps)
{
	struct ktls_caps caps;
	int err;

	memset(&caps, 0, sizeof(caps));
	err = probe_ktls(ops, &caps);
	if (err < 0)
		return err;
	probe_uring(ops, &caps);
	probe_bpf(ops, &caps);
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

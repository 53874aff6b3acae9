// SPDX-License-Identifier: MIT
/*
 * io_uring and BPF probe (kTLS is libktls's: ktls_probe_with). Each feature is tried on
 * throwaway rings and sockets because distribution kernels backport and configure
 * features independently of their version number, and a seccomp profile or the
 * kernel.io_uring_disabled sysctl can take io_uring away whatever the version.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "sysprobe.h"

/* How long to wait for a CQE the kernel should post at once (loopback, local). */
#define PROBE_CQE_TIMEOUT_MS 1000

/* ---- default seam: the real kernel ------------------------------------------------- */

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

	err = ktls_probe_default_ops.tcp_pair(fds);
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

const struct sysprobe_ops sysprobe_default_ops = {
	.close = real_close,
	.uring_setup = real_uring_setup,
	.uring_opcodes = real_uring_opcodes,
	.uring_accept_multishot = real_uring_accept_multishot,
	.uring_recv_multishot = real_uring_recv_multishot,
	.bpf_map_create = real_bpf_map_create,
};

/* ---- the probe ---------------------------------------------------------------------- */

static void probe_uring(const struct sysprobe_ops *ops, struct sys_caps *caps)
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

static void probe_bpf(const struct sysprobe_ops *ops, struct sys_caps *caps)
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

int sysprobe_with(const struct ktls_probe_ops *kops, const struct sysprobe_ops *ops,
		  struct sys_caps *ret_caps)
{
	struct sys_caps caps;
	int err;

	memset(&caps, 0, sizeof(caps));
	err = ktls_probe_with(kops, &caps.ktls);
	if (err < 0)
		return err;
	probe_uring(ops, &caps);
	probe_bpf(ops, &caps);
	*ret_caps = caps;
	return 0;
}

int sysprobe(struct sys_caps *ret_caps)
{
	return sysprobe_with(&ktls_probe_default_ops, &sysprobe_default_ops, ret_caps);
}

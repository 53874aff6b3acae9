// SPDX-License-Identifier: MIT
/*
 * Listeners, and owning them. Each worker has its own SO_REUSEPORT socket per service so
 * the kernel spreads accepts without a shared queue; listener_guard's comment says how
 * ktlsd makes sure no other socket joins that group.
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "commands.h"
#include "listen.h"

/*
 * Listener ownership. Each worker has its own SO_REUSEPORT socket per service so the kernel
 * spreads accepts without a shared queue. But SO_REUSEPORT lets any socket of the same user
 * join the group: a second ktlsd on the same port would silently take a share of the
 * connections. So before the group is opened, a guard socket binds the address without
 * SO_REUSEPORT, which fails with EADDRINUSE while anything listens there, reuseport or not
 * (its SO_REUSEADDR only lets the TIME_WAIT leftovers of an earlier run pass). The guard is
 * closed and the group opened; a socket bound in between would still join it, so once all
 * of ours listen, sock_diag lists the port's listeners, and one that overlaps ours and is
 * not ours makes us give up. Both sides of such a race may refuse; neither shares. Where
 * the kernel cannot be asked (no inet_diag, a seccomp filter) the guard stands alone.
 */
static int listener_guard(const struct daemon_addr *a)
{
	int fd = socket(a->alt[0].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->alt[0].ss, a->alt[0].len))
		rc = -errno;
	close(fd);
	return rc;
}

static int listener_open(const struct daemon_addr *a, int *ret_fd)
{
	int fd = socket(a->alt[0].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->alt[0].ss.ss_family != AF_UNIX)
		conn_tcp_opts(fd);
	/* One listener per worker: the kernel load-balances accepts, no shared queue. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)&a->alt[0].ss, a->alt[0].len) || listen(fd, 4096)) {
		int e = errno;

		close(fd);
		return -e;
	}
	*ret_fd = fd;
	return 0;
}

/* Our listening sockets of one service, as sock_diag names them. */
struct listen_set {
	const struct daemon_addr *addr;
	bool v6only; /* ours is [::] but takes no IPv4 (net.ipv6.bindv6only) */
	unsigned n;
	uint32_t inode[];
};

static bool listen_set_has(const struct listen_set *ls, uint32_t inode)
{
	for (unsigned i = 0; i < ls->n; i++)
		if (ls->inode[i] == inode)
			return true;
	return false;
}

/* Whether a listener sock_diag reported takes connections meant for ours. */
static bool diag_overlaps(const struct listen_set *ls, const struct inet_diag_msg *m, int attr_len)
{
	const struct daemon_addr *a = ls->addr;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	bool v6only = false;

	for (const struct rtattr *at = (const struct rtattr *)(m + 1); RTA_OK(at, attr_len);
	     at = RTA_NEXT(at, attr_len))
		if (at->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(at) >= 1)
			v6only = *(const uint8_t *)RTA_DATA(at);
	if (m->idiag_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = m->id.idiag_sport;
		memcpy(&in->sin_addr, m->id.idiag_src, 4);
		len = sizeof(*in);
		if (ls->v6only)
			return false;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = m->id.idiag_sport;
		memcpy(&in6->sin6_addr, m->id.idiag_src, 16);
		len = sizeof(*in6);
		if (v6only && a->alt[0].ss.ss_family == AF_INET)
			return false;
	}
	return addr_listen_overlap((const struct sockaddr *)&a->alt[0].ss, a->alt[0].len,
				   (const struct sockaddr *)&ss, len);
}

/* Asks the kernel for every TCP listener of family; nl is a NETLINK_SOCK_DIAG socket. */
static int diag_request(int nl, int family)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req = {
		.nlh = { .nlmsg_len = sizeof(req),
			 .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			 .nlmsg_seq = 1 },
		.r = { .sdiag_family = (uint8_t)family,
		       .sdiag_protocol = IPPROTO_TCP,
		       .idiag_states = 1u << TCP_LISTEN },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	return 0;
}

/*
 * One message of the dump: 1 at its end, 0 to go on, -EADDRINUSE for a listener that
 * overlaps ours and is not ours, another -errno for an error the kernel sent.
 */
static int diag_message(const struct listen_set *ls, const struct nlmsghdr *h)
{
	const struct inet_diag_msg *m = NLMSG_DATA(h);

	if (h->nlmsg_type == NLMSG_DONE)
		return 1;
	if (h->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(h);

		return h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error ? e->error : -EIO;
	}
	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return 0;
	if (diag_overlaps(ls, m, (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)))) &&
	    !listen_set_has(ls, m->idiag_inode))
		return -EADDRINUSE;
	return 0;
}

/* -EADDRINUSE if a listener of this family that is not ours overlaps ours; 0 if none;
 * another -errno if the kernel could not be asked. */
static int diag_scan(const struct listen_set *ls, int family)
{
	union {
		struct nlmsghdr h;
		char b[32768];
	} buf;
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), rc;

	if (nl < 0)
		return -errno;
	rc = diag_request(nl, family);
	while (!rc) {
		int len = (int)recv(nl, &buf, sizeof(buf), 0);

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0) {
			rc = len < 0 ? -errno : -EIO;
			goto out_close;
		}
		for (struct nlmsghdr *h = &buf.h; !rc && NLMSG_OK(h, len); h = NLMSG_NEXT(h, len))
			rc = diag_message(ls, h);
	}
out_close:
	close(nl);
	return rc > 0 ? 0 : rc;
}

/* After listen(): is every listener on our address one of ours? See the guard's comment. */
static int listeners_exclusive(const struct daemon_addr *a, const int *fds, unsigned n)
{
	struct listen_set *ls = calloc(1, sizeof(*ls) + n * sizeof(ls->inode[0]));
	int rc = 0, v6only = 0;
	socklen_t olen = sizeof(v6only);

	if (!ls)
		return -ENOMEM;
	ls->addr = a;
	for (unsigned i = 0; i < n; i++) {
		struct stat st;

		if (fstat(fds[i], &st)) {
			rc = -errno;
			goto out_free;
		}
		ls->inode[ls->n++] = (uint32_t)st.st_ino;
	}
	if (a->alt[0].ss.ss_family == AF_INET6 &&
	    !getsockopt(fds[0], IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen))
		ls->v6only = v6only;
	rc = diag_scan(ls, AF_INET);
	if (!rc)
		rc = diag_scan(ls, AF_INET6);
	if (rc != -EADDRINUSE)
		rc = 0; /* not asked, not refused: the guard has done what it could */
out_free:
	free(ls);
	return rc;
}

/* What an operator can act on, for bind()/listen() errors in particular. */
const char *listen_strerror(int err)
{
	switch (err) {
	case EADDRINUSE:
		return "address in use";
	case EADDRNOTAVAIL:
		return "address not available (no interface has it)";
	case EACCES:
		return "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)";
	default:
		return strerror(err);
	}
}

/* --- systemd socket activation ------------------------------------------------------ */

/* What systemd passed (LISTEN_FDS), taken once: sd_listen_fds unsets the variables. */
static struct {
	bool taken;
	int n;
	char **names;
	bool *used;
} sd;

static void systemd_take(void)
{
	if (sd.taken)
		return;
	sd.taken = true;
	sd.n = sd_listen_fds_with_names(1, &sd.names);
	if (sd.n < 0)
		sd.n = 0;
	sd.used = calloc(sd.n ? (size_t)sd.n : 1, sizeof(*sd.used));
	for (int i = 0; i < sd.n; i++)
		fcntl(SD_LISTEN_FDS_START + i, F_SETFD, FD_CLOEXEC);
}

/* The index of the socket for "systemd" or "systemd:NAME", or -1 with why set. */
static int systemd_find(const char *name, const char **why)
{
	int found = -1;

	systemd_take();
	if (!sd.n) {
		*why = "no socket passed by systemd (LISTEN_FDS unset: start ktlsd from its "
		       ".socket unit, or give an address)";
		return -1;
	}
	if (!name && sd.n > 1) {
		*why = "systemd passed several sockets: name one as systemd:NAME "
		       "(FileDescriptorName= of the socket unit)";
		return -1;
	}
	for (int i = 0; i < sd.n && found < 0; i++)
		if (!name || (sd.names && sd.names[i] && !strcmp(sd.names[i], name)))
			found = i;
	if (found < 0)
		*why = "no socket of that name among those systemd passed (FileDescriptorName=)";
	else if (sd.used[found])
		*why = "that socket is already another service's";
	else if (sd_is_socket_inet(SD_LISTEN_FDS_START + found, 0, SOCK_STREAM, 1, 0) <= 0)
		*why = "the socket systemd passed is not a listening TCP socket (ListenStream= "
		       "with an address or port)";
	else
		return found;
	return -1;
}

/*
 * A service on a socket systemd passed: every worker gets its own descriptor of that one
 * socket (dup), so each arms its own multishot accept and closes its own. A client's
 * socket must be on loopback unless unsafe-listen, as an address given directly would.
 */
static int systemd_listen(const struct service_config *sc, struct worker *w, unsigned n, size_t s,
			  const char **why)
{
	const char *name = sc->listen[7] == ':' ? sc->listen + 8 : NULL;
	int i = systemd_find(name, why), fd;
	struct daemon_addr a = { .n = 1 };

	if (i < 0)
		return -EINVAL;
	fd = SD_LISTEN_FDS_START + i;
	a.alt[0].len = sizeof(a.alt[0].ss);
	if (getsockname(fd, (struct sockaddr *)&a.alt[0].ss, &a.alt[0].len))
		return -errno;
	if (sc->role == ROLE_CLIENT && !sc->unsafe_listen && !addr_is_loopback(&a)) {
		*why = "the socket is not on a loopback address: the plaintext ktlsd encrypts "
		       "from it would cross the network (give unsafe-listen if that is what you "
		       "want)";
		return -EINVAL;
	}
	for (unsigned k = 0; k < n; k++) {
		w[k].listen_fd[s] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (w[k].listen_fd[s] < 0)
			return -errno;
	}
	sd.used[i] = true;
	return 0;
}

int listen_group(const struct daemon_addr *a, int *fds, unsigned n)
{
	int err = listener_guard(a);

	for (unsigned i = 0; i < n; i++)
		fds[i] = -1;
	for (unsigned i = 0; !err && i < n; i++)
		err = listener_open(a, &fds[i]);
	if (!err)
		err = listeners_exclusive(a, fds, n);
	if (!err)
		return 0;
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	return err;
}

/*
 * Opens service s's listener in every worker, or says in one line why not. The address is
 * the operator's to fix (exit 2) unless the process ran out of something (exit 1).
 */
int service_listen(const struct service_config *sc, const char *cfgpath, struct worker *w,
		   unsigned n, size_t s)
{
	const char *why = NULL;
	int err;

	if (sc->listen_systemd) {
		err = systemd_listen(sc, w, n, s, &why);
	} else {
		int *fds = calloc(n, sizeof(*fds));

		err = fds ? listen_group(&sc->listen_addr, fds, n) : -ENOMEM;
		for (unsigned i = 0; !err && i < n; i++)
			w[i].listen_fd[s] = fds[i];
		free(fds);
	}
	if (!err)
		return 0;
	if (why) {
		if (cfgpath)
			fprintf(stderr, "ktlsd: %s:%d: [service %s]: listen %s: %s\n", cfgpath,
				sc->line, sc->name, sc->listen, why);
		else
			fprintf(stderr, "ktlsd: --listen %s: %s\n", sc->listen, why);
		return EXIT_USAGE;
	}
	if (cfgpath)
		fprintf(stderr, "ktlsd: %s:%d: [service %s]: listen %s: %s\n", cfgpath, sc->line,
			sc->name, sc->listen, listen_strerror(-err));
	else
		fprintf(stderr, "ktlsd: listen %s: %s\n", sc->listen, listen_strerror(-err));
	switch (-err) {
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case ENOBUFS:
		return EXIT_RUNTIME;
	default:
		return EXIT_USAGE;
	}
}

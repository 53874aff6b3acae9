// SPDX-License-Identifier: MIT
/*
 * The handshake family through libnl-genl. Two sockets: the event socket is a member of the
 * "tlshd" group and only ever read (non-blocking, driven by the agent's io_uring poll); the
 * command socket sends ACCEPT and DONE and reads their answers synchronously: the kernel
 * answers both at once, from the sending thread, so there is nothing to wait for.
 *
 * Ownership, per command:
 *   ACCEPT  the reply installs the consumer's socket into our fd table: from then on the
 *           request is ours and exactly one DONE is owed, whatever else fails.
 *   DONE    hands the socket back (status, peer key serials); our fd is still open and the
 *           caller closes it afterwards: the kernel looks the request up by that fd.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "upcall_nl.h"

/* include/uapi/linux/handshake.h (Documentation/netlink/specs/handshake.yaml). */
#define HS_FAMILY_NAME "handshake"
#define HS_MCGRP_TLSHD "tlshd"
enum { HS_HANDLER_CLASS_TLSHD = 1 };
enum { HS_CMD_READY = 1, HS_CMD_ACCEPT, HS_CMD_DONE };
enum { HS_A_X509_CERT = 1, HS_A_X509_PRIVKEY, HS_A_X509_MAX = HS_A_X509_PRIVKEY };
enum {
	HS_A_ACCEPT_SOCKFD = 1,
	HS_A_ACCEPT_HANDLER_CLASS,
	HS_A_ACCEPT_MESSAGE_TYPE,
	HS_A_ACCEPT_TIMEOUT,
	HS_A_ACCEPT_AUTH_MODE,
	HS_A_ACCEPT_PEER_IDENTITY,
	HS_A_ACCEPT_CERTIFICATE,
	HS_A_ACCEPT_PEERNAME,
	HS_A_ACCEPT_KEYRING, /* 6.16+ */
	HS_A_ACCEPT_MAX = HS_A_ACCEPT_KEYRING
};
enum { HS_A_DONE_STATUS = 1, HS_A_DONE_SOCKFD, HS_A_DONE_REMOTE_AUTH };

struct upcall_nl {
	struct nl_sock *ev;
	struct nl_sock *cmd;
	int family;
};

/* libnl's error codes, back to the errno the daemon speaks. */
static int nl_errno(int nlerr)
{
	switch (abs(nlerr)) {
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_BAD_SOCK:
		return -EBADF;
	default:
		return -EIO;
	}
}

static int sock_new(struct nl_sock **ret_sk)
{
	struct nl_sock *sk = nl_socket_alloc();
	int rc;

	if (!sk)
		return -ENOMEM;
	rc = genl_connect(sk);
	if (rc < 0) {
		nl_socket_free(sk);
		return nl_errno(rc);
	}
	*ret_sk = sk;
	return 0;
}

static void sock_free(struct nl_sock *sk)
{
	if (!sk)
		return;
	nl_close(sk);
	nl_socket_free(sk);
}

/* Notifications carry no sequence number worth checking. */
static int seq_any(struct nl_msg *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return NL_OK;
}

static int count_ready(struct nl_msg *msg, void *arg)
{
	struct genlmsghdr *g = genlmsg_hdr(nlmsg_hdr(msg));
	struct nlattr *tb[HS_A_ACCEPT_MAX + 1];
	int *n = arg;

	if (g->cmd != HS_CMD_READY)
		return NL_SKIP;
	if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, HS_A_ACCEPT_MAX, NULL) < 0)
		return NL_SKIP;
	if (tb[HS_A_ACCEPT_HANDLER_CLASS] &&
	    nla_get_u32(tb[HS_A_ACCEPT_HANDLER_CLASS]) == HS_HANDLER_CLASS_TLSHD)
		(*n)++;
	return NL_SKIP;
}

/* The event socket: a member of "tlshd", non-blocking, notifications carry no sequence. */
static int events_open(struct upcall_nl *nl, char *err, size_t errlen)
{
	int grp, rc;

	grp = genl_ctrl_resolve_grp(nl->ev, HS_FAMILY_NAME, HS_MCGRP_TLSHD);
	if (grp < 0) {
		snprintf(err, errlen, "netlink family \"%s\" group \"%s\" not found: %s",
			 HS_FAMILY_NAME, HS_MCGRP_TLSHD, nl_geterror(grp));
		return nl_errno(grp);
	}
	rc = nl_socket_add_membership(nl->ev, grp);
	if (rc < 0) {
		snprintf(err, errlen, "joining the handshake group: %s", nl_geterror(rc));
		return nl_errno(rc);
	}
	nl_socket_disable_seq_check(nl->ev);
	rc = nl_socket_set_nonblocking(nl->ev);
	if (rc < 0) {
		snprintf(err, errlen, "netlink socket: %s", nl_geterror(rc));
		return nl_errno(rc);
	}
	return 0;
}

int upcall_nl_open(struct upcall_nl **ret_nl, char *err, size_t errlen)
{
	struct upcall_nl *nl = calloc(1, sizeof(*nl));
	int rc;

	if (!nl) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = sock_new(&nl->ev);
	if (!rc)
		rc = sock_new(&nl->cmd);
	if (rc) {
		snprintf(err, errlen, "generic netlink socket: %s", strerror(-rc));
		goto out_free;
	}
	nl->family = genl_ctrl_resolve(nl->cmd, HS_FAMILY_NAME);
	if (nl->family < 0) {
		rc = nl_errno(nl->family);
		snprintf(err, errlen,
			 "this kernel has no netlink family \"%s\" (Linux 6.5+ with "
			 "CONFIG_NET_HANDSHAKE serves kernel TLS handshakes): %s",
			 HS_FAMILY_NAME, nl_geterror(nl->family));
		goto out_free;
	}
	rc = events_open(nl, err, errlen);
	if (rc)
		goto out_free;
	*ret_nl = nl;
	return 0;

out_free:
	upcall_nl_close(nl);
	return rc;
}

void upcall_nl_close(struct upcall_nl *nl)
{
	if (!nl)
		return;
	sock_free(nl->ev);
	sock_free(nl->cmd);
	free(nl);
}

int upcall_nl_event_fd(const struct upcall_nl *nl)
{
	return nl_socket_get_fd(nl->ev);
}

int upcall_nl_read_events(struct upcall_nl *nl)
{
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int n = 0, rc;

	if (!cb)
		return -ENOMEM;
	nl_cb_set(cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, seq_any, NULL);
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, count_ready, &n);
	/* Each call reads one datagram; 0 once the socket is empty. */
	do {
		rc = nl_recvmsgs_report(nl->ev, cb);
	} while (rc > 0);
	nl_cb_put(cb);
	if (rc == -NLE_NOMEM)
		return -ENOBUFS; /* libnl's word for a receive-queue overrun */
	if (rc < 0 && rc != -NLE_AGAIN)
		return nl_errno(rc);
	return n;
}

/* --- ACCEPT -------------------------------------------------------------------------- */

static uint32_t attr_u32(struct nlattr *a)
{
	return a && nla_len(a) >= 4 ? nla_get_u32(a) : 0;
}

static void parse_certificate(struct nlattr *nest, struct upcall_req *req)
{
	struct nlattr *tb[HS_A_X509_MAX + 1];

	if (nla_parse_nested(tb, HS_A_X509_MAX, nest, NULL) < 0)
		return;
	req->cert_serial = (int32_t)attr_u32(tb[HS_A_X509_CERT]);
	req->privkey_serial = (int32_t)attr_u32(tb[HS_A_X509_PRIVKEY]);
}

/* PEER_IDENTITY repeats: one key serial per attribute, kept up to UPCALL_MAX_PEERIDS. */
static void parse_peerids(struct nlmsghdr *h, struct upcall_req *req)
{
	struct nlattr *a;
	int rem;

	nla_for_each_attr(a, genlmsg_attrdata(nlmsg_data(h), 0), genlmsg_attrlen(nlmsg_data(h), 0),
			  rem)
	{
		if (nla_type(a) != HS_A_ACCEPT_PEER_IDENTITY || nla_len(a) < 4)
			continue;
		if (req->n_peerids < UPCALL_MAX_PEERIDS)
			req->peerids[req->n_peerids++] = nla_get_s32(a);
		else
			req->n_peerids_dropped++;
	}
}

int upcall_nl_parse_accept(struct nlmsghdr *h, struct upcall_req *ret_req)
{
	struct upcall_req req = { .fd = -1 };
	struct nlattr *tb[HS_A_ACCEPT_MAX + 1];

	if (h->nlmsg_len < NLMSG_HDRLEN + GENL_HDRLEN || genlmsg_hdr(h)->cmd != HS_CMD_ACCEPT ||
	    genlmsg_parse(h, 0, tb, HS_A_ACCEPT_MAX, NULL) < 0 || !tb[HS_A_ACCEPT_SOCKFD] ||
	    nla_len(tb[HS_A_ACCEPT_SOCKFD]) < 4 || nla_get_s32(tb[HS_A_ACCEPT_SOCKFD]) < 0)
		return -EPROTO;
	req.fd = nla_get_s32(tb[HS_A_ACCEPT_SOCKFD]);
	req.msg_type = attr_u32(tb[HS_A_ACCEPT_MESSAGE_TYPE]);
	req.auth = attr_u32(tb[HS_A_ACCEPT_AUTH_MODE]);
	req.timeout_ms = attr_u32(tb[HS_A_ACCEPT_TIMEOUT]);
	req.keyring = attr_u32(tb[HS_A_ACCEPT_KEYRING]);
	if (tb[HS_A_ACCEPT_CERTIFICATE])
		parse_certificate(tb[HS_A_ACCEPT_CERTIFICATE], &req);
	if (tb[HS_A_ACCEPT_PEERNAME])
		/* nla_strlcpy stops at the attribute's end even without a NUL. */
		nla_strlcpy(req.peername, tb[HS_A_ACCEPT_PEERNAME], sizeof(req.peername));
	parse_peerids(h, &req);
	*ret_req = req;
	return 0;
}

static int accept_reply(struct nl_msg *msg, void *arg)
{
	upcall_nl_parse_accept(nlmsg_hdr(msg), arg);
	return NL_SKIP;
}

/*
 * One command's answer on the command socket. libnl's own sequence check assumes every
 * request is acked; ACCEPT is not (its reply is the answer), so the check is ours: only
 * messages carrying the sequence number of the request we just sent count.
 */
struct cmd_wait {
	uint32_t seq;
	bool acked;
};

static int seq_match(struct nl_msg *msg, void *arg)
{
	const struct cmd_wait *w = arg;

	return nlmsg_hdr(msg)->nlmsg_seq == w->seq ? NL_OK : NL_SKIP;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
	struct cmd_wait *w = arg;

	(void)msg;
	w->acked = true;
	return NL_STOP;
}

/* Sends msg and reads until done(w) says the answer came, or an error reply. */
static int cmd_exchange(struct upcall_nl *nl, struct nl_msg *msg, struct nl_cb *cb,
			struct cmd_wait *w, bool (*done)(const struct cmd_wait *w, void *arg),
			void *arg)
{
	int rc = nl_send_auto(nl->cmd, msg);

	if (rc < 0)
		return nl_errno(rc);
	w->seq = nlmsg_hdr(msg)->nlmsg_seq;
	nl_cb_set(cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, seq_match, w);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, w);
	/* The kernel answers at once; a few reads bound what stale messages could cost. */
	for (int i = 0; i < 8 && !done(w, arg); i++) {
		rc = nl_recvmsgs(nl->cmd, cb);
		if (rc < 0)
			return nl_errno(rc);
	}
	return done(w, arg) ? 0 : -EPROTO;
}

static bool accept_done(const struct cmd_wait *w, void *arg)
{
	(void)w;
	return ((const struct upcall_req *)arg)->fd >= 0;
}

int upcall_nl_accept(struct upcall_nl *nl, struct upcall_req *ret_req)
{
	struct upcall_req req = { .fd = -1 };
	struct nl_msg *msg = nlmsg_alloc();
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	struct cmd_wait w = { 0 };
	int rc = -ENOMEM;

	if (!msg || !cb)
		goto out_free;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0, 0, HS_CMD_ACCEPT, 0) ||
	    nla_put_u32(msg, HS_A_ACCEPT_HANDLER_CLASS, HS_HANDLER_CLASS_TLSHD) < 0)
		goto out_free;
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, accept_reply, &req);
	/* No ack: the reply (or the error, -EAGAIN when nothing is pending) is the answer. */
	nl_socket_disable_auto_ack(nl->cmd);
	rc = cmd_exchange(nl, msg, cb, &w, accept_done, &req);
	if (!rc)
		*ret_req = req;
	else if (req.fd >= 0) {
		/*
		 * A read error after the reply installed the socket in our fd table: the
		 * kernel still waits for its DONE, and the fd is ours to close.
		 */
		upcall_nl_done(nl, req.fd, EIO, NULL, 0);
		close(req.fd);
	}
out_free:
	nl_cb_put(cb);
	nlmsg_free(msg);
	return rc;
}

/* --- DONE ---------------------------------------------------------------------------- */

static bool acked(const struct cmd_wait *w, void *arg)
{
	(void)arg;
	return w->acked;
}

int upcall_nl_done(struct upcall_nl *nl, int fd, int status, const int32_t *remote_auth, size_t n)
{
	struct nl_msg *msg = nlmsg_alloc();
	struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	struct cmd_wait w = { 0 };
	int rc = -ENOMEM;

	if (!msg || !cb)
		goto out_free;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0, 0, HS_CMD_DONE, 0) ||
	    nla_put_u32(msg, HS_A_DONE_STATUS, (uint32_t)status) < 0 ||
	    nla_put_s32(msg, HS_A_DONE_SOCKFD, fd) < 0)
		goto out_free;
	for (size_t i = 0; status == 0 && i < n; i++)
		if (nla_put_s32(msg, HS_A_DONE_REMOTE_AUTH, remote_auth[i]) < 0)
			goto out_free;
	/* With an ack: a DONE the kernel refused is worth a log line. */
	nl_socket_enable_auto_ack(nl->cmd);
	rc = cmd_exchange(nl, msg, cb, &w, acked, NULL);
out_free:
	nl_cb_put(cb);
	nlmsg_free(msg);
	return rc;
}

const char *upcall_msg_type_name(enum upcall_msg_type t)
{
	switch (t) {
	case UPCALL_MSG_CLIENTHELLO:
		return "clienthello";
	case UPCALL_MSG_SERVERHELLO:
		return "serverhello";
	default:
		return "unspec";
	}
}

const char *upcall_auth_name(enum upcall_auth a)
{
	switch (a) {
	case UPCALL_AUTH_UNAUTH:
		return "unauth";
	case UPCALL_AUTH_PSK:
		return "psk";
	case UPCALL_AUTH_X509:
		return "x509";
	default:
		return "unspec";
	}
}

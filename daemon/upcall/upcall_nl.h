/* SPDX-License-Identifier: MIT */
/*
 * The kernel's handshake upcall (generic netlink family "handshake", Linux 6.5+): join the
 * "tlshd" group, take requests with ACCEPT, answer each with exactly one DONE. One function
 * per netlink command; libnl-genl underneath. The uapi header is not in bookworm's
 * linux-libc-dev (6.1), so the numbers the protocol fixes are spelled out in upcall_nl.c.
 */
#ifndef KTLSD_DAEMON_UPCALL_NL_H
#define KTLSD_DAEMON_UPCALL_NL_H

#include <stddef.h>
#include <stdint.h>
#include <linux/netlink.h>

enum upcall_msg_type { UPCALL_MSG_UNSPEC, UPCALL_MSG_CLIENTHELLO, UPCALL_MSG_SERVERHELLO };
enum upcall_auth { UPCALL_AUTH_UNSPEC, UPCALL_AUTH_UNAUTH, UPCALL_AUTH_PSK, UPCALL_AUTH_X509 };

/* Bounds on what one request may carry: the rest is ignored (and counted in n_*_dropped). */
#define UPCALL_MAX_PEERIDS  8
#define UPCALL_PEERNAME_MAX 256

/* One accepted request. fd is ours from ACCEPT on: upcall_nl_done() must follow, once. */
struct upcall_req {
	int fd;
	enum upcall_msg_type msg_type;
	enum upcall_auth auth;
	uint32_t timeout_ms; /* 0: the kernel gave none */
	uint32_t keyring;    /* 7.x: keyring to search for PSKs; 0: none */
	int32_t peerids[UPCALL_MAX_PEERIDS];
	size_t n_peerids;
	size_t n_peerids_dropped;
	int32_t cert_serial, privkey_serial; /* key serials the consumer named; 0: none */
	char peername[UPCALL_PEERNAME_MAX];  /* expected server name; "" when none */
};

struct upcall_nl;

/*
 * Resolves the family and its "tlshd" group, joins it (the kernel then has an agent and
 * starts sending READY) and opens the command socket. Returns 0, -ENOENT when the kernel
 * has no "handshake" family (before 6.5, or CONFIG_NET_HANDSHAKE off), -EPERM, -ENOMEM or
 * -EIO; err says which. *ret_nl is untouched on failure.
 */
int upcall_nl_open(struct upcall_nl **ret_nl, char *err, size_t errlen);
void upcall_nl_close(struct upcall_nl *nl);

/* The non-blocking socket READY notifications arrive on: poll it for POLLIN. */
int upcall_nl_event_fd(const struct upcall_nl *nl);

/*
 * Reads every pending notification. Returns how many were READY for the tlshd class (>= 0),
 * or -errno. -ENOBUFS: notifications were lost (overrun); the caller should ACCEPT anyway.
 */
int upcall_nl_read_events(struct upcall_nl *nl);

/*
 * HANDSHAKE_CMD_ACCEPT: takes the next pending request. Returns 0 with *ret_req filled
 * (ret_req->fd >= 0 and owned by the caller, who then owes one upcall_nl_done), -EAGAIN
 * when nothing is pending, or -errno. A reply without a socket returns -EPROTO and
 * leaves nothing owed.
 */
int upcall_nl_accept(struct upcall_nl *nl, struct upcall_req *ret_req);

/*
 * HANDSHAKE_CMD_DONE for fd, with status 0 or a positive errno, and the key serials of an
 * authenticated peer (remote_auth, n, only with status 0). Waits for the kernel's ack.
 * Returns 0 or -errno (-EBUSY/-ENOENT: the consumer gave up on this request meanwhile).
 * Does not close fd: the caller closes it afterwards either way.
 */
int upcall_nl_done(struct upcall_nl *nl, int fd, int status, const int32_t *remote_auth, size_t n);

/*
 * The ACCEPT reply in h, into *ret_req (exposed for tests): 0, or -EPROTO when h is no
 * ACCEPT or carries no socket. Bounded: PEER_IDENTITY past UPCALL_MAX_PEERIDS is counted and
 * dropped, PEERNAME cut to UPCALL_PEERNAME_MAX - 1 bytes, short attributes read as 0.
 */
int upcall_nl_parse_accept(struct nlmsghdr *h, struct upcall_req *ret_req);

/* "clienthello" / "serverhello", "unauth" / "psk" / "x509" (for logs). */
const char *upcall_msg_type_name(enum upcall_msg_type t);
const char *upcall_auth_name(enum upcall_auth a);

#endif

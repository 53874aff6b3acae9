// SPDX-License-Identifier: MIT
/*
 * Each connection's TLS state as the kernel sees it, not as ktlsd believes it: one
 * NETLINK_SOCK_DIAG request per listed socket (SOCK_DIAG_BY_FAMILY, inet_diag_req_v2 for its
 * exact 4-tuple, INET_DIAG_INFO asked so tcp_diag adds INET_DIAG_ULP_INFO), parsed with
 * libnl-3's attribute code. The kernel adds ULP info only for a requester with CAP_NET_ADMIN;
 * the caller checks that and says so rather than report "no ULP".
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tls.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "admin.h"

const char *tls_conf_name(uint16_t conf)
{
	switch (conf) {
	case TLS_CONF_BASE:
		return "off";
	case TLS_CONF_SW:
		return "sw";
	case TLS_CONF_HW:
		return "hw";
	case TLS_CONF_HW_RECORD:
		return "hw_record";
	default:
		return "?";
	}
}

const char *tls_version_name(uint16_t v)
{
	return v == TLS_1_3_VERSION ? "1.3" : v == TLS_1_2_VERSION ? "1.2" : "?";
}

const char *tls_cipher_name(uint16_t c)
{
	switch (c) {
	case TLS_CIPHER_AES_GCM_128:
		return "aes-gcm-128";
	case TLS_CIPHER_AES_GCM_256:
		return "aes-gcm-256";
	case TLS_CIPHER_AES_CCM_128:
		return "aes-ccm-128";
	case TLS_CIPHER_CHACHA20_POLY1305:
		return "chacha20-poly1305";
	default:
		return "?";
	}
}

int ulp_view_parse(struct nlattr *ulp_info, struct ulp_view *ret_view)
{
	static struct nla_policy ulp_pol[INET_ULP_INFO_MAX + 1] = {
		[INET_ULP_INFO_NAME] = { .type = NLA_NUL_STRING, .maxlen = 16 },
		[INET_ULP_INFO_TLS] = { .type = NLA_NESTED },
	};
	static struct nla_policy tls_pol[TLS_INFO_MAX + 1] = {
		[TLS_INFO_VERSION] = { .type = NLA_U16 },
		[TLS_INFO_CIPHER] = { .type = NLA_U16 },
		[TLS_INFO_TXCONF] = { .type = NLA_U16 },
		[TLS_INFO_RXCONF] = { .type = NLA_U16 },
	};
	struct nlattr *ulp[INET_ULP_INFO_MAX + 1], *tls[TLS_INFO_MAX + 1];
	struct ulp_view v = { 0 };

	if (nla_parse_nested(ulp, INET_ULP_INFO_MAX, ulp_info, ulp_pol) < 0)
		return -EINVAL;
	if (ulp[INET_ULP_INFO_NAME])
		snprintf(v.ulp, sizeof(v.ulp), "%s",
			 (const char *)nla_data(ulp[INET_ULP_INFO_NAME]));
	if (ulp[INET_ULP_INFO_TLS]) {
		if (nla_parse_nested(tls, TLS_INFO_MAX, ulp[INET_ULP_INFO_TLS], tls_pol) < 0)
			return -EINVAL;
		v.tls = true;
		v.version = tls[TLS_INFO_VERSION] ? nla_get_u16(tls[TLS_INFO_VERSION]) : 0;
		v.cipher = tls[TLS_INFO_CIPHER] ? nla_get_u16(tls[TLS_INFO_CIPHER]) : 0;
		v.txconf = tls[TLS_INFO_TXCONF] ? nla_get_u16(tls[TLS_INFO_TXCONF]) : 0;
		v.rxconf = tls[TLS_INFO_RXCONF] ? nla_get_u16(tls[TLS_INFO_RXCONF]) : 0;
	}
	*ret_view = v;
	return 0;
}

static void req_fill(struct inet_diag_req_v2 *req, const struct sockaddr_storage *local,
		     const struct sockaddr_storage *remote)
{
	memset(req, 0, sizeof(*req));
	req->sdiag_family = (uint8_t)local->ss_family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_ext = 1u << (INET_DIAG_INFO - 1);
	req->idiag_states = ~0u;
	req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (local->ss_family == AF_INET) {
		const struct sockaddr_in *l = (const void *)local, *r = (const void *)remote;

		req->id.idiag_sport = l->sin_port;
		req->id.idiag_dport = r->sin_port;
		memcpy(req->id.idiag_src, &l->sin_addr, 4);
		memcpy(req->id.idiag_dst, &r->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *l = (const void *)local, *r = (const void *)remote;

		req->id.idiag_sport = l->sin6_port;
		req->id.idiag_dport = r->sin6_port;
		memcpy(req->id.idiag_src, &l->sin6_addr, 16);
		memcpy(req->id.idiag_dst, &r->sin6_addr, 16);
	}
}

/* The one answer's messages: the socket's (1), an error (ENOENT: gone, 0), or -errno. */
static int answer_parse(unsigned char *buf, int len, struct ulp_view *ret_view)
{
	struct nlmsghdr *h = (struct nlmsghdr *)buf;

	for (; nlmsg_ok(h, len); h = nlmsg_next(h, &len)) {
		struct nlattr *tb[INET_DIAG_MAX + 1];

		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = nlmsg_data(h);

			return e->error == -ENOENT ? 0 : e->error ? e->error : -EIO;
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		if (nlmsg_parse(h, sizeof(struct inet_diag_msg), tb, INET_DIAG_MAX, NULL) < 0)
			return -EINVAL;
		memset(ret_view, 0, sizeof(*ret_view));
		if (tb[INET_DIAG_ULP_INFO] && ulp_view_parse(tb[INET_DIAG_ULP_INFO], ret_view))
			return -EINVAL;
		return 1;
	}
	return -EIO;
}

int sockdiag_ulp(struct nl_sock *sk, const struct sockaddr_storage *local,
		 const struct sockaddr_storage *remote, struct ulp_view *ret_view)
{
	struct inet_diag_req_v2 req;
	unsigned char *buf = NULL;
	struct sockaddr_nl from;
	int rc, len;

	if (local->ss_family != AF_INET && local->ss_family != AF_INET6)
		return -EAFNOSUPPORT;
	req_fill(&req, local, remote);
	rc = nl_send_simple(sk, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, &req, sizeof(req));
	if (rc < 0)
		return -EIO;
	len = nl_recv(sk, &from, &buf, NULL);
	if (len <= 0) {
		free(buf);
		return -EIO;
	}
	rc = answer_parse(buf, len, ret_view);
	free(buf);
	return rc;
}

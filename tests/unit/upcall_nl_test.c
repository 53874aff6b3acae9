// SPDX-License-Identifier: MIT
/* upcall_nl_parse_accept: the kernel's ACCEPT reply into struct upcall_req, bounds included. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include "upcall_nl.h"

/* uapi linux/handshake.h numbers, spelled out independently of upcall_nl.c's. */
enum { CMD_ACCEPT = 2, CMD_DONE = 3 };
enum {
	A_SOCKFD = 1,
	A_CLASS,
	A_MSGTYPE,
	A_TIMEOUT,
	A_AUTH,
	A_PEERID,
	A_CERT,
	A_PEERNAME,
	A_KEYRING
};

static struct nl_msg *accept_msg(int cmd)
{
	struct nl_msg *m = nlmsg_alloc_size(8192);

	assert_non_null(m);
	assert_non_null(genlmsg_put(m, 0, 1, 30, 0, 0, (uint8_t)cmd, 1));
	return m;
}

static void test_full(void **state)
{
	struct nl_msg *m = accept_msg(CMD_ACCEPT);
	struct upcall_req r;
	char name[400];
	struct nlattr *n;

	(void)state;
	nla_put_s32(m, A_SOCKFD, 7);
	nla_put_u32(m, A_CLASS, 1);
	nla_put_u32(m, A_MSGTYPE, UPCALL_MSG_SERVERHELLO);
	nla_put_u32(m, A_TIMEOUT, 5000);
	nla_put_u32(m, A_AUTH, UPCALL_AUTH_X509);
	for (int i = 0; i < UPCALL_MAX_PEERIDS + 2; i++)
		nla_put_s32(m, A_PEERID, 100 + i);
	n = nla_nest_start(m, A_CERT);
	nla_put_s32(m, 1, 11);
	nla_put_s32(m, 2, 12);
	nla_nest_end(m, n);
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	nla_put_string(m, A_PEERNAME, name);
	nla_put_u32(m, A_KEYRING, 99);
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), 0);
	assert_int_equal(r.fd, 7);
	assert_int_equal(r.msg_type, UPCALL_MSG_SERVERHELLO);
	assert_int_equal(r.auth, UPCALL_AUTH_X509);
	assert_int_equal(r.timeout_ms, 5000);
	assert_int_equal(r.keyring, 99);
	assert_int_equal(r.n_peerids, UPCALL_MAX_PEERIDS);
	assert_int_equal(r.n_peerids_dropped, 2);
	assert_int_equal(r.peerids[0], 100);
	assert_int_equal(r.peerids[UPCALL_MAX_PEERIDS - 1], 100 + UPCALL_MAX_PEERIDS - 1);
	assert_int_equal(r.cert_serial, 11);
	assert_int_equal(r.privkey_serial, 12);
	assert_int_equal(strlen(r.peername), UPCALL_PEERNAME_MAX - 1);
	nlmsg_free(m);
}

/* What the kernel of 6.5 sends for an NFS client: no keyring, no certificate, no timeout. */
static void test_minimal(void **state)
{
	struct nl_msg *m = accept_msg(CMD_ACCEPT);
	struct upcall_req r;

	(void)state;
	nla_put_s32(m, A_SOCKFD, 3);
	nla_put_u32(m, A_MSGTYPE, UPCALL_MSG_CLIENTHELLO);
	nla_put_u32(m, A_AUTH, UPCALL_AUTH_UNAUTH);
	nla_put_string(m, A_PEERNAME, "127.0.0.1");
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), 0);
	assert_int_equal(r.fd, 3);
	assert_int_equal(r.timeout_ms, 0);
	assert_int_equal(r.keyring, 0);
	assert_int_equal(r.n_peerids, 0);
	assert_int_equal(r.cert_serial, 0);
	assert_string_equal(r.peername, "127.0.0.1");
	nlmsg_free(m);
}

/* No socket, a negative one, or another command: nothing is owed, *ret untouched. */
static void test_refused(void **state)
{
	struct upcall_req r = { .fd = -77 };
	struct nl_msg *m;

	(void)state;
	m = accept_msg(CMD_ACCEPT);
	nla_put_u32(m, A_MSGTYPE, UPCALL_MSG_CLIENTHELLO);
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), -EPROTO);
	nlmsg_free(m);
	m = accept_msg(CMD_ACCEPT);
	nla_put_s32(m, A_SOCKFD, -1);
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), -EPROTO);
	nlmsg_free(m);
	m = accept_msg(CMD_DONE);
	nla_put_s32(m, A_SOCKFD, 5);
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), -EPROTO);
	nlmsg_free(m);
	assert_int_equal(r.fd, -77);
}

/* An attribute too short for its type reads as 0, never past its end. */
static void test_short_attrs(void **state)
{
	struct nl_msg *m = accept_msg(CMD_ACCEPT);
	struct upcall_req r;
	uint16_t two = 0xffff;

	(void)state;
	nla_put_s32(m, A_SOCKFD, 4);
	nla_put(m, A_TIMEOUT, sizeof(two), &two);
	nla_put(m, A_PEERID, sizeof(two), &two);
	assert_int_equal(upcall_nl_parse_accept(nlmsg_hdr(m), &r), 0);
	assert_int_equal(r.timeout_ms, 0);
	assert_int_equal(r.n_peerids, 0);
	nlmsg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_short_attrs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

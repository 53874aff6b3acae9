// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * The sockmap relay: each relayed socket sits in `socks`, keyed by its socket cookie, and
 * `peer` says where its data goes. The stream parser hands the verdict whole skbs (no
 * framing: plaintext is a byte stream); the verdict redirects each to the peer socket's
 * egress. On a kTLS socket with TLS_RX the kernel runs this verdict on each decrypted data
 * record from tls_sw_recvmsg (net/tls/tls_sw.c), and on a plain socket from the stream
 * parser on data_ready (net/core/skmsg.c); docs/bpf.md has the facts per kernel.
 * GPL: bpf_sk_redirect_hash and the sockmap program types are GPL-only helpers' users.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ktlsd_bpf.h"

/* Sockets whose incoming data this program forwards: the parser + verdict attach here. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KTLSD_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} socks SEC(".maps");

/*
 * Sockets data may be forwarded to. No programs: a kTLS socket must join a map before
 * TCP_ULP, and in `socks` its stream parser would swallow any record that arrives before
 * TLS_RX is set (docs/bpf.md, "early_bytes"); here it only gets a psock to send from.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KTLSD_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KTLSD_RELAY_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct ktlsd_relay_peer);
} peer SEC(".maps");

SEC("sk_skb/stream_parser")
int relay_parser(struct __sk_buff *skb)
{
	return skb->len;
}

#define AF_INET		   2
#define TLS13_MAX_PAD_SCAN 64
#define TLS_CT_DATA	   23

/*
 * Length of a decrypted TLS 1.3 record's plaintext: the inner content type is the last
 * non-zero byte before the tag; padding (zeros) sits between. -1: not a data record
 * within TLS13_MAX_PAD_SCAN bytes of padding (passed up to ktlsd, which ends the conn).
 */
static __always_inline int tls13_plain_end(struct __sk_buff *skb, __u32 end)
{
	for (int i = 0; i < TLS13_MAX_PAD_SCAN; i++) {
		__u8 b = 0;

		if (end == 0 || bpf_skb_load_bytes(skb, end - 1, &b, 1))
			return -1;
		if (b)
			return b == TLS_CT_DATA ? (int)end - 1 : -1;
		end--;
	}
	return -1;
}

static __always_inline int tls_trim(struct __sk_buff *skb, const struct ktlsd_relay_peer *p)
{
	__u32 len = skb->len;
	int end;

	if (len < (__u32)p->tls_head + p->tls_tag)
		return 1;
	end = (int)(len - p->tls_tag);
	if (p->tls13) {
		end = tls13_plain_end(skb, (__u32)end);
		if (end < 0)
			return 2;
	}
	if ((__u32)end < p->tls_head)
		return 3;
	if (bpf_skb_change_tail(skb, (__u32)end, 0))
		return 4;
	if (p->tls_head && bpf_skb_adjust_room(skb, -(__s32)p->tls_head, 0, 0))
		return 5;
	return 0;
}

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct ktlsd_relay_peer *p = bpf_map_lookup_elem(&peer, &cookie);

	if (!p || !p->peer_cookie) {
		if (p)
			__sync_fetch_and_add(&p->passed, skb->len);
		return SK_PASS;
	}
	if (p->tls_head || p->tls_tag) {
		int err = tls_trim(skb, p);

		if (err) {
			p->trim_err = (__u8)err;
			return SK_PASS;
		}
	}
	__sync_fetch_and_add(&p->redirected, skb->len);
	return bpf_sk_redirect_hash(skb, &targets, &p->peer_cookie, 0);
}

/*
 * On `targets` (the kTLS sockets): counts the plaintext bytes each one's TLS layer takes,
 * its own sends (close_notify) and the forwarded ones alike, so ktlsd can tell when
 * everything the verdict forwarded has been handed to TLS: only then may close_notify
 * follow a backend's EOF (the forwarding queue outlives the source's FIN).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KTLSD_RELAY_MAX_SOCKS);
	__type(key, struct ktlsd_relay_tuple);
	__type(value, __u64);
} sent SEC(".maps");

SEC("sk_msg")
int relay_count(struct sk_msg_md *msg)
{
	struct ktlsd_relay_tuple t = { .family = msg->family, .lport = msg->local_port };
	/* remote_port: network order, in the upper half on little-endian hosts (skmsg ctx) */
	__u32 rp = msg->remote_port > 0xffff ? msg->remote_port >> 16 : msg->remote_port;

	t.rport = bpf_ntohs((__u16)rp);
	if (t.family == AF_INET) {
		t.rip[0] = msg->remote_ip4;
		t.lip[0] = msg->local_ip4;
	} else {
		t.lip[0] = msg->local_ip6[0];
		t.lip[1] = msg->local_ip6[1];
		t.lip[2] = msg->local_ip6[2];
		t.lip[3] = msg->local_ip6[3];
		t.rip[0] = msg->remote_ip6[0];
		t.rip[1] = msg->remote_ip6[1];
		t.rip[2] = msg->remote_ip6[2];
		t.rip[3] = msg->remote_ip6[3];
	}
	__u64 *n = bpf_map_lookup_elem(&sent, &t);

	if (n)
		__sync_fetch_and_add(n, msg->size);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * --intercept: an sk_lookup program (5.9+) attached to the network namespace. A TCP SYN
 * whose (destination address, port) matches a rule is handed to ktlsd's listener
 * (listener[0]; the kernel then picks within its SO_REUSEPORT group), whatever address
 * it was sent to; the accepted socket's getsockname() is the original destination.
 * Anything else takes the normal lookup.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ktlsd_bpf.h"

#define AF_INET	    2
#define AF_INET6    10
#define IPPROTO_TCP 6

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} listener SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KTLSD_STEER_MAX_RULES);
	__type(key, __u32);
	__type(value, struct ktlsd_steer_rule);
} rules SEC(".maps");

static __always_inline __u32 mask32(__u32 prefix)
{
	if (prefix == 0)
		return 0;
	if (prefix >= 32)
		return 0xffffffffu;
	return bpf_htonl(~((1u << (32 - prefix)) - 1));
}

static __always_inline int addr_match(const struct ktlsd_steer_rule *r,
				      const struct bpf_sk_lookup *ctx)
{
	__u32 a[4];
	__u32 left = r->prefix;

	if (r->family == AF_INET) {
		a[0] = ctx->local_ip4;
		return ((a[0] ^ r->addr[0]) & mask32(left)) == 0;
	}
	a[0] = ctx->local_ip6[0];
	a[1] = ctx->local_ip6[1];
	a[2] = ctx->local_ip6[2];
	a[3] = ctx->local_ip6[3];
	for (int i = 0; i < 4; i++) {
		__u32 bits = left > 32 ? 32 : left;

		if ((a[i] ^ r->addr[i]) & mask32(bits))
			return 0;
		left -= bits;
	}
	return 1;
}

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	for (__u32 i = 0; i < KTLSD_STEER_MAX_RULES; i++) {
		__u32 k = i;
		struct ktlsd_steer_rule *r = bpf_map_lookup_elem(&rules, &k);

		if (!r || r->family == 0)
			break;
		if (r->family != ctx->family)
			continue;
		if (ctx->local_port < r->port_lo || ctx->local_port > r->port_hi)
			continue;
		if (!addr_match(r, ctx))
			continue;

		__u32 zero = 0;
		struct bpf_sock *sk = bpf_map_lookup_elem(&listener, &zero);

		if (!sk)
			return SK_PASS;
		bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
		return SK_PASS;
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

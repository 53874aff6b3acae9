/* SPDX-License-Identifier: MIT */
/*
 * What the BPF programs and their loaders share: map sizes and value layouts. Included
 * by the BPF programs here (clang -target bpf, uapi types only) and by the loaders in
 * daemon/relay/ and daemon/cli/ (plain C), so only fixed-size types appear here.
 */
#ifndef KTLSD_BPF_H
#define KTLSD_BPF_H

#include <linux/types.h>

/* relay.bpf.c: sockets in the SOCKHASH, keyed by their socket cookie (SO_COOKIE). */
#define KTLSD_RELAY_MAX_SOCKS 65536

/*
 * peer[cookie] = the cookie of the socket that data arriving on `cookie` goes to. No entry:
 * the data stays on its own socket (SK_PASS) for the splice relay, which is how one
 * direction of a connection falls back while the other is forwarded in the kernel.
 */
struct ktlsd_relay_peer {
	__u64 peer_cookie;
	__u64 passed;	  /* bytes passed up while peer_cookie was 0 (see relay_sockmap.c) */
	__u64 redirected; /* bytes handed to the peer socket's queue */
	/*
	 * Data arriving on a kTLS socket reaches the verdict as the whole record, decrypted in
	 * place: header, plaintext, then (TLS 1.3) the inner content type, padding, and the
	 * tag (docs/bpf.md, "rx_layout"). The verdict cuts tls_head bytes off the front and,
	 * for TLS 1.3, everything from the content type on. 0/0 on plain sockets.
	 */
	__u16 tls_head;
	__u16 tls_tag;
	__u8 tls13;
	__u8 trim_err; /* the step of the last record the verdict could not trim (diagnostics) */
	__u16 pad;
};

/*
 * sk_msg programs have no bpf_get_socket_cookie before 6.x's later releases, so the sent
 * counter of a kTLS socket is keyed by its addresses (ports host order, addresses network
 * order, IPv4 in [0]). Both addresses: with --intercept one listener serves many local
 * addresses, and a client may reach two of them from the same address and port.
 */
struct ktlsd_relay_tuple {
	__u32 family;
	__u32 lport;
	__u32 rport;
	__u32 rip[4];
	__u32 lip[4];
};

/* steer.bpf.c: --intercept rules, an array walked in order (bounded loop). */
#define KTLSD_STEER_MAX_RULES 64

struct ktlsd_steer_rule {
	__u32 family;  /* AF_INET or AF_INET6; 0 = unused slot */
	__u32 prefix;  /* CIDR prefix length */
	__u32 addr[4]; /* network byte order, v4 in addr[0] */
	__u16 port_lo; /* host byte order, inclusive */
	__u16 port_hi;
	__u32 pad;
};

#endif

/* SPDX-License-Identifier: MIT */
/*
 * --intercept CIDR:PORT[-PORT]: the (address, port) ranges whose TCP connections a server
 * service takes over with sk_lookup (bpf/steer.bpf.c), whatever address they were sent to.
 * Parsing only; cli/steer.c loads the program.
 */
#ifndef KTLSD_DAEMON_INTERCEPT_H
#define KTLSD_DAEMON_INTERCEPT_H

#include <stddef.h>
#include <stdint.h>

#define INTERCEPT_MAX 64 /* per service: the sk_lookup program walks them in order */

struct intercept_rule {
	int family;	  /* AF_INET or AF_INET6 */
	unsigned prefix;  /* CIDR prefix length */
	uint8_t addr[16]; /* network order; v4 in the first 4 bytes; host bits zero */
	uint16_t port_lo, port_hi;
};

/*
 * "10.0.0.0/8:80", "127.0.0.2:9050-9059", "[fd00::/64]:443". A bare address is a /32 or
 * /128. Returns 0 or -EINVAL with *ret_why saying what is wrong; *ret untouched then.
 */
int intercept_parse(const char *v, struct intercept_rule *ret, const char **ret_why);

/* "10.0.0.0/8:80-90" into buf (at least 64 bytes). */
void intercept_format(const struct intercept_rule *r, char *buf, size_t len);

#endif

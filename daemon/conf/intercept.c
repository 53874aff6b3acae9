// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "intercept.h"

static int parse_ports(const char *p, struct intercept_rule *r, const char **ret_why)
{
	char *end;
	unsigned long lo, hi;

	errno = 0;
	lo = strtoul(p, &end, 10);
	hi = lo;
	if (end != p && *end == '-') {
		const char *h = end + 1;

		hi = strtoul(h, &end, 10);
		if (end == h)
			goto bad;
	}
	if (end == p || *end || errno || lo < 1 || hi > 65535 || (*p < '0' || *p > '9'))
		goto bad;
	if (lo > hi) {
		*ret_why = "port range is backwards (PORT-PORT, low first)";
		return -EINVAL;
	}
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
bad:
	*ret_why = "expected PORT or PORT-PORT, ports 1-65535";
	return -EINVAL;
}

/* Host bits set past the prefix are a typo for another network: refused, not masked. */
static bool host_bits_set(const struct intercept_rule *r)
{
	unsigned bytes = r->family == AF_INET ? 4 : 16;

	for (unsigned i = 0; i < bytes; i++) {
		unsigned keep = r->prefix > i * 8 ? r->prefix - i * 8 : 0;
		uint8_t mask = keep >= 8 ? 0xff : (uint8_t)(0xff << (8 - keep));

		if (r->addr[i] & (uint8_t)~mask)
			return true;
	}
	return false;
}

static int parse_cidr(char *a, struct intercept_rule *r, const char **ret_why)
{
	char *slash = strchr(a, '/');
	unsigned max;

	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, a, r->addr) == 1)
		r->family = AF_INET;
	else if (inet_pton(AF_INET6, a, r->addr) == 1)
		r->family = AF_INET6;
	else {
		*ret_why = "not an IPv4 or IPv6 address (IPv6 goes in brackets: [fd00::/64]:443)";
		return -EINVAL;
	}
	max = r->family == AF_INET ? 32 : 128;
	r->prefix = max;
	if (slash) {
		char *end;
		unsigned long n = strtoul(slash + 1, &end, 10);

		if (end == slash + 1 || *end || n > max) {
			*ret_why = r->family == AF_INET ? "prefix length must be 0-32"
							: "prefix length must be 0-128";
			return -EINVAL;
		}
		r->prefix = (unsigned)n;
	}
	if (host_bits_set(r)) {
		*ret_why = "address has bits set past its prefix length";
		return -EINVAL;
	}
	return 0;
}

int intercept_parse(const char *v, struct intercept_rule *ret, const char **ret_why)
{
	struct intercept_rule r = { 0 };
	char buf[128], *addr = buf, *ports;
	int rc;

	if (strlen(v) >= sizeof(buf)) {
		*ret_why = "too long";
		return -EINVAL;
	}
	strcpy(buf, v);
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (!close || close[1] != ':') {
			*ret_why = "expected [IPv6/LEN]:PORT";
			return -EINVAL;
		}
		*close = '\0';
		addr = buf + 1;
		ports = close + 2;
	} else {
		char *colon = strrchr(buf, ':');

		if (!colon || strchr(buf, ':') != colon) {
			*ret_why = "expected CIDR:PORT[-PORT] (IPv6 in brackets)";
			return -EINVAL;
		}
		*colon = '\0';
		ports = colon + 1;
	}
	rc = parse_cidr(addr, &r, ret_why);
	if (!rc)
		rc = parse_ports(ports, &r, ret_why);
	if (rc)
		return rc;
	if (buf[0] == '[' && r.family != AF_INET6) {
		*ret_why = "brackets are for IPv6 addresses";
		return -EINVAL;
	}
	*ret = r;
	return 0;
}

void intercept_format(const struct intercept_rule *r, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	const char *open = r->family == AF_INET6 ? "[" : "",
		   *close = r->family == AF_INET6 ? "]" : "";

	inet_ntop(r->family, r->addr, a, sizeof(a));
	if (r->port_lo == r->port_hi)
		snprintf(buf, len, "%s%s/%u%s:%u", open, a, r->prefix, close, r->port_lo);
	else
		snprintf(buf, len, "%s%s/%u%s:%u-%u", open, a, r->prefix, close, r->port_lo,
			 r->port_hi);
}

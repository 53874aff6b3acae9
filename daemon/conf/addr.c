// SPDX-License-Identifier: MIT
/* Address parsing: the one place that knows the three textual forms. */
#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "addr.h"

static int fail(const char **ret_why, const char *why)
{
	if (ret_why)
		*ret_why = why;
	return -EINVAL;
}

static int parse_port(const char *p, unsigned *ret_port)
{
	char *end;
	unsigned long v;

	if (!*p || *p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*ret_port = (unsigned)v;
	return 0;
}

void addr_take_results(struct daemon_addr *a, const struct addrinfo *res)
{
	for (; res && a->n < ADDR_MAX; res = res->ai_next) {
		bool dup = false;

		if (!res->ai_addr || res->ai_addrlen > sizeof(a->alt[0].ss))
			continue;
		/* /etc/hosts often lists a name twice (both "localhost" lines map ::1 on some
		 * systems): a second attempt at the same address would only double the wait. */
		for (unsigned i = 0; i < a->n && !dup; i++)
			dup = a->alt[i].len == res->ai_addrlen &&
			      !memcmp(&a->alt[i].ss, res->ai_addr, res->ai_addrlen);
		if (dup)
			continue;
		memset(&a->alt[a->n].ss, 0, sizeof(a->alt[a->n].ss));
		memcpy(&a->alt[a->n].ss, res->ai_addr, res->ai_addrlen);
		a->alt[a->n].len = res->ai_addrlen;
		a->n++;
	}
}

/* unix:/path (after "unix:") into a. */
static int parse_unix(const char *path, bool allow_unix, struct daemon_addr *a,
		      const char **ret_why)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&a->alt[0].ss;

	if (!allow_unix)
		return fail(ret_why, "unix: addresses are only valid as a target");
	if (path[0] != '/')
		return fail(ret_why, "unix: needs an absolute path (unix:/path)");
	if (strlen(path) >= sizeof(un->sun_path))
		return fail(ret_why, "unix socket path too long");
	un->sun_family = AF_UNIX;
	strcpy(un->sun_path, path);
	a->alt[0].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	a->n = 1;
	return 0;
}

/* "[v6addr]:port": the address into a->host, *ret_port at what follows the colon. */
static int split_bracketed(const char *s, struct daemon_addr *a, const char **ret_port,
			   const char **ret_why)
{
	const char *close = strchr(s, ']');

	if (!close || close[1] != ':')
		return fail(ret_why, "expected [v6addr]:port");
	if ((size_t)(close - s - 1) >= sizeof(a->host) || close == s + 1)
		return fail(ret_why, "bad IPv6 address");
	memcpy(a->host, s + 1, (size_t)(close - s - 1));
	a->host[close - s - 1] = '\0';
	*ret_port = close + 2;
	return 0;
}

/* "host:port": the host into a->host, *ret_port at what follows the colon. */
static int split_host(const char *s, struct daemon_addr *a, const char **ret_port,
		      const char **ret_why)
{
	const char *colon = strrchr(s, ':');

	if (!colon)
		return fail(ret_why, "expected host:port, [v6addr]:port or unix:/path");
	if (memchr(s, ':', (size_t)(colon - s)))
		return fail(ret_why, "IPv6 addresses need brackets: [v6addr]:port");
	if (colon == s || (size_t)(colon - s) >= sizeof(a->host))
		return fail(ret_why, "missing host (use 0.0.0.0 or [::] for any)");
	memcpy(a->host, s, (size_t)(colon - s));
	a->host[colon - s] = '\0';
	*ret_port = colon + 1;
	return 0;
}

/* a->host and port to addresses in a->alt; in brackets only an IPv6 literal. */
static int resolve(struct daemon_addr *a, unsigned port, bool bracketed, const char **ret_why)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST,
				  .ai_family = bracketed ? AF_INET6 : AF_UNSPEC };
	struct addrinfo *res = NULL;
	char portbuf[8];
	int rc;

	snprintf(portbuf, sizeof(portbuf), "%u", port);
	/*
	 * Literal first: whether the host is an IP address is asked of the same parser that
	 * resolves it (so "127.1" counts as one), and a literal never reaches DNS. Only a
	 * name goes on to the resolver; in brackets only a literal is allowed.
	 */
	rc = getaddrinfo(a->host, portbuf, &hints, &res);
	if (!rc) {
		a->host_is_ip = true;
	} else if (rc == EAI_NONAME && !bracketed) {
		hints.ai_flags &= ~AI_NUMERICHOST;
		res = NULL;
		rc = getaddrinfo(a->host, portbuf, &hints, &res);
	}
	if (rc || !res)
		return fail(ret_why, bracketed ? "bad IPv6 address" : "cannot resolve host");
	addr_take_results(a, res);
	freeaddrinfo(res);
	if (!a->n)
		return fail(ret_why, "cannot resolve host");
	return 0;
}

int addr_parse(const char *s, bool allow_unix, struct daemon_addr *ret_addr, const char **ret_why)
{
	struct daemon_addr a;
	const char *portstr;
	bool bracketed = s && s[0] == '[';
	unsigned port;
	int rc;

	memset(&a, 0, sizeof(a));
	if (!s || !*s)
		return fail(ret_why, "empty address");
	if (strlen(s) >= sizeof(a.text))
		return fail(ret_why, "address too long");
	snprintf(a.text, sizeof(a.text), "%s", s);
	if (!strncmp(s, "unix:", 5)) {
		rc = parse_unix(s + 5, allow_unix, &a, ret_why);
	} else {
		rc = bracketed ? split_bracketed(s, &a, &portstr, ret_why)
			       : split_host(s, &a, &portstr, ret_why);
		if (!rc && parse_port(portstr, &port))
			rc = fail(ret_why, "port must be a number from 1 to 65535");
		if (!rc)
			rc = resolve(&a, port, bracketed, ret_why);
	}
	if (rc)
		return rc;
	*ret_addr = a;
	return 0;
}

/* An IP listen address reduced to what decides overlap: v4-mapped IPv6 counts as IPv4. */
struct ip_key {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned port;
	bool any;
};

/* Returns 0, or -EAFNOSUPPORT for anything but an IPv4/IPv6 address of a plausible length. */
static int ip_key(const struct sockaddr *sa, socklen_t len, struct ip_key *ret_key)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct ip_key k = { 0 };

	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		k.family = AF_INET;
		memcpy(k.addr, &in->sin_addr, 4);
		k.port = ntohs(in->sin_port);
		k.any = in->sin_addr.s_addr == htonl(INADDR_ANY);
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *a6 = in6->sin6_addr.s6_addr;

		k.port = ntohs(in6->sin6_port);
		if (!memcmp(a6, mapped, sizeof(mapped))) {
			k.family = AF_INET;
			memcpy(k.addr, a6 + 12, 4);
			k.any = !memcmp(k.addr, "\0\0\0\0", 4);
		} else {
			k.family = AF_INET6;
			memcpy(k.addr, a6, 16);
			k.any = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
		}
	} else {
		return -EAFNOSUPPORT;
	}
	*ret_key = k;
	return 0;
}

bool addr_listen_overlap(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
			 socklen_t blen)
{
	struct ip_key ka, kb;

	if (a->sa_family == AF_UNIX || b->sa_family == AF_UNIX) {
		const struct sockaddr_un *ua = (const struct sockaddr_un *)a;
		const struct sockaddr_un *ub = (const struct sockaddr_un *)b;
		size_t off = offsetof(struct sockaddr_un, sun_path);

		if (a->sa_family != b->sa_family || alen <= off || blen <= off)
			return false;
		return !strncmp(ua->sun_path, ub->sun_path, sizeof(ua->sun_path));
	}
	if (ip_key(a, alen, &ka) || ip_key(b, blen, &kb) || ka.port != kb.port)
		return false;
	/* [::] (not v6-only) takes IPv4 connections as well. */
	if ((ka.any && ka.family == AF_INET6) || (kb.any && kb.family == AF_INET6))
		return true;
	if (ka.family != kb.family)
		return false;
	return ka.any || kb.any || !memcmp(ka.addr, kb.addr, sizeof(ka.addr));
}

static bool sockaddr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_UNIX)
		return true;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a6) ||
		       (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
	}
	return false;
}

bool addr_is_loopback(const struct daemon_addr *a)
{
	for (unsigned i = 0; i < a->n; i++)
		if (!sockaddr_is_loopback(&a->alt[i].ss))
			return false;
	return a->n > 0;
}

/* SPDX-License-Identifier: MIT */
/* Listen/target addresses as users write them: host:port, [v6addr]:port, unix:/path. */
#ifndef KTLSD_DAEMON_ADDR_H
#define KTLSD_DAEMON_ADDR_H

#include <stdbool.h>
#include <sys/socket.h>

/* A name with more addresses than this is rare; the rest would only add connect attempts. */
#define ADDR_MAX 8

struct addrinfo;

struct daemon_addr {
	struct {
		struct sockaddr_storage ss;
		socklen_t len;
	} alt[ADDR_MAX]; /* every result in getaddrinfo order, without duplicates; a listener
			  * binds alt[0] */
	unsigned n;	 /* >= 1 after a successful parse */
	char text[128];	 /* as given, for logs */
	char host[256];	 /* the host part as written ("" for unix:), no brackets */
	bool host_is_ip; /* host is an IPv4/IPv6 literal, so it cannot name a certificate */
};

/*
 * Parses s into *ret_addr. unix:/path is accepted only when allow_unix (targets).
 * Host names resolve through getaddrinfo; all results are kept (see ADDR_MAX) so a client
 * can try the next one when e.g. "localhost" gives ::1 first but the server is on
 * 127.0.0.1. Returns 0 or -EINVAL; *ret_why (if not NULL) then names what is wrong.
 */
int addr_parse(const char *s, bool allow_unix, struct daemon_addr *ret_addr, const char **ret_why);

/*
 * Appends res's addresses to a->alt in list order, skipping ones already there, until
 * ADDR_MAX. addr_parse's second half, exposed so the unit
 * test can feed it lists no resolver on the test machine would produce.
 */
void addr_take_results(struct daemon_addr *a, const struct addrinfo *res);

/*
 * Whether listeners on a and b would take each other's connections: the same port with the
 * same address or a wildcard on either side (0.0.0.0 covers IPv4, [::] covers both
 * families as Linux binds it dual-stack by default; ::ffff:a.b.c.d is a.b.c.d), or the
 * same unix socket path. Used to refuse two services on one address and to tell our own
 * listening sockets from someone else's.
 */
bool addr_listen_overlap(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
			 socklen_t blen);

/*
 * Whether every address a names stays on this host: a unix socket, or IPv4 127.0.0.0/8,
 * IPv6 ::1 or ::ffff:127.0.0.0/104. A wildcard (0.0.0.0, [::]) is not: it takes or
 * reaches other hosts too.
 */
bool addr_is_loopback(const struct daemon_addr *a);

#endif

/* SPDX-License-Identifier: MIT */
/* Listen/target addresses as users write them: host:port, [v6addr]:port, unix:/path. */
#ifndef KTLSD_DAEMON_ADDR_H
#define KTLSD_DAEMON_ADDR_H

#include <stdbool.h>
#include <sys/socket.h>

struct daemon_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[128]; /* as given, for logs */
};

/*
 * Parses s into *ret_addr. unix:/path is accepted only when allow_unix (targets).
 * Host names resolve through getaddrinfo (first result). Returns 0 or -EINVAL;
 * *ret_why (if not NULL) then names what is wrong.
 */
int addr_parse(const char *s, bool allow_unix, struct daemon_addr *ret_addr, const char **ret_why);

#endif

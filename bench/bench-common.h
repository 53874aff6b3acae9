/* SPDX-License-Identifier: MIT */
/* What the load tool and the backend share. */
#ifndef KTLSD_BENCH_COMMON_H
#define KTLSD_BENCH_COMMON_H

#include <sys/socket.h>

/* "host:port" or "[v6]:port" -> first address getaddrinfo gives. 0 or -EINVAL. */
int bench_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif

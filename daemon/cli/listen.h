/* SPDX-License-Identifier: MIT */
/* The listening sockets of the services: opened in every worker, and owned (listen.c). */
#ifndef KTLSD_DAEMON_LISTEN_H
#define KTLSD_DAEMON_LISTEN_H

#include <stddef.h>

#include "worker.h"

/*
 * Opens service s's listener in each of the n workers (w[i].listen_fd[s]), refusing an
 * address anything else listens on, or says in one line on stderr why not. Returns 0,
 * EXIT_USAGE (the address is the operator's to fix) or EXIT_RUNTIME (out of something).
 */
int service_listen(const struct service_config *sc, const char *cfgpath, struct worker *w,
		   unsigned n, size_t s);

/*
 * The n listeners of one address (one per worker) into fds, owned (see listen.c), or
 * -errno with none left open (every fds[i] -1). For a service added by a reload.
 */
int listen_group(const struct daemon_addr *a, int *fds, unsigned n);
/* bind()/listen() errors in words an operator can act on. */
const char *listen_strerror(int err);

#endif

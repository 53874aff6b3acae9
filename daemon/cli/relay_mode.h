/* SPDX-License-Identifier: MIT */
/* --relay auto|splice|sockmap: which services relay with the BPF sockmap (docs/bpf.md). */
#ifndef KTLSD_DAEMON_RELAY_MODE_H
#define KTLSD_DAEMON_RELAY_MODE_H

#include "relay_sockmap.h"
#include "worker.h"

/*
 * Probes the sockmap relay once if a service may use it, loads it, and points those
 * services at it (service->sockmap). --relay sockmap where it cannot work is the
 * operator's to fix (EXIT_USAGE, said on stderr); auto then splices and says so once.
 * Returns 0 or an exit status; *ret_sm (NULL if unused) is for sockmap_close at exit.
 */
int relay_mode_setup(struct runtime *rt, const char *cfgpath, struct sockmap **ret_sm);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * --intercept: bpf/steer.bpf.c attached to this network namespace, one program per server
 * service that has rules, handing matching connections to that service's listeners.
 */
#ifndef KTLSD_DAEMON_STEER_H
#define KTLSD_DAEMON_STEER_H

#include <stddef.h>

#include "config.h"

struct steer;

/*
 * Loads the program, fills its rules, puts listen_fd (one of the service's SO_REUSEPORT
 * listeners; the kernel picks within the group) in its map, attaches it to the netns.
 * Returns 0 or -errno with err saying what and why (capabilities, kernel).
 */
int steer_attach(const struct service_config *sc, int listen_fd, struct steer **ret_steer,
		 char *err, size_t errlen);
/* Detaches and unloads; NULL is fine. */
void steer_free(struct steer *st);

struct worker;

/*
 * Every service's steering (those with --intercept), on worker 0's listeners. Returns 0 or
 * an exit status (EXIT_USAGE: what the operator must fix, said on stderr).
 */
int steers_attach(const struct run_config *cfg, const char *cfgpath, const struct worker *w,
		  struct steer ***ret_steers);
void steers_free(struct steer **st, size_t n);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * ktlsd agent's counts and its admin endpoint (--admin): the agent counts into a service
 * named "agent" (service_new_counting), so the admin room serves /metrics, /healthz and
 * /readyz for it as it does for `ktlsd server`, plus the ktlsd_agent_* series.
 */
#ifndef KTLSD_CLI_AGENT_ADMIN_H
#define KTLSD_CLI_AGENT_ADMIN_H

#include <openssl/ssl.h>

#include "admin.h"
#include "agent.h"
#include "config.h"

struct agent_admin {
	struct run_config rcfg; /* admin, admin_addr, log_format: what admin_new reads */
	char admin_spec[256];	/* rcfg.admin's text: a reload frees the options' strings */
	struct runtime rt;	/* one service; no workers */
	struct admin *admin;	/* NULL without --admin */
	struct agent_stats st;	/* what agent_run counts into */
};

/*
 * Builds the counting service (cert: the file its notAfter is shown for, ctx: the context
 * holding it, both may be NULL) and, where run->admin is set, binds the endpoint: before
 * any privilege drop. Returns 0, or the exit status with the message printed (2: the
 * address is taken or not ours).
 */
int agent_admin_open(struct agent_admin *am, const struct run_config *run, const char *cert,
		     SSL_CTX *ctx);
/*
 * After a reload, on the agent's thread: the expiry shown is the new certificate's (cert,
 * ctx as for agent_admin_open); the counts go on. 0 or -ENOMEM (the old one stays shown).
 */
int agent_admin_renew(struct agent_admin *am, const char *cert, SSL_CTX *ctx);
/* Serves (the thread blocks the signals the agent takes), and /readyz says ready: call it
 * once the agent has joined the "tlshd" group. 0 or EXIT_RUNTIME (message printed). */
int agent_admin_start(struct agent_admin *am);
/* /readyz says draining, the endpoint stops, the service goes. Fine on a zeroed am. */
void agent_admin_stop(struct agent_admin *am);

#endif

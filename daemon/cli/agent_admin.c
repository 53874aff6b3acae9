// SPDX-License-Identifier: MIT
/*
 * ktlsd agent --admin. The admin room serves a runtime's services; the agent's runtime has
 * one, "agent", that only counts, and no workers (/connections is always empty: the
 * sockets an agent handshakes on belong to the kernel once DONE is sent).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent_admin.h"
#include "commands.h"

int agent_admin_open(struct agent_admin *am, const struct run_config *run, const char *cert,
		     SSL_CTX *ctx)
{
	char err[CONFIG_ERR_MAX];
	int rc;

	am->rcfg = *run;
	if (run->admin) {
		snprintf(am->admin_spec, sizeof(am->admin_spec), "%s", run->admin);
		am->rcfg.admin = am->admin_spec;
	}
	am->rt.cfg = &am->rcfg;
	pthread_mutex_init(&am->rt.svc_lock, NULL);
	if (service_new_counting("agent", cert, ctx, NULL, &am->st.svc)) {
		fprintf(stderr, "ktlsd agent: out of memory\n");
		return EXIT_RUNTIME;
	}
	am->rt.svc = &am->st.svc;
	am->rt.n_svc = 1;
	if (!run->admin)
		return 0;
	rc = admin_new(&am->rt, &am->admin, err, sizeof(err));
	if (rc) {
		am->admin = NULL;
		fprintf(stderr, "ktlsd agent: %s\n", err);
		return rc == -ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
	}
	admin_set_metrics_extra(am->admin, agent_metrics_write, &am->st);
	return 0;
}

int agent_admin_renew(struct agent_admin *am, const char *cert, SSL_CTX *ctx)
{
	struct service *s, *old = am->st.svc;

	if (!old || service_new_counting("agent", cert, ctx, old, &s))
		return -ENOMEM;
	/* The admin thread takes the service under the lock; the agent's thread (this one)
	 * counts through am->st.svc, into the counters both generations share. */
	pthread_mutex_lock(&am->rt.svc_lock);
	am->st.svc = s;
	pthread_mutex_unlock(&am->rt.svc_lock);
	service_put(old);
	return 0;
}

int agent_admin_start(struct agent_admin *am)
{
	char err[CONFIG_ERR_MAX];
	sigset_t set, old;
	int rc;

	atomic_store(&am->rt.ready, true);
	if (!am->admin)
		return 0;
	/* The thread inherits this mask: SIGTERM/SIGINT/SIGHUP must reach the agent's
	 * signalfd, never the admin thread (whose default action would end the process). */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	rc = admin_serve(am->admin, NULL, 0, err, sizeof(err));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fprintf(stderr, "ktlsd agent: %s\n", err);
		return EXIT_RUNTIME;
	}
	struct log_kv kv[] = { { "admin", am->rcfg.admin } };

	log_kv(am->rcfg.log_format, "info", "admin_listening", kv, 1);
	return 0;
}

void agent_admin_stop(struct agent_admin *am)
{
	atomic_store(&am->rt.draining, true);
	admin_stop(am->admin);
	am->admin = NULL;
	service_put(am->st.svc);
	am->st.svc = NULL;
}

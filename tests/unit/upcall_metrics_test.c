// SPDX-License-Identifier: MIT
/*
 * What ktlsd agent's /metrics says (daemon/upcall/agent_metrics.c counting into the "agent"
 * service, written by the admin room plus the ktlsd_agent_* series): exact series after a
 * known set of requests, promtool accepting the text, and a writer thread counting while
 * another renders (the relaxed-atomic contract: TSan builds check it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "agent.h"

#define PROMTOOL "/var/cache/ktlsd-apt/promtool/usr/bin/promtool"

struct fixture {
	struct runtime rt;
	struct agent_stats st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	pthread_mutex_init(&fx->rt.svc_lock, NULL);
	assert_int_equal(service_new_counting("agent", NULL, NULL, NULL, &fx->st.svc), 0);
	fx->rt.svc = &fx->st.svc;
	fx->rt.n_svc = 1;
	atomic_store(&fx->rt.ready, true);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	service_put(fx->st.svc);
	free(fx);
	return 0;
}

static char *render(struct fixture *fx)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	metrics_write(f, &fx->rt);
	agent_metrics_write(f, &fx->st);
	fclose(f);
	return buf;
}

static void end(struct fixture *fx, const char *consumer, bool server, const char *outcome,
		enum hs_reason reason, int done_rc)
{
	struct agent_end e = { consumer, server, outcome, reason, 3000, done_rc };

	agent_stats_end(&fx->st, &e);
}

static void expect_line(const char *text, const char *line)
{
	char *want = malloc(strlen(line) + 3);
	const char *p;

	sprintf(want, "\n%s\n", line);
	p = strstr(text, want);
	if (!p)
		fail_msg("no line '%s' in:\n%s", line, text);
	free(want);
}

/* Five requests taken, four ended: each count where a proxied service has it. */
static void test_series(void **state)
{
	struct fixture *fx = *state;
	char *t;

	for (int i = 0; i < 5; i++)
		agent_stats_begin(&fx->st);
	agent_stats_ktls(&fx->st, true);
	agent_stats_ktls(&fx->st, true);
	agent_stats_peer_key(&fx->st);
	end(fx, "nfs", true, "ok", HS_OTHER, 0);
	end(fx, "nfs", false, "ok", HS_OTHER, -ENOENT);
	end(fx, "nfs", true, "refused", HS_UNKNOWN_CA, 0);
	end(fx, "nvme", false, "timeout", HS_OTHER, 0);
	t = render(fx);
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"ok\"} 2");
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"failed\","
		       "reason=\"unknown_ca\"} 1");
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"failed\","
		       "reason=\"timeout\"} 1");
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"failed\","
		       "reason=\"other\"} 0");
	expect_line(t, "ktlsd_handshake_duration_seconds_count{service=\"agent\"} 2");
	expect_line(t, "ktlsd_handshake_duration_seconds_bucket{service=\"agent\",le=\"0.005\"} 2");
	expect_line(t,
		    "ktlsd_handshake_duration_seconds_bucket{service=\"agent\",le=\"0.0025\"} 0");
	expect_line(t, "ktlsd_connections_total{service=\"agent\"} 5");
	expect_line(t, "ktlsd_connections_active{service=\"agent\",relay=\"handshake\"} 1");
	expect_line(t, "ktlsd_ktls_installs_total{service=\"agent\",result=\"ok\"} 2");
	expect_line(t, "ktlsd_limit_hits_total{service=\"agent\",limit=\"handshake_timeout\"} 1");
	expect_line(t, "ktlsd_agent_handshakes_total{service=\"agent\",consumer=\"nfs\","
		       "role=\"server\",outcome=\"refused\"} 1");
	expect_line(t, "ktlsd_agent_handshakes_total{service=\"agent\",consumer=\"nvme\","
		       "role=\"client\",outcome=\"timeout\"} 1");
	expect_line(t, "ktlsd_agent_handshakes_total{service=\"agent\",consumer=\"tlshd\","
		       "role=\"client\",outcome=\"unsupported\"} 0");
	expect_line(t, "ktlsd_agent_done_errors_total{service=\"agent\"} 1");
	expect_line(t, "ktlsd_agent_peer_keys_total{service=\"agent\"} 1");
	expect_line(t, "ktlsd_ready 1");
	assert_non_null(strstr(t, "ktlsd_service_info{service=\"agent\",mode=\"agent\","));
	free(t);
}

/*
 * A reload's new generation (the agent_admin_renew step): it shows its own certificate
 * file and continues the counts, and the old one can go first.
 */
static void test_generation(void **state)
{
	struct fixture *fx = *state;
	struct service *old = fx->st.svc;
	char *t;

	agent_stats_begin(&fx->st);
	end(fx, "nfs", true, "ok", HS_OTHER, 0);
	assert_int_equal(service_new_counting("agent", "/etc/new.pem", NULL, old, &fx->st.svc), 0);
	service_put(old);
	agent_stats_begin(&fx->st);
	end(fx, "nfs", true, "ok", HS_OTHER, 0);
	t = render(fx);
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"ok\"} 2");
	expect_line(t, "ktlsd_cert_expiry_timestamp_seconds{service=\"agent\","
		       "cert=\"/etc/new.pem\"} 0");
	free(t);
}

static void test_names(void **state)
{
	(void)state;
	assert_int_equal(agent_consumer_of("nfs"), AGENT_NFS);
	assert_int_equal(agent_consumer_of("nvme"), AGENT_NVME);
	assert_int_equal(agent_consumer_of("x"), AGENT_TLSHD);
	assert_int_equal(agent_consumer_of(NULL), AGENT_TLSHD);
	assert_int_equal(agent_outcome_of("unsupported"), AGENT_UNSUPPORTED);
	assert_int_equal(agent_outcome_of("timeout"), AGENT_TIMEOUT);
	assert_int_equal(agent_outcome_of("?"), AGENT_FAILED);
}

/* `promtool check metrics` on the whole text, where scripts/install-deps unpacked it. */
static void test_promtool(void **state)
{
	struct fixture *fx = *state;
	char *t;
	FILE *p;

	if (access(PROMTOOL, X_OK)) {
		print_message("skipped: no %s (scripts/install-deps)\n", PROMTOOL);
		skip();
	}
	agent_stats_begin(&fx->st);
	end(fx, "nvme", true, "ok", HS_OTHER, 0);
	t = render(fx);
	p = popen(PROMTOOL " check metrics", "w");
	assert_non_null(p);
	fputs(t, p);
	assert_int_equal(pclose(p), 0);
	free(t);
}

static void *counter(void *arg)
{
	struct fixture *fx = arg;

	for (int i = 0; i < 20000; i++) {
		agent_stats_begin(&fx->st);
		agent_stats_ktls(&fx->st, true);
		agent_stats_peer_key(&fx->st);
		end(fx, i % 2 ? "nfs" : "nvme", i % 3, i % 5 ? "ok" : "refused", HS_IDENTITY, 0);
	}
	return NULL;
}

/* The agent's thread counts while the admin thread renders: every read is a relaxed load. */
static void test_concurrent(void **state)
{
	struct fixture *fx = *state;
	pthread_t th;
	char *t;

	assert_int_equal(pthread_create(&th, NULL, counter, fx), 0);
	for (int i = 0; i < 50; i++)
		free(render(fx));
	pthread_join(th, NULL);
	t = render(fx);
	expect_line(t, "ktlsd_connections_total{service=\"agent\"} 20000");
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"ok\"} 16000");
	expect_line(t, "ktlsd_handshakes_total{service=\"agent\",result=\"failed\","
		       "reason=\"identity\"} 4000");
	expect_line(t, "ktlsd_agent_peer_keys_total{service=\"agent\"} 20000");
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_series, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promtool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

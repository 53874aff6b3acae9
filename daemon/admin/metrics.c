// SPDX-License-Identifier: MIT
/*
 * /metrics: the Prometheus text format (version 0.0.4). Conventional names: counters end in
 * _total, durations in _seconds, sizes in _bytes. Every series of a service is written even
 * when zero, so a rate() has a start and tests can count exactly. The numbers are the
 * per-worker blocks summed with relaxed loads: each is exact, the set is not one instant.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admin.h"

/*
 * The services, with a reference each, as one list: the only place that reads rt's
 * service table. A reload swaps and grows it meanwhile, and a slot whose service was
 * removed holds NULL.
 */
static size_t services_take(struct runtime *rt, struct service ***ret_svc)
{
	struct service **v;
	size_t n = 0;

	pthread_mutex_lock(&rt->svc_lock);
	v = calloc(rt->n_svc ? rt->n_svc : 1, sizeof(*v));
	for (size_t i = 0; v && i < rt->n_svc; i++)
		if (rt->svc[i])
			v[n++] = service_get(rt->svc[i]);
	pthread_mutex_unlock(&rt->svc_lock);
	*ret_svc = v;
	return n;
}

static void services_drop(struct service **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		service_put(v[i]);
	free(v);
}

void prom_label_value(FILE *f, const char *v)
{
	for (; v && *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{service="...",EXTRA} value: extra is "" or ",key=\"value\"..." already escaped. */
static void series(FILE *f, const char *name, const struct service *s, const char *extra,
		   unsigned long long v)
{
	fprintf(f, "%s{service=\"", name);
	prom_label_value(f, s->cfg->name);
	fprintf(f, "\"%s} %llu\n", extra, v);
}

static void m_handshakes(FILE *f, struct service **sv, size_t n)
{
	char extra[64];

	family(f, "ktlsd_handshakes_total", "counter",
	       "TLS handshakes finished, by result; failed ones by reason.");
	for (size_t i = 0; i < n; i++) {
		series(f, "ktlsd_handshakes_total", sv[i], ",result=\"ok\"",
		       service_stat_sum(sv[i], STAT_HANDSHAKES_OK));
		for (int r = 0; r < HS_REASON_MAX; r++) {
			snprintf(extra, sizeof(extra), ",result=\"failed\",reason=\"%s\"",
				 hs_reason_name((enum hs_reason)r));
			series(f, "ktlsd_handshakes_total", sv[i], extra,
			       service_hs_fail_sum(sv[i], (enum hs_reason)r));
		}
	}
}

static void m_hs_duration(FILE *f, struct service **sv, size_t n)
{
	const char *name = "ktlsd_handshake_duration_seconds";
	uint64_t b[HS_BUCKETS + 1], sum_us;
	char extra[48];

	family(f, name, "histogram", "Time from a TLS handshake's first step to its end.");
	for (size_t i = 0; i < n; i++) {
		service_hs_hist(sv[i], b, &sum_us);
		for (int k = 0; k <= HS_BUCKETS; k++) {
			if (k < HS_BUCKETS)
				snprintf(extra, sizeof(extra), ",le=\"%g\"",
					 service_hs_bucket_us[k] / 1e6);
			else
				snprintf(extra, sizeof(extra), ",le=\"+Inf\"");
			series(f, "ktlsd_handshake_duration_seconds_bucket", sv[i], extra, b[k]);
		}
		fprintf(f, "%s_sum{service=\"", name);
		prom_label_value(f, sv[i]->cfg->name);
		fprintf(f, "\"} %.6f\n", (double)sum_us / 1e6);
		series(f, "ktlsd_handshake_duration_seconds_count", sv[i], "", b[HS_BUCKETS]);
	}
}

static void m_connections(FILE *f, struct service **sv, size_t n)
{
	family(f, "ktlsd_connections_active", "gauge",
	       "Connections open, by relay (\"handshake\": not relaying yet).");
	for (size_t i = 0; i < n; i++) {
		uint32_t live = service_gauge_sum(sv[i], GAUGE_LIVE);
		uint32_t sp = service_gauge_sum(sv[i], GAUGE_RELAY_SPLICE);
		uint32_t us = service_gauge_sum(sv[i], GAUGE_RELAY_USERSPACE);
		uint32_t sm = service_gauge_sum(sv[i], GAUGE_RELAY_SOCKMAP);

		series(f, "ktlsd_connections_active", sv[i], ",relay=\"splice\"", sp);
		series(f, "ktlsd_connections_active", sv[i], ",relay=\"userspace\"", us);
		series(f, "ktlsd_connections_active", sv[i], ",relay=\"sockmap\"", sm);
		/* Summed without a common instant: never show a negative rest. */
		series(f, "ktlsd_connections_active", sv[i], ",relay=\"handshake\"",
		       live > sp + us + sm ? live - sp - us - sm : 0);
	}
	family(f, "ktlsd_connections_total", "counter", "Connections accepted.");
	for (size_t i = 0; i < n; i++)
		series(f, "ktlsd_connections_total", sv[i], "",
		       service_stat_sum(sv[i], STAT_ACCEPTED));
	family(f, "ktlsd_bytes_total", "counter",
	       "Plaintext bytes relayed: in from the TLS peer, out toward it.");
	for (size_t i = 0; i < n; i++) {
		series(f, "ktlsd_bytes_total", sv[i], ",direction=\"in\"",
		       service_stat_sum(sv[i], STAT_BYTES_IN));
		series(f, "ktlsd_bytes_total", sv[i], ",direction=\"out\"",
		       service_stat_sum(sv[i], STAT_BYTES_OUT));
	}
	family(f, "ktlsd_resumed_total", "counter", "Handshakes that resumed a session.");
	for (size_t i = 0; i < n; i++)
		series(f, "ktlsd_resumed_total", sv[i], "", service_stat_sum(sv[i], STAT_RESUMED));
}

/* A label value for a counter: what the stat means under its family. */
struct stat_label {
	enum service_stat k;
	const char *extra;
};

static void stat_family(FILE *f, struct service **sv, size_t n, const char *name, const char *help,
			const struct stat_label *l, size_t nl)
{
	family(f, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < nl; j++)
			series(f, name, sv[i], l[j].extra, service_stat_sum(sv[i], l[j].k));
}

static void m_stats(FILE *f, struct service **sv, size_t n)
{
	static const struct stat_label ktls[] = {
		{ STAT_KTLS_OK, ",result=\"ok\"" },
		{ STAT_KTLS_FALLBACKS, ",result=\"fallback\"" },
		{ STAT_KTLS_FAILED, ",result=\"failed\"" },
	};
	static const struct stat_label limits[] = {
		{ STAT_REFUSED_MAX_CONNS, ",limit=\"max_conns\"" },
		{ STAT_REFUSED_HANDSHAKES, ",limit=\"max_handshakes\"" },
		{ STAT_REFUSED_PER_SOURCE, ",limit=\"max_handshakes_per_source\"" },
		{ STAT_ACCEPT_PAUSES, ",limit=\"nofile\"" },
		{ STAT_RATE_PAUSES, ",limit=\"max_handshakes_per_second\"" },
		{ STAT_HANDSHAKE_TIMEOUTS, ",limit=\"handshake_timeout\"" },
		{ STAT_IDLE_TIMEOUTS, ",limit=\"idle_timeout\"" },
	};
	static const struct stat_label events[] = {
		{ STAT_TARGET_CONNECT_FAILURES, ",event=\"target_connect_failed\"" },
		{ STAT_REKEY_CLOSES, ",event=\"rekey_close\"" },
		{ STAT_PROXY_HEADER_FAILURES, ",event=\"proxy_header_failed\"" },
		{ STAT_TRUNCATED, ",event=\"truncated\"" },
	};

	stat_family(f, sv, n, "ktlsd_ktls_installs_total",
		    "kTLS installs: ok, fallback (relayed in userspace), failed (refused).", ktls,
		    sizeof(ktls) / sizeof(ktls[0]));
	stat_family(f, sv, n, "ktlsd_limit_hits_total",
		    "Connections refused or ended by a limit, and accept pauses on EMFILE.", limits,
		    sizeof(limits) / sizeof(limits[0]));
	family(f, "ktlsd_accept_paused_seconds_total", "counter",
	       "Time accepting stood paused by max-handshakes-per-second, summed over workers.");
	for (size_t i = 0; i < n; i++) {
		uint64_t us = service_stat_sum(sv[i], STAT_RATE_PAUSED_US);

		fputs("ktlsd_accept_paused_seconds_total{service=\"", f);
		prom_label_value(f, sv[i]->cfg->name);
		fprintf(f, "\",limit=\"max_handshakes_per_second\"} %llu.%06llu\n",
			(unsigned long long)(us / 1000000), (unsigned long long)(us % 1000000));
	}
	stat_family(f, sv, n, "ktlsd_connection_events_total",
		    "Connections ended by the backend, a rekey, PROXY header or truncation.",
		    events, sizeof(events) / sizeof(events[0]));
}

static void m_services(FILE *f, struct service **sv, size_t n)
{
	family(f, "ktlsd_cert_expiry_timestamp_seconds", "gauge",
	       "notAfter of the service's own certificate, as Unix time.");
	for (size_t i = 0; i < n; i++) {
		fputs("ktlsd_cert_expiry_timestamp_seconds{service=\"", f);
		prom_label_value(f, sv[i]->cfg->name);
		fputs("\",cert=\"", f);
		prom_label_value(f, sv[i]->cfg->cert);
		fprintf(f, "\"} %lld\n", (long long)sv[i]->cert_not_after);
	}
	family(f, "ktlsd_service_info", "gauge", "One per service: what it listens on and serves.");
	for (size_t i = 0; i < n; i++) {
		const struct service_config *sc = sv[i]->cfg;
		const char *mode = sc->role == ROLE_SERVER ? "server" : "client";

		if (sv[i]->agent)
			mode = "agent"; /* the kernel's handshakes, both roles */
		fputs("ktlsd_service_info{service=\"", f);
		prom_label_value(f, sc->name);
		fprintf(f, "\",mode=\"%s\",listen=\"", mode);
		prom_label_value(f, sc->listen);
		fputs("\",target=\"", f);
		prom_label_value(f, sc->target);
		fprintf(f, "\",ktls=\"%s\"} 1\n", sv[i]->use_ktls ? "on" : "off");
	}
}

int kernel_tls_metric_name(const char *stat, char *buf, size_t len, bool *ret_gauge)
{
	size_t o;
	const char *p;

	if (strncmp(stat, "Tls", 3) || !isupper((unsigned char)stat[3]))
		return -EINVAL;
	o = (size_t)snprintf(buf, len, "ktlsd_kernel_tls");
	for (p = stat + 3; *p && o + 2 < len; p++) {
		if (!isalnum((unsigned char)*p))
			return -EINVAL;
		if (isupper((unsigned char)*p))
			buf[o++] = '_';
		buf[o++] = (char)tolower((unsigned char)*p);
	}
	if (*p)
		return -EINVAL;
	buf[o] = 0;
	/* TlsCurr*: sockets now; the rest only ever count up. */
	*ret_gauge = !strncmp(stat, "TlsCurr", 7);
	if (!*ret_gauge) {
		if (o + 7 > len)
			return -EINVAL;
		strcat(buf, "_total");
	}
	return 0;
}

void metrics_kernel_tls(FILE *f, const char *text)
{
	char key[64], name[96];
	unsigned long long v;
	const char *p = text;
	int used;
	bool gauge;

	while (p && sscanf(p, "%63s %llu%n", key, &v, &used) == 2) {
		p += used;
		if (kernel_tls_metric_name(key, name, sizeof(name), &gauge))
			continue;
		fprintf(f, "# HELP %s /proc/net/tls_stat %s.\n# TYPE %s %s\n%s %llu\n", name, key,
			name, gauge ? "gauge" : "counter", name, v);
	}
}

/* A small /proc file as text, or NULL (absent: a kernel without CONFIG_TLS has no tls_stat). */
static char *read_small(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(8192);
	n = buf ? fread(buf, 1, 8191, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = 0;
	return buf;
}

static unsigned long long count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned long long n = 0;
	struct dirent *e;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n ? n - 1 : 0; /* the directory's own descriptor */
}

/*
 * The boot time from /proc/stat, read line by line: on a machine with many CPUs and
 * interrupts the lines before it run to tens of KiB. It never changes: read once (only the
 * admin thread comes here).
 */
static double boot_time(void)
{
	static double btime = -1;
	FILE *f;
	char *line = NULL;
	size_t cap = 0;

	if (btime >= 0)
		return btime;
	f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "btime ", 6)) {
			btime = strtod(line + 6, NULL);
			break;
		}
	}
	free(line);
	fclose(f);
	return btime >= 0 ? btime : 0;
}

/* The fields of /proc/self/stat after the command name (which may hold spaces). */
static void m_process(FILE *f)
{
	char *stat = read_small("/proc/self/stat"), *p = stat ? strrchr(stat, ')') : NULL;
	unsigned long long ut = 0, st = 0, start = 0, vsize = 0, rss = 0;
	double hz = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
	struct rlimit rl = { 0 };

	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
	 * cutime cstime priority nice threads itrealvalue starttime vsize rss */
	if (p)
		sscanf(p + 2,
		       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
		       "%*d %*d %llu %llu %llu",
		       &ut, &st, &start, &vsize, &rss);
	getrlimit(RLIMIT_NOFILE, &rl);
	family(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
	fprintf(f, "process_cpu_seconds_total %.2f\n", (double)(ut + st) / hz);
	family(f, "process_resident_memory_bytes", "gauge", "Resident memory size.");
	fprintf(f, "process_resident_memory_bytes %.0f\n", (double)rss * page);
	family(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
	fprintf(f, "process_virtual_memory_bytes %llu\n", vsize);
	family(f, "process_open_fds", "gauge", "Open file descriptors.");
	fprintf(f, "process_open_fds %llu\n", count_fds());
	family(f, "process_max_fds", "gauge", "RLIMIT_NOFILE (soft).");
	fprintf(f, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	family(f, "process_start_time_seconds", "gauge", "Start time since the epoch.");
	fprintf(f, "process_start_time_seconds %.2f\n", boot_time() + (double)start / hz);
	free(stat);
}

void metrics_write(FILE *f, struct runtime *rt)
{
	struct service **sv;
	size_t n = services_take(rt, &sv);
	char *tls = read_small("/proc/net/tls_stat");

	m_handshakes(f, sv, n);
	m_hs_duration(f, sv, n);
	m_connections(f, sv, n);
	m_stats(f, sv, n);
	m_services(f, sv, n);
	family(f, "ktlsd_ready", "gauge", "1 once every listener is up, 0 before and draining.");
	fprintf(f, "ktlsd_ready %d\n",
		atomic_load(&rt->ready) && !atomic_load(&rt->draining) ? 1 : 0);
	metrics_kernel_tls(f, tls);
	m_process(f);
	free(tls);
	services_drop(sv, n);
}

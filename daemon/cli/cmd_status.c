// SPDX-License-Identifier: MIT
/*
 * ktlsd status [--admin ADDR] [--connections]: a human view of a running daemon, read
 * from its admin endpoint (the same numbers a scraper gets): one line per service from
 * /metrics, and with --connections one line per connection from /connections.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "admin.h"
#include "commands.h"

#define STATUS_DEFAULT_ADMIN "127.0.0.1:9797"
#define STATUS_MAX_BODY	     (64u << 20)
#define STATUS_MAX_SVC	     1024

struct svc_row {
	char name[64], mode[8], listen[128], target[128];
	unsigned long long active, splice, userspace, total, hs_ok, hs_failed;
};

/* The value of label key in a series' labels (`a="x",b="y"`), unescaped, into buf. */
static bool label_get(const char *labels, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key), o = 0;
	const char *p = labels;

	while ((p = strstr(p, key))) {
		bool at_start = p == labels || p[-1] == ',' || p[-1] == '{';

		if (!at_start || strncmp(p + kl, "=\"", 2)) {
			p += kl;
			continue;
		}
		for (p += kl + 2; *p && *p != '"' && o + 1 < len; p++) {
			if (*p == '\\' && p[1])
				p++;
			buf[o++] = *p == 'n' && p[-1] == '\\' ? '\n' : *p;
		}
		buf[o] = 0;
		return true;
	}
	return false;
}

static struct svc_row *row_for(struct svc_row *rows, size_t *n, const char *labels)
{
	char name[64];

	if (!label_get(labels, "service", name, sizeof(name)))
		return NULL;
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(rows[i].name, name))
			return &rows[i];
	if (*n >= STATUS_MAX_SVC)
		return NULL;
	memset(&rows[*n], 0, sizeof(rows[*n]));
	snprintf(rows[*n].name, sizeof(rows[*n].name), "%s", name);
	return &rows[(*n)++];
}

/* One series line of /metrics into its service's row. */
static void row_take(struct svc_row *r, const char *name, const char *labels, unsigned long long v)
{
	char val[128];

	if (!strcmp(name, "ktlsd_service_info")) {
		label_get(labels, "mode", r->mode, sizeof(r->mode));
		label_get(labels, "listen", r->listen, sizeof(r->listen));
		label_get(labels, "target", r->target, sizeof(r->target));
	} else if (!strcmp(name, "ktlsd_connections_total")) {
		r->total = v;
	} else if (!strcmp(name, "ktlsd_connections_active")) {
		r->active += v;
		if (label_get(labels, "relay", val, sizeof(val)) && !strcmp(val, "splice"))
			r->splice = v;
		if (label_get(labels, "relay", val, sizeof(val)) && !strcmp(val, "userspace"))
			r->userspace = v;
	} else if (!strcmp(name, "ktlsd_handshakes_total")) {
		if (label_get(labels, "result", val, sizeof(val)) && !strcmp(val, "ok"))
			r->hs_ok = v;
		else
			r->hs_failed += v;
	}
}

static size_t metrics_rows(char *text, struct svc_row *rows)
{
	size_t n = 0;
	char *save = NULL;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *open = strchr(l, '{'), *close = open ? strrchr(l, '}') : NULL;
		struct svc_row *r;

		if (strncmp(l, "ktlsd_", 6) || !open || !close)
			continue;
		*open = 0;
		*close = 0;
		r = row_for(rows, &n, open + 1);
		if (r)
			row_take(r, l, open + 1, strtoull(close + 1, NULL, 10));
	}
	return n;
}

static void rows_print(const struct svc_row *rows, size_t n)
{
	printf("%-16s %-6s %-22s %-22s %7s %9s %9s %9s %6s\n", "SERVICE", "MODE", "LISTEN",
	       "TARGET", "ACTIVE", "TOTAL", "HS_OK", "HS_FAIL", "KTLS");
	for (size_t i = 0; i < n; i++) {
		const struct svc_row *r = &rows[i];
		unsigned long long relaying = r->splice + r->userspace;
		char share[16] = "-";

		/* The share of relaying connections that the kernel carries (kTLS + splice). */
		if (relaying)
			snprintf(share, sizeof(share), "%llu%%", r->splice * 100 / relaying);
		printf("%-16s %-6s %-22s %-22s %7llu %9llu %9llu %9llu %6s\n", r->name, r->mode,
		       r->listen, r->target, r->active, r->total, r->hs_ok, r->hs_failed, share);
	}
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

static void kernel_text(const json_t *k, char *buf, size_t len)
{
	if (!k || json_is_null(k))
		snprintf(buf, len, "kernel=none");
	else if (json_object_get(k, "error"))
		snprintf(buf, len, "kernel_error=\"%s\"", jstr(k, "error"));
	else
		snprintf(buf, len, "kernel=%s/%s/%s tx=%s rx=%s", jstr(k, "ulp"),
			 jstr(k, "version"), jstr(k, "cipher"), jstr(k, "tx"), jstr(k, "rx"));
}

static int conns_print(const char *body)
{
	json_error_t e;
	json_t *doc = json_loads(body, 0, &e), *arr = json_object_get(doc, "connections"), *c;
	size_t i;
	char kern[160];

	if (!json_is_array(arr)) {
		fprintf(stderr, "ktlsd status: /connections: not the expected JSON\n");
		json_decref(doc);
		return EXIT_RUNTIME;
	}
	json_array_foreach(arr, i, c)
	{
		const char *id = json_string_value(json_object_get(c, "uri"));

		id = id ? id : json_string_value(json_object_get(c, "dns"));
		id = id ? id : json_string_value(json_object_get(c, "cn"));
		kernel_text(json_object_get(c, "kernel"), kern, sizeof(kern));
		printf("%s peer=%s id=%s tls=%s cipher=%s relay=%s age_s=%.1f in=%lld out=%lld "
		       "%s\n",
		       jstr(c, "service"), jstr(c, "peer"), id ? id : "-", jstr(c, "tls_version"),
		       jstr(c, "cipher"), jstr(c, "relay"),
		       json_number_value(json_object_get(c, "age_s")),
		       (long long)json_integer_value(json_object_get(c, "bytes_in")),
		       (long long)json_integer_value(json_object_get(c, "bytes_out")), kern);
	}
	if (json_is_true(json_object_get(doc, "truncated")))
		printf("(%lld connections, %zu shown)\n",
		       (long long)json_integer_value(json_object_get(doc, "total")),
		       json_array_size(arr));
	json_decref(doc);
	return 0;
}

/* GET path, or a message and the exit status. */
static int fetch(const char *addr, const char *path, char **ret_body)
{
	char err[512];
	int status;

	if (admin_http_get(addr, path, STATUS_MAX_BODY, &status, ret_body, err, sizeof(err))) {
		fprintf(stderr, "ktlsd status: %s\n", err);
		return EXIT_RUNTIME;
	}
	if (status != 200) {
		fprintf(stderr, "ktlsd status: GET %s from %s: HTTP %d\n", path, addr, status);
		free(*ret_body);
		return EXIT_RUNTIME;
	}
	return 0;
}

static int status_args(int argc, char **argv, const char **ret_addr, bool *ret_conns)
{
	static const struct option opts[] = {
		{ "admin", required_argument, NULL, 'a' },
		{ "connections", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'a')
			*ret_addr = optarg;
		else if (c == 'c')
			*ret_conns = true;
		else if (c == 'h')
			return -1;
		else
			return EXIT_USAGE;
	}
	return optind < argc ? EXIT_USAGE : 0;
}

int cmd_status(int argc, char **argv)
{
	const char *addr = STATUS_DEFAULT_ADMIN;
	struct svc_row *rows;
	bool conns = false;
	char *body = NULL;
	int rc = status_args(argc, argv, &addr, &conns);

	if (rc) {
		fprintf(rc < 0 ? stdout : stderr,
			"usage: ktlsd status [--admin ADDR] [--connections]\n"
			"  ADDR: the daemon's --admin (host:port or unix:/path; default %s)\n",
			STATUS_DEFAULT_ADMIN);
		return rc < 0 ? 0 : EXIT_USAGE;
	}
	rc = fetch(addr, "/metrics", &body);
	if (rc)
		return rc;
	rows = calloc(STATUS_MAX_SVC, sizeof(*rows));
	if (!rows) {
		free(body);
		return EXIT_RUNTIME;
	}
	rows_print(rows, metrics_rows(body, rows));
	free(rows);
	free(body);
	if (!conns)
		return 0;
	rc = fetch(addr, "/connections?limit=10000", &body);
	if (!rc)
		rc = conns_print(body);
	free(body);
	return rc;
}

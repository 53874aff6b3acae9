// SPDX-License-Identifier: MIT
/*
 * The admin endpoint's HTTP server: libmicrohttpd with its own polling thread on a socket
 * bound here (so unix:/path works like host:port). Few clients (a scraper, an orchestrator's
 * probes, `ktlsd status`): a handful of connections at once, each with a 10 s timeout. GET
 * only; /connections is capped by ?limit= so a worker copies at most that many entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <microhttpd.h>

#include "admin.h"

#define ADMIN_CONN_MAX	   16
#define ADMIN_TIMEOUT_S	   10
#define CONN_LIMIT_DEFAULT 1000
#define CONN_LIMIT_MAX	   10000

struct admin {
	struct runtime *rt;
	struct worker *w;
	unsigned n;
	struct MHD_Daemon *d;
	void (*extra)(FILE *f, void *arg);
	void *extra_arg;
	int fd;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Queues body (malloc'd, taken) with status and content type; NULL body: out of memory. */
static enum MHD_Result reply(struct MHD_Connection *mc, unsigned status, const char *type,
			     char *body)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	if (!body)
		return MHD_NO; /* libmicrohttpd closes the connection */
	r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET");
	rc = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result text(struct MHD_Connection *mc, unsigned status, const char *msg)
{
	return reply(mc, status, "text/plain; charset=utf-8", strdup(msg));
}

static enum MHD_Result get_metrics(struct admin *a, struct MHD_Connection *mc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return MHD_NO;
	metrics_write(f, a->rt);
	if (a->extra)
		a->extra(f, a->extra_arg);
	if (fclose(f)) {
		free(buf);
		return MHD_NO;
	}
	return reply(mc, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf);
}

/* ?limit=N: digits only, 0..CONN_LIMIT_MAX; absent: the default. */
static int parse_limit(const char *v, unsigned *ret_limit)
{
	unsigned long n = 0;

	if (!v) {
		*ret_limit = CONN_LIMIT_DEFAULT;
		return 0;
	}
	if (!*v || strlen(v) > 6)
		return -EINVAL;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		n = n * 10 + (unsigned long)(*p - '0');
	}
	if (n > CONN_LIMIT_MAX)
		return -EINVAL;
	*ret_limit = (unsigned)n;
	return 0;
}

static enum MHD_Result get_connections(struct admin *a, struct MHD_Connection *mc)
{
	const char *v = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "limit");
	unsigned limit;
	char *doc;

	if (parse_limit(v, &limit))
		return text(mc, MHD_HTTP_BAD_REQUEST, "limit: expected a number 0..10000\n");
	doc = connections_json(a->w, a->n, limit);
	if (!doc)
		return MHD_NO;
	return reply(mc, MHD_HTTP_OK, "application/json", doc);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **req_ctx)
{
	struct admin *a = cls;
	bool ready = atomic_load(&a->rt->ready), draining = atomic_load(&a->rt->draining);

	if (strcmp(method, MHD_HTTP_METHOD_GET))
		return text(mc, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET only\n");
	if (!strcmp(url, "/metrics"))
		return get_metrics(a, mc);
	if (!strcmp(url, "/healthz"))
		return text(mc, MHD_HTTP_OK, "ok\n");
	if (!strcmp(url, "/readyz")) {
		if (ready && !draining)
			return text(mc, MHD_HTTP_OK, "ready\n");
		return text(mc, MHD_HTTP_SERVICE_UNAVAILABLE,
			    draining ? "draining\n" : "starting\n");
	}
	if (!strcmp(url, "/connections"))
		return get_connections(a, mc);
	return text(mc, MHD_HTTP_NOT_FOUND,
		    "not found (GET /metrics, /healthz, /readyz, /connections)\n");
}

/* A unix socket left by a daemon that died: nobody answers on it, so it may go. */
static bool unix_stale(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool stale;

	if (fd < 0)
		return false;
	stale = connect(fd, (const struct sockaddr *)ss, len) && errno == ECONNREFUSED;
	close(fd);
	return stale;
}

static int admin_bind(struct admin *a, const struct daemon_addr *addr, char *err, size_t errlen)
{
	const struct sockaddr_storage *ss = &addr->alt[0].ss;
	int one = 1, rc, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto out_err;
	if (ss->ss_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, addr->alt[0].len)) {
		if (errno != EADDRINUSE || ss->ss_family != AF_UNIX)
			goto out_err;
		if (!unix_stale(ss, addr->alt[0].len)) {
			errno = EADDRINUSE;
			goto out_err;
		}
		unlink(((const struct sockaddr_un *)ss)->sun_path);
		if (bind(fd, (const struct sockaddr *)ss, addr->alt[0].len))
			goto out_err;
	}
	if (listen(fd, 16))
		goto out_err;
	if (ss->ss_family == AF_UNIX)
		snprintf(a->unix_path, sizeof(a->unix_path), "%s",
			 ((const struct sockaddr_un *)ss)->sun_path);
	a->fd = fd;
	return 0;

out_err:
	rc = -errno;
	snprintf(err, errlen, "admin %s: %s", addr->text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

int admin_new(struct runtime *rt, struct admin **ret_admin, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return -ENOMEM;
	*a = (struct admin){ .rt = rt, .fd = -1 };
	rc = admin_bind(a, &rt->cfg->admin_addr, err, errlen);
	if (rc) {
		free(a);
		return rc;
	}
	*ret_admin = a;
	return 0;
}

void admin_set_metrics_extra(struct admin *a, void (*fn)(FILE *f, void *arg), void *arg)
{
	a->extra = fn;
	a->extra_arg = arg;
}

int admin_serve(struct admin *a, struct worker *w, unsigned n, char *err, size_t errlen)
{
	a->w = w;
	a->n = n;
	a->d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
				on_request, a, MHD_OPTION_LISTEN_SOCKET, a->fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_CONN_MAX,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT_S,
				MHD_OPTION_END);
	if (!a->d) {
		snprintf(err, errlen, "admin %s: libmicrohttpd did not start", a->rt->cfg->admin);
		return -EIO;
	}
	return 0;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	if (a->d) {
		MHD_quiesce_daemon(a->d); /* the listening socket is ours to close */
		MHD_stop_daemon(a->d);
	}
	close(a->fd);
	if (a->unix_path[0])
		unlink(a->unix_path);
	free(a);
}

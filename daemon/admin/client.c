// SPDX-License-Identifier: MIT
/*
 * The admin endpoint's client, for `ktlsd status`: one GET over HTTP/1.0 (the server closes
 * after the answer, so the body is everything after the headers). A few dozen lines against
 * our own server need no libcurl: libmicrohttpd is server-only, and libcurl would be a new
 * dependency for a request this small (its unix-socket support is an extra option too).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "admin.h"

#define CLIENT_TIMEOUT_MS 10000

static int connect_addr(const struct daemon_addr *a)
{
	for (unsigned i = 0; i < a->n; i++) {
		const struct sockaddr_storage *ss = &a->alt[i].ss;
		int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (!connect(fd, (const struct sockaddr *)ss, a->alt[i].len))
			return fd;
		close(fd);
	}
	return -errno;
}

/* Everything until EOF, at most max bytes, each read within the timeout. */
static int read_all(int fd, size_t max, char **ret_buf)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap + 1), *nb;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t r;
	int rc;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (poll(&p, 1, CLIENT_TIMEOUT_MS) <= 0) {
			rc = -ETIMEDOUT;
			goto out_free;
		}
		if (len == cap) {
			rc = cap >= max ? -EFBIG : -ENOMEM;
			if (cap >= max || !(nb = realloc(buf, cap * 2 + 1)))
				goto out_free;
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out_free;
		}
		if (!r)
			break;
		len += (size_t)r;
	}
	buf[len] = 0;
	*ret_buf = buf;
	return 0;

out_free:
	free(buf);
	return rc;
}

int admin_http_get(const char *addr, const char *path, size_t max, int *ret_status, char **ret_body,
		   char *err, size_t errlen)
{
	struct daemon_addr a;
	const char *why = "invalid address";
	char req[512], *buf = NULL, *body;
	int fd, rc, status;

	if (addr_parse(addr, true, &a, &why)) {
		snprintf(err, errlen, "--admin '%s': %s", addr, why);
		return -EINVAL;
	}
	fd = connect_addr(&a);
	if (fd < 0) {
		snprintf(err, errlen, "cannot reach the admin endpoint at %s: %s", addr,
			 strerror(-fd));
		return fd;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: ktlsd\r\n\r\n", path);
	rc = send(fd, req, strlen(req), MSG_NOSIGNAL) < 0 ? -errno : 0;
	if (!rc)
		rc = read_all(fd, max, &buf);
	close(fd);
	if (rc) {
		snprintf(err, errlen, "GET %s from %s: %s", path, addr, strerror(-rc));
		return rc;
	}
	body = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*c %d", &status) != 1 || !body) {
		snprintf(err, errlen, "GET %s from %s: not an HTTP answer", path, addr);
		free(buf);
		return -EPROTO;
	}
	memmove(buf, body + 4, strlen(body + 4) + 1);
	*ret_status = status;
	*ret_body = buf;
	return 0;
}

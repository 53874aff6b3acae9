// SPDX-License-Identifier: MIT
/* Log lines: logfmt quoting by hand (cheap), JSON through jansson (correct escaping). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static int put(char *buf, int len, int off, const char *s, size_t n)
{
	if (off < len - 1) {
		size_t room = (size_t)(len - 1 - off);

		memcpy(buf + off, s, n < room ? n : room);
	}
	return off + (int)n;
}

static int put_logfmt_value(char *buf, int len, int off, const char *v)
{
	bool quote = !*v || strpbrk(v, " \"=\\\t\n") != NULL;

	if (!quote)
		return put(buf, len, off, v, strlen(v));
	off = put(buf, len, off, "\"", 1);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			off = put(buf, len, off, "\\", 1);
		if (*p == '\n')
			off = put(buf, len, off, "\\n", 2);
		else
			off = put(buf, len, off, p, 1);
	}
	return put(buf, len, off, "\"", 1);
}

int log_format_line(enum log_format fmt, const char *level, const char *event,
		    const struct log_kv *kv, int n, char *buf, int len)
{
	char ts[64];
	int off = 0;

	timestamp(ts, sizeof(ts));
	if (fmt == LOG_JSON) {
		json_t *o = json_object();
		char *s;

		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "level", json_string(level));
		json_object_set_new(o, "event", json_string(event));
		for (int i = 0; i < n; i++)
			if (kv[i].val && *kv[i].val)
				json_object_set_new(o, kv[i].key, json_string(kv[i].val));
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (!s)
			return 0;
		off = put(buf, len, 0, s, strlen(s));
		free(s);
	} else {
		off = put(buf, len, off, "ts=", 3);
		off = put(buf, len, off, ts, strlen(ts));
		off = put(buf, len, off, " level=", 7);
		off = put(buf, len, off, level, strlen(level));
		off = put(buf, len, off, " event=", 7);
		off = put(buf, len, off, event, strlen(event));
		for (int i = 0; i < n; i++) {
			if (!kv[i].val || !*kv[i].val)
				continue;
			off = put(buf, len, off, " ", 1);
			off = put(buf, len, off, kv[i].key, strlen(kv[i].key));
			off = put(buf, len, off, "=", 1);
			off = put_logfmt_value(buf, len, off, kv[i].val);
		}
	}
	off = off < len - 1 ? off : len - 1;
	buf[off] = '\0';
	return off;
}

void log_kv(enum log_format fmt, const char *level, const char *event, const struct log_kv *kv,
	    int n)
{
	char buf[2048];
	int len = log_format_line(fmt, level, event, kv, n, buf, (int)sizeof(buf) - 1);
	ssize_t w;

	buf[len++] = '\n';
	w = write(STDERR_FILENO, buf, (size_t)len);
	(void)w;
}

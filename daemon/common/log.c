// SPDX-License-Identifier: MIT
/* Log lines: logfmt quoting by hand (cheap), JSON through jansson (correct escaping). */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
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

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. As strict as jansson, which refuses the whole
 * string otherwise.
 */
static size_t utf8_len(const unsigned char *p, uint32_t *ret_cp)
{
	uint32_t cp;
	size_t n;

	if (p[0] < 0x80) {
		n = 1;
		cp = p[0];
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	/* A NUL terminator fails the continuation test, so this never reads past the end. */
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*ret_cp = cp;
	return n;
}

/*
 * Code points that reorder or break what a terminal shows (bidirectional overrides and
 * isolates, line/paragraph separators, zero-width joiners and marks): a name holding one
 * could make a line read as something else. They are written as bytes, \xNN.
 */
static bool invisible_format(uint32_t cp)
{
	return (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff;
}

/*
 * The longest value a line carries. Certificate names are peer-controlled and may be kilobytes:
 * cut at a character boundary with the count of what was left out, so every line stays
 * whole (and valid JSON) and the fields after a long name are still in it.
 */
#define LOG_VALUE_MAX 256

static const char *value_capped(const char *v, char *tmp, size_t tmplen)
{
	const unsigned char *p = (const unsigned char *)v;
	size_t len = strlen(v), cut = 0;

	if (len <= LOG_VALUE_MAX)
		return v;
	while (cut < LOG_VALUE_MAX) {
		uint32_t cp;
		size_t n = p[cut] >= 0x80 ? utf8_len(p + cut, &cp) : 1;

		if (!n)
			n = 1;
		if (cut + n > LOG_VALUE_MAX)
			break;
		cut += n;
	}
	snprintf(tmp, tmplen, "%.*s...(+%zu bytes)", (int)cut, v, len - cut);
	return tmp;
}

/* Bytes that may stand unquoted in a logfmt value: printable ASCII that is not syntax. */
static bool logfmt_bare(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

/*
 * Values come from peers (certificate names): nothing in one may end the line or drive a
 * terminal. Inside quotes, " and \ are backslashed; printable ASCII and well-formed UTF-8
 * above the C1 controls stand as they are; every other byte (C0 controls, DEL, C1
 * controls, invalid UTF-8) is written as \n, \r, \t or \xNN, so the line stays one line
 * and the original bytes can still be read back from it.
 */
static int put_logfmt_value(char *buf, int len, int off, const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	bool quote = !*p;

	for (const unsigned char *q = p; *q && !quote; q++)
		quote = !logfmt_bare(*q);
	if (!quote)
		return put(buf, len, off, v, strlen(v));
	off = put(buf, len, off, "\"", 1);
	while (*p) {
		char esc[8];
		uint32_t cp = 0;
		size_t n = *p >= 0x80 ? utf8_len(p, &cp) : 0;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			off = put(buf, len, off, esc, 2);
			p++;
		} else if (*p >= 0x20 && *p < 0x7f) {
			off = put(buf, len, off, (const char *)p, 1);
			p++;
		} else if (n && cp >= 0xa0 && !invisible_format(cp)) {
			off = put(buf, len, off, (const char *)p, n);
			p += n;
		} else {
			if (*p == '\n')
				off = put(buf, len, off, "\\n", 2);
			else if (*p == '\r')
				off = put(buf, len, off, "\\r", 2);
			else if (*p == '\t')
				off = put(buf, len, off, "\\t", 2);
			else
				off = put(buf, len, off, esc,
					  (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *p));
			p++;
		}
	}
	return put(buf, len, off, "\"", 1);
}

/*
 * jansson refuses a string that is not UTF-8 (json_string returns NULL and the field
 * would vanish from the line, hiding exactly the odd certificate an operator wants to
 * see). Each byte that is not part of a well-formed sequence becomes U+FFFD instead, the
 * usual replacement: the field stays, valid values are untouched, and jansson's own
 * escaping then turns every control character into \uNNNN.
 */
static json_t *json_string_lossy(const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	size_t vlen = strlen(v), o = 0;
	char *s = malloc(vlen * 3 + 1); /* worst case: every byte becomes EF BF BD */
	json_t *j;

	if (!s)
		return NULL;
	while (*p) {
		uint32_t cp;
		size_t n = utf8_len(p, &cp);

		if (n) {
			memcpy(s + o, p, n);
			o += n;
			p += n;
		} else {
			memcpy(s + o, "\xef\xbf\xbd", 3);
			o += 3;
			p++;
		}
	}
	j = json_stringn(s, o);
	free(s);
	return j;
}

int log_format_line(enum log_format fmt, const char *level, const char *event,
		    const struct log_kv *kv, int n, char *buf, int len)
{
	char ts[64], tmp[LOG_VALUE_MAX + 32];
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
				json_object_set_new(o, kv[i].key,
						    json_string_lossy(value_capped(kv[i].val, tmp,
										   sizeof(tmp))));
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
			off = put_logfmt_value(buf, len, off,
					       value_capped(kv[i].val, tmp, sizeof(tmp)));
		}
	}
	off = off < len - 1 ? off : len - 1;
	buf[off] = '\0';
	return off;
}

void log_kv(enum log_format fmt, const char *level, const char *event, const struct log_kv *kv,
	    int n)
{
	/* Room for every field at its cap, escaped: a line is never cut. */
	char buf[8192];
	int len = log_format_line(fmt, level, event, kv, n, buf, (int)sizeof(buf) - 1);
	ssize_t w;

	buf[len++] = '\n';
	w = write(STDERR_FILENO, buf, (size_t)len);
	(void)w;
}

/* SPDX-License-Identifier: MIT */
/* Operator log lines on stderr, logfmt or JSON, one line per event. */
#ifndef KTLSD_DAEMON_LOG_H
#define KTLSD_DAEMON_LOG_H

#include <stdint.h>

enum log_format { LOG_LOGFMT, LOG_JSON };

/*
 * A line is a list of key/value pairs; a NULL or empty value is left out. Values may come
 * from peers (certificate names) and can never break the line: logfmt quotes any value
 * that is not plain printable ASCII and writes control bytes (C0, DEL, C1) and invalid
 * UTF-8 as \n \r \t \xNN; JSON keeps every field, invalid UTF-8 bytes each replaced by
 * U+FFFD, and jansson escapes the control characters.
 */
struct log_kv {
	const char *key;
	const char *val;
};

/* Writes one line atomically (a single write(2)) so threads never interleave. */
void log_kv(enum log_format fmt, const char *level, const char *event, const struct log_kv *kv,
	    int n);

/* Formats into buf the logfmt rendering (for tests); returns its length. */
int log_format_line(enum log_format fmt, const char *level, const char *event,
		    const struct log_kv *kv, int n, char *buf, int len);

#endif

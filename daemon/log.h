/* SPDX-License-Identifier: MIT */
/* Operator log lines on stderr, logfmt or JSON, one line per event. */
#ifndef KTLSD_DAEMON_LOG_H
#define KTLSD_DAEMON_LOG_H

#include <stdint.h>

#include "config.h"

/* A line is a list of key/value pairs; a NULL or empty value is left out. */
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

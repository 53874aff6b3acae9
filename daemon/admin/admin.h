/* SPDX-License-Identifier: MIT */
/*
 * The admin endpoint (--admin): /metrics (Prometheus text), /healthz, /readyz, /connections
 * (JSON, each socket's kTLS state as the kernel reports it through sock_diag). Served by
 * libmicrohttpd on a thread of its own, off the data path: it reads the services' per-worker
 * counters (relaxed loads, summed here) and reaches a worker's connections only through
 * worker_call, so the workers take no lock and share no line with it.
 */
#ifndef KTLSD_DAEMON_ADMIN_H
#define KTLSD_DAEMON_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "worker.h"

struct admin;

/*
 * Binds rt->cfg->admin, before the sandbox (Landlock forbids making a unix socket's file
 * after it, and a port below 1024 needs a capability dropped there). Returns 0, or -errno
 * with an operator-facing message in err (the address taken, not ours to bind...).
 */
int admin_new(struct runtime *rt, struct admin **ret_admin, char *err, size_t errlen);
/*
 * Starts serving on a's thread, after the sandbox so the thread is under it; w: the n
 * running workers. Call it with the signals the main thread takes blocked: the thread
 * inherits that. Returns 0 or -EIO with the message in err.
 */
int admin_serve(struct admin *a, struct worker *w, unsigned n, char *err, size_t errlen);
/*
 * Series the runtime's services do not cover (ktlsd agent's own, ktlsd_agent_*): fn(f, arg)
 * writes them after the rest of /metrics, on the admin thread. Set before admin_serve.
 */
void admin_set_metrics_extra(struct admin *a, void (*fn)(FILE *f, void *arg), void *arg);
/* Stops the thread, closes the socket (a unix one is removed). NULL is fine. */
void admin_stop(struct admin *a);

/* --- formatting, apart from the server so the unit tests reach it ------------------------ */

/* v as a Prometheus label value (backslash, quote and newline escaped) into f. */
void prom_label_value(FILE *f, const char *v);
/*
 * A /proc/net/tls_stat name as a metric name: "TlsCurrTxSw" -> "ktlsd_kernel_tls_curr_tx_sw"
 * (a gauge: *ret_gauge true), "TlsDecryptError" -> "ktlsd_kernel_tls_decrypt_error_total".
 * Returns 0, or -EINVAL for a name that is not Tls followed by letters and digits.
 */
int kernel_tls_metric_name(const char *stat, char *buf, size_t len, bool *ret_gauge);
/* /proc/net/tls_stat (as text) as metrics into f; nothing for an empty text. */
void metrics_kernel_tls(FILE *f, const char *text);
/* Everything /metrics shows for rt's services, the kernel and the process, into f. */
void metrics_write(FILE *f, struct runtime *rt);

/* The kernel's view of a kTLS socket (INET_DIAG_ULP_INFO). */
struct ulp_view {
	char ulp[16];		  /* "" when the socket has no ULP */
	bool tls;		  /* INET_ULP_INFO_TLS was there */
	uint16_t version, cipher; /* TLS_INFO_VERSION, TLS_INFO_CIPHER (0 if absent) */
	uint16_t txconf, rxconf;  /* TLS_CONF_* (0 if absent) */
};
struct nlattr;
/* Parses the INET_DIAG_ULP_INFO attribute. 0, or -EINVAL for a malformed one. */
int ulp_view_parse(struct nlattr *ulp_info, struct ulp_view *ret_view);
/* TLS_CONF_* as /connections names it: "off" (BASE), "sw", "hw", "hw_record", else "?". */
const char *tls_conf_name(uint16_t conf);
/* TLS_1_2_VERSION -> "1.2", ...; cipher TLS_CIPHER_* -> "aes-gcm-128", ... ("?" unknown). */
const char *tls_version_name(uint16_t v);
const char *tls_cipher_name(uint16_t c);

/*
 * sock_diag: the ULP view of the TCP socket local <-> remote. Returns 1 with *ret_view set
 * (ret_view->ulp empty: no ULP), 0 when the kernel has no such socket any more, or -errno.
 */
struct sockaddr_storage;
struct nl_sock;
int sockdiag_ulp(struct nl_sock *sk, const struct sockaddr_storage *local,
		 const struct sockaddr_storage *remote, struct ulp_view *ret_view);

/* The /connections document for at most limit connections, as a malloc'd string. */
char *connections_json(struct worker *w, unsigned n, unsigned limit);

/*
 * The client side, for `ktlsd status`: GET path from addr (host:port or unix:/path) over
 * HTTP/1.0. *ret_body (malloc'd, NUL-terminated) holds at most max bytes. Returns 0 with
 * *ret_status the HTTP status, or -errno with err set.
 */
int admin_http_get(const char *addr, const char *path, size_t max, int *ret_status, char **ret_body,
		   char *err, size_t errlen);

#endif

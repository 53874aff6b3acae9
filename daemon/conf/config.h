/* SPDX-License-Identifier: MIT */
/*
 * Service configuration from the command line or an INI file. One service_config per
 * listener; the same keys in both forms (--allow-uri X on the CLI is allow-uri = X in a
 * [service NAME] section). Parsing only: files are opened when the TLS context is built.
 */
#ifndef KTLSD_DAEMON_CONFIG_H
#define KTLSD_DAEMON_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "intercept.h"
#include "log.h"
#include "policy.h"

enum ktls_mode { KTLS_MODE_AUTO, KTLS_MODE_REQUIRE, KTLS_MODE_OFF };
enum service_role { ROLE_SERVER, ROLE_CLIENT };
/* How plaintext moves after kTLS: auto = sockmap where `ktlsd probe`'s check passes. */
enum relay_mode { RELAY_MODE_AUTO, RELAY_MODE_SPLICE, RELAY_MODE_SOCKMAP };

struct service_config {
	char name[64];
	int line; /* of its [service] header; 0 on the command line */
	enum service_role role;
	char *listen, *target, *cert, *key, *cacert;
	struct daemon_addr listen_addr, target_addr;
	bool listen_systemd;   /* listen = systemd[:NAME]: a socket systemd passed (listen.c) */
	struct policy *policy; /* server: allowed clients; client: accepted servers */
	char *server_name;     /* client: SNI; defaults to the target's host name */
	bool default_dns_rule; /* client: no rule given, so server_name became a verify-dns rule */
	bool default_ip_rule;  /* client: no rule nor name, the target's IP must be an IP SAN */
	enum ktls_mode ktls;
	bool ktls_set;
	unsigned handshake_timeout_ms;
	unsigned connect_timeout_ms;
	unsigned max_conns;
	bool max_conns_set; /* given explicitly: refused at start if the fd limit cannot hold it */
	unsigned max_handshakes;	    /* handshakes in progress at once; 0: max_conns */
	unsigned max_handshakes_per_source; /* per client address (server); 0: no limit */
	unsigned max_handshakes_per_second; /* new handshakes started; 0: no limit */
	unsigned idle_timeout_s;	    /* established, no bytes either way; 0: never */
	char *key_password_file;	    /* unlocks an encrypted key; never a prompt */
	char **crl;			    /* PEM CRL files (--crl, repeatable), checked for
					     * every certificate of the peer's chain */
	unsigned n_crl;
	int min_tls;	     /* TLS1_2_VERSION / TLS1_3_VERSION */
	bool proxy_protocol; /* server: PROXY v2 header with the verified identity to the backend */
	bool resumption;     /* default: client yes, server no */
	bool resumption_set; /* given explicitly; else the role decides once the role is known */
	unsigned ticket_lifetime_s; /* server: how long a session ticket it issues stays valid */
	bool resumption_cache;	    /* server: keep sessions here, tickets only name them */
	unsigned session_cache;	    /* client: tickets kept per worker for the target; 0: none.
				     * server with resumption_cache: sessions held */
	bool session_cache_set;
	/* OCSP (docs/ocsp-pkcs11.md); every file a service reads is named in tls_ctx_files(). */
	char *ocsp_staple;	      /* server: DER OCSP response for our cert, stapled */
	char *ocsp_url;		      /* check peers' certificates against this responder */
	char *ocsp_host, *ocsp_path;  /* the URL's parts: Host header, request path */
	struct daemon_addr ocsp_addr; /* its host:port, resolved once */
	unsigned ocsp_timeout_ms;     /* one check, connect to answer */
	bool ocsp_fail_closed;	      /* responder unusable: refuse (default: admit, log) */
	enum log_format log_format;   /* the run's, for lines the TLS layer writes */
	/* Plaintext must not leave the host by accident: a server's target and a client's
	 * listen address are loopback or unix sockets unless these say otherwise. */
	bool unsafe_target; /* server */
	bool unsafe_listen; /* client */
	/* bpf/: --relay and --intercept (docs/bpf.md) */
	enum relay_mode relay;
	struct intercept_rule *intercepts; /* server: sk_lookup steering to this listener */
	size_t n_intercepts;
};

struct run_config {
	unsigned threads;
	enum log_format log_format;
	unsigned drain_timeout_ms;
	bool allow_core_dumps; /* default: not dumpable, keys must not reach a core file */
	/* The admin endpoint (--admin, [global] admin =): NULL when off. Loopback or unix:
	 * only, unless admin_allow_remote. */
	char *admin;
	struct daemon_addr admin_addr;
	bool admin_allow_remote;
	char *user;    /* run as this user once listeners are bound and keys read */
	bool landlock; /* default yes: read-only access to the configured files only */
	bool seccomp;  /* default yes: the syscall allowlist (sandbox/seccomp.c) */
	/* Handshake steps on a SCHED_IDLE thread per worker (loop/hs_thread.c); default no */
	bool handshake_thread;
	struct service_config *svc;
	size_t n_svc;
};

/*
 * A run_config that outlives its parser: a reload builds services from a config file read
 * again, and each service holds a reference on the configuration it points into, so the
 * old one is freed with its last service (after its last connection).
 */
struct config_ref {
	atomic_uint refs;
	struct run_config cfg;
};

/* Takes over *cfg (left empty). Returns the reference, or NULL (out of memory, cfg kept). */
struct config_ref *config_ref_new(struct run_config *cfg);
struct config_ref *config_ref_get(struct config_ref *r);
/* NULL is fine; the last put frees the configuration. */
void config_ref_put(struct config_ref *r);

#define CONFIG_ERR_MAX 512

/*
 * The operator-facing message of a failure goes into err (errlen bytes, CONFIG_ERR_MAX is
 * enough); it trails the out-parameters, as in every daemon call that words its errors.
 */

/*
 * ktlsd server|client ARGS (argv[0] is the subcommand). Returns 0 or -EINVAL (a bad
 * argument) or -ENOMEM, err set; *ret_cfg and *ret_help are untouched on failure. With
 * --help the usage goes to stdout, *ret_help is true and *ret_cfg is empty (config_free
 * accepts it); otherwise *ret_help is false and *ret_cfg the configuration.
 */
int config_from_argv(enum service_role role, int argc, char **argv, struct run_config *ret_cfg,
		     bool *ret_help, char *err, size_t errlen);

/*
 * INI file. Returns 0 or -EINVAL, whatever went wrong (out of memory included): err says
 * what, as "FILE:LINE: problem" or "FILE: problem". *ret_cfg is untouched on failure.
 */
int config_from_file(const char *path, struct run_config *ret_cfg, char *err, size_t errlen);

void config_free(struct run_config *cfg);

#endif

// SPDX-License-Identifier: MIT
/*
 * ktlsd probe [--json]: what this kernel offers ktlsd, found by trying (libktls's kTLS
 * probe, sysprobe.c for io_uring and BPF).
 * Exit 0 whenever the probe ran, whatever it found (absence is information); 1 if the
 * probe itself could not run; 2 on bad usage.
 *
 * --json prints one object on one line. Its keys are stable; tests and tools rely on them:
 *   kernel                              string, uname -r
 *   ktls.ulp                            bool, TCP_ULP "tls" accepted
 *   ktls.ulp_error                      string (strerror) or null when ulp is true
 *   ktls.tls12 / ktls.tls13             object per TLS version, keyed by cipher:
 *     .aes_gcm_128 / .aes_gcm_256 / .chacha20_poly1305
 *                                       {"tx": bool, "rx": bool}
 *   ktls.rekey                          bool, a second TLS_TX works (6.14+)
 *   ktls.rekey_error                    string or null
 *   ktls.rx_expect_no_pad               bool
 *   io_uring.available                  bool, a ring can be set up
 *   io_uring.error                      string or null (EPERM/ENOSYS: seccomp, sysctl)
 *   io_uring.accept_multishot           bool (5.19)
 *   io_uring.splice                     bool (5.7)
 *   io_uring.recv_multishot             bool (6.0)
 *   io_uring.setup_defer_taskrun        bool (6.1)
 *   bpf.sockmap                         bool, BPF_MAP_CREATE(SOCKMAP) works
 *   bpf.error                           string or null
 *   bpf.sockmap_ktls                    the sockmap relay with kTLS (docs/bpf.md), tried:
 *     .plain_to_tls / .tls_to_plain     bool per direction: forwarded in the kernel
 *     .why                              string: what stops a direction, or null
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <jansson.h>

#include "commands.h"
#include "ktlsd/probe.h"
#include "relay_sockmap.h"
#include "sysprobe.h"

static const char *yes(bool b);

/* The sockmap relay per direction, tried only where kTLS exists. */
struct sm_caps {
	bool p2t, t2p;
	const char *why;
};

static void probe_sockmap(const struct sys_caps *caps, struct sm_caps *sm)
{
	*sm = (struct sm_caps){ .why = "needs kTLS" };
	if (caps->ktls.ulp)
		sockmap_probe(&sm->p2t, &sm->t2p, &sm->why);
	if (sm->p2t && !sm->why)
		sm->why = "TLS -> plaintext: records reach the verdict whole (docs/bpf.md)";
}

static void print_sockmap(const struct sm_caps *sm)
{
	printf("  relay with kTLS: plaintext -> TLS %s, TLS -> plaintext %s%s%s%s\n", yes(sm->p2t),
	       yes(sm->t2p), sm->why ? " (" : "", sm->why ? sm->why : "", sm->why ? ")" : "");
}

static json_t *json_err(bool ok, int err)
{
	return ok || !err ? json_null() : json_string(strerror(err));
}

static json_t *caps_to_json(const struct sys_caps *caps, const struct sm_caps *sm,
			    const char *kernel)
{
	json_t *root, *ktls;
	int v, c;

	ktls = json_pack("{s:b, s:o}", "ulp", caps->ktls.ulp, "ulp_error",
			 json_err(caps->ktls.ulp, caps->ktls.ulp_err));
	if (!ktls)
		return NULL;
	for (v = 0; v < KTLS_PROBE_NVERSIONS; v++) {
		json_t *ver = json_object();

		for (c = 0; c < KTLS_PROBE_NCIPHERS; c++)
			json_object_set_new(ver, ktls_probe_cipher_name(c),
					    json_pack("{s:b, s:b}", "tx", caps->ktls.tx[v][c], "rx",
						      caps->ktls.rx[v][c]));
		json_object_set_new(ktls, ktls_probe_version_name(v), ver);
	}
	json_object_set_new(ktls, "rekey", json_boolean(caps->ktls.rekey));
	json_object_set_new(ktls, "rekey_error", json_err(caps->ktls.rekey, caps->ktls.rekey_err));
	json_object_set_new(ktls, "rx_expect_no_pad", json_boolean(caps->ktls.rx_expect_no_pad));

	root = json_pack("{s:s, s:o, s:{s:b, s:o, s:b, s:b, s:b, s:b}, s:{s:b, s:o}}", "kernel",
			 kernel, "ktls", ktls, "io_uring", "available", caps->uring, "error",
			 json_err(caps->uring, caps->uring_err), "accept_multishot",
			 caps->uring_accept_multishot, "splice", caps->uring_splice,
			 "recv_multishot", caps->uring_recv_multishot, "setup_defer_taskrun",
			 caps->uring_setup_defer_taskrun, "bpf", "sockmap", caps->bpf_sockmap,
			 "error", json_err(caps->bpf_sockmap, caps->bpf_err));
	if (root)
		json_object_set_new(json_object_get(root, "bpf"), "sockmap_ktls",
				    json_pack("{s:b, s:b, s:o}", "plain_to_tls", sm->p2t,
					      "tls_to_plain", sm->t2p, "why",
					      sm->why ? json_string(sm->why) : json_null()));
	return root;
}

static const char *yes(bool b)
{
	return b ? "yes" : "no";
}

static void print_table(const struct sys_caps *caps, const struct sm_caps *sm, const char *kernel)
{
	int v, c;

	printf("kernel %s\n\n", kernel);
	if (!caps->ktls.ulp) {
		printf("kTLS: not available (TCP_ULP tls: %s) - ktlsd will use its userspace "
		       "relay; CONFIG_TLS / modprobe tls\n",
		       strerror(caps->ktls.ulp_err));
	} else {
		printf("kTLS: available (TCP_ULP tls)\n");
		printf("  %-20s %-10s %-10s\n", "cipher", "TLS 1.2", "TLS 1.3");
		for (c = 0; c < KTLS_PROBE_NCIPHERS; c++) {
			char cell[KTLS_PROBE_NVERSIONS][16];

			for (v = 0; v < KTLS_PROBE_NVERSIONS; v++)
				snprintf(cell[v], sizeof(cell[v]), "tx:%s rx:%s",
					 caps->ktls.tx[v][c] ? "y" : "n",
					 caps->ktls.rx[v][c] ? "y" : "n");
			printf("  %-20s %-10s %-10s\n", ktls_probe_cipher_name(c),
			       cell[KTLS_PROBE_TLS12], cell[KTLS_PROBE_TLS13]);
		}
		if (caps->ktls.rekey)
			printf("  TLS 1.3 rekey (KeyUpdate): yes\n");
		else
			printf("  TLS 1.3 rekey (KeyUpdate): no (%s) - connections whose peer "
			       "sends KeyUpdate are closed; needs 6.14+\n",
			       strerror(caps->ktls.rekey_err));
		printf("  TLS_RX_EXPECT_NO_PAD: %s\n", yes(caps->ktls.rx_expect_no_pad));
	}

	if (!caps->uring) {
		printf("\nio_uring: not available (%s) - seccomp profile or "
		       "kernel.io_uring_disabled; ktlsd cannot run its relay\n",
		       strerror(caps->uring_err));
	} else {
		printf("\nio_uring: available\n");
		printf("  multishot accept (5.19): %s\n", yes(caps->uring_accept_multishot));
		printf("  splice (5.7):            %s\n", yes(caps->uring_splice));
		printf("  multishot recv (6.0):    %s\n", yes(caps->uring_recv_multishot));
		printf("  DEFER_TASKRUN (6.1):     %s\n", yes(caps->uring_setup_defer_taskrun));
	}

	if (caps->bpf_sockmap)
		printf("\nBPF sockmap: available\n");
	else
		printf("\nBPF sockmap: not available (%s)\n", strerror(caps->bpf_err));
	print_sockmap(sm);
}

int cmd_probe(int argc, char **argv)
{
	struct sys_caps caps;
	struct sm_caps sm;
	struct utsname uts;
	bool as_json = false;
	int i, err;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			as_json = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			puts("usage: ktlsd probe [--json]\n"
			     "Tries kernel TLS (per version and cipher, rekey), io_uring and BPF "
			     "sockmap on loopback sockets and reports what works.");
			return 0;
		} else {
			fprintf(stderr, "ktlsd probe: unknown option '%s'\n", argv[i]);
			return EXIT_USAGE;
		}
	}

	if (uname(&uts) < 0)
		snprintf(uts.release, sizeof(uts.release), "unknown");
	err = sysprobe(&caps);
	if (err < 0) {
		fprintf(stderr, "ktlsd probe: the probe could not run: %s\n", strerror(-err));
		return EXIT_RUNTIME;
	}
	probe_sockmap(&caps, &sm);

	if (as_json) {
		json_t *root = caps_to_json(&caps, &sm, uts.release);
		char *s;

		if (!root) {
			fputs("ktlsd probe: out of memory\n", stderr);
			return EXIT_RUNTIME;
		}
		s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(root);
		if (!s) {
			fputs("ktlsd probe: out of memory\n", stderr);
			return EXIT_RUNTIME;
		}
		puts(s);
		free(s);
	} else {
		print_table(&caps, &sm, uts.release);
	}
	return fflush(stdout) == 0 ? 0 : EXIT_RUNTIME;
}

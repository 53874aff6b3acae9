/* SPDX-License-Identifier: MIT */
/*
 * A throwaway PKI for unit tests that load real files: scripts/pki (KTLSD_PKI_SCRIPT) run
 * once into a fresh /tmp directory per test program, removed at the end. Include after
 * <cmocka.h>; one test program, one PKI (the directory is this file's static).
 */
#ifndef KTLSD_TESTS_PKI_FIXTURE_H
#define KTLSD_TESTS_PKI_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static char pki_dir[64];

/* pki_dir/name, in one of a few rotating buffers so that several can be live in one call. */
static inline const char *p(const char *name)
{
	static char bufs[8][256];
	static unsigned next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "%s/%s", pki_dir, name);
	return b;
}

static inline int run(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* scripts/pki into /tmp/ktlsd-<what>-XXXXXX; exits 77 (skip) without the openssl command. */
static inline int pki_make(const char *what)
{
	char cmd[512];

	if (run("command -v openssl >/dev/null")) {
		fprintf(stderr, "skip: the openssl command is needed to make the test PKI\n");
		exit(77);
	}
	snprintf(pki_dir, sizeof(pki_dir), "/tmp/ktlsd-%s-XXXXXX", what);
	if (!mkdtemp(pki_dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null", KTLSD_PKI_SCRIPT, pki_dir);
	return run(cmd) ? -1 : 0;
}

static inline int pki_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", pki_dir);
	return run(cmd) ? -1 : 0;
}

#endif

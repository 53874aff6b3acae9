// SPDX-License-Identifier: MIT
/*
 * file_sha256 (daemon/common/filewatch.c): the fingerprint a reload takes of every file it
 * watches. A FIFO put where a certificate or CRL was (by whoever can write that directory)
 * must not block the reader: the agent fingerprints on its one handshake thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "filewatch.h"

static char dir[64], reg[96], fifo[96];

static void test_regular(void **state)
{
	unsigned char a[32], b[32];
	FILE *f = fopen(reg, "w");

	(void)state;
	assert_non_null(f);
	fputs("abc", f);
	fclose(f);
	assert_true(file_sha256(reg, a));
	assert_true(file_sha256(reg, b));
	assert_memory_equal(a, b, 32);
	assert_false(file_sha256("/nonexistent/ktlsd", a));
}

/* In a child with an alarm: a blocked open of the FIFO ends in SIGALRM. */
static void test_fifo_does_not_block(void **state)
{
	int st;
	pid_t pid;

	(void)state;
	assert_int_equal(mkfifo(fifo, 0600), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char sha[32];

		alarm(3);
		_exit(file_sha256(fifo, sha) ? 1 : 0);
	}
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR); /* TSan's SIGCHLD handler has no SA_RESTART */
	if (WIFSIGNALED(st))
		fail_msg("file_sha256 on a FIFO blocked (signal %d)", WTERMSIG(st));
	assert_int_equal(WEXITSTATUS(st), 0); /* no fingerprint: not a regular file */
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ktlsd-fw-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(reg, sizeof(reg), "%s/cert.pem", dir);
	snprintf(fifo, sizeof(fifo), "%s/crl.pem", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(reg);
	unlink(fifo);
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regular),
		cmocka_unit_test(test_fifo_does_not_block),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

// SPDX-License-Identifier: MIT
/* secmem: the kernel marks its pages DONTDUMP and WIPEONFORK, and free unmaps them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secmem.h"
#include "smaps_util.h"

static void test_flags(void **state)
{
	unsigned char *p;
	void *heap = malloc(64);

	assert_int_equal(secmem_alloc(100, (void **)&p), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 0);
	memset(p, 0xa5, 100);
	assert_true(smaps_has_flag(p, "dd"));
	assert_true(smaps_has_flag(p, "wf"));
	assert_true(smaps_has_flag(p + 99, "dd"));
	/* The helper can say no: ordinary heap memory is dumped. */
	assert_false(smaps_has_flag(heap, "dd"));
	free(heap);
	secmem_free(p, 100);
	assert_false(smaps_mapped(p));
	secmem_free(NULL, 100);
}

static void test_wipe_on_fork(void **state)
{
	unsigned char *p;
	int st;
	pid_t pid;

	assert_int_equal(secmem_alloc(4096 * 3, (void **)&p), 0);
	memset(p, 0x5a, 4096 * 3);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < 4096 * 3; i++)
			if (p[i])
				_exit(1);
		_exit(0);
	}
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR); /* TSan's SIGCHLD handler has no SA_RESTART */
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(p[4096 * 2 + 7], 0x5a); /* the parent keeps its copy */
	secmem_free(p, 4096 * 3);
}

static void test_bad_args(void **state)
{
	void *p = (void *)1;

	assert_int_equal(secmem_alloc(0, &p), -EINVAL);
	assert_ptr_equal(p, (void *)1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_wipe_on_fork),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

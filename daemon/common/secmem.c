// SPDX-License-Identifier: MIT
/* Pages for secrets: never in a core file, zero in a forked child, wiped on free. */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "secmem.h"

static size_t page_round(size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (len + pg - 1) / pg * pg;
}

int secmem_alloc(size_t len, void **ret_p)
{
	size_t n;
	void *p;
	int rc;

	if (len == 0 || len > SIZE_MAX / 2)
		return -EINVAL;
	n = page_round(len);
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/*
	 * Both are in every kernel ktlsd runs on (3.4 and 4.14): failing here means something
	 * is wrong, and memory that would reach a core file is not what the caller asked for.
	 */
	if (madvise(p, n, MADV_DONTDUMP) || madvise(p, n, MADV_WIPEONFORK)) {
		rc = -errno;
		munmap(p, n);
		return rc;
	}
	*ret_p = p;
	return 0;
}

void secmem_free(void *p, size_t len)
{
	if (!p)
		return;
	/* munmap alone would do for a core file; the wipe keeps the house rule visible. */
	OPENSSL_cleanse(p, len);
	munmap(p, page_round(len));
}

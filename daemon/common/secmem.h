/* SPDX-License-Identifier: MIT */
/*
 * Memory for secrets ktlsd itself holds (session-ticket keys, relay buffers of plaintext):
 * whole pages of their own, MADV_DONTDUMP (left out of every core file, also one taken with
 * --allow-core-dumps or by gcore) and MADV_WIPEONFORK (a forked child sees zeros), wiped
 * with OPENSSL_cleanse before they are unmapped.
 *
 * Each allocation costs at least a page and two syscalls: for long-lived or pooled
 * objects, not for per-record data. ktls/conn.c keeps TLS 1.3 secrets in its own slab of
 * such pages.
 */
#ifndef KTLSD_DAEMON_SECMEM_H
#define KTLSD_DAEMON_SECMEM_H

#include <stddef.h>

/* len bytes (rounded up to pages), zeroed. Returns 0, -EINVAL (len 0) or -ENOMEM. */
int secmem_alloc(size_t len, void **ret_p);
/* Wipes and unmaps what secmem_alloc(len) returned; NULL ok. */
void secmem_free(void *p, size_t len);

#endif

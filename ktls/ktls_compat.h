/* SPDX-License-Identifier: MIT */
/*
 * Kernel TLS constants that an older libc may lack. The one place libktls (and its tests)
 * define them: the values are the kernel's ABI, fixed since the options appeared (SOL_TLS
 * in 4.13, TCP_ULP in 4.13), so a build against headers that predate them still works.
 */
#ifndef KTLSD_KTLS_COMPAT_H
#define KTLSD_KTLS_COMPAT_H

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#endif

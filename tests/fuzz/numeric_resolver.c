// SPDX-License-Identifier: MIT
/*
 * Fuzzed host names must not reach DNS: every lookup would wait for a resolver timeout
 * (there is no network here) and the fuzzer would crawl. This getaddrinfo() overrides
 * libc's (and ASan's weak interceptor) and forces AI_NUMERICHOST, so only literal
 * addresses resolve, which is all the parsers' own logic needs to be exercised.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	struct addrinfo h = { 0 };

	if (!real)
		real = (int (*)(const char *, const char *, const struct addrinfo *,
				struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
	if (hints)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

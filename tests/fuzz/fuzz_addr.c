// SPDX-License-Identifier: MIT
/*
 * addr_parse(): any string, either role. On success the result must be self-consistent
 * (family matches length, text is the input); on failure a reason is given and the
 * output is untouched.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <netinet/in.h>

#include "addr.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct daemon_addr a;
	const char *why = NULL;
	bool allow_unix;
	char *s;
	int r;

	if (size < 1)
		return 0;
	allow_unix = data[0] & 1;
	/* Exact-size copy: ASan sees any read past the terminator. */
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	memset(&a, 0xa5, sizeof(a));
	r = addr_parse(s, allow_unix, &a, &why);
	if (r == 0) {
		CHECK(!strcmp(a.text, s));
		switch (a.alt[0].ss.ss_family) {
		case AF_INET:
			CHECK(a.alt[0].len == sizeof(struct sockaddr_in));
			break;
		case AF_INET6:
			CHECK(a.alt[0].len == sizeof(struct sockaddr_in6));
			break;
		case AF_UNIX:
			CHECK(allow_unix);
			CHECK(a.alt[0].len > offsetof(struct sockaddr_un, sun_path) &&
			      a.alt[0].len <= sizeof(struct sockaddr_un));
			break;
		default:
			abort();
		}
	} else {
		struct daemon_addr untouched;

		CHECK(r < 0);
		CHECK(why && *why);
		memset(&untouched, 0xa5, sizeof(untouched));
		CHECK(!memcmp(&a, &untouched, sizeof(a)));
	}
	free(s);
	return 0;
}

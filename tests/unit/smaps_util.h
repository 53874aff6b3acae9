/* SPDX-License-Identifier: MIT */
/* Tests: the kernel's view of a mapping, from /proc/self/smaps (header-only). */
#ifndef KTLSD_TESTS_SMAPS_UTIL_H
#define KTLSD_TESTS_SMAPS_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/*
 * Whether the mapping holding addr has VmFlag flag ("dd": MADV_DONTDUMP, "wf":
 * MADV_WIPEONFORK; see proc(5)). False when addr is not mapped at all.
 */
static inline bool smaps_has_flag(const void *addr, const char *flag)
{
	uintptr_t a = (uintptr_t)addr, lo = 0, hi = 0;
	bool in = false, found = false;
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long l, h;

		/* A mapping starts with "lo-hi perms ...": the only lines with a '-' first field. */
		if (sscanf(line, "%lx-%lx ", &l, &h) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			lo = l;
			hi = h;
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char want[8];

			snprintf(want, sizeof(want), " %s", flag);
			for (const char *p = line + 8; (p = strstr(p, want)); p += 3)
				if (p[3] == ' ' || p[3] == '\n')
					found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Whether addr is mapped in this process at all. */
static inline bool smaps_mapped(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			found = a >= lo && a < hi;
	}
	fclose(f);
	return found;
}

#endif

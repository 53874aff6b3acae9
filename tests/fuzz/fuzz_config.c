// SPDX-License-Identifier: MIT
/*
 * config_from_file(): the bytes are the INI file, handed over through a memfd so no
 * file system writes happen per input. Success must give at least one named service
 * with its addresses parsed; failure must leave an error text naming the file.
 * config_free() runs on every success so LeakSanitizer sees parse paths that leak.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run_config cfg;
	char path[64], err[CONFIG_ERR_MAX];
	int fd, r;

	fd = memfd_create("fuzz.ini", 0);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = '\0';
	r = config_from_file(path, &cfg, err, sizeof(err));
	if (r == 0) {
		CHECK(cfg.n_svc > 0 && cfg.svc);
		for (size_t i = 0; i < cfg.n_svc; i++) {
			CHECK(cfg.svc[i].name[0]);
			CHECK(memchr(cfg.svc[i].name, '\0', sizeof(cfg.svc[i].name)));
			CHECK(cfg.svc[i].listen && cfg.svc[i].target);
			CHECK(cfg.svc[i].listen_addr.alt[0].len &&
			      cfg.svc[i].target_addr.alt[0].len);
		}
		config_free(&cfg);
	} else {
		CHECK(r < 0);
		CHECK(!strncmp(err, path, strlen(path)));
	}
	close(fd);
	return 0;
}

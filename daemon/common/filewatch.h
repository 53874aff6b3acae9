/* SPDX-License-Identifier: MIT */
/*
 * Watching the files a daemon reads, for a reload without a signal (ktlsd server's
 * reload.c and ktlsd agent both use it). inotify watches the files' directories, since
 * writers replace a file by renaming a new one beside it (spiffe-helper, cert-manager,
 * Kubernetes' ..data symlink swap); a burst of events is debounced by a timerfd: 200 ms
 * of quiet ends it, no burst delays the reload past 1 s. Whether anything really changed
 * is for the caller's SHA-256 fingerprints (file_sha256) to say.
 */
#ifndef KTLSD_DAEMON_FILEWATCH_H
#define KTLSD_DAEMON_FILEWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct filewatch {
	int ifd;	   /* inotify; -1 where unavailable (SIGHUP still reloads) */
	int tfd;	   /* the debounce timer; -1 where unavailable */
	uint64_t first_ns; /* the first change not yet reloaded; 0: none */
};

/* Creates the timer; no watch yet (filewatch_begin). Never fails: -1 fds mean "none". */
void filewatch_init(struct filewatch *w);
void filewatch_free(struct filewatch *w);

/*
 * A new set of watches: a new inotify instance, which filewatch_add fills; filewatch_end
 * then closes the old one (returned here), so no change falls between the two. Returns
 * 0, or -errno when inotify is unavailable (w->ifd is then -1).
 */
int filewatch_begin(struct filewatch *w, int *ret_old);
void filewatch_end(struct filewatch *w, int old);

/*
 * Watches the directory of path. The same directory twice is one watch. Returns 0, or
 * -errno with the directory in dir (for the caller's warning).
 */
int filewatch_add(struct filewatch *w, const char *path, char *dir, size_t dirlen);

/* w->ifd readable: takes the events and (re)arms the debounce. */
void filewatch_on_events(struct filewatch *w);

/* w->tfd readable: true when the debounce ran out (reload now). */
bool filewatch_on_timer(struct filewatch *w);

/* path opened for reading if it is a regular file (a FIFO, device or directory put in its
 * place is refused without blocking, errno EINVAL); NULL otherwise, errno set. */
FILE *file_open_regular(const char *path);

/* SHA-256 of a regular file's content; false if it cannot be read (or is no regular file:
 * file_open_regular). The buffer is wiped (keys). */
bool file_sha256(const char *path, unsigned char sha[32]);

#endif

// SPDX-License-Identifier: MIT
/* The files' watcher and their fingerprints (filewatch.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "filewatch.h"

/* A quiet spell this long ends a burst of writes; no burst delays a reload past the max. */
#define DEBOUNCE_QUIET_MS 200
#define DEBOUNCE_MAX_MS	  1000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void filewatch_init(struct filewatch *w)
{
	w->ifd = -1;
	w->first_ns = 0;
	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

void filewatch_free(struct filewatch *w)
{
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->tfd >= 0)
		close(w->tfd);
	w->ifd = w->tfd = -1;
}

int filewatch_begin(struct filewatch *w, int *ret_old)
{
	*ret_old = w->ifd;
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	return w->ifd < 0 ? -errno : 0;
}

void filewatch_end(struct filewatch *w, int old)
{
	if (old < 0)
		return;
	/* What the old instance saw last still counts. */
	int cur = w->ifd;

	w->ifd = old;
	filewatch_on_events(w);
	w->ifd = cur;
	close(old);
}

/*
 * The directory, not the file: writers replace files by rename (a watch on the file would
 * stay on the old inode) and Kubernetes swaps a ..data symlink beside them.
 */
int filewatch_add(struct filewatch *w, const char *path, char *dir, size_t dirlen)
{
	const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE;
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, dirlen, ".");
	else
		snprintf(dir, dirlen, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	if (w->ifd < 0)
		return -EBADF;
	/* The same directory twice gets the same watch back: no bookkeeping needed. */
	return inotify_add_watch(w->ifd, dir, mask) >= 0 ? 0 : -errno;
}

static void debounce_arm(struct filewatch *w)
{
	uint64_t now = now_ns(), due = now + DEBOUNCE_QUIET_MS * 1000000ull;
	struct itimerspec its = { .it_interval = { 0, 0 } };

	if (!w->first_ns)
		w->first_ns = now;
	if (due > w->first_ns + DEBOUNCE_MAX_MS * 1000000ull)
		due = w->first_ns + DEBOUNCE_MAX_MS * 1000000ull;
	its.it_value.tv_sec = (time_t)(due / 1000000000u);
	its.it_value.tv_nsec = (long)(due % 1000000000u);
	timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Whatever the events say, the fingerprints decide: only their arrival matters here. */
void filewatch_on_events(struct filewatch *w)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;

	while (w->ifd >= 0 && read(w->ifd, buf, sizeof(buf)) > 0)
		any = true;
	if (any && w->tfd >= 0)
		debounce_arm(w);
}

bool filewatch_on_timer(struct filewatch *w)
{
	uint64_t n;

	if (w->tfd < 0 || read(w->tfd, &n, sizeof(n)) != sizeof(n))
		return false;
	w->first_ns = 0;
	return true;
}

FILE *file_open_regular(const char *path)
{
	struct stat st;
	FILE *f;
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	/* Regular files never block; the flag only matters for what was refused above. */
	fcntl(fd, F_SETFL, 0);
	f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

bool file_sha256(const char *path, unsigned char sha[32])
{
	unsigned char buf[16384];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	FILE *f = file_open_regular(path);
	bool ok = md && f && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	size_t n;

	while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = EVP_DigestUpdate(md, buf, n) == 1;
	ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, sha, NULL) == 1;
	if (f)
		fclose(f);
	EVP_MD_CTX_free(md);
	OPENSSL_cleanse(buf, sizeof(buf)); /* key files pass through here */
	return ok;
}

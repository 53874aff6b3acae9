/* SPDX-License-Identifier: MIT */
/*
 * Hitless reload: on SIGHUP, or when a file a service reads changes (inotify on the
 * directories, since writers replace files by rename), every service is built again from
 * its files (and, with --config, from the file re-read); only if every one builds do the
 * workers switch to them (worker_swap_services), and established connections are judged
 * by the new trust store, CRLs and rules. A failure leaves every old service in use. All
 * of it runs on the main thread, off the data path; a storm of changes coalesces in the
 * debounce and in the kernel's inotify queue, so work and memory stay bounded.
 */
#ifndef KTLSD_DAEMON_RELOAD_H
#define KTLSD_DAEMON_RELOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "filewatch.h"
#include "worker.h"

struct reload_fp;

struct reloader {
	struct runtime *rt;
	struct worker *w;
	unsigned n_workers;
	const char *cfgpath;	   /* --config FILE, or NULL (command line) */
	unsigned char cfg_sha[32]; /* of the config file in use */
	struct reload_fp *fp;	   /* [rt->n_svc]: what each service's files held when built */
	struct filewatch fw;	   /* the files' directories and the debounce */
	unsigned reloads;	   /* successful ones, for the log */
	bool failed;		   /* the last reload failed */
};

/* Fingerprints the services in use and starts watching their files. 0 or -errno. */
int reloader_init(struct reloader *r, struct runtime *rt, struct worker *w, unsigned n_workers,
		  const char *cfgpath);
void reloader_free(struct reloader *r);

/*
 * One reload (why: "SIGHUP", "file change"), logged as one event=reload line with
 * result=ok and what changed, or result=failed and the exact reason. A file change that
 * changed no file's content does nothing. Returns 0, or -errno on failure.
 */
int runtime_reload(struct reloader *r, const char *why);

/*
 * The main thread's loop once the workers run: SIGHUP and file changes reload, SIGTERM
 * or SIGINT end it. Returns that signal. set: the blocked signals to take.
 */
int reloader_wait(struct reloader *r, const sigset_t *set);

#endif

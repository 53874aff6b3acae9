/* SPDX-License-Identifier: MIT */
/* The user and capability steps of the sandbox (privdrop.c). */
#ifndef KTLSD_DAEMON_PRIVDROP_H
#define KTLSD_DAEMON_PRIVDROP_H

#include <netinet/in.h>
#include <sys/types.h>

#include "sandbox.h"

/* user (a name, or a numeric uid) to its uid and primary gid. Returns 0 or -EINVAL. */
int priv_lookup(const char *user, uid_t *ret_uid, gid_t *ret_gid, char *err, size_t errlen);

/*
 * Becomes cfg->user (if set) and keeps only sandbox_caps_needed's capabilities, in the
 * effective and permitted sets; inheritable, ambient and (with CAP_SETPCAP) bounding
 * sets end empty. Returns 0 or -EPERM with err set.
 */
int priv_drop(const struct run_config *cfg, char *err, size_t errlen);

/* priv_drop with an explicit user (NULL: stay) and capability list (ktlsd agent). */
int priv_drop_caps(const char *user, const int *caps, int n, char *err, size_t errlen);

/* caps[0..n) as text: "none" or names. */
void priv_caps_list_text(const int *caps, int n, char *buf, size_t len);

/* The capabilities kept after start, as text: "none" or names (cap_net_bind_service,...). */
void priv_caps_text(const struct run_config *cfg, char *buf, size_t len);

#endif

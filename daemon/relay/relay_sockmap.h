/* SPDX-License-Identifier: MIT */
/*
 * The sockmap relay (bpf/relay.bpf.c): after the kTLS install the kernel forwards the
 * plaintext side's bytes into the kTLS socket by itself (a stream verdict redirecting
 * each skb), so ktlsd is not woken per chunk in that direction. The other direction
 * (decrypted records toward the plaintext side) stays spliced: the kernels that allow a
 * kTLS socket in a sockmap hand the verdict whole records it cannot trim (docs/bpf.md).
 */
#ifndef KTLSD_DAEMON_RELAY_SOCKMAP_H
#define KTLSD_DAEMON_RELAY_SOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;

/* The loaded programs and maps, shared by every worker and service. */
struct sockmap;

/* Loads relay.bpf.o and attaches its programs to their maps. 0 or -errno. */
int sockmap_open(struct sockmap **ret_sm);
/* NULL is fine. Connections still in the maps leave them when their sockets close. */
void sockmap_close(struct sockmap *sm);
/* Operator words for a sockmap_open/probe error (capabilities, kernel). */
const char *sockmap_strerror(int err);
/* ... and for a per-connection one (sockmap_conn_pre / _link). */
const char *sockmap_conn_strerror(int err);

/*
 * Tries it on loopback sockets: may a socket in the map take kTLS, and does a byte the
 * plaintext side receives come out of the kTLS socket encrypted? *ret_p2t: that
 * direction works in the kernel; *ret_t2p is always false for now (why in *ret_why).
 * 0, or -errno when the programs cannot even be loaded (*ret_why says why).
 */
int sockmap_probe(bool *ret_p2t, bool *ret_t2p, const char **ret_why);

/* Before the kTLS install: c's TLS socket joins the target map (a later join is refused
 * by the kernel once TCP_ULP is set). 0 or -errno; c untouched on failure. */
int sockmap_conn_pre(struct sockmap *sm, struct conn *c);
/* After it: bytes arriving on c's plaintext socket go to its TLS socket. 0 or -errno
 * (the caller splices instead: sockmap_conn_unlink undoes what was done). */
int sockmap_conn_link(struct sockmap *sm, struct conn *c);
/*
 * The plaintext side ended: has the TLS layer taken every byte forwarded so far (so a
 * close_notify sent now comes after them)? *ret_fwd: bytes forwarded.
 */
bool sockmap_conn_drained(struct sockmap *sm, const struct conn *c, uint64_t *ret_fwd);
/* Takes c's sockets out of the maps (their entries; the sockets stay open). */
void sockmap_conn_unlink(struct sockmap *sm, struct conn *c);

#endif

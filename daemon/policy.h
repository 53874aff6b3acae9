/* SPDX-License-Identifier: MIT */
/*
 * Peer identity policy: which verified certificates a service accepts. Pure logic, no
 * OpenSSL: the handshake code extracts a peer_identity from the certificate and asks here.
 */
#ifndef KTLSD_DAEMON_POLICY_H
#define KTLSD_DAEMON_POLICY_H

#include <stdbool.h>
#include <stddef.h>

enum policy_kind { POLICY_URI, POLICY_DNS, POLICY_CN, POLICY_OU, POLICY_KIND_MAX };

/* Names point into the certificate; length-delimited because ASN.1 strings are. */
struct peer_name {
	const char *s;
	size_t len;
};

#define PEER_MAX_NAMES 16

struct peer_identity {
	struct peer_name uri[PEER_MAX_NAMES];
	size_t n_uri;
	struct peer_name dns[PEER_MAX_NAMES];
	size_t n_dns;
	struct peer_name cn;
	struct peer_name ou[PEER_MAX_NAMES];
	size_t n_ou;
};

struct policy;

int policy_new(struct policy **ret_policy);
void policy_free(struct policy *p);

/*
 * Adds an allow rule. URI patterns match exactly, or "spiffe://trust.domain/" + "*" for every
 * ID in a trust domain; DNS names match case-insensitively (a leading "*." matches one
 * label); CN and OU match exactly. Returns -EINVAL for a malformed pattern.
 */
int policy_add(struct policy *p, enum policy_kind kind, const char *pattern);
void policy_set_allow_all(struct policy *p);
bool policy_is_empty(const struct policy *p);
bool policy_allows(const struct policy *p, const struct peer_identity *id);

/* "uri" / "dns" / "cn" / "ou" */
const char *policy_kind_name(enum policy_kind kind);

#endif

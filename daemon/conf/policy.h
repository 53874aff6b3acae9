/* SPDX-License-Identifier: MIT */
/*
 * Peer identity policy: which verified certificates a service accepts. Pure logic, no
 * OpenSSL: the handshake code extracts a peer_identity from the certificate and asks here.
 * It lives in conf/, below tls/: the rules are what the operator typed (allow-uri = ...),
 * config.c builds them while it parses and struct service_config holds them; tls/ and the
 * loop only ask.
 */
#ifndef KTLSD_DAEMON_POLICY_H
#define KTLSD_DAEMON_POLICY_H

#include <stdbool.h>
#include <stddef.h>

enum policy_kind { POLICY_URI, POLICY_DNS, POLICY_CN, POLICY_OU, POLICY_IP, POLICY_KIND_MAX };

/* Names point into the certificate; length-delimited because ASN.1 strings are. */
struct peer_name {
	const char *s;
	size_t len;
};

#define PEER_MAX_NAMES 16

/*
 * The names of one certificate. URI SANs not stored (past PEER_MAX_NAMES, or with an
 * embedded NUL, so not comparable) are still counted: the SPIFFE rule needs the true count.
 */
struct peer_identity {
	struct peer_name uri[PEER_MAX_NAMES];
	size_t n_uri;
	size_t n_uri_skipped;
	struct peer_name dns[PEER_MAX_NAMES];
	size_t n_dns;
	struct peer_name cn;
	struct peer_name ou[PEER_MAX_NAMES];
	size_t n_ou;
	struct peer_name ip[PEER_MAX_NAMES]; /* iPAddress SANs: 4 or 16 bytes, binary */
	size_t n_ip;
};

/* The one name a decision rests on: what ktlsd reports as the peer's identity. */
struct policy_match {
	enum policy_kind kind;
	struct peer_name name;
};

enum policy_verdict {
	POLICY_ALLOW,
	POLICY_DENY_NO_MATCH,	  /* no rule matched any name */
	POLICY_DENY_SVID_URIS,	  /* spiffe:// rule in force, peer has != 1 URI SAN */
	POLICY_DENY_SVID_INVALID, /* spiffe:// rule in force, the URI SAN is no SPIFFE ID */
};

struct policy;

int policy_new(struct policy **ret_policy);
void policy_free(struct policy *p);

/*
 * Adds an allow rule. URI patterns match exactly, or "spiffe://trust.domain/" + "*" for every
 * ID in a trust domain; a spiffe:// pattern must be a valid SPIFFE ID (or that wildcard), any
 * other URI pattern a scheme and no blank or control byte. DNS names match case-insensitively
 * (a leading "*." matches one label); CN and OU match exactly; IP patterns are an IPv4 or
 * IPv6 address in text form and match an iPAddress SAN. Returns -EINVAL for a malformed
 * pattern.
 */
int policy_add(struct policy *p, enum policy_kind kind, const char *pattern);
void policy_set_allow_all(struct policy *p);
/*
 * Verifying a server (RFC 6125 6.4.3): a DNS SAN of the peer may be a wildcard "*.rest",
 * matching a DNS rule that is one label followed by "rest". Off for client certificates.
 */
void policy_set_peer_wildcards(struct policy *p);
bool policy_is_empty(const struct policy *p);

/*
 * The decision on a certificate whose chain verified. Where a spiffe:// rule is in force
 * a peer that carries URI SANs must carry exactly one and it must be a valid SPIFFE ID (the
 * X.509-SVID rule), or it is refused whatever else it carries. On POLICY_ALLOW *ret_match is the name
 * that matched (pointing into id): that, and nothing else, is the peer's identity. With
 * allow-all no rule matched: the identity is the only URI SAN if it is a valid SPIFFE ID,
 * else the CN, else the only DNS SAN; ret_match->name.len is 0 where there is none.
 * ret_match is untouched otherwise. A peer with no URI SAN at all can still be admitted by
 * a DNS/CN/OU/IP rule beside a spiffe:// rule.
 */
enum policy_verdict policy_check(const struct policy *p, const struct peer_identity *id,
				 struct policy_match *ret_match);
bool policy_allows(const struct policy *p, const struct peer_identity *id);
/* Operator-facing text for a denial, e.g. "2 URI SANs: an X.509-SVID carries exactly one". */
const char *policy_verdict_str(enum policy_verdict v);

/* A SPIFFE ID per the SPIFFE ID specification (lower-case scheme and trust domain, segments
 * of [A-Za-z0-9._-] that are not "." or "..", no percent-encoding, port, query, fragment). */
bool policy_spiffe_id_valid(const char *s, size_t len);

/* "uri" / "dns" / "cn" / "ou" / "ip" */
const char *policy_kind_name(enum policy_kind kind);

#endif

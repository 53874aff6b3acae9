// SPDX-License-Identifier: MIT
/*
 * The user and the capabilities (libcap-ng). ktlsd starts as root (or with ambient
 * capabilities from systemd) only to bind privileged ports and read root-only keys; once
 * both are done it becomes --user and keeps only the capabilities sandbox_caps_needed
 * names, with the bounding set cleared so nothing can be regained.
 */
#include <cap-ng.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "privdrop.h"

/* net.ipv4.ip_unprivileged_port_start (it also governs IPv6); 1024 where unreadable. */
static unsigned unprivileged_port_start(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	unsigned v = 1024;

	if (f) {
		if (fscanf(f, "%u", &v) != 1)
			v = 1024;
		fclose(f);
	}
	return v;
}

static unsigned addr_port(const struct daemon_addr *a)
{
	const struct sockaddr_storage *ss = &a->alt[0].ss;

	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

int sandbox_caps_needed(const struct run_config *cfg, int *caps)
{
	unsigned start = unprivileged_port_start();
	int n = 0;

	for (size_t i = 0; i < cfg->n_svc; i++) {
		unsigned port = addr_port(&cfg->svc[i].listen_addr);

		if (port && port < start) {
			caps[n++] = CAP_NET_BIND_SERVICE;
			break;
		}
	}
	/* The admin endpoint's /connections asks sock_diag for each socket's ULP (kTLS)
	 * state, which the kernel shows only to CAP_NET_ADMIN. */
	if (cfg->admin)
		caps[n++] = CAP_NET_ADMIN;
	/* BPF programs (bpf/) will add CAP_BPF and CAP_NET_ADMIN here where configured. */
	return n;
}

int priv_lookup(const char *user, uid_t *ret_uid, gid_t *ret_gid, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096], *end;
	unsigned long n;
	int rc = getpwnam_r(user, &pw, buf, sizeof(buf), &res);

	if (!rc && res) {
		*ret_uid = pw.pw_uid;
		*ret_gid = pw.pw_gid;
		return 0;
	}
	/* A bare uid (a container without the name in /etc/passwd): its group is the same. */
	errno = 0;
	n = strtoul(user, &end, 10);
	if (!*end && !errno && n > 0 && n < 0xFFFFFFFFul) {
		*ret_uid = (uid_t)n;
		*ret_gid = (gid_t)n;
		return 0;
	}
	snprintf(err, errlen, "user '%s': %s", user, rc ? strerror(rc) : "no such user");
	return -EINVAL;
}

/* Drops to uid/gid (with the user's supplementary groups) keeping caps[0..n). */
static int change_user(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	int rc;

	if (getuid() == uid && geteuid() == uid && getgid() == gid) {
		/* Already that user (systemd's User=): only the capabilities change. */
		rc = capng_apply(CAPNG_SELECT_CAPS);
	} else {
		rc = capng_change_id((int)uid, (int)gid,
				     CAPNG_INIT_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
	}
	if (rc) {
		snprintf(err, errlen,
			 "cannot become user '%s' (uid %u, gid %u): libcap-ng error %d (%s)", user,
			 (unsigned)uid, (unsigned)gid, rc,
			 geteuid() ? "switching users needs root" : "setuid/setgid failed");
		return -EPERM;
	}
	return 0;
}

int priv_drop_caps(const char *user, const int *caps, int n, char *err, size_t errlen)
{
	bool setpcap, ipc_lock;
	uid_t uid;
	gid_t gid;
	int rc;

	capng_get_caps_process();
	setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
	ipc_lock = capng_have_capability(CAPNG_EFFECTIVE, CAP_IPC_LOCK);
	capng_clear(CAPNG_SELECT_BOTH);
	for (int i = 0; i < n; i++)
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, (unsigned)caps[i]);
	/* Until the rings exist (sandbox_rings_done). */
	if (ipc_lock)
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_IPC_LOCK);
	if (user) {
		rc = priv_lookup(user, &uid, &gid, err, errlen);
		return rc ? rc : change_user(user, uid, gid, err, errlen);
	}
	/* No user to become: lower this one's capabilities (the bounding set needs SETPCAP). */
	rc = capng_apply(setpcap ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS);
	if (rc) {
		snprintf(err, errlen, "cannot drop capabilities: libcap-ng error %d", rc);
		return -EPERM;
	}
	return 0;
}

int priv_drop(const struct run_config *cfg, char *err, size_t errlen)
{
	int caps[SANDBOX_CAPS_MAX], n = sandbox_caps_needed(cfg, caps);

	return priv_drop_caps(cfg->user, caps, n, err, errlen);
}

/* Raw capget/capset: libcap-ng reads /proc, which Landlock and seccomp no longer allow. */
void sandbox_rings_done(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	uint32_t bit = 1u << (CAP_IPC_LOCK % 32);
	int i = CAP_IPC_LOCK / 32;

	if (syscall(SYS_capget, &h, d) || !(d[i].permitted & bit))
		return;
	d[i].effective &= ~bit;
	d[i].permitted &= ~bit;
	d[i].inheritable &= ~bit;
	if (syscall(SYS_capset, &h, d)) {
		/* Lowering one's own capabilities cannot fail; nothing to do if it did. */
	}
}

void priv_caps_list_text(const int *caps, int n, char *buf, size_t len)
{
	size_t off = 0;

	snprintf(buf, len, "none");
	for (int i = 0; i < n && off < len; i++) {
		const char *name = capng_capability_to_name((unsigned)caps[i]);

		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "",
					name ? name : "?");
	}
}

void priv_caps_text(const struct run_config *cfg, char *buf, size_t len)
{
	int caps[SANDBOX_CAPS_MAX], n = sandbox_caps_needed(cfg, caps);

	priv_caps_list_text(caps, n, buf, len);
}

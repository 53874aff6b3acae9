// SPDX-License-Identifier: MIT
/*
 * sockmap_facts: what a kernel allows when a kTLS socket is in a BPF SOCKHASH with
 * bpf/relay.bpf.c's stream parser + verdict. Prints one "FACT name: ..." line per question
 * (docs/bpf.md collects them for 6.1, 6.12 and 7.x) and exits 0; the facts ktlsd's
 * sockmap relay depends on are also checked and a wrong one exits 1. Needs root and a
 * kernel with kTLS (exit 77 otherwise).
 *
 * No TLS handshake: both ends of a loopback pair get kTLS with the same fixed keys (as
 * the kernel's tools/testing/selftests/net/tls.c does). A is the remote peer, B ktlsd's
 * kTLS socket, C ktlsd's backend socket, D the backend; B and C are in the map.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ktlsd_bpf.h"
#include "relay.skel.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TLS_RX_EXPECT_NO_PAD
#define TLS_RX_EXPECT_NO_PAD 4
#endif

static struct relay_bpf *skel;
static int failures;

#define FACT(name, ...)                    \
	do {                               \
		printf("FACT %s: ", name); \
		printf(__VA_ARGS__);       \
		printf("\n");              \
		fflush(stdout);            \
	} while (0)
#define MUST(cond, ...)                               \
	do {                                          \
		if (!(cond)) {                        \
			printf("FAIL: " __VA_ARGS__); \
			printf("\n");                 \
			failures++;                   \
		}                                     \
	} while (0)

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) || listen(l, 4) ||
	    getsockname(l, (void *)&sa, &sl)) {
		perror("listener");
		exit(2);
	}
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (void *)&sa, sizeof(sa))) {
		perror("connect");
		exit(2);
	}
	*b = accept(l, NULL, NULL);
	close(l);
}

static int ulp(int fd)
{
	return setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) ? -errno : 0;
}

static int key(int fd, int dir, unsigned char k)
{
	struct tls12_crypto_info_aes_gcm_128 ci = { 0 };

	ci.info.version = TLS_1_3_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	memset(ci.key, k, sizeof(ci.key));
	memset(ci.iv, k ^ 0x5a, sizeof(ci.iv));
	memset(ci.salt, k ^ 0xa5, sizeof(ci.salt));
	return setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) ? -errno : 0;
}

static uint64_t cookie(int fd)
{
	uint64_t c = 0;
	socklen_t l = sizeof(c);

	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l);
	return c;
}

static struct ktlsd_relay_tuple tuple(int fd)
{
	struct ktlsd_relay_tuple t = { 0 };
	struct sockaddr_in l, r;
	socklen_t ll = sizeof(l), rl = sizeof(r);

	getsockname(fd, (void *)&l, &ll);
	getpeername(fd, (void *)&r, &rl);
	t.family = AF_INET;
	t.lport = ntohs(l.sin_port);
	t.rport = ntohs(r.sin_port);
	t.rip[0] = r.sin_addr.s_addr;
	t.lip[0] = l.sin_addr.s_addr;
	return t;
}

static uint64_t sent_of(int fd)
{
	struct ktlsd_relay_tuple k = tuple(fd);
	uint64_t v = 0;

	bpf_map_lookup_elem(bpf_map__fd(skel->maps.sent), &k, &v);
	return v;
}

static uint64_t redirected_of(int fd)
{
	uint64_t k = cookie(fd);
	struct ktlsd_relay_peer p = { 0 };

	bpf_map_lookup_elem(bpf_map__fd(skel->maps.peer), &k, &p);
	return p.redirected;
}

static int target_add(int fd)
{
	uint64_t k = cookie(fd), v = (uint64_t)fd, zero = 0;
	struct ktlsd_relay_tuple t = tuple(fd);

	bpf_map_update_elem(bpf_map__fd(skel->maps.sent), &t, &zero, BPF_ANY);

	return bpf_map_update_elem(bpf_map__fd(skel->maps.targets), &k, &v, BPF_ANY) ? -errno : 0;
}

static int map_add(int fd)
{
	uint64_t k = cookie(fd), v = (uint64_t)fd;
	struct ktlsd_relay_peer p = { 0 }; /* no peer yet: counts what the verdict passes */

	bpf_map_update_elem(bpf_map__fd(skel->maps.peer), &k, &p, BPF_ANY);
	return bpf_map_update_elem(bpf_map__fd(skel->maps.socks), &k, &v, BPF_ANY) ? -errno : 0;
}

static void link_to(int from, int to, bool tls)
{
	uint64_t k = cookie(from);
	struct ktlsd_relay_peer p = { .peer_cookie = cookie(to) };

	if (tls) {
		p.tls_head = 5;
		p.tls_tag = 16;
		p.tls13 = 1;
	}

	bpf_map_update_elem(bpf_map__fd(skel->maps.peer), &k, &p, BPF_ANY);
}

static int trim_err(int fd)
{
	uint64_t k = cookie(fd);
	struct ktlsd_relay_peer p = { 0 };

	bpf_map_lookup_elem(bpf_map__fd(skel->maps.peer), &k, &p);
	return p.trim_err;
}

static uint64_t passed(int fd)
{
	uint64_t k = cookie(fd);
	struct ktlsd_relay_peer p = { 0 };

	bpf_map_lookup_elem(bpf_map__fd(skel->maps.peer), &k, &p);
	return p.passed;
}

static ssize_t send_rec(int fd, unsigned char type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(1)] = { 0 };
	struct iovec iov = { (void *)buf, len };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = type;
	return sendmsg(fd, &m, 0) < 0 ? -errno : (ssize_t)len;
}

/* recvmsg with a cmsg buffer; *type = record type (0 if none came). -errno on error. */
static ssize_t recv_rec(int fd, void *buf, size_t len, int *type, int flags)
{
	char cbuf[CMSG_SPACE(1)] = { 0 };
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(fd, &m, flags);

	*type = 0;
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			*type = *CMSG_DATA(cm);
	return n;
}

/* Reads what arrives on fd within ms (non-blocking, polled), up to max bytes. */
static size_t drain(int fd, size_t max, int ms, unsigned char *sum)
{
	size_t got = 0;
	char buf[65536];

	while (got < max) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (poll(&p, 1, ms) <= 0)
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			*sum = (unsigned char)(*sum + (unsigned char)buf[i]);
		got += (size_t)n;
	}
	return got;
}

static void send_all(int fd, size_t len, unsigned char *sum)
{
	char buf[16384];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7 + 3);
	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		ssize_t w = send(fd, buf, n, 0);

		if (w <= 0) {
			perror("send");
			return;
		}
		for (ssize_t i = 0; i < w; i++)
			*sum = (unsigned char)(*sum + (unsigned char)buf[i]);
		len -= (size_t)w;
	}
}

struct quad {
	int a, b, c, d;
};

/* A<->B kTLS both ways (B in the map first), C<->D plain (C in the map), linked B<->C. */
static bool trim = true;

/*
 * link_b: B is a source (its decrypted records go through the verdict to C); otherwise B
 * is only a target (in the program-less map). C is always both.
 */
static int setup(struct quad *q, bool link_b, bool link_c)
{
	int err;

	tcp_pair(&q->a, &q->b);
	tcp_pair(&q->c, &q->d);
	if ((link_b && (err = map_add(q->b))) || (err = target_add(q->b)) ||
	    (err = map_add(q->c)) || (err = target_add(q->c)))
		return err;
	if (ulp(q->a) || key(q->a, TLS_TX, 0x11) || key(q->a, TLS_RX, 0x22))
		return -errno;
	if ((err = ulp(q->b)) || (err = key(q->b, TLS_TX, 0x22)) || (err = key(q->b, TLS_RX, 0x11)))
		return err;
	if (link_b)
		link_to(q->b, q->c, trim);
	if (link_c)
		link_to(q->c, q->b, false);
	return 0;
}

static void teardown(struct quad *q)
{
	close(q->a);
	close(q->b);
	close(q->c);
	close(q->d);
}

static bool fact_order(void)
{
	int a, b, err;

	tcp_pair(&a, &b);
	ulp(b);
	err = map_add(b);
	FACT("insert_after_ulp", "SOCKHASH update on a socket with TCP_ULP tls: %s",
	     err ? strerror(-err) : "ok");
	close(a);
	close(b);

	tcp_pair(&a, &b);
	err = map_add(b);
	int e1 = ulp(b), e2 = key(b, TLS_TX, 1), e3 = key(b, TLS_RX, 2);

	FACT("insert_then_ulp", "map %s, TCP_ULP %s, TLS_TX %s, TLS_RX %s",
	     err ? strerror(-err) : "ok", e1 ? strerror(-e1) : "ok", e2 ? strerror(-e2) : "ok",
	     e3 ? strerror(-e3) : "ok");
	bool ok = !err && !e1 && !e2 && !e3;

	close(a);
	close(b);

	/* the same in a SOCKHASH that has no programs attached */
	int bare = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "bare", 8, 8, 4, NULL);
	uint64_t k = 1, v;

	tcp_pair(&a, &b);
	v = (uint64_t)b;
	err = bpf_map_update_elem(bare, &k, &v, BPF_ANY) ? -errno : 0;
	e1 = ulp(b);
	e2 = key(b, TLS_TX, 1);
	e3 = key(b, TLS_RX, 2);
	FACT("insert_then_ulp_noprogs", "map %s, TCP_ULP %s, TLS_TX %s, TLS_RX %s",
	     err ? strerror(-err) : "ok", e1 ? strerror(-e1) : "ok", e2 ? strerror(-e2) : "ok",
	     e3 ? strerror(-e3) : "ok");
	close(a);
	close(b);
	close(bare);
	return ok;
}

static void fact_rx(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0;
	int err = setup(&q, true, true), type;
	char buf[64];

	if (err) {
		FACT("rx_redirect", "setup failed: %s", strerror(-err));
		failures++;
		return;
	}
	send_all(q.a, 256 << 10, &s_in);
	size_t idle = drain(q.d, 256 << 10, 500, &s_out);

	FACT("rx_needs_reader", "with nobody reading B, D got %zu of %u bytes in 500 ms", idle,
	     256u << 10);
	size_t got = idle;
	ssize_t n = 0;
	int calls = 0;

	while (got < (256u << 10) && calls < 200) {
		n = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
		calls++;
		got += drain(q.d, (256u << 10) - got, 50, &s_out);
	}
	FACT("rx_verdict",
	     "B as a source, verdict trimming the records: after %d non-blocking recvmsg on B "
	     "(last: %zd %s, trim_err %d): D got "
	     "%zu bytes%s",
	     calls, n, n < 0 ? strerror((int)-n) : "", trim_err(q.b), got,
	     got == (256u << 10) && s_in == s_out ? ", byte-exact" : ", NOT exact");
	teardown(&q);
}

/* RX by splice while B sits in the program-less map (the relay's RX path on 6.x). */
static void fact_rx_splice(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0;
	int p[2], err = setup(&q, false, true);

	if (err || pipe(p)) {
		failures++;
		return;
	}
	send_all(q.a, 256 << 10, &s_in);
	size_t got = 0;

	for (int i = 0; i < 400 && got < (256u << 10); i++) {
		ssize_t n = splice(q.b, NULL, p[1], NULL, 65536, SPLICE_F_NONBLOCK);

		if (n > 0)
			splice(p[0], NULL, q.c, NULL, (size_t)n, 0);
		got += drain(q.d, (256u << 10) - got, 5, &s_out);
	}
	FACT("rx_splice_in_map",
	     "B in the target map only: splice B -> pipe -> C, D got %zu of %u "
	     "bytes%s",
	     got, 256u << 10, got == (256u << 10) && s_in == s_out ? ", byte-exact" : "");
	MUST(got == (256u << 10) && s_in == s_out, "splice from a kTLS socket in the target map");
	close(p[0]);
	close(p[1]);
	teardown(&q);
}

/* D writes 1 MiB then FIN: how much has A got when ktlsd sees the EOF on C? */
static void fact_eof_flush(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0;
	int err = setup(&q, false, true);

	if (err) {
		failures++;
		return;
	}
	int sz = 16384;

	setsockopt(q.a, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)); /* a slow client */
	send_all(q.d, 1 << 20, &s_in);
	shutdown(q.d, SHUT_WR);
	struct pollfd pc = { q.c, POLLRDHUP, 0 };

	poll(&pc, 1, 2000);
	unsigned char tmp = 0;
	uint64_t r0 = redirected_of(q.c), s0 = sent_of(q.b);
	size_t early = drain(q.a, 1 << 20, 1, &tmp);
	size_t got = early;
	int polls = 0;

	/* what the relay does at a backend EOF: wait until B's TLS took all C forwarded */
	while (sent_of(q.b) < redirected_of(q.c) && polls++ < 1000)
		got += drain(q.a, (1u << 20) - got, 2, &tmp);
	unsigned char alert[2] = { 1, 0 };
	ssize_t cn = send_rec(q.b, 21, alert, 2);
	uint64_t r1 = redirected_of(q.c), s1 = sent_of(q.b);
	int type = 0;
	char rb[64];

	got += drain(q.a, (1u << 20) - got, 1000, &tmp);
	ssize_t an = recv_rec(q.a, rb, sizeof(rb), &type, MSG_DONTWAIT);

	FACT("eof_flush",
	     "EOF on C seen (revents 0x%x) with A at %zu of %u bytes, forwarded %llu, TLS took "
	     "%llu: the queue toward B outlives the source's FIN. Waiting for sent >= forwarded "
	     "(%d polls), then close_notify (%zd): A got %zu bytes, then record type %d",
	     pc.revents, early, 1u << 20, (unsigned long long)r0, (unsigned long long)s0, polls, cn,
	     got, type);
	MUST(got == (1u << 20) && type == 21 && an == 2 && s1 == r1 + 2,
	     "the sent counter says when the forwarded bytes are out");
	(void)s_out;
	teardown(&q);
}

static void hex(char *out, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* What bytes reach the backend for one 100-byte data record of 'P's. */
static void fact_rx_layout(void)
{
	struct quad q;
	unsigned char buf[512], msg[100];
	char h1[64], h2[64];
	int type, err = setup(&q, true, true);

	if (err) {
		failures++;
		return;
	}
	memset(msg, 'P', sizeof(msg));
	send(q.a, msg, sizeof(msg), 0);
	usleep(100000);
	recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
	usleep(100000);
	ssize_t n = recv(q.d, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 24) {
		FACT("rx_layout", "D got %zd bytes", n);
		teardown(&q);
		return;
	}
	hex(h1, buf, 8);
	hex(h2, buf + n - 24, 24);
	FACT("rx_layout", "100-byte record: D got %zd bytes, head %s, tail %s", n, h1, h2);
	teardown(&q);
}

static void fact_tx(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0;
	int err = setup(&q, false, true);

	if (err) {
		FACT("tx_redirect", "setup failed: %s", strerror(-err));
		failures++;
		return;
	}
	send_all(q.d, 256 << 10, &s_in);
	size_t got = drain(q.a, 256 << 10, 2000, &s_out);

	FACT("tx_redirect", "D -> C redirected to B's egress, A decrypted %zu of %u bytes%s", got,
	     256u << 10, got == (256u << 10) && s_in == s_out ? ", byte-exact" : ", NOT exact");
	MUST(got == (256u << 10) && s_in == s_out, "backend -> kTLS TX redirect");
	teardown(&q);
}

static void fact_control(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0, alert[2] = { 1, 0 };
	char buf[64];
	int type = -1, err = setup(&q, true, true);

	if (err) {
		failures++;
		return;
	}
	send_all(q.a, 1000, &s_in);
	send_rec(q.a, 21, alert, 2);
	usleep(200000);
	ssize_t n, first;
	int first_type, calls = 0;

	first = recv_rec(q.b, buf, sizeof(buf), &first_type, MSG_DONTWAIT);
	n = first;
	while (n == 0 && type != 0 && calls++ < 5) /* 0 + a type: records went to the verdict */
		n = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
	size_t got = drain(q.d, 1000, 200, &s_out);

	FACT("control_record",
	     "data then alert: first recvmsg on B -> %zd type %d; then %zd (%s) "
	     "type %d; D got %zu bytes",
	     first, first_type, n, n < 0 ? strerror((int)-n) : "ok", type, got);
	MUST(n == 2 && type == 21 && got == 1000, "alert reaches ktlsd, data goes to the backend");
	/* plain recv (no cmsg buffer) on a control record */
	send_rec(q.a, 21, alert, 2);
	usleep(100000);
	n = recv(q.b, buf, sizeof(buf), MSG_DONTWAIT);
	FACT("control_plain_recv", "recv without cmsg on an alert: %zd (%s)", n,
	     n < 0 ? strerror(errno) : "ok");
	teardown(&q);
}

static void fact_keyupdate(void)
{
	struct quad q;
	unsigned char s_in = 0, s_out = 0, ku[5] = { 24, 0, 0, 1, 0 };
	char buf[64];
	int type = -1, err = setup(&q, true, true);

	if (err) {
		failures++;
		return;
	}
	send_rec(q.a, 22, ku, sizeof(ku));
	int rk = key(q.a, TLS_TX, 0x33);

	if (rk) {
		FACT("keyupdate", "sender rekey TLS_TX: %s (no in-kernel rekey on this kernel)",
		     strerror(-rk));
		teardown(&q);
		return;
	}
	send_all(q.a, 4096, &s_in);
	usleep(200000);
	ssize_t n1 = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
	int t1 = type;
	ssize_t n2 = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
	int e = key(q.b, TLS_RX, 0x33);
	ssize_t n3 = 0;
	size_t got = 0;

	for (int i = 0; i < 20 && got < 4096; i++) {
		n3 = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);
		got += drain(q.d, 4096 - got, 50, &s_out);
	}
	FACT("keyupdate",
	     "KeyUpdate record: recvmsg %zd type %d; next recvmsg %zd (%s); new TLS_RX with B in "
	     "the map: %s; then D got %zu of 4096 bytes%s (last recvmsg %zd %s)",
	     n1, t1, n2, n2 < 0 ? strerror((int)-n2) : "", e ? strerror(-e) : "ok", got,
	     s_in == s_out && got == 4096 ? ", byte-exact" : "", n3,
	     n3 < 0 ? strerror((int)-n3) : "");
	MUST(n1 == 5 && t1 == 22 && !e && got == 4096, "KeyUpdate then rekey with the map");
	teardown(&q);
}

static void fact_eof(void)
{
	struct quad q;
	char buf[64];
	int type, err = setup(&q, true, true);

	if (err) {
		failures++;
		return;
	}
	shutdown(q.a, SHUT_WR);
	usleep(100000);
	ssize_t n = recv_rec(q.b, buf, sizeof(buf), &type, MSG_DONTWAIT);

	FACT("eof_tls_side", "A shut down writing: recvmsg on B -> %zd (%s)", n,
	     n < 0 ? strerror((int)-n) : "ok");
	shutdown(q.d, SHUT_WR);
	usleep(100000);
	struct pollfd p = { q.c, POLLIN | POLLRDHUP, 0 };
	int pr = poll(&p, 1, 500);
	ssize_t m = recv(q.c, buf, sizeof(buf), MSG_DONTWAIT);

	FACT("eof_backend_side",
	     "D shut down writing: poll C -> %d revents 0x%x, recv on C -> %zd (%s)", pr, p.revents,
	     m, m < 0 ? strerror(errno) : "ok");
	MUST(n == 0 && m == 0, "both EOFs are seen by ktlsd");
	teardown(&q);
}

static void fact_early(void)
{
	int a, b, c, d, type;
	unsigned char s = 0, s2 = 0;
	char buf[4096];

	/* bytes that reach B after the map insert but before TLS_RX, before the link */
	tcp_pair(&a, &b);
	tcp_pair(&c, &d);
	map_add(b); /* B as a source: its parser runs before TLS_RX */
	map_add(c);
	ulp(a);
	key(a, TLS_TX, 0x11);
	send_all(a, 100, &s);
	usleep(100000);
	ulp(b);
	key(b, TLS_TX, 0x22);
	int e = key(b, TLS_RX, 0x11);
	ssize_t n = recv_rec(b, buf, sizeof(buf), &type, MSG_DONTWAIT);

	FACT("early_bytes",
	     "a record that arrived between map insert and TLS_RX: verdict passed %llu "
	     "bytes; TLS_RX %s; recvmsg on B -> %zd (%s) type %d",
	     (unsigned long long)passed(b), e ? strerror(-e) : "ok", n,
	     n < 0 ? strerror((int)-n) : "ok", type);
	close(a);
	close(b);
	/* the same with B only in the program-less target map */
	s = 0;
	tcp_pair(&a, &b);
	target_add(b);
	ulp(a);
	key(a, TLS_TX, 0x11);
	send_all(a, 100, &s);
	usleep(100000);
	ulp(b);
	key(b, TLS_TX, 0x22);
	e = key(b, TLS_RX, 0x11);
	n = recv_rec(b, buf, sizeof(buf), &type, MSG_DONTWAIT);
	FACT("early_bytes_target", "B only in the target map: TLS_RX %s; recvmsg -> %zd type %d%s",
	     e ? strerror(-e) : "ok", n, type,
	     n == 100 && type == 23 ? " (decrypted, intact)" : "");
	MUST(n == 100 && type == 23, "bytes before TLS_RX stay intact with B only a target");
	/* the same bytes on the backend side, before its link: stay on C for splice? */
	send_all(d, 100, &s2);
	usleep(100000);
	n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
	FACT("unlinked_plain", "bytes on C with no peer entry: passed %llu, recv on C -> %zd",
	     (unsigned long long)passed(c), n);
	close(a);
	close(b);
	close(c);
	close(d);
}

int main(void)
{
	int t = socket(AF_INET, SOCK_STREAM, 0), a, b;

	tcp_pair(&a, &b);
	if (ulp(b)) {
		printf("SKIP: no kTLS here (TCP_ULP tls: %s)\n", strerror(errno));
		return 77;
	}
	close(a);
	close(b);
	close(t);
	skel = relay_bpf__open_and_load();
	if (!skel) {
		printf("FAIL: loading relay.bpf.o: %s\n", strerror(errno));
		return 1;
	}
	int mfd = bpf_map__fd(skel->maps.socks);

	if (bpf_prog_attach(bpf_program__fd(skel->progs.relay_parser), mfd,
			    BPF_SK_SKB_STREAM_PARSER, 0) ||
	    bpf_prog_attach(bpf_program__fd(skel->progs.relay_verdict), mfd,
			    BPF_SK_SKB_STREAM_VERDICT, 0) ||
	    bpf_prog_attach(bpf_program__fd(skel->progs.relay_count),
			    bpf_map__fd(skel->maps.targets), BPF_SK_MSG_VERDICT, 0)) {
		printf("FAIL: attach: %s\n", strerror(errno));
		return 1;
	}
	if (!fact_order()) {
		FACT("sockmap_ktls", "a socket in a SOCKHASH cannot get kTLS on this kernel: no "
				     "in-kernel relay with kTLS, both directions splice");
		relay_bpf__destroy(skel);
		printf("OK (%d failures)\n", failures);
		return failures ? 1 : 0;
	}
	trim = false;
	fact_rx_layout();
	trim = true;
	fact_rx();
	fact_rx_splice();
	fact_tx();
	fact_control();
	fact_keyupdate();
	fact_eof();
	fact_early();
	fact_eof_flush();
	relay_bpf__destroy(skel);
	printf("%s (%d failures)\n", failures ? "FAIL" : "OK", failures);
	return failures ? 1 : 0;
}

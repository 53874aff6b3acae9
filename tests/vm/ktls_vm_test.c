// SPDX-License-Identifier: MIT
/*
 * libktls inside a kernel that has kTLS (run by tests/vm/ktls.cmake in qemu guests).
 *
 * For every TLS version x cipher libktls supports, over loopback TCP with real handshakes:
 *   ktls-srv/ossl-cli   kTLS server, userspace OpenSSL client
 *   ossl-srv/ktls-cli   userspace OpenSSL server (num_tickets 2: tickets arrive on kTLS RX)
 *   ktls-srv/ktls-cli   kTLS on both ends (the server sends OpenSSL's default 2 tickets:
 *                       its kernel TX starts after them, the client consumes them on kTLS RX)
 *   ktls-srv/split-cli  kTLS server; the client installs TX at once, reads the tickets and
 *                       the first data through OpenSSL, then installs RX at the counted
 *                       sequence (what ktlsd's client mode does to keep tickets)
 *   gnutls-srv/ktls-cli gnutls-serv --echo process as the peer
 *   ktls-srv/gnutls-cli gnutls-cli process as the peer of a kTLS echo server
 *   tamper              a forged application record: EBADMSG, TlsDecryptError rises
 *   ku-peer, ku-peer-req, ku-ktls (TLS 1.3)  KeyUpdate from either side; where the probe
 *                       says the kernel can rekey it keeps going byte-exact, elsewhere it
 *                       ends cleanly with -KTLS_E_REKEY_UNSUPPORTED
 *   half-install        the server's TLS_RX fails after TLS_TX went in (a seam over the real
 *                       kernel calls): install must fail, not fall back, and the server's
 *                       SSL_shutdown must put nothing on the wire (OpenSSL's own record
 *                       would reach the peer as kTLS application data)
 * Each case moves random data in odd-sized chunks both ways and compares it byte for byte,
 * ends with close_notify both ways, and checks /proc/net/tls_stat independently of libktls.
 * One "MATRIX" line per case. Exit 0 all passed, 1 any failed, 77 no kTLS here.
 *
 *   ktls_vm_test PKI_SCRIPT   scripts/pki: makes the EC and RSA PKIs under /tmp (slow in TCG)
 *   ktls_vm_test PKI_DIR      PKI_DIR/ec and PKI_DIR/rsa made by scripts/pki beforehand
 * KTLS_VM_KIB: bytes per direction per data case in KiB (default 256).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/tls.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "ktlsd/ktls.h"
#include "ktlsd/probe.h"

enum mode {
	M_KTLS_SRV,    /* kTLS server, OpenSSL client */
	M_KTLS_CLI,    /* OpenSSL server, kTLS client */
	M_KTLS_BOTH,   /* kTLS both */
	M_SPLIT,       /* kTLS server, client: TX at once, RX after reading through OpenSSL */
	M_GNUTLS,      /* gnutls-serv --echo, kTLS client */
	M_GNUTLS_CLI,  /* kTLS echo server, gnutls-cli client */
	M_TAMPER,      /* kTLS server, forged record from the client */
	M_KU_PEER,     /* kTLS server; OpenSSL client sends KeyUpdate(not requested) */
	M_KU_PEER_REQ, /* ... KeyUpdate(update_requested) */
	M_KU_KTLS,     /* kTLS server initiates KeyUpdate(update_requested) */
	M_HALF,	       /* kTLS server: TLS_TX in, TLS_RX fails; OpenSSL client */
};

static const char *mode_name[] = { "ktls-srv/ossl-cli",
				   "ossl-srv/ktls-cli",
				   "ktls-srv/ktls-cli",
				   "ktls-srv/split-cli",
				   "gnutls-srv/ktls-cli",
				   "ktls-srv/gnutls-cli",
				   "tamper",
				   "ku-peer",
				   "ku-peer-req",
				   "ku-ktls",
				   "half-install" };

struct suite {
	int version;
	const char *name; /* OpenSSL name */
	bool rsa;
	const char *gnutls; /* priority string */
};

static const struct suite suites[] = {
	{ TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM" },
	{ TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM" },
	{ TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305" },
	{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA" },
	{ TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:-KX-ALL:+ECDHE-ECDSA" },
	{ TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", false,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:-KX-ALL:+ECDHE-ECDSA" },
	{ TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", true,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-RSA" },
	{ TLS1_2_VERSION, "ECDHE-RSA-AES256-GCM-SHA384", true,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:-KX-ALL:+ECDHE-RSA" },
	{ TLS1_2_VERSION, "ECDHE-RSA-CHACHA20-POLY1305", true,
	  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:-KX-ALL:+ECDHE-RSA" },
};

static struct ktls_caps caps;
static char kernel[128];
static size_t nbytes;
static uint8_t *data_a, *data_b, *data_t; /* data_t: text lines for gnutls-serv's echo */
static const char *pki[2] = { "/tmp/ktls-vm-pki/ec", "/tmp/ktls-vm-pki/rsa" };
static long total_bytes;

/* --- /proc/net/tls_stat ------------------------------------------------------------ */

struct tls_stat {
	long curr_tx, curr_rx, tx, rx, decrypt_err;
};

static int stat_read(struct tls_stat *s)
{
	char name[64];
	long v;
	FILE *f = fopen("/proc/net/tls_stat", "r");

	memset(s, 0, sizeof(*s));
	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", name, &v) == 2) {
		if (!strcmp(name, "TlsCurrTxSw"))
			s->curr_tx = v;
		else if (!strcmp(name, "TlsCurrRxSw"))
			s->curr_rx = v;
		else if (!strcmp(name, "TlsTxSw"))
			s->tx = v;
		else if (!strcmp(name, "TlsRxSw"))
			s->rx = v;
		else if (!strcmp(name, "TlsDecryptError"))
			s->decrypt_err = v;
	}
	fclose(f);
	return 0;
}

/* --- endpoints: a kTLS socket or an OpenSSL session, same send/recv --------------------- */

struct ep {
	SSL *ssl;	      /* userspace side (NULL for kTLS) */
	struct ktls_conn *kc; /* kTLS side */
	int fd;
	int tickets, key_updates;
	bool rx_late; /* split install: RX went to the kernel after reading through OpenSSL */
	int last_err; /* last libktls error seen by ep_recv */
	char why[160];
};

static void ep_fail(struct ep *e, const char *fmt, ...)
{
	va_list ap;

	if (e->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
}

static bool ep_send(struct ep *e, const uint8_t *buf, size_t n, uint32_t *rng)
{
	size_t off = 0;

	while (off < n) {
		size_t chunk = 1 + (*rng = *rng * 1103515245u + 12345u) % 40000u;

		if (chunk > n - off)
			chunk = n - off;
		if (e->kc) {
			ssize_t w = send(e->fd, buf + off, chunk, MSG_NOSIGNAL);

			if (w < 0) {
				ep_fail(e, "send: %s", strerror(errno));
				return false;
			}
			off += (size_t)w;
		} else {
			int w = SSL_write(e->ssl, buf + off, (int)chunk);

			if (w <= 0) {
				ep_fail(e, "SSL_write: error %d", SSL_get_error(e->ssl, w));
				return false;
			}
			off += (size_t)w;
		}
	}
	return true;
}

/*
 * One read: >0 bytes, 0 on close_notify, -1 on error (why set; e->last_err has a libktls
 * error). Control records on the kTLS side are handled as the daemon would.
 */
static ssize_t ep_recv1(struct ep *e, uint8_t *buf, size_t n)
{
	if (e->kc && e->ssl) {
		/* split install: OpenSSL reads (and consumes tickets) until the first data
		 * record is through, then the kernel takes RX over at the counted sequence */
		int r = SSL_read(e->ssl, buf, (int)n), rc;

		if (r <= 0) {
			ep_fail(e, "SSL_read before RX install: error %d",
				SSL_get_error(e->ssl, r));
			return -1;
		}
		rc = ktls_conn_install_rx(e->kc, e->ssl);
		if (rc == -KTLS_E_PENDING)
			return r; /* rest of the record is still OpenSSL's */
		if (rc < 0) {
			ep_fail(e, "ktls_conn_install_rx: %s", ktls_strerror(rc));
			return -1;
		}
		SSL_free(e->ssl);
		e->ssl = NULL;
		e->rx_late = true;
		return r;
	}
	if (!e->kc) {
		int r = SSL_read(e->ssl, buf, (int)n);

		if (r > 0)
			return r;
		if (SSL_get_error(e->ssl, r) == SSL_ERROR_ZERO_RETURN)
			return 0;
		ep_fail(e, "SSL_read: error %d", SSL_get_error(e->ssl, r));
		return -1;
	}
	for (;;) {
		ssize_t r = recv(e->fd, buf, n, 0);
		enum ktls_control ctrl;
		uint8_t alert;
		int rc;

		if (r > 0)
			return r;
		if (r == 0) {
			ep_fail(e, "EOF without close_notify");
			return -1;
		}
		if (errno != EIO && errno != EINVAL) {
			e->last_err = -errno;
			ep_fail(e, "recv: %s", strerror(errno));
			return -1;
		}
		rc = ktls_conn_recv_control(e->kc, &ctrl, &alert);
		if (rc < 0) {
			e->last_err = rc;
			ep_fail(e, "recv_control: %s", ktls_strerror(rc));
			return -1;
		}
		switch (ctrl) {
		case KTLS_CTRL_CLOSE_NOTIFY:
			return 0;
		case KTLS_CTRL_ALERT:
			ep_fail(e, "alert %u", alert);
			return -1;
		case KTLS_CTRL_TICKET:
			e->tickets++;
			break;
		case KTLS_CTRL_KEY_UPDATE:
			e->key_updates++;
			/* update_requested: answered here, where nothing else writes the socket */
			if (ktls_conn_key_update_owed(e->kc)) {
				rc = ktls_conn_update_tx(e->kc, false);
				if (rc < 0) {
					e->last_err = rc;
					ep_fail(e, "answering KeyUpdate: %s", ktls_strerror(rc));
					return -1;
				}
			}
			break;
		case KTLS_CTRL_DATA:
			break;
		}
	}
}

static bool ep_recv_expect(struct ep *e, const uint8_t *want, size_t n, uint32_t *rng)
{
	uint8_t *buf = malloc(65536);
	size_t off = 0;

	while (off < n) {
		size_t chunk = 1 + (*rng = *rng * 1103515245u + 12345u) % 65536u;
		ssize_t r;

		if (chunk > n - off)
			chunk = n - off;
		r = ep_recv1(e, buf, chunk);
		if (r <= 0) {
			if (r == 0)
				ep_fail(e, "close_notify after %zu of %zu bytes", off, n);
			free(buf);
			return false;
		}
		if (memcmp(buf, want + off, (size_t)r)) {
			ep_fail(e, "data mismatch at offset %zu", off);
			free(buf);
			return false;
		}
		off += (size_t)r;
	}
	free(buf);
	__atomic_add_fetch(&total_bytes, (long)n, __ATOMIC_RELAXED);
	return true;
}

static bool ep_close(struct ep *e)
{
	if (e->kc) {
		int rc = ktls_conn_send_close_notify(e->kc);

		if (rc < 0)
			ep_fail(e, "send_close_notify: %s", ktls_strerror(rc));
		return rc == 0;
	}
	return SSL_shutdown(e->ssl) >= 0;
}

static bool ep_expect_close(struct ep *e)
{
	uint8_t b[64];
	ssize_t r = ep_recv1(e, b, sizeof(b));

	if (r > 0)
		ep_fail(e, "data where close_notify was expected");
	return r == 0;
}

/* --- setup --------------------------------------------------------------------------- */

static SSL_CTX *make_ctx(const struct suite *s, bool server, bool ktls, int tickets)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	char path[256];
	const char *dir = pki[s->rsa];

	SSL_CTX_set_min_proto_version(ctx, s->version);
	SSL_CTX_set_max_proto_version(ctx, s->version);
	if (s->version == TLS1_3_VERSION)
		SSL_CTX_set_ciphersuites(ctx, s->name);
	else
		SSL_CTX_set_cipher_list(ctx, s->name);
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	SSL_CTX_load_verify_locations(ctx, path, NULL);
	snprintf(path, sizeof(path), "%s/%s.pem", dir, server ? "server" : "client");
	SSL_CTX_use_certificate_chain_file(ctx, path);
	snprintf(path, sizeof(path), "%s/%s.key", dir, server ? "server" : "client");
	SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM);
	/* mTLS, as ktlsd does it */
	SSL_CTX_set_verify(
		ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
		NULL);
	if (ktls && ktls_ctx_prepare(ctx, server) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (server) /* a kTLS server's tickets are counted into its TX sequence */
		SSL_CTX_set_num_tickets(ctx, (size_t)tickets);
	return ctx;
}

static void sock_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 30 };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int listen_any(uint16_t *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&a, &al)) {
		close(l);
		return -1;
	}
	*ret_port = ntohs(a.sin_port);
	return l;
}

static int connect_port(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	sock_timeouts(fd);
	return fd;
}

/* Handshake on fd, then install kTLS if asked and drop the SSL. */
static bool ep_open(struct ep *e, SSL_CTX *ctx, int fd, bool server, bool ktls, bool split)
{
	int rc;

	memset(e, 0, sizeof(*e));
	e->fd = fd;
	e->ssl = SSL_new(ctx);
	SSL_set_fd(e->ssl, fd);
	if (!server)
		SSL_set_tlsext_host_name(e->ssl, "localhost");
	rc = server ? SSL_accept(e->ssl) : SSL_connect(e->ssl);
	if (rc != 1) {
		unsigned long err = ERR_get_error();

		ep_fail(e, "handshake: %s", err ? ERR_reason_error_string(err) : "failed");
		return false;
	}
	if (!ktls)
		return true;
	if (split) {
		rc = ktls_install_tx(e->ssl, fd, &e->kc);
		if (rc < 0)
			ep_fail(e, "ktls_install_tx: %s", ktls_strerror(rc));
		return rc == 0; /* the SSL stays for reading until RX is installed */
	}
	rc = ktls_install(e->ssl, fd, &e->kc);
	if (rc < 0) {
		ep_fail(e, "ktls_install: %s", ktls_strerror(rc));
		return false;
	}
	/* The kernel owns the session now: what the daemon does. */
	SSL_free(e->ssl);
	e->ssl = NULL;
	return true;
}

static void ep_free(struct ep *e)
{
	ktls_conn_free(e->kc);
	SSL_free(e->ssl);
	if (e->fd >= 0)
		close(e->fd);
}

/* --- one case ------------------------------------------------------------------------ */

struct run {
	const struct suite *s;
	enum mode m;
	SSL_CTX *sctx;
	int lfd;
	bool srv_ktls;
	bool rekey;
	struct ep srv;
	bool srv_ok;
	struct tls_stat open_stat; /* read by the client while both ends are open */
};

/* The kernel's calls, except that TLS_RX fails: a kernel that took TX and refused RX. */
static int rx_fail_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	if (level == SOL_TLS && name == TLS_RX)
		return -ENOMEM;
	return ktls_default_ops.setsockopt(fd, level, name, val, len);
}

static bool server_half_install(struct ep *e, int fd)
{
	struct ktls_ops ops = ktls_default_ops;
	struct tls_crypto_info info = { 0 };
	socklen_t len = sizeof(info); /* just the header: the kernel wants exact sizes */
	int rc;

	ops.setsockopt = rx_fail_setsockopt;
	rc = ktls_install_with(&ops, e->ssl, fd, &e->kc);
	if (rc != -ENOMEM || e->kc) {
		ep_fail(e, "half install: %s, want ENOMEM and no connection", ktls_strerror(rc));
		return false;
	}
	if (getsockopt(fd, SOL_TLS, TLS_TX, &info, &len) < 0 || !info.cipher_type) {
		ep_fail(e, "TLS_TX not in the kernel after a half install: %s",
			info.cipher_type ? strerror(errno) : "no cipher");
		return false;
	}
	/* what a caller that cannot go on does: close as it would without kTLS */
	ERR_clear_error();
	SSL_shutdown(e->ssl);
	ERR_clear_error();
	shutdown(fd, SHUT_WR);
	return true;
}

static void *server_main(void *arg)
{
	struct run *r = arg;
	struct ep *e = &r->srv;
	uint32_t rng = 7;
	int fd = accept(r->lfd, NULL, NULL);

	if (fd < 0) {
		snprintf(e->why, sizeof(e->why), "accept: %s", strerror(errno));
		return NULL;
	}
	sock_timeouts(fd);
	if (!ep_open(e, r->sctx, fd, true, r->srv_ktls && r->m != M_HALF, false))
		return NULL;
	if (r->m == M_HALF) {
		r->srv_ok = server_half_install(e, fd);
		return NULL;
	}
	if (r->m == M_GNUTLS_CLI) {
		/* echo until the peer's close_notify, then answer it */
		uint8_t *buf = malloc(65536);
		ssize_t n;

		while ((n = ep_recv1(e, buf, 65536)) > 0)
			if (!ep_send(e, buf, (size_t)n, &rng))
				break;
		free(buf);
		if (n == 0)
			r->srv_ok = ep_close(e);
		return NULL;
	}
	if (r->m == M_TAMPER) {
		uint8_t b[64];
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n >= 0 || errno != EBADMSG)
			ep_fail(e, "forged record: got %zd / %s, want EBADMSG", n,
				n < 0 ? strerror(errno) : "data");
		else
			r->srv_ok = true;
		return NULL;
	}
	if (!ep_recv_expect(e, data_a, nbytes, &rng) || !ep_send(e, data_b, nbytes, &rng))
		return NULL;
	switch (r->m) {
	case M_KU_PEER:
	case M_KU_PEER_REQ:
		if (!r->rekey) {
			/* must end cleanly: the error, then our close_notify still goes out */
			uint8_t b[16];

			if (ep_recv1(e, b, sizeof(b)) >= 0 ||
			    e->last_err != -KTLS_E_REKEY_UNSUPPORTED)
				return NULL;
			e->why[0] = 0;
			r->srv_ok = ep_close(e);
			return NULL;
		}
		if (!ep_recv_expect(e, data_a, nbytes / 4, &rng))
			return NULL;
		/* update_requested: our answer went out, data under the new key follows */
		if (r->m == M_KU_PEER_REQ && !ep_send(e, data_b, nbytes / 4, &rng))
			return NULL;
		break;
	case M_KU_KTLS: {
		int rc = ktls_conn_update_tx(e->kc, true);

		if (rc != (r->rekey ? 0 : -KTLS_E_REKEY_UNSUPPORTED)) {
			ep_fail(e, "update_tx: %s", ktls_strerror(rc));
			return NULL;
		}
		if (!ep_send(e, data_b, nbytes / 4, &rng) ||
		    !ep_recv_expect(e, data_a, nbytes / 4, &rng))
			return NULL;
		break;
	}
	default:
		break;
	}
	/* client closes first; we answer */
	if (!ep_expect_close(e) || !ep_close(e))
		return NULL;
	r->srv_ok = true;
	return NULL;
}

/* gnutls-serv --echo on a free port; returns its pid, the port in *ret_port. */
static pid_t gnutls_start(const struct suite *s, uint16_t *ret_port)
{
	char port[16], cert[256], key[256], prio[256];
	int l;
	uint16_t p;
	pid_t pid;

	l = listen_any(&p); /* find a free port, then let gnutls-serv take it */
	close(l);
	snprintf(port, sizeof(port), "%u", p);
	snprintf(cert, sizeof(cert), "%s/server.pem", pki[s->rsa]);
	snprintf(key, sizeof(key), "%s/server.key", pki[s->rsa]);
	snprintf(prio, sizeof(prio), "%s", s->gnutls);
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		dup2(devnull, 0);
		dup2(devnull, 1);
		if (!getenv("KTLS_VM_VERBOSE"))
			dup2(devnull, 2);
		execlp("gnutls-serv", "gnutls-serv", "--echo", "-q", "-p", port, "--x509certfile",
		       cert, "--x509keyfile", key, "--priority", prio, (char *)NULL);
		_exit(127);
	}
	*ret_port = p;
	return pid;
}

/*
 * gnutls-cli as the client of the kTLS echo server: text in through its stdin, the same
 * text back on its stdout, then EOF on stdin makes it send close_notify.
 */
static bool gnutls_cli_exchange(const struct suite *s, uint16_t port, struct run *r, char *why,
				size_t whylen)
{
	char portstr[16], ca[256], cert[256], key[256];
	size_t n = nbytes / 4, sent = 0, got = 0;
	int in[2], out[2], status = 0;
	uint8_t *buf = malloc(65536);
	bool ok = false;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%u", port);
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki[s->rsa]);
	snprintf(cert, sizeof(cert), "%s/client.pem", pki[s->rsa]);
	snprintf(key, sizeof(key), "%s/client.key", pki[s->rsa]);
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		free(buf);
		return false;
	}
	pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (!getenv("KTLS_VM_VERBOSE")) {
			int devnull = open("/dev/null", O_WRONLY);

			dup2(devnull, 2);
		}
		execlp("gnutls-cli", "gnutls-cli", "--logfile", "/dev/null", "--x509cafile", ca,
		       "--x509certfile", cert, "--x509keyfile", key, "--priority", s->gnutls, "-p",
		       portstr, "localhost", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	while (got < n) {
		struct pollfd p[2] = { { .fd = out[0], .events = POLLIN },
				       { .fd = sent < n ? in[1] : -1, .events = POLLOUT } };
		ssize_t k;

		if (poll(p, 2, 30000) <= 0) {
			snprintf(why, whylen, "gnutls-cli: timeout after %zu of %zu bytes", got, n);
			goto out_kill;
		}
		if (p[1].revents & (POLLOUT | POLLERR)) {
			k = write(in[1], data_t + sent, n - sent < 4096 ? n - sent : 4096);
			if (k > 0)
				sent += (size_t)k;
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			k = read(out[0], buf, 65536);
			if (k <= 0) {
				snprintf(why, whylen, "gnutls-cli exited after %zu of %zu bytes",
					 got, n);
				goto out_kill;
			}
			if ((size_t)k > n - got || memcmp(buf, data_t + got, (size_t)k)) {
				snprintf(why, whylen, "gnutls-cli: data mismatch at %zu", got);
				goto out_kill;
			}
			got += (size_t)k;
		}
	}
	__atomic_add_fetch(&total_bytes, (long)n, __ATOMIC_RELAXED);
	stat_read(&r->open_stat);
	close(in[1]); /* EOF: gnutls-cli says bye (close_notify) */
	in[1] = -1;
	while (read(out[0], buf, 65536) > 0)
		;
	waitpid(pid, &status, 0);
	pid = -1;
	ok = true;
out_kill:
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	if (in[1] >= 0)
		close(in[1]);
	close(out[0]);
	free(buf);
	return ok;
}

static bool run_case(const struct suite *s, enum mode m)
{
	struct run r = { .s = s, .m = m, .lfd = -1, .rekey = caps.rekey };
	struct tls_stat before, after;
	struct ep cli = { .fd = -1 };
	bool cli_ktls = m == M_KTLS_CLI || m == M_KTLS_BOTH || m == M_SPLIT || m == M_GNUTLS;
	bool ok = false, ku = m >= M_KU_PEER && m <= M_KU_KTLS;
	int nktls, want_err = m == M_TAMPER ? 1 : 0;
	SSL_CTX *cctx = NULL;
	pthread_t th;
	bool thread = false;
	pid_t gpid = -1;
	uint16_t port = 0;
	uint32_t rng = 11;
	char why[400] = "";
	int fd = -1;
	struct timespec t0, t1;
	const char *gnutls_note = "";

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r.srv_ktls = m != M_KTLS_CLI && m != M_GNUTLS;
	nktls = m == M_HALF ? 0 : r.srv_ktls + cli_ktls;
	stat_read(&before);
	cctx = make_ctx(s, false, cli_ktls, 0);
	if (!cctx) {
		snprintf(why, sizeof(why), "client ctx");
		goto out;
	}
	if (m == M_GNUTLS) {
		gpid = gnutls_start(s, &port);
		for (int i = 0; i < 200 && fd < 0; i++) {
			fd = connect_port(port);
			if (fd < 0)
				usleep(50000);
		}
	} else {
		r.sctx = make_ctx(s, true, r.srv_ktls, 2);
		if (!r.sctx) {
			snprintf(why, sizeof(why), "server ctx");
			goto out;
		}
		r.lfd = listen_any(&port);
		pthread_create(&th, NULL, server_main, &r);
		thread = true;
		if (m == M_GNUTLS_CLI) {
			ok = gnutls_cli_exchange(s, port, &r, why, sizeof(why));
			goto out_why;
		}
		fd = connect_port(port);
	}
	if (fd < 0) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		goto out;
	}
	if (m == M_GNUTLS)
		SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	if (!ep_open(&cli, cctx, fd, false, cli_ktls, m == M_SPLIT))
		goto out_why;
	if (m == M_TAMPER) {
		/* a well-formed header, garbage ciphertext: must fail authentication */
		uint8_t rec[5 + 48] = { 23, 3, 3, 0, 48 };

		RAND_bytes(rec + 5, 48);
		if (write(fd, rec, sizeof(rec)) != sizeof(rec))
			goto out_why;
		pthread_join(th, NULL);
		thread = false;
		ok = r.srv_ok;
		goto out_why;
	}
	if (m == M_HALF) {
		/* nothing may arrive but the end: no data, no record the peer's OpenSSL wrote */
		uint8_t b[256];
		int n = SSL_read(cli.ssl, b, sizeof(b));

		pthread_join(th, NULL);
		thread = false;
		ok = r.srv_ok;
		if (ok && n > 0) {
			ok = false;
			snprintf(why, sizeof(why),
				 "%d bytes of application data after a failed install", n);
		}
		goto out_why;
	}
	if (m == M_GNUTLS) {
		/*
		 * gnutls-serv's echo is line-oriented text (it stops at a NUL): what we send comes
		 * back; small enough not to fill both socket buffers.
		 */
		if (!ep_send(&cli, data_t, nbytes / 4, &rng) ||
		    !ep_recv_expect(&cli, data_t, nbytes / 4, &rng))
			goto out_why;
		stat_read(&r.open_stat);
		ok = ep_close(&cli);
		/* gnutls-serv may answer close_notify or just close: both end the session */
		if (ok && !ep_expect_close(&cli))
			gnutls_note = " (peer closed without close_notify)";
		if (!ok)
			goto out_why;
		goto out_why;
	}
	if (!ep_send(&cli, data_a, nbytes, &rng) || !ep_recv_expect(&cli, data_b, nbytes, &rng))
		goto out_why;
	stat_read(&r.open_stat);
	if (ku) {
		bool ku_ok = true;

		switch (m) {
		case M_KU_PEER:
		case M_KU_PEER_REQ:
			SSL_key_update(cli.ssl, m == M_KU_PEER ? SSL_KEY_UPDATE_NOT_REQUESTED
							       : SSL_KEY_UPDATE_REQUESTED);
			ku_ok = ep_send(&cli, data_a, nbytes / 4, &rng);
			if (!r.rekey) {
				/* the kTLS side gives up cleanly: close_notify, nothing else */
				ku_ok = ku_ok && ep_expect_close(&cli);
				break;
			}
			if (m == M_KU_PEER_REQ)
				ku_ok = ku_ok && ep_recv_expect(&cli, data_b, nbytes / 4, &rng);
			break;
		case M_KU_KTLS:
			ku_ok = ep_recv_expect(&cli, data_b, nbytes / 4, &rng) &&
				ep_send(&cli, data_a, nbytes / 4, &rng);
			break;
		default:
			break;
		}
		if (!ku_ok)
			goto out_why;
		if ((m == M_KU_PEER || m == M_KU_PEER_REQ) && !r.rekey) {
			pthread_join(th, NULL);
			thread = false;
			ok = r.srv_ok;
			goto out_why;
		}
	}
	if (!ep_close(&cli) || !ep_expect_close(&cli))
		goto out_why;
	if ((m == M_KTLS_CLI || m == M_KTLS_BOTH) && s->version == TLS1_3_VERSION &&
	    cli.tickets != 2) {
		snprintf(why, sizeof(why), "%d NewSessionTickets seen on kTLS RX, want 2",
			 cli.tickets);
		goto out;
	}
	if (m == M_SPLIT && !cli.rx_late) {
		snprintf(why, sizeof(why), "RX was never handed to the kernel");
		goto out;
	}
	ok = true;
out_why:
	if (thread) {
		pthread_join(th, NULL);
		thread = false;
		ok = ok && r.srv_ok;
	}
	if (!ok && !why[0])
		snprintf(why, sizeof(why), "%s%s%s%s%s", cli.why[0] ? "client: " : "", cli.why,
			 cli.why[0] && r.srv.why[0] ? "; " : "", r.srv.why[0] ? "server: " : "",
			 r.srv.why);
out:
	if (thread)
		pthread_join(th, NULL);
	ep_free(&cli);
	ep_free(&r.srv);
	if (r.lfd >= 0)
		close(r.lfd);
	if (gpid > 0) {
		kill(gpid, SIGTERM);
		waitpid(gpid, NULL, 0);
	}
	SSL_CTX_free(cctx);
	SSL_CTX_free(r.sctx);

	/* Independent of libktls: did the kernel carry it, and did it reject only the forgery? */
	stat_read(&after);
	if (ok && (after.tx - before.tx < nktls || after.rx - before.rx < nktls)) {
		ok = false;
		snprintf(why, sizeof(why), "tls_stat TlsTxSw +%ld TlsRxSw +%ld, want +%d",
			 after.tx - before.tx, after.rx - before.rx, nktls);
	}
	if (ok && m != M_TAMPER &&
	    (r.open_stat.curr_tx - before.curr_tx < nktls ||
	     r.open_stat.curr_rx - before.curr_rx < nktls)) {
		ok = false;
		snprintf(why, sizeof(why),
			 "tls_stat TlsCurrTxSw/RxSw +%ld/+%ld while open, want +%d",
			 r.open_stat.curr_tx - before.curr_tx, r.open_stat.curr_rx - before.curr_rx,
			 nktls);
	}
	if (ok && (after.decrypt_err - before.decrypt_err != want_err)) {
		ok = false;
		snprintf(why, sizeof(why), "tls_stat TlsDecryptError +%ld, want +%d",
			 after.decrypt_err - before.decrypt_err, want_err);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("MATRIX kernel=%s version=%s cipher=%s case=%s rekey=%s result=%s%s%s%s (%.2fs)\n",
	       kernel, s->version == TLS1_3_VERSION ? "TLS1.3" : "TLS1.2", s->name, mode_name[m],
	       !ku	 ? "-"
	       : r.rekey ? "followed"
			 : "unsupported-clean",
	       ok ? "PASS" : "FAIL", ok ? "" : " ", ok ? "" : why, gnutls_note,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	fflush(stdout);
	return ok;
}

/* --- main ---------------------------------------------------------------------------- */

static int have_ktls(void)
{
	uint16_t port;
	int l = listen_any(&port), c, a, rc = 0;

	if (l < 0)
		return -errno;
	c = connect_port(port);
	a = accept(l, NULL, NULL);
	if (c < 0 || a < 0)
		rc = -ECONNREFUSED;
	else if (setsockopt(c, SOL_TCP, TCP_ULP, "tls", 3) < 0)
		rc = -errno;
	close(a);
	close(c);
	close(l);
	return rc;
}

int main(int argc, char **argv)
{
	struct utsname u;
	char cmd[600], pkidir[2][300];
	struct stat st;
	int failed = 0, passed = 0, rc;
	const char *kib = getenv("KTLS_VM_KIB");

	if (argc != 2) {
		fprintf(stderr, "usage: %s PKI_SCRIPT|PKI_DIR\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	alarm(600); /* never hang the VM */
	uname(&u);
	snprintf(kernel, sizeof(kernel), "%s", u.release);
	rc = have_ktls();
	if (rc < 0) {
		fprintf(stderr, "SKIP: kernel %s has no kTLS (TCP_ULP \"tls\": %s)\n", kernel,
			strerror(-rc));
		return 77;
	}
	rc = ktls_probe(&caps);
	if (rc < 0) {
		fprintf(stderr, "ktls_probe: %s\n", strerror(-rc));
		return 1;
	}
	printf("kernel %s: probe rekey=%d (%s)\n", kernel, caps.rekey,
	       caps.rekey ? "KeyUpdate followed in kernel" : strerror(caps.rekey_err));
	if (stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode)) {
		/* made on the host beforehand: RSA key generation under TCG takes minutes */
		snprintf(pkidir[0], sizeof(pkidir[0]), "%s/ec", argv[1]);
		snprintf(pkidir[1], sizeof(pkidir[1]), "%s/rsa", argv[1]);
		pki[0] = pkidir[0];
		pki[1] = pkidir[1];
		cmd[0] = 0;
	} else {
		snprintf(cmd, sizeof(cmd), "%s %s >/dev/null && %s %s --rsa >/dev/null", argv[1],
			 pki[0], argv[1], pki[1]);
	}
	if (cmd[0] && system(cmd) != 0) {
		fprintf(stderr, "PKI generation failed: %s\n", cmd);
		return 1;
	}
	nbytes = (size_t)(kib ? atol(kib) : 256) * 1024 + 13; /* odd on purpose */
	data_a = malloc(nbytes);
	data_b = malloc(nbytes);
	RAND_bytes(data_a, (int)nbytes);
	RAND_bytes(data_b, (int)nbytes);
	data_t = malloc(nbytes);
	RAND_bytes(data_t, (int)nbytes);
	for (size_t i = 0, line = 0; i < nbytes; i++, line++) {
		if (line > 40 && data_t[i] < 8) {
			data_t[i] = '\n';
			line = 0;
		} else {
			data_t[i] = (uint8_t)('!' + data_t[i] % 94);
		}
	}
	/* gnutls-serv holds a last line that has no newline */
	data_t[nbytes / 4 - 1] = '\n';

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		for (enum mode m = M_KTLS_SRV; m <= M_HALF; m++) {
			if (m >= M_KU_PEER && m <= M_KU_KTLS && suites[i].version != TLS1_3_VERSION)
				continue;
			if (run_case(&suites[i], m))
				passed++;
			else
				failed++;
		}
	}
	printf("kernel %s: %d passed, %d failed, %.1f MiB compared byte-exact\n", kernel, passed,
	       failed, (double)total_bytes / (1024 * 1024));
	free(data_a);
	free(data_b);
	free(data_t);
	return failed ? 1 : 0;
}

// SPDX-License-Identifier: MIT
/*
 * Key install: derive both directions' crypto_info from the finished OpenSSL session and
 * hand them to the kernel (TCP_ULP "tls", TLS_TX, TLS_RX). Two halves, as s2n's
 * validate / enable: install_prepare does everything fallible and leaves the socket
 * untouched; install_commit changes the socket, and nothing fallible follows TLS_TX /
 * TLS_RX, so a caller never falls back to userspace on a socket the kernel already
 * encrypts (ktls_err_fallback_safe says which errors allow it).
 *
 * Record sequence numbers (no getter in OpenSSL, so they must be known exactly): the
 * capture counts the records OpenSSL wrote and read after each direction's Finished.
 *  - TLS 1.3: application keys start at 0, so the kernel starts at that count: a server's
 *    TX after the NewSessionTickets it sent, a client's RX after what it read.
 *  - TLS 1.2: the Finished messages were record 0 under the new keys: 1 + the count.
 * A direction may be installed later than the other (ktls_install_tx, then
 * ktls_conn_install_rx): a client that wants the server's tickets for resumption reads
 * them through OpenSSL while the kernel already encrypts what it sends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

#include "ktlsd/ktls.h"
#include "ktlsd/probe.h"
#include "ktls_internal.h"

static const struct ktls_suite suite_aes128_sha256 = {
	TLS_CIPHER_AES_GCM_128, "SHA256", 16, 4, 8, 4, sizeof(struct tls12_crypto_info_aes_gcm_128),
};
static const struct ktls_suite suite_aes256_sha384 = {
	TLS_CIPHER_AES_GCM_256, "SHA384", 32, 4, 8, 4, sizeof(struct tls12_crypto_info_aes_gcm_256),
};
static const struct ktls_suite suite_chacha_sha256 = {
	TLS_CIPHER_CHACHA20_POLY1305,
	"SHA256",
	32,
	0,
	12,
	12,
	sizeof(struct tls12_crypto_info_chacha20_poly1305),
};

static const struct ktls_suite *suite_for(uint16_t version, uint16_t id)
{
	if (version == TLS1_3_VERSION) {
		switch (id) {
		case 0x1301:
			return &suite_aes128_sha256;
		case 0x1302:
			return &suite_aes256_sha384;
		case 0x1303:
			return &suite_chacha_sha256;
		}
		return NULL;
	}
	switch (id) {
	case 0xc02b: /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	case 0xc02f: /* ECDHE-RSA-AES128-GCM-SHA256 */
	case 0x009e: /* DHE-RSA-AES128-GCM-SHA256 */
		return &suite_aes128_sha256;
	case 0xc02c: /* ECDHE-ECDSA-AES256-GCM-SHA384 */
	case 0xc030: /* ECDHE-RSA-AES256-GCM-SHA384 */
	case 0x009f: /* DHE-RSA-AES256-GCM-SHA384 */
		return &suite_aes256_sha384;
	case 0xcca9: /* ECDHE-ECDSA-CHACHA20-POLY1305 */
	case 0xcca8: /* ECDHE-RSA-CHACHA20-POLY1305 */
	case 0xccaa: /* DHE-RSA-CHACHA20-POLY1305 */
		return &suite_chacha_sha256;
	}
	return NULL;
}

/* Pointers to the iv/key/salt/rec_seq fields of whichever layout suite uses. */
void ktls_info_fields(const struct ktls_suite *suite, union ktls_crypto_info *ci, uint8_t **iv,
		      uint8_t **key, uint8_t **salt, uint8_t **seq)
{
	switch (suite->cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		*iv = ci->gcm128.iv, *key = ci->gcm128.key, *salt = ci->gcm128.salt;
		*seq = ci->gcm128.rec_seq;
		break;
	case TLS_CIPHER_AES_GCM_256:
		*iv = ci->gcm256.iv, *key = ci->gcm256.key, *salt = ci->gcm256.salt;
		*seq = ci->gcm256.rec_seq;
		break;
	default:
		*iv = ci->chacha.iv, *key = ci->chacha.key, *salt = ci->chacha.salt;
		*seq = ci->chacha.rec_seq;
		break;
	}
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

int ktls_crypto_info_tls13(const struct ktls_suite *suite, const uint8_t *secret, size_t secret_len,
			   uint64_t seq, union ktls_crypto_info *ret)
{
	uint8_t *iv, *key, *salt, *rec_seq;
	uint8_t nonce[12];
	int rc;

	memset(ret, 0, sizeof(*ret));
	ret->base.version = TLS_1_3_VERSION;
	ret->base.cipher_type = suite->cipher_type;
	ktls_info_fields(suite, ret, &iv, &key, &salt, &rec_seq);
	rc = ktls_tls13_expand_label(suite->digest, secret, secret_len, "key", key, suite->key_len);
	if (rc < 0)
		goto out_wipe;
	rc = ktls_tls13_expand_label(suite->digest, secret, secret_len, "iv", nonce, sizeof(nonce));
	if (rc < 0)
		goto out_wipe;
	/* The kernel splits the 12-byte static IV into salt || iv (ChaCha: all in iv). */
	memcpy(salt, nonce, suite->salt_len);
	memcpy(iv, nonce + suite->salt_len, suite->iv_len);
	put_be64(rec_seq, seq);
	OPENSSL_cleanse(nonce, sizeof(nonce));
	return 0;
out_wipe:
	OPENSSL_cleanse(nonce, sizeof(nonce));
	OPENSSL_cleanse(ret, sizeof(*ret));
	return rc;
}

/* TLS 1.2 AEAD key block: both directions' crypto_info, rec_seq 1. */
static int crypto_info_tls12(SSL *ssl, const struct ktls_suite *suite, bool server, uint64_t tx_seq,
			     uint64_t rx_seq, union ktls_crypto_info *tx,
			     union ktls_crypto_info *rx)
{
	uint8_t ms[SSL_MAX_MASTER_KEY_LENGTH];
	uint8_t seed[2 * SSL3_RANDOM_SIZE];
	uint8_t block[2 * 32 + 2 * 12];
	size_t ms_len, kl = suite->key_len, fl = suite->fixed_iv_len;
	union ktls_crypto_info *ci[2] = { server ? rx : tx, server ? tx : rx }; /* client, server */
	uint64_t seq[2] = { server ? rx_seq : tx_seq, server ? tx_seq : rx_seq };
	SSL_SESSION *sess = SSL_get_session(ssl);
	int rc = -KTLS_E_NO_SECRETS;

	if (!sess)
		goto out_wipe;
	ms_len = SSL_SESSION_get_master_key(sess, ms, sizeof(ms));
	if (ms_len == 0)
		goto out_wipe;
	if (SSL_get_server_random(ssl, seed, SSL3_RANDOM_SIZE) != SSL3_RANDOM_SIZE ||
	    SSL_get_client_random(ssl, seed + SSL3_RANDOM_SIZE, SSL3_RANDOM_SIZE) !=
		    SSL3_RANDOM_SIZE)
		goto out_wipe;
	rc = ktls_tls12_prf(suite->digest, ms, ms_len, "key expansion", seed, sizeof(seed), block,
			    2 * kl + 2 * fl);
	if (rc < 0)
		goto out_wipe;
	for (int i = 0; i < 2; i++) {
		uint8_t *iv, *key, *salt, *rec_seq;
		const uint8_t *wkey = block + i * kl, *wiv = block + 2 * kl + i * fl;

		memset(ci[i], 0, sizeof(*ci[i]));
		ci[i]->base.version = TLS_1_2_VERSION;
		ci[i]->base.cipher_type = suite->cipher_type;
		ktls_info_fields(suite, ci[i], &iv, &key, &salt, &rec_seq);
		memcpy(key, wkey, kl);
		put_be64(rec_seq, seq[i]);
		if (suite->salt_len) {
			/* GCM: implicit 4-byte salt; explicit nonce = sequence number. */
			memcpy(salt, wiv, suite->salt_len);
			put_be64(iv, seq[i]);
		} else {
			memcpy(iv, wiv, suite->iv_len);
		}
	}
out_wipe:
	OPENSSL_cleanse(ms, sizeof(ms));
	OPENSSL_cleanse(block, sizeof(block));
	return rc;
}

/* --- the DONTDUMP slab for TLS 1.3 secrets kept for rekey ---------------------------- */

/*
 * Kept secrets must not land in core dumps or swap-visible allocator metadata, but a page
 * per connection would cost 4 KiB for a connection that otherwise needs ~100 bytes. So
 * slots are carved from DONTDUMP | WIPEONFORK pages, and pages are never returned
 * (bounded by the peak number of TLS 1.3 connections, plus less than a page per thread).
 *
 * Each thread keeps its own free list, so the workers never contend on an install or a
 * free; a slot freed on another thread than the one it came from simply joins that
 * thread's list. When a thread ends, its free slots go to the orphan list, which a thread
 * whose own list is empty takes whole before it maps a new page: no slot is stranded by
 * thread churn. orphan_lock guards only those two cold paths.
 */
static _Thread_local void *free_list;
static pthread_once_t slab_once = PTHREAD_ONCE_INIT;
static pthread_key_t slab_key; /* non-NULL value: run slab_thread_exit at thread exit */
static bool slab_key_ok;
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static void *orphan_list;

static void *slot_next(void *slot)
{
	void *next;

	memcpy(&next, slot, sizeof(next));
	return next;
}

static void slot_set_next(void *slot, void *next)
{
	memcpy(slot, &next, sizeof(next));
}

/* A thread ends (its TLS is still there): its free slots become the orphans'. */
static void slab_thread_exit(void *unused)
{
	void *tail = free_list;

	if (!tail)
		return;
	while (slot_next(tail))
		tail = slot_next(tail);
	pthread_mutex_lock(&orphan_lock);
	slot_set_next(tail, orphan_list);
	orphan_list = free_list;
	pthread_mutex_unlock(&orphan_lock);
	free_list = NULL;
}

static void slab_init(void)
{
	slab_key_ok = pthread_key_create(&slab_key, slab_thread_exit) == 0;
}

/*
 * list becomes this thread's free list. Whenever the list goes from empty to not, the
 * key is set again so that slab_thread_exit runs (POSIX runs a destructor again when a
 * value is set during destructors). If setspecific fails (ENOMEM), the thread's free slots
 * are lost when it exits: bounded by one thread's list, never a slot in use.
 */
static void slab_set_list(void *list)
{
	if (!free_list && list && slab_key_ok)
		pthread_setspecific(slab_key, &free_list);
	free_list = list;
}

/* A list for this thread: every orphan, or else the slots of a new page. */
static void *slab_refill(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *page;
	void *list;

	pthread_mutex_lock(&orphan_lock);
	list = orphan_list;
	orphan_list = NULL;
	pthread_mutex_unlock(&orphan_lock);
	if (list)
		return list;
	page = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return NULL;
	madvise(page, (size_t)pg, MADV_DONTDUMP);
	madvise(page, (size_t)pg, MADV_WIPEONFORK);
	for (size_t off = 0; off + sizeof(struct ktls_secret_slot) <= (size_t)pg;
	     off += sizeof(struct ktls_secret_slot)) {
		slot_set_next(page + off, list);
		list = page + off;
	}
	return list;
}

struct ktls_secret_slot *ktls_slot_alloc(void)
{
	struct ktls_secret_slot *s;

	pthread_once(&slab_once, slab_init);
	if (!free_list)
		slab_set_list(slab_refill());
	s = free_list;
	if (!s)
		return NULL;
	free_list = slot_next(s);
	memset(s, 0, sizeof(*s));
	return s;
}

void ktls_slot_free(struct ktls_secret_slot *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, sizeof(*s));
	slot_set_next(s, free_list);
	slab_set_list(s);
}

/* --- default seam ------------------------------------------------------------------ */

static int sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len) < 0 ? -errno : 0;
}

static int sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	return getsockopt(fd, level, name, val, len) < 0 ? -errno : 0;
}

static ssize_t sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ssize_t n = sendmsg(fd, msg, flags | MSG_NOSIGNAL);

	return n < 0 ? -errno : n;
}

static ssize_t sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t n = recvmsg(fd, msg, flags);

	return n < 0 ? -errno : n;
}

static pthread_once_t rekey_once = PTHREAD_ONCE_INIT;
static int rekey_result;

/* Rekey is a property of the kernel: asked once per process, with the capability probe. */
static void rekey_probe_once(void)
{
	rekey_result = ktls_probe_rekey();
}

static int sys_rekey_supported(void)
{
	pthread_once(&rekey_once, rekey_probe_once);
	return rekey_result;
}

const struct ktls_ops ktls_default_ops = {
	.setsockopt = sys_setsockopt,
	.getsockopt = sys_getsockopt,
	.sendmsg = sys_sendmsg,
	.recvmsg = sys_recvmsg,
	.rekey_supported = sys_rekey_supported,
};

/* --- install --------------------------------------------------------------------- */

int ktls_install(SSL *ssl, int fd, struct ktls_conn **ret_conn)
{
	return ktls_install_dirs_with(&ktls_default_ops, ssl, fd, KTLS_DIR_TX | KTLS_DIR_RX,
				      ret_conn);
}

int ktls_install_tx(SSL *ssl, int fd, struct ktls_conn **ret_conn)
{
	return ktls_install_dirs_with(&ktls_default_ops, ssl, fd, KTLS_DIR_TX, ret_conn);
}

int ktls_install_with(const struct ktls_ops *ops, SSL *ssl, int fd, struct ktls_conn **ret_conn)
{
	return ktls_install_dirs_with(ops, ssl, fd, KTLS_DIR_TX | KTLS_DIR_RX, ret_conn);
}

/* The capture with usable record counts, or the error that says why not. */
static int counted(SSL *ssl, uint16_t version, struct ktls_captured **ret_cap)
{
	struct ktls_captured *cap = ktls_captured_get(ssl);

	if (!cap)
		return version == TLS1_3_VERSION ? -KTLS_E_NO_SECRETS : -KTLS_E_SEQUENCE;
	if (!cap->tx_fin || !cap->rx_fin || cap->rekeyed)
		return -KTLS_E_SEQUENCE;
	*ret_cap = cap;
	return 0;
}

/*
 * crypto_info at the counted sequence numbers for the directions asked (tx and/or rx, the
 * other NULL); TLS 1.3 secrets kept in c on first use.
 */
static int crypto_infos(struct ktls_conn *c, SSL *ssl, struct ktls_captured *cap,
			union ktls_crypto_info *tx, union ktls_crypto_info *rx)
{
	const struct ktls_suite *suite = c->suite;
	size_t want = strcmp(suite->digest, "SHA384") ? 32 : 48;
	int rc = 0;

	if (c->version != TLS1_3_VERSION) {
		/* One PRF run yields both directions' keys: the unwanted one is wiped. */
		union ktls_crypto_info unused;

		rc = crypto_info_tls12(ssl, suite, c->server, 1 + (uint64_t)cap->tx_records,
				       1 + (uint64_t)cap->rx_records, tx ? tx : &unused,
				       rx ? rx : &unused);
		OPENSSL_cleanse(&unused, sizeof(unused));
		return rc;
	}
	if (!c->secrets) {
		if (cap->client_len != want || cap->server_len != want)
			return -KTLS_E_NO_SECRETS;
		c->secrets = ktls_slot_alloc();
		if (!c->secrets)
			return -ENOMEM;
		c->secret_len = (uint8_t)want;
		memcpy(c->secrets->tx, c->server ? cap->server : cap->client, want);
		memcpy(c->secrets->rx, c->server ? cap->client : cap->server, want);
		/*
		 * The kept copy is the slot's; the capture is not needed again whatever happens
		 * next (on a fallback OpenSSL keeps its own keys), so it goes now, not at SSL_free.
		 */
		OPENSSL_cleanse(cap->client, sizeof(cap->client));
		OPENSSL_cleanse(cap->server, sizeof(cap->server));
		cap->client_len = cap->server_len = 0;
	}
	if (tx)
		rc = ktls_crypto_info_tls13(suite, c->secrets->tx, want, cap->tx_records, tx);
	if (rc == 0 && rx)
		rc = ktls_crypto_info_tls13(suite, c->secrets->rx, want, cap->rx_records, rx);
	return rc;
}

/* The negotiated session can go to the kernel at all: the suite and the counted capture. */
static int install_check(SSL *ssl, unsigned dirs, const struct ktls_suite **ret_suite,
			 struct ktls_captured **ret_cap)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
	int version = SSL_version(ssl);
	const struct ktls_suite *suite;

	if (!(dirs & KTLS_DIR_TX))
		return -EINVAL;
	if (version != TLS1_2_VERSION && version != TLS1_3_VERSION)
		return -KTLS_E_UNSUPPORTED_VERSION;
	if (!cipher || !SSL_is_init_finished(ssl))
		return -EINVAL;
	suite = suite_for((uint16_t)version, SSL_CIPHER_get_protocol_id(cipher));
	if (!suite)
		return -KTLS_E_UNSUPPORTED_CIPHER;
	/* Bytes OpenSSL already read would be lost to the kernel's record stream. */
	if ((dirs & KTLS_DIR_RX) && SSL_has_pending(ssl))
		return -KTLS_E_PENDING;
	*ret_suite = suite;
	return counted(ssl, (uint16_t)version, ret_cap);
}

/* Everything an install needs, made by install_prepare before the socket changes. */
struct install {
	struct ktls_conn *c;
	BIO *null_wbio; /* OpenSSL's write BIO once the kernel owns TX */
	union ktls_crypto_info tx, rx;
	bool with_rx;
};

/* Frees what the install did not hand over; wipes the crypto_info. */
static void install_release(struct install *in)
{
	ktls_conn_free(in->c);
	in->c = NULL;
	BIO_free(in->null_wbio);
	in->null_wbio = NULL;
	OPENSSL_cleanse(&in->tx, sizeof(in->tx));
	OPENSSL_cleanse(&in->rx, sizeof(in->rx));
}

/*
 * The fallible half (s2n's validate): checks, keys, crypto_info, the connection and the
 * discarding write BIO, leaving the socket untouched whatever happens. Once TLS_TX is set,
 * whatever OpenSSL writes (a record of its own: close_notify, an alert) the kernel would
 * encrypt again as application data: TX only, OpenSSL goes on reading but must never
 * write; and a failure after the socket changed leaves OpenSSL the same discarding BIO.
 */
static int install_prepare(const struct ktls_ops *ops, SSL *ssl, int fd, unsigned dirs,
			   struct install *in)
{
	const struct ktls_suite *suite = NULL;
	struct ktls_captured *cap = NULL;
	struct ktls_conn *c;
	int rc;

	memset(in, 0, sizeof(*in));
	in->with_rx = dirs & KTLS_DIR_RX;
	rc = install_check(ssl, dirs, &suite, &cap);
	if (rc < 0)
		return rc;
	in->null_wbio = BIO_new(BIO_s_null());
	c = in->c = calloc(1, sizeof(*c));
	if (!in->null_wbio || !c) {
		rc = -ENOMEM;
		goto out_release;
	}
	c->ops = ops;
	c->suite = suite;
	c->fd = fd;
	c->version = (uint16_t)SSL_version(ssl);
	c->server = SSL_is_server(ssl);
	c->cipher_name = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
	rc = crypto_infos(c, ssl, cap, &in->tx, in->with_rx ? &in->rx : NULL);
	if (rc < 0)
		goto out_release;
	return 0;
out_release:
	install_release(in);
	return rc;
}

/*
 * The socket-changing half (s2n's enable): TCP_ULP, TLS_TX, TLS_RX. A refused ULP leaves
 * the socket as it was; after that every error means close, and after TLS_TX / TLS_RX
 * nothing fallible follows.
 */
static int install_commit(struct install *in, SSL *ssl)
{
	struct ktls_conn *c = in->c;
	int rc;

	rc = c->ops->setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", 3);
	if (rc == -ENOENT)
		rc = -KTLS_E_NO_ULP;
	/* tls_init() wants TCP_ESTABLISHED: the peer's FIN is in (CLOSE_WAIT), nothing changed */
	if (rc == -ENOTCONN)
		rc = -KTLS_E_NOT_ESTABLISHED;
	if (rc < 0)
		return rc;
	rc = c->ops->setsockopt(c->fd, SOL_TLS, TLS_TX, &in->tx, c->suite->info_len);
	if (rc == 0 && in->with_rx) {
		rc = c->ops->setsockopt(c->fd, SOL_TLS, TLS_RX, &in->rx, c->suite->info_len);
		c->rx_installed = rc == 0;
	}
	/* TX only, or the socket changed and failed: OpenSSL must never write again. */
	if (rc < 0 || !in->with_rx) {
		SSL_set0_wbio(ssl, in->null_wbio);
		in->null_wbio = NULL;
	}
	return rc;
}

int ktls_install_dirs_with(const struct ktls_ops *ops, SSL *ssl, int fd, unsigned dirs,
			   struct ktls_conn **ret_conn)
{
	struct install in;
	int rc;

	rc = install_prepare(ops, ssl, fd, dirs, &in);
	if (rc < 0)
		return rc;
	rc = install_commit(&in, ssl);
	if (rc == 0) {
		*ret_conn = in.c;
		in.c = NULL;
	}
	install_release(&in);
	return rc;
}

/*
 * Userspace records: the prepare half, then the keys go to record.c instead of the kernel.
 * TX only: OpenSSL goes on reading (a client's tickets) and must never write again.
 */
int ktls_rec_new(SSL *ssl, unsigned dirs, struct ktls_conn **ret_conn)
{
	struct install in;
	int rc;

	if (SSL_version(ssl) != TLS1_3_VERSION)
		return -KTLS_E_UNSUPPORTED_VERSION;
	rc = install_prepare(&ktls_default_ops, ssl, -1, dirs, &in);
	if (rc < 0)
		return rc;
	in.c->rec = ktls_rec_alloc();
	rc = in.c->rec ? ktls_rec_set_key(in.c, TLS_TX, &in.tx) : -ENOMEM;
	if (rc == 0 && in.with_rx)
		rc = ktls_rec_set_key(in.c, TLS_RX, &in.rx);
	if (rc == 0) {
		in.c->rx_installed = in.with_rx;
		if (!in.with_rx) {
			SSL_set0_wbio(ssl, in.null_wbio);
			in.null_wbio = NULL;
		}
		*ret_conn = in.c;
		in.c = NULL;
	}
	install_release(&in);
	return rc;
}

int ktls_conn_install_rx(struct ktls_conn *c, SSL *ssl)
{
	union ktls_crypto_info rx;
	struct ktls_captured *cap = NULL;
	int rc;

	if (c->rx_installed)
		return -EALREADY;
	if (SSL_has_pending(ssl))
		return -KTLS_E_PENDING;
	rc = counted(ssl, c->version, &cap);
	if (rc < 0)
		return rc;
	rc = crypto_infos(c, ssl, cap, NULL, &rx);
	if (rc == 0 && c->rec)
		rc = ktls_rec_set_key(c, TLS_RX, &rx);
	else if (rc == 0)
		rc = c->ops->setsockopt(c->fd, SOL_TLS, TLS_RX, &rx, c->suite->info_len);
	if (rc == 0)
		c->rx_installed = true;
	OPENSSL_cleanse(&rx, sizeof(rx));
	return rc;
}

int ktls_conn_fd(const struct ktls_conn *c)
{
	return c->fd;
}

uint16_t ktls_conn_version(const struct ktls_conn *c)
{
	return c->version;
}

const char *ktls_conn_cipher_name(const struct ktls_conn *c)
{
	return c->cipher_name;
}

uint64_t ktls_conn_tx_generation(const struct ktls_conn *c)
{
	return c->tx_gen;
}

uint64_t ktls_conn_rx_generation(const struct ktls_conn *c)
{
	return c->rx_gen;
}

void ktls_conn_free(struct ktls_conn *c)
{
	if (!c)
		return;
	ktls_rec_free(c->rec);
	ktls_slot_free(c->secrets);
	free(c);
}

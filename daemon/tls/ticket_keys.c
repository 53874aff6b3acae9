// SPDX-License-Identifier: MIT
/*
 * Session-ticket keys: the ring, lazy rotation and OpenSSL's ticket callback. The rules
 * (why two keys, when one expires) are in ticket_keys.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "secmem.h"
#include "ticket_keys.h"

#define TK_NAME_LEN 16 /* TLSEXT_KEYNAME_LENGTH, fixed by the callback's signature */
#define TK_AES_LEN  32
#define TK_HMAC_LEN 32

struct tk_key {
	unsigned char name[TK_NAME_LEN];
	unsigned char aes[TK_AES_LEN];
	unsigned char hmac[TK_HMAC_LEN];
	time_t created;
	bool used; /* slot holds a key */
};

struct ticket_keys {
	pthread_mutex_t lock;
	struct tk_key cur;  /* under lock */
	struct tk_key prev; /* under lock; .used false until the first rotation */
	time_t (*now)(void);
	EVP_CIPHER *cipher; /* fetched once: a per-ticket fetch takes a global lock */
	time_t lifetime;
	_Atomic uint64_t rotations;
};

static pthread_once_t tk_once = PTHREAD_ONCE_INIT;
static int tk_idx = -1;

static time_t wall_clock(void)
{
	return time(NULL);
}

/* The name is public (it travels in every ticket); only the two keys need the private DRBG. */
static int key_make(struct tk_key *k, time_t now)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1) {
		OPENSSL_cleanse(k, sizeof(*k));
		return -EIO;
	}
	k->created = now;
	k->used = true;
	return 0;
}

/* Subtraction first: created + 2 * lifetime could overflow for keys made near the end of time. */
static bool key_encrypts(const struct ticket_keys *tk, const struct tk_key *k, time_t now)
{
	return k->used && now - k->created < tk->lifetime;
}

static bool key_decrypts(const struct ticket_keys *tk, const struct tk_key *k, time_t now)
{
	return k->used && now - k->created < 2 * tk->lifetime;
}

int ticket_keys_new(unsigned lifetime_s, struct ticket_keys **ret_tk)
{
	struct ticket_keys *tk;
	int rc;

	if (lifetime_s == 0 || lifetime_s > TICKET_KEYS_MAX_LIFETIME)
		return -EINVAL;
	/* The whole ring, names included, in pages no core file gets (secmem.h). */
	rc = secmem_alloc(sizeof(*tk), (void **)&tk);
	if (rc)
		return rc;
	tk->lifetime = (time_t)lifetime_s;
	tk->now = wall_clock;
	atomic_init(&tk->rotations, 0);
	tk->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (!tk->cipher) {
		rc = -ENOTSUP;
		goto out_free_tk;
	}
	rc = key_make(&tk->cur, tk->now());
	if (rc)
		goto out_free_cipher;
	rc = -pthread_mutex_init(&tk->lock, NULL);
	if (rc)
		goto out_cleanse;
	*ret_tk = tk;
	return 0;

out_cleanse:
	OPENSSL_cleanse(&tk->cur, sizeof(tk->cur));
out_free_cipher:
	EVP_CIPHER_free(tk->cipher);
out_free_tk:
	secmem_free(tk, sizeof(*tk));
	return rc;
}

void ticket_keys_free(struct ticket_keys *tk)
{
	if (!tk)
		return;
	pthread_mutex_destroy(&tk->lock);
	EVP_CIPHER_free(tk->cipher);
	secmem_free(tk, sizeof(*tk)); /* wipes */
}

void ticket_keys_set_clock(struct ticket_keys *tk, time_t (*now)(void))
{
	pthread_mutex_lock(&tk->lock);
	tk->now = now;
	tk->cur.created = now();
	pthread_mutex_unlock(&tk->lock);
}

uint64_t ticket_keys_rotations(const struct ticket_keys *tk)
{
	return atomic_load_explicit(&tk->rotations, memory_order_relaxed);
}

/*
 * Copies the key to encrypt with into *ret_k, rotating first when the current one has
 * served its lifetime. The new key is drawn under the lock so that two threads racing
 * past the deadline rotate once, not twice (which would drop a still-valid key).
 */
static int key_for_encrypt(struct ticket_keys *tk, struct tk_key *ret_k)
{
	struct tk_key fresh;
	time_t now;
	int rc = 0;

	pthread_mutex_lock(&tk->lock);
	now = tk->now();
	if (!key_encrypts(tk, &tk->cur, now)) {
		rc = key_make(&fresh, now);
		if (rc)
			goto out_unlock;
		tk->prev = tk->cur;
		tk->cur = fresh;
		OPENSSL_cleanse(&fresh, sizeof(fresh));
		atomic_fetch_add_explicit(&tk->rotations, 1, memory_order_relaxed);
	}
	*ret_k = tk->cur;
out_unlock:
	pthread_mutex_unlock(&tk->lock);
	return rc;
}

/*
 * Copies the still-valid key called name into *ret_k; *ret_old says it is the older key
 * (the ticket is good but should be replaced by one under the current key). Returns 0 or
 * -ENOENT (no such key, or expired).
 */
static int key_for_decrypt(struct ticket_keys *tk, const unsigned char name[TK_NAME_LEN],
			   struct tk_key *ret_k, bool *ret_old)
{
	time_t now;
	int rc = 0;

	pthread_mutex_lock(&tk->lock);
	now = tk->now();
	if (key_decrypts(tk, &tk->cur, now) && !memcmp(tk->cur.name, name, TK_NAME_LEN)) {
		*ret_k = tk->cur;
		*ret_old = false;
	} else if (key_decrypts(tk, &tk->prev, now) && !memcmp(tk->prev.name, name, TK_NAME_LEN)) {
		*ret_k = tk->prev;
		*ret_old = true;
	} else {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&tk->lock);
	return rc;
}

/* Returns 0 or -EINVAL (the MAC context refused the key or the digest). */
static int set_hmac_key(EVP_MAC_CTX *hctx, unsigned char *key)
{
	static char digest[] = "SHA256"; /* OSSL_PARAM wants a non-const pointer */
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, TK_HMAC_LEN),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};

	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -EINVAL;
}

/*
 * OpenSSL's ticket callback. enc=1: seal a new ticket (1, or -1 on error). enc=0: open one
 * (1: current key, 2: older key, renew the ticket, 0: unknown or expired key, so a full
 * handshake, -1: error). Key material is copied out of the ring and wiped on every path.
 */
static int ticket_cb(SSL *ssl, unsigned char key_name[TK_NAME_LEN],
		     unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx,
		     int enc)
{
	struct ticket_keys *tk = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tk_idx);
	struct tk_key k;
	int ret = -1;

	/* Not attached to this SSL's context: a wiring bug, fail loudly rather than guess. */
	if (!tk)
		return -1;
	if (enc) {
		if (key_for_encrypt(tk, &k))
			return -1;
		memcpy(key_name, k.name, TK_NAME_LEN);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(tk->cipher)) != 1 ||
		    EVP_EncryptInit_ex2(cctx, tk->cipher, k.aes, iv, NULL) != 1 ||
		    set_hmac_key(hctx, k.hmac))
			goto out_cleanse;
		ret = 1;
	} else {
		bool old;

		if (key_for_decrypt(tk, key_name, &k, &old))
			return 0;
		if (set_hmac_key(hctx, k.hmac) ||
		    EVP_DecryptInit_ex2(cctx, tk->cipher, k.aes, iv, NULL) != 1)
			goto out_cleanse;
		ret = old ? 2 : 1;
	}
out_cleanse:
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

static void tk_idx_init(void)
{
	tk_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int ticket_keys_attach(SSL_CTX *ctx, struct ticket_keys *tk)
{
	if (!ctx || !tk)
		return -EINVAL;
	if (pthread_once(&tk_once, tk_idx_init) || tk_idx < 0)
		return -ENOMEM;
	if (SSL_CTX_set_ex_data(ctx, tk_idx, tk) != 1)
		return -ENOMEM;
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
		SSL_CTX_set_ex_data(ctx, tk_idx, NULL);
		return -EINVAL;
	}
	SSL_CTX_set_timeout(ctx, (long)tk->lifetime);
	return 0;
}

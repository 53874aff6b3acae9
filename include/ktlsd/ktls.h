/* SPDX-License-Identifier: MIT */
/*
 * libktls: move an OpenSSL 3 session into kernel TLS, both directions.
 *
 * Usage, per connection:
 *   ktls_ctx_prepare(ctx, server)  once per SSL_CTX: keylog + record-count callbacks
 *   ... non-blocking handshake with OpenSSL on a socket BIO ...
 *   ktls_install(ssl, fd, &conn)  TCP_ULP "tls" + TLS_TX + TLS_RX, exact sequence numbers
 *   SSL_free(ssl)                 the kernel owns the session now
 *   ... splice; on a non-data record: ktls_conn_recv_control(conn, ...) ...
 *   ktls_conn_send_close_notify(conn); ktls_conn_free(conn)
 *
 * Every function returns 0 or -errno. No logging: ktls_strerror() words the errors
 * that are specific to this library; other values are plain errno.
 */
#ifndef KTLSD_KTLS_H
#define KTLSD_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <openssl/ssl.h>

/* Library-specific errors, returned negated; distinct from errno values in use. */
enum {
	KTLS_E_BASE = 4000,
	KTLS_E_UNSUPPORTED_CIPHER,  /* negotiated suite has no kTLS equivalent */
	KTLS_E_UNSUPPORTED_VERSION, /* not TLS 1.2 / 1.3 */
	KTLS_E_NO_SECRETS,	    /* keylog capture was not attached, or missed a secret */
	KTLS_E_PENDING,		    /* OpenSSL holds unread bytes: installing would lose them */
	KTLS_E_NO_ULP,		    /* kernel has no "tls" ULP (CONFIG_TLS off / module blocked) */
	KTLS_E_REKEY_UNSUPPORTED,   /* peer sent KeyUpdate; this kernel cannot follow (< 6.14) */
	KTLS_E_PROTOCOL,	    /* malformed or unexpected record from the peer */
	KTLS_E_SEQUENCE,	    /* record sequence unknown (not counted, or keys updated) */
	KTLS_E_NOT_ESTABLISHED,	    /* TCP not ESTABLISHED: the peer's FIN came before install */
	KTLS_E_BAD_RECORD,	    /* userspace records: a record failed authentication */
	KTLS_E_RECORD_OVERFLOW,	    /* userspace records: a record longer than TLS allows */
	KTLS_E_MAX
};

/* Text for a negative return value of any ktls_* function (errno text otherwise). */
const char *ktls_strerror(int err);

/*
 * True if err (a negative return of ktls_install / ktls_install_tx / _with variants)
 * means the socket is untouched and OpenSSL still owns the session: the caller may go on
 * relaying in userspace. Any other error: the kernel may already encrypt, close.
 */
bool ktls_err_fallback_safe(int err);

/*
 * Prepare an SSL_CTX for kTLS: installs the keylog callback that captures traffic
 * secrets into per-SSL storage (never logged or written; chains to a keylog callback
 * already set) and the message callback that counts the records OpenSSL wrote and read
 * after the handshake (the SSL_CTX's msg callback belongs to libktls from then on), so
 * the kernel's sequence numbers are exact whatever OpenSSL sent or read before install:
 * a TLS 1.3 server may send session tickets. Turns TLS 1.2 renegotiation off. Call
 * before creating SSL objects from ctx. server: kept for compatibility, unused.
 */
int ktls_ctx_prepare(SSL_CTX *ctx, bool server);

/* Established kTLS connection state: small, no SSL object. */
struct ktls_conn;

/*
 * After a completed handshake on connected TCP socket fd: checks SSL_has_pending,
 * derives keys, sets TCP_ULP + TLS_TX + TLS_RX. On success *ret_conn owns the crypto
 * state (TLS 1.3 traffic secrets kept in MADV_DONTDUMP memory for rekey); the caller may
 * then SSL_free(ssl). On failure the socket is untouched if ktls_err_fallback_safe(err):
 * KTLS_E_NO_ULP / _UNSUPPORTED_* / _PENDING / _NO_SECRETS / _SEQUENCE / _NOT_ESTABLISHED
 * (caller may fall back to userspace), otherwise the connection must be closed: the kernel
 * may already encrypt what is written, so ssl has been given a write BIO that discards
 * (SSL_shutdown and OpenSSL's alerts write nothing; close_notify cannot be sent).
 * _NOT_ESTABLISHED: the kernel attaches TLS only to an ESTABLISHED socket, and this one
 * has the peer's FIN already (CLOSE_WAIT): whatever the peer sent is still there to read.
 * Record sequence numbers continue from what OpenSSL sent and read after the handshake
 * (counted by ktls_ctx_prepare's callbacks): TLS 1.3 from 0, TLS 1.2 from 1. Records
 * that arrive later (tickets, KeyUpdate, alerts) go to ktls_conn_recv_control().
 */
int ktls_install(SSL *ssl, int fd, struct ktls_conn **ret_conn);

/*
 * Split install, for a client that wants the server's TLS 1.3 tickets (resumption):
 * ktls_install_tx() sets TCP_ULP + TLS_TX only (same checks and fallback rules as
 * ktls_install, except that OpenSSL may still hold unread bytes) and gives ssl a write
 * BIO that discards, since the kernel owns the write side from then on. The caller keeps
 * reading through SSL_read (tickets are processed by OpenSSL, data is the caller's), then
 * calls ktls_conn_install_rx() with the same ssl: TLS_RX at the counted sequence.
 * install_rx returns -KTLS_E_PENDING while OpenSSL holds a partial record (read on and
 * retry), -KTLS_E_SEQUENCE if the peer updated its keys through OpenSSL meanwhile
 * (RX cannot follow: close the connection), or -errno from the kernel (close). Only after it succeeded may the caller SSL_free(ssl).
 */
int ktls_install_tx(SSL *ssl, int fd, struct ktls_conn **ret_conn);
int ktls_conn_install_rx(struct ktls_conn *c, SSL *ssl);

/* Connection facts for logs and /connections. */
int ktls_conn_fd(const struct ktls_conn *c);
uint16_t ktls_conn_version(const struct ktls_conn *c);	      /* TLS1_2_VERSION / TLS1_3_VERSION */
const char *ktls_conn_cipher_name(const struct ktls_conn *c); /* OpenSSL (IANA) name */

/* What ktls_conn_recv_control() found and did. */
enum ktls_control {
	KTLS_CTRL_CLOSE_NOTIFY, /* peer closed its write side cleanly */
	KTLS_CTRL_ALERT,	/* fatal (or unknown warning) alert: *ret_alert has the code */
	KTLS_CTRL_TICKET,	/* TLS 1.3 NewSessionTicket consumed */
	KTLS_CTRL_KEY_UPDATE,	/* KeyUpdate followed in kernel (and answered if requested) */
	KTLS_CTRL_DATA,		/* the next record is application data after all */
};

/*
 * Call when splice/recv on the kTLS socket failed with EINVAL/EIO (a non-data record is
 * next). Reads exactly one record with recvmsg + TLS_GET_RECORD_TYPE and acts on it.
 * Returns 0 with *ret_ctrl set, -EAGAIN if nothing is readable yet,
 * -KTLS_E_REKEY_UNSUPPORTED if the peer updated its keys and the kernel can't follow,
 * -KTLS_E_PROTOCOL on garbage, -ECONNRESET on TCP EOF without close_notify, or -errno
 * (EBADMSG: record failed authentication). A peer KeyUpdate is followed here (TLS_RX);
 * if it had update_requested, our answer is owed (ktls_conn_key_update_owed) and NOT sent
 * here: the kernel does not pause TX across a rekey, so a data record written between our
 * KeyUpdate and the new TLS_TX (by another thread, an io_uring splice) would go out under
 * the old key after we announced the new one. The caller sends it with
 * ktls_conn_update_tx(c, false) at a point where nothing else writes the socket, before
 * its next application data (RFC 8446 4.6.3).
 */
int ktls_conn_recv_control(struct ktls_conn *c, enum ktls_control *ret_ctrl, uint8_t *ret_alert);

/* The peer asked for our KeyUpdate and it has not been sent yet. */
bool ktls_conn_key_update_owed(const struct ktls_conn *c);

/*
 * Call when a read (splice or recv) of the kTLS socket returned 0. The kernel returns 0 both
 * at the end of the stream and for a zero-length application-data record, which TLS allows
 * (RFC 8446 5.1 for 1.3; 1.2 too): only the record sequence number tells them apart.
 * Returns 0: a record was consumed since the last call (an empty one): read again;
 * 1: nothing was consumed since the previous zero read: the peer's TCP FIN, no record left
 * (so the end of a stream is seen as two zero reads, the first answered 0); -KTLS_E_PROTOCOL
 * after more than KTLS_MAX_EMPTY_RECORDS empty records in a row (OpenSSL's limit too: each
 * costs a read and moves nothing); or -errno.
 */
#define KTLS_MAX_EMPTY_RECORDS 32
int ktls_conn_zero_read(struct ktls_conn *c);

/* Send an alert record (level 1 warning / 2 fatal) through the kernel. */
int ktls_conn_send_alert(struct ktls_conn *c, uint8_t level, uint8_t desc);
int ktls_conn_send_close_notify(struct ktls_conn *c);

/*
 * Initiate a TLS 1.3 KeyUpdate of our TX keys: the KeyUpdate record under the old key, then
 * TLS_TX with the next one. Nothing else may write the socket meanwhile (see
 * ktls_conn_recv_control). On a kernel that cannot rekey (< 6.14) returns
 * -KTLS_E_REKEY_UNSUPPORTED having sent nothing: the connection goes on as before.
 * -EAGAIN: the socket's send buffer is full, nothing was sent: retry when writable.
 * Any other error after the record went out leaves TX on a key the peer has left: every
 * later send through libktls fails with -EPIPE and the connection must be closed.
 * TLS 1.2: -KTLS_E_UNSUPPORTED_VERSION.
 */
int ktls_conn_update_tx(struct ktls_conn *c, bool request_peer_update);

/*
 * Userspace records (record.c): what the kernel's TLS ULP does, done by libktls for hosts
 * without kTLS, so the SSL can be freed after the handshake all the same. TLS 1.3 only.
 * The connection is the same struct ktls_conn: non-data records take the control path of
 * ktls_conn_recv_control (alerts, tickets skipped, a peer's KeyUpdate followed and our
 * answer owed). Nothing here does I/O: the caller moves the bytes.
 *
 * ktls_rec_new: the keys of dirs (KTLS_DIR_TX [| KTLS_DIR_RX]) at the counted sequence
 * numbers (ktls_ctx_prepare's capture); with both, SSL_free(ssl) next. TX only (a client
 * that reads its resumption tickets through OpenSSL first): OpenSSL's writes are discarded
 * from then on, and ktls_conn_install_rx takes RX over later, as with the kernel. Fails as
 * ktls_install's prepare half does (the SSL is untouched: the caller may go on with
 * OpenSSL), or -KTLS_E_UNSUPPORTED_VERSION (TLS 1.2).
 */
#define KTLS_REC_HDR	   5
#define KTLS_REC_TAG	   16
#define KTLS_REC_PLAIN_MAX 16384 /* plaintext bytes per record */
/* One sealed record is its plaintext plus this (header, content type, tag). */
#define KTLS_REC_OVERHEAD (KTLS_REC_HDR + 1 + KTLS_REC_TAG)
/* Room ktls_rec_unseal needs in out: the longest inner plaintext (with padding). */
#define KTLS_REC_INNER_MAX (KTLS_REC_PLAIN_MAX + 256 - KTLS_REC_TAG)
int ktls_rec_new(SSL *ssl, unsigned dirs, struct ktls_conn **ret_conn);

/*
 * Seal one record of type (23 data, 21 alert, 22 handshake) in place: rec holds len
 * (<= KTLS_REC_PLAIN_MAX) plaintext bytes at rec + KTLS_REC_HDR and room for
 * KTLS_REC_OVERHEAD - KTLS_REC_HDR more after them. Returns the record's length.
 */
ssize_t ktls_rec_seal(struct ktls_conn *c, uint8_t type, uint8_t *rec, size_t len);
/* An alert record (level 1 warning / 2 fatal) into out (>= 24 bytes); its length. */
ssize_t ktls_rec_seal_alert(struct ktls_conn *c, uint8_t level, uint8_t desc, uint8_t *out,
			    size_t cap);
/* Our owed KeyUpdate (ktls_conn_key_update_owed) into out (>= 27 bytes) under the old key;
 * every later record uses the next one. Returns its length. */
ssize_t ktls_rec_seal_key_update(struct ktls_conn *c, uint8_t *out, size_t cap);

/*
 * Open the first record of the avail bytes at in into out (outcap >= KTLS_REC_INNER_MAX).
 * 0: *used bytes of in were one record; *ctrl says what it was: KTLS_CTRL_DATA with *len
 * plaintext bytes at out (may be 0: an empty record), or a control record as
 * ktls_conn_recv_control reports it (its plaintext is wiped). -EAGAIN: in holds less than
 * one record (nothing used). Errors, each fatal for the connection: -KTLS_E_PROTOCOL,
 * -KTLS_E_BAD_RECORD, -KTLS_E_RECORD_OVERFLOW, -EIO, -ENOMEM; ktls_rec_alert names the
 * alert to send for it.
 */
int ktls_rec_unseal(struct ktls_conn *c, const uint8_t *in, size_t avail, size_t *used,
		    uint8_t *out, size_t outcap, size_t *len, enum ktls_control *ctrl,
		    uint8_t *alert);
/* The fatal alert (RFC 8446 6.2) that an error of ktls_rec_unseal calls for. */
uint8_t ktls_rec_alert(int err);
/* Nothing more may be sealed on c (a fatal alert went either way). */
void ktls_rec_stop_tx(struct ktls_conn *c);

/* Wipes secrets and frees; does not close the fd. NULL is fine. */
void ktls_conn_free(struct ktls_conn *c);

/*
 * The seam: every kernel call libktls makes on a connection's socket, so unit tests can
 * record the exact bytes. Each returns 0 / a byte count, or -errno. ktls_install() uses
 * ktls_default_ops; the ops pointer is kept in the ktls_conn for later calls.
 * rekey_supported: 1 if this kernel accepts a second TLS_TX/TLS_RX (6.14+), 0 if not,
 * -errno if that could not be found out (default: tried once per process on a throwaway
 * loopback socket pair).
 */
struct ktls_ops {
	int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
	int (*getsockopt)(int fd, int level, int name, void *val, socklen_t *len);
	ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
	ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
	int (*rekey_supported)(void);
};

extern const struct ktls_ops ktls_default_ops;

/* ktls_install() with another seam (tests); _dirs_ with KTLS_DIR_TX [| KTLS_DIR_RX]. */
enum { KTLS_DIR_TX = 1, KTLS_DIR_RX = 2 };
int ktls_install_with(const struct ktls_ops *ops, SSL *ssl, int fd, struct ktls_conn **ret_conn);
int ktls_install_dirs_with(const struct ktls_ops *ops, SSL *ssl, int fd, unsigned dirs,
			   struct ktls_conn **ret_conn);

/* TLS 1.3 traffic secrets currently installed in the kernel (rekey follows these). */
uint64_t ktls_conn_tx_generation(const struct ktls_conn *c); /* our KeyUpdates done */
uint64_t ktls_conn_rx_generation(const struct ktls_conn *c); /* peer KeyUpdates followed */

/*
 * Key schedule, exposed for tests and tools. digest is an OpenSSL name ("SHA256").
 * All wipe their intermediates; out is the caller's to wipe.
 *   ktls_tls13_expand_label: HKDF-Expand-Label(secret, "tls13 " label, "", out_len)
 *   ktls_tls13_next_secret:  HKDF-Expand-Label(secret, "traffic upd", "", secret_len)
 *   ktls_tls12_prf:          TLS 1.2 PRF(secret, label, seed) -> out_len bytes
 */
int ktls_tls13_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			    const char *label, uint8_t *out, size_t out_len);
int ktls_tls13_next_secret(const char *digest, const uint8_t *secret, size_t secret_len,
			   uint8_t *out);
int ktls_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
		   const uint8_t *seed, size_t seed_len, uint8_t *out, size_t out_len);

#endif /* KTLSD_KTLS_H */

/*
 * mtls-load: mutual-TLS load generator for ktlsd and the proxies it is compared with.
 *
 * Architecture: --threads workers, each with its own epoll set, its own share of the
 * connections and its own result counters (summed once, after join): nothing shared and
 * mutable while the load runs.  Sockets are non-blocking; every connection is a small
 * state machine (TCP connect -> TLS 1.3 client handshake with a client certificate ->
 * mode-specific traffic) driven by readiness, with OpenSSL doing its own reads and
 * writes on the socket.  Traffic follows the bench-backend protocol (bench-backend.c):
 * a first byte picks echo ('E'), sink ('K' + u64 length) or source ('R' + u64 length).
 *
 * Modes:
 *   handshake  new TCP connection + full mTLS handshake + 1-byte echo + close, repeated
 *              (--resume: offer the previous connection's session ticket); closed loop on
 *              --conns slots, or open loop with --rate: new connections start at a fixed
 *              rate (a token bucket per worker, timed by its epoll_wait timeout) whatever
 *              the server's speed, at most --parallel in flight
 *   up         --conns streams client -> backend (sink)   for --duration or --bytes each
 *   down       --conns streams backend -> client (source) for --duration or --bytes each
 *   latency    --conns connections doing --size request/response ping-pong, one at a time
 *   idle       open --conns handshaken connections, hold them until SIGUSR1/SIGTERM/SIGINT
 *              (or --duration), then close them
 *
 * Output: one JSON object on one line on stdout.  Run time is bounded by --duration plus
 * --grace (connection setup, draining), whatever the server does.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench-common.h"

#define CHUNK		       (16 * 1024)
#define PATTERN_P	       251
#define MAX_EVENTS	       256
#define MAX_SAMPLES_PER_THREAD (4u << 20)
/*
 * --rate: starts that fall due while every slot is busy (or while the worker was not
 * scheduled) wait in the bucket up to this long, then are dropped and counted as missed:
 * short stalls are caught up, a server or client that cannot keep the rate shows as a
 * lower handshakes_per_s and a nonzero starts_missed, not as a silent burst later.
 */
#define RATE_BURST_NS (1000 * 1000000ull)

enum mode { MODE_HANDSHAKE, MODE_UP, MODE_DOWN, MODE_LATENCY, MODE_IDLE };
static const char *const mode_names[] = { "handshake", "up", "down", "latency", "idle" };

enum cstate {
	ST_CONNECTING,
	ST_HANDSHAKE,
	ST_SEND,   /* write c->out[0..out_len) */
	ST_RECV,   /* read c->in_want bytes */
	ST_STREAM, /* up: write pattern; down: read pattern */
	ST_HOLD,   /* idle: established, waiting */
	ST_DONE,
};

struct config {
	enum mode mode;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *target;
	const char *cert, *key, *cacert, *servername, *ready_file;
	unsigned int threads, conns, parallel;
	double duration, grace;
	double rate;	      /* handshake: new connections per second in total; 0 = closed loop */
	uint64_t bytes;	      /* per connection, up/down; 0 = for --duration */
	uint64_t count;	      /* handshake, closed loop: this many connections in all, then stop */
	size_t size;	      /* latency message size */
	uint64_t interval_ns; /* latency: one request per interval at most (0: back to back) */
	uint64_t skip_ns;     /* latency: samples of the first skip_ns are not kept */
	bool resume, verify;
};

struct conn {
	struct worker *w;
	int fd;
	SSL *ssl;
	enum cstate state;
	uint32_t events;
	uint64_t t_start, t_send; /* ns */
	uint8_t out[CHUNK];
	size_t out_len, out_off;
	uint8_t in[CHUNK];
	size_t in_want, in_got;
	uint64_t stream; /* up: bytes written, down: bytes read (after the header) */
	SSL_SESSION *sess;
	unsigned int rounds; /* latency: ping-pongs done on this connection */
	bool counted;	     /* idle: counted as established */
};

struct result {
	uint64_t handshakes, resumed, failures, bytes, conns_done, mismatches, established;
	uint64_t starts_missed; /* --rate: starts dropped from a full bucket */
	uint64_t *samples;
	size_t nsamples;
	char first_error[256];
};

struct worker {
	const struct config *cfg;
	SSL_CTX *ctx;
	const uint8_t *pattern;
	int ep, sigfd;
	unsigned int nconns, opening;
	struct conn **conns;
	uint64_t t0, deadline, hard_deadline;
	uint64_t next_start, start_interval; /* --rate: this worker's share, in ns */
	uint64_t to_start;		     /* --count: this worker's share not started yet */
	atomic_bool *stop;		     /* set by whichever worker reads the signal */
	bool stopping;
	struct result res;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mtls-load MODE --connect HOST:PORT --cert FILE --key FILE --cacert FILE\n"
		"                 [--threads N] [--conns N] [--duration S] [--bytes N] [--size N]\n"
		"                 [--resume] [--verify] [--parallel N] [--ready-file F]\n"
		"                 [--servername NAME] [--grace S] [--rate N] [--count N]\n"
		"                 [--interval US] [--skip S]\n"
		"  MODE: handshake | up | down | latency | idle\n"
		"  handshake  full mTLS handshake + 1-byte echo + close, repeated for --duration\n"
		"             on --conns concurrent slots (--resume: reuse session tickets)\n"
		"             --count N: exactly N connections in all, then exit (profiles)\n"
		"             --rate N: start N new connections per second in total instead\n"
		"             (paced per thread, at most --parallel (64) in flight; starts due\n"
		"             while all are busy for over 1 s count as starts_missed)\n"
		"  up|down    --conns streams to a sink / from a source backend, --bytes each\n"
		"             (0 = stream for --duration); byte counts are checked end to end\n"
		"  latency    --size (1024) byte ping-pong on --conns (1) connections,\n"
		"             reports p50/p99/p999 in microseconds; --interval US: one request\n"
		"             per US at most (a paced probe beside other load); --skip S: keep\n"
		"             no sample of the first S seconds (connected before a load starts)\n"
		"  idle       open --conns handshaken connections (--parallel at a time), touch\n"
		"             --ready-file, hold until SIGUSR1/SIGTERM or --duration\n"
		"  Talks to a bench-backend behind the proxy. Prints one JSON line.\n");
}

static void record_error(struct worker *w, const char *what)
{
	unsigned long e = ERR_peek_error();
	char buf[160] = "";

	w->res.failures++;
	if (w->res.first_error[0])
		goto out;
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(w->res.first_error, sizeof(w->res.first_error), "%s%s%s", what, buf[0] ? ": " : "",
		 buf);
out:
	ERR_clear_error();
}

static void conn_set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->events)
		return;
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

static void conn_teardown(struct conn *c, bool clean)
{
	if (c->ssl) {
		/* One close_notify, no wait for the answer: how real clients hang up. */
		if (clean)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->events = 0;
}

static int conn_open(struct conn *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct epoll_event e;
	int one = 1;

	c->fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		record_error(w, strerror(errno));
		return -errno;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&cfg->addr, cfg->addr_len) != 0 &&
	    errno != EINPROGRESS) {
		int err = errno;

		record_error(w, strerror(err));
		close(c->fd);
		c->fd = -1;
		return -err;
	}
	c->ssl = SSL_new(w->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
		record_error(w, "SSL_new");
		conn_teardown(c, false);
		return -ENOMEM;
	}
	if (cfg->servername)
		SSL_set_tlsext_host_name(c->ssl, cfg->servername);
	if (cfg->resume && c->sess)
		SSL_set_session(c->ssl, c->sess);
	c->state = ST_CONNECTING;
	c->t_start = now_ns();
	c->stream = 0;
	c->in_got = c->in_want = 0;
	c->out_len = c->out_off = 0;
	c->events = EPOLLOUT;
	e.events = c->events;
	e.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
		int err = errno;

		record_error(w, "epoll_ctl");
		conn_teardown(c, false);
		return -err;
	}
	w->opening++;
	return 0;
}

static void put_header(struct conn *c, uint8_t kind, uint64_t len)
{
	c->out[0] = kind;
	for (int i = 0; i < 8; i++)
		c->out[1 + i] = (uint8_t)(len >> (56 - 8 * i));
	c->out_len = 9;
	c->out_off = 0;
}

/* What to do once the handshake is done: set up the first write of the mode. */
static void conn_established(struct conn *c)
{
	const struct config *cfg = c->w->cfg;

	c->w->opening--;
	switch (cfg->mode) {
	case MODE_HANDSHAKE:
	case MODE_IDLE:
		c->out[0] = 'E';
		c->out_len = 1;
		c->out_off = 0;
		break;
	case MODE_UP:
		put_header(c, 'K', cfg->bytes);
		break;
	case MODE_DOWN:
		put_header(c, 'R', cfg->bytes);
		break;
	case MODE_LATENCY:
		memset(c->out, 'E', cfg->size);
		c->out_len = cfg->size;
		c->out_off = 0;
		c->t_send = now_ns();
		break;
	}
	c->state = ST_SEND;
}

/* A request/response step finished (all of c->in_want read). */
static bool conn_after_recv(struct conn *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct result *r = &w->res;

	switch (cfg->mode) {
	case MODE_HANDSHAKE:
		if (c->in[0] != 'E') {
			r->mismatches++;
			return false;
		}
		r->handshakes++;
		/* connect to echo: what a client waits for a new connection */
		if (r->nsamples < MAX_SAMPLES_PER_THREAD)
			r->samples[r->nsamples++] = now_ns() - c->t_start;
		if (SSL_session_reused(c->ssl))
			r->resumed++;
		if (cfg->resume) {
			/* The echo came after the server's tickets, so the session is resumable. */
			SSL_SESSION_free(c->sess);
			c->sess = SSL_get1_session(c->ssl);
		}
		r->conns_done++;
		return false; /* close and open a new one */
	case MODE_IDLE:
		if (c->in[0] != 'E') {
			r->mismatches++;
			return false;
		}
		r->handshakes++;
		r->established++;
		c->counted = true;
		c->state = ST_HOLD;
		return true;
	case MODE_UP: {
		uint64_t v = 0;

		for (int i = 0; i < 8; i++)
			v = v << 8 | c->in[i];
		if (v != cfg->bytes) {
			r->mismatches++;
			if (!r->first_error[0])
				snprintf(r->first_error, sizeof(r->first_error),
					 "backend received %llu bytes, sent %llu",
					 (unsigned long long)v, (unsigned long long)cfg->bytes);
		}
		r->conns_done++;
		return false;
	}
	case MODE_LATENCY: {
		uint64_t t = now_ns();

		for (size_t i = 0; i < cfg->size; i++)
			if (c->in[i] != 'E') {
				r->mismatches++;
				return false;
			}
		if (r->nsamples < MAX_SAMPLES_PER_THREAD && t >= c->w->t0 + cfg->skip_ns)
			r->samples[r->nsamples++] = t - c->t_send;
		r->bytes += cfg->size;
		c->rounds++;
		c->out_off = 0;
		/* --interval: a paced probe (sleeping is fine: one connection per thread) that
		 * leaves the CPU to whatever load it measures beside. */
		if (cfg->interval_ns && t < c->t_send + cfg->interval_ns) {
			uint64_t d = c->t_send + cfg->interval_ns - t;
			struct timespec ts = { (time_t)(d / 1000000000), (long)(d % 1000000000) };

			nanosleep(&ts, NULL);
		}
		c->t_send = now_ns();
		c->state = ST_SEND;
		return true;
	}
	case MODE_DOWN:
		break;
	}
	return false;
}

/* SSL result -> events to wait for; 0 when the connection failed. */
static uint32_t ssl_want(struct conn *c, int ret, const char *what)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return EPOLLIN;
	case SSL_ERROR_WANT_WRITE:
		return EPOLLOUT;
	case SSL_ERROR_ZERO_RETURN:
		record_error(c->w, "peer closed (close_notify)");
		return 0;
	case SSL_ERROR_SYSCALL:
		record_error(c->w, errno ? strerror(errno) : "peer closed the connection");
		return 0;
	default:
		record_error(c->w, what);
		return 0;
	}
}

/*
 * Drive one connection as far as it goes without blocking.  Returns the events to wait
 * for, or 0 when the connection is finished (successfully or not) and must be closed.
 */
static uint32_t conn_drive(struct conn *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	int ret;

	for (;;) {
		switch (c->state) {
		case ST_CONNECTING: {
			int err = 0;
			socklen_t l = sizeof(err);

			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err == EINPROGRESS || err == EALREADY)
				return EPOLLOUT;
			if (err) {
				record_error(w, strerror(err));
				return 0;
			}
			c->state = ST_HANDSHAKE;
			break;
		}
		case ST_HANDSHAKE:
			ERR_clear_error();
			ret = SSL_connect(c->ssl);
			if (ret != 1)
				return ssl_want(c, ret, "handshake");
			conn_established(c);
			break;
		case ST_SEND:
			while (c->out_off < c->out_len) {
				size_t written = 0;

				ERR_clear_error();
				ret = SSL_write_ex(c->ssl, c->out + c->out_off,
						   c->out_len - c->out_off, &written);
				if (ret != 1)
					return ssl_want(c, ret, "write");
				c->out_off += written;
			}
			if (cfg->mode == MODE_UP || cfg->mode == MODE_DOWN) {
				c->state = ST_STREAM;
			} else {
				c->state = ST_RECV;
				c->in_got = 0;
				c->in_want = cfg->mode == MODE_LATENCY ? cfg->size : 1;
			}
			break;
		case ST_RECV:
			while (c->in_got < c->in_want) {
				size_t got = 0;

				ERR_clear_error();
				ret = SSL_read_ex(c->ssl, c->in + c->in_got, c->in_want - c->in_got,
						  &got);
				if (ret != 1)
					return ssl_want(c, ret, "read");
				c->in_got += got;
			}
			if (!conn_after_recv(c))
				return 0;
			if (c->state == ST_HOLD)
				return EPOLLIN;
			if (w->stopping)
				return 0;
			break;
		case ST_STREAM:
			if (cfg->mode == MODE_UP) {
				while (!cfg->bytes || c->stream < cfg->bytes) {
					size_t len = CHUNK, written = 0;

					if (w->stopping)
						return 0;
					if (cfg->bytes && cfg->bytes - c->stream < len)
						len = (size_t)(cfg->bytes - c->stream);
					ERR_clear_error();
					ret = SSL_write_ex(c->ssl,
							   w->pattern + c->stream % PATTERN_P, len,
							   &written);
					if (ret != 1)
						return ssl_want(c, ret, "write");
					c->stream += written;
					w->res.bytes += written;
				}
				c->state = ST_RECV;
				c->in_got = 0;
				c->in_want = 8;
				break;
			}
			for (;;) { /* MODE_DOWN */
				size_t got = 0;

				if (w->stopping)
					return 0;
				ERR_clear_error();
				ret = SSL_read_ex(c->ssl, c->in, sizeof(c->in), &got);
				if (ret != 1) {
					int e = SSL_get_error(c->ssl, ret);

					/* A bounded source ends with EOF (the proxy forwards the
					 * backend's FIN as close_notify or a plain close). */
					if (cfg->bytes && c->stream == cfg->bytes &&
					    (e == SSL_ERROR_ZERO_RETURN ||
					     e == SSL_ERROR_SYSCALL)) {
						w->res.conns_done++;
						return 0;
					}
					if (cfg->bytes && c->stream != cfg->bytes &&
					    (e == SSL_ERROR_ZERO_RETURN ||
					     e == SSL_ERROR_SYSCALL)) {
						w->res.mismatches++;
						if (!w->res.first_error[0])
							snprintf(w->res.first_error,
								 sizeof(w->res.first_error),
								 "stream ended after %llu of %llu "
								 "bytes",
								 (unsigned long long)c->stream,
								 (unsigned long long)cfg->bytes);
						return 0;
					}
					return ssl_want(c, ret, "read");
				}
				if (cfg->verify) {
					for (size_t i = 0; i < got; i++)
						if (c->in[i] !=
						    (uint8_t)((c->stream + i) % PATTERN_P)) {
							w->res.mismatches++;
							return 0;
						}
				}
				c->stream += got;
				w->res.bytes += got;
				if (cfg->bytes && c->stream > cfg->bytes) {
					w->res.mismatches++;
					return 0;
				}
			}
		case ST_HOLD: {
			uint8_t b;
			size_t got;

			/* Only an unexpected close or data wakes us here. */
			ERR_clear_error();
			ret = SSL_read_ex(c->ssl, &b, 1, &got);
			if (ret == 1)
				continue;
			return ssl_want(c, ret, "idle read");
		}
		case ST_DONE:
			return 0;
		}
	}
}

static void conn_finish(struct conn *c)
{
	struct worker *w = c->w;
	bool failed_open = c->state == ST_CONNECTING || c->state == ST_HANDSHAKE;

	if (failed_open)
		w->opening--;
	if (c->counted)
		w->res.established--;
	c->counted = false;
	conn_teardown(c, !failed_open);
	c->state = ST_DONE;
}

/*
 * --rate: may a new connection start at time t?  A virtual schedule (next_start) advanced
 * one interval per start is a token bucket; it lags t by at most RATE_BURST_NS, the rest
 * is dropped and counted.
 */
static bool rate_take(struct worker *w, uint64_t t)
{
	uint64_t oldest = t > RATE_BURST_NS ? t - RATE_BURST_NS : 0;

	if (w->next_start < oldest) {
		uint64_t n = (oldest - w->next_start) / w->start_interval;

		w->res.starts_missed += n;
		w->next_start += n * w->start_interval;
	}
	if (w->next_start > t)
		return false;
	w->next_start += w->start_interval;
	return true;
}

static bool worker_slot_free(const struct worker *w)
{
	for (unsigned int i = 0; i < w->nconns; i++)
		if (w->conns[i]->state == ST_DONE)
			return true;
	return false;
}

/* Open connections up to the mode's target; handshake mode replaces finished ones. */
static void worker_fill(struct worker *w)
{
	const struct config *cfg = w->cfg;
	uint64_t t = cfg->rate > 0 ? now_ns() : 0;

	if (w->stopping)
		return;
	for (unsigned int i = 0; i < w->nconns; i++) {
		struct conn *c = w->conns[i];

		if (c->state != ST_DONE)
			continue;
		if (cfg->mode != MODE_HANDSHAKE && c->t_start)
			continue; /* other modes use each slot once */
		if (cfg->mode == MODE_IDLE && w->opening >= cfg->parallel)
			return;
		if (cfg->rate > 0 && !rate_take(w, t))
			return;
		if (cfg->count) {
			if (!w->to_start)
				return;
			w->to_start--;
		}
		if (conn_open(c) != 0) {
			c->t_start = now_ns(); /* don't retry a slot that fails to open */
			continue;
		}
	}
}

static bool worker_all_done(struct worker *w)
{
	for (unsigned int i = 0; i < w->nconns; i++)
		if (w->conns[i]->state != ST_DONE)
			return false;
	return true;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	const struct config *cfg = w->cfg;
	struct epoll_event ev[MAX_EVENTS];
	bool bounded = (cfg->mode == MODE_UP || cfg->mode == MODE_DOWN) && cfg->bytes;
	bool ready_written = false;

	worker_fill(w);
	for (;;) {
		uint64_t t = now_ns();
		int timeout_ms, n;

		if (t >= w->hard_deadline)
			break;
		if (atomic_load(w->stop))
			w->stopping = true;
		if (!w->stopping && !bounded && t >= w->deadline)
			w->stopping = true;
		if (w->stopping && cfg->mode != MODE_UP && cfg->mode != MODE_DOWN)
			break;
		if (w->stopping && !bounded)
			break;
		if (bounded && worker_all_done(w))
			break;
		if (cfg->count && !w->to_start && worker_all_done(w))
			break;
		if (cfg->mode == MODE_IDLE && !ready_written && w->opening == 0) {
			/*
			 * Every slot either holds a connection or failed: signal readiness.
			 * Not before the last echo is back: "opening" ends with the handshake,
			 * and a slot still in its echo would be missing from "established".
			 */
			bool all_tried = true;

			for (unsigned int i = 0; i < w->nconns; i++) {
				const struct conn *c = w->conns[i];

				if (!c->t_start || (c->state != ST_HOLD && c->state != ST_DONE))
					all_tried = false;
			}
			if (all_tried) {
				ready_written = true;
				if (cfg->ready_file) {
					/* Renamed into place: a reader never sees it half written. */
					char tmp[4096];
					FILE *f;

					snprintf(tmp, sizeof(tmp), "%s.tmp", cfg->ready_file);
					f = fopen(tmp, "w");
					if (f) {
						fprintf(f, "established=%llu\n",
							(unsigned long long)w->res.established);
						if (fclose(f) == 0)
							rename(tmp, cfg->ready_file);
					}
				}
			}
		}
		timeout_ms = (int)(((bounded || w->stopping ? w->hard_deadline : w->deadline) - t) /
				   1000000ull) +
			     1;
		/* Wake now and then: another worker may have taken the signal. */
		if (timeout_ms > 100)
			timeout_ms = 100;
		/* --rate: wake when the next start is due, if a slot can take it (a finishing
		 * connection wakes us otherwise).  Rounded up: never a busy wait. */
		if (cfg->rate > 0 && !w->stopping && worker_slot_free(w)) {
			uint64_t due = w->next_start > t ? w->next_start - t : 0;
			int due_ms = (int)((due + 999999) / 1000000);

			if (due_ms < timeout_ms)
				timeout_ms = due_ms;
		}
		n = epoll_wait(w->ep, ev, MAX_EVENTS, timeout_ms);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;
			uint32_t want;

			if (ev[i].data.ptr == &w->sigfd) {
				struct signalfd_siginfo si;

				while (read(w->sigfd, &si, sizeof(si)) == sizeof(si))
					atomic_store(w->stop, true);
				continue;
			}
			want = conn_drive(c);
			if (want)
				conn_set_events(c, want);
			else
				conn_finish(c);
		}
		worker_fill(w);
	}
	for (unsigned int i = 0; i < w->nconns; i++)
		if (w->conns[i]->state != ST_DONE)
			conn_finish(w->conns[i]);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *s, size_t n, double p)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)s[i] / 1000.0;
}

/* ,"samples":N,"p50_us":...: every worker's samples together. Returns 0 or 1 (no memory). */
static int print_percentiles(struct worker *workers, unsigned int threads)
{
	size_t n = 0, k = 0;
	uint64_t *all;

	for (unsigned int t = 0; t < threads; t++)
		n += workers[t].res.nsamples;
	all = malloc((n + 1) * sizeof(uint64_t));
	if (!all)
		return 1;
	for (unsigned int t = 0; t < threads; t++) {
		memcpy(all + k, workers[t].res.samples, workers[t].res.nsamples * sizeof(uint64_t));
		k += workers[t].res.nsamples;
	}
	qsort(all, k, sizeof(uint64_t), cmp_u64);
	printf(",\"samples\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
	       "\"max_us\":%.1f",
	       k, pct_us(all, k, 0.5), pct_us(all, k, 0.99), pct_us(all, k, 0.999),
	       k ? (double)all[k - 1] / 1000.0 : 0.0);
	free(all);
	return 0;
}

static SSL_CTX *make_ctx(const struct config *cfg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
		fprintf(stderr, "mtls-load: cannot load --cert %s\n", cfg->cert);
		goto out_free_ctx;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "mtls-load: cannot load --key %s (or it does not match --cert)\n",
			cfg->key);
		goto out_free_ctx;
	}
	if (SSL_CTX_load_verify_locations(ctx, cfg->cacert, NULL) != 1) {
		fprintf(stderr, "mtls-load: cannot load --cacert %s\n", cfg->cacert);
		goto out_free_ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cfg->resume)
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	else
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
out_free_ctx:
	ERR_print_errors_fp(stderr);
	SSL_CTX_free(ctx);
	return NULL;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'K':
	case 'k':
		v <<= 10;
		end++;
		break;
	case 'M':
	case 'm':
		v <<= 20;
		end++;
		break;
	case 'G':
	case 'g':
		v <<= 30;
		end++;
		break;
	}
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "cacert", required_argument, NULL, 'A' },
		{ "threads", required_argument, NULL, 't' },
		{ "conns", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 's' },
		{ "resume", no_argument, NULL, 'r' },
		{ "verify", no_argument, NULL, 'v' },
		{ "parallel", required_argument, NULL, 'p' },
		{ "ready-file", required_argument, NULL, 'R' },
		{ "servername", required_argument, NULL, 'S' },
		{ "grace", required_argument, NULL, 'g' },
		{ "rate", required_argument, NULL, 'N' },
		{ "count", required_argument, NULL, 'k' },
		{ "interval", required_argument, NULL, 'I' },
		{ "skip", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg = {
		.threads = 1, .duration = 5, .grace = 30, .size = 1024, .parallel = 64
	};
	bool conns_set = false, duration_set = false;
	struct worker *workers;
	pthread_t *tids;
	SSL_CTX *ctx;
	uint8_t *pattern;
	sigset_t mask;
	struct rlimit rl;
	uint64_t t0, t1, v;
	struct result tot = { 0 };
	atomic_bool stop = false;
	double secs;
	int opt, sigfd, rc = 0;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (cfg.mode = 0; cfg.mode <= MODE_IDLE; cfg.mode++)
		if (!strcmp(argv[1], mode_names[cfg.mode]))
			break;
	if (cfg.mode > MODE_IDLE) {
		fprintf(stderr, "mtls-load: unknown mode '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cfg.target = optarg;
			break;
		case 'C':
			cfg.cert = optarg;
			break;
		case 'K':
			cfg.key = optarg;
			break;
		case 'A':
			cfg.cacert = optarg;
			break;
		case 'S':
			cfg.servername = optarg;
			break;
		case 'R':
			cfg.ready_file = optarg;
			break;
		case 'r':
			cfg.resume = true;
			break;
		case 'v':
			cfg.verify = true;
			break;
		case 'I':
			if (parse_u64(optarg, &v) != 0 || !v || v > 10000000) {
				fprintf(stderr, "mtls-load: bad --interval '%s' (us, 1..1e7)\n",
					optarg);
				return 2;
			}
			cfg.interval_ns = v * 1000;
			break;
		case 'X': {
			char *end;
			double d = strtod(optarg, &end);

			if (*end || !(d >= 0) || d > 86400) {
				fprintf(stderr, "mtls-load: bad --skip '%s' (seconds)\n", optarg);
				return 2;
			}
			cfg.skip_ns = (uint64_t)(d * 1e9);
			break;
		}
		case 'k':
			if (parse_u64(optarg, &cfg.count) != 0 || !cfg.count) {
				fprintf(stderr, "mtls-load: bad --count '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
		case 'n':
		case 'b':
		case 's':
		case 'p':
			if (parse_u64(optarg, &v) != 0 || (opt != 'b' && (v == 0 || v > 1000000))) {
				fprintf(stderr, "mtls-load: bad number '%s'\n", optarg);
				return 2;
			}
			if (opt == 't')
				cfg.threads = (unsigned int)v;
			else if (opt == 'n') {
				cfg.conns = (unsigned int)v;
				conns_set = true;
			} else if (opt == 'b')
				cfg.bytes = v;
			else if (opt == 'p')
				cfg.parallel = (unsigned int)v;
			else if (v > CHUNK) {
				fprintf(stderr, "mtls-load: --size is at most %d\n", CHUNK);
				return 2;
			} else
				cfg.size = (size_t)v;
			break;
		case 'N': {
			char *end;
			double d = strtod(optarg, &end);

			if (*end || !(d > 0) || d > 1e6) {
				fprintf(stderr,
					"mtls-load: bad --rate '%s' (per second, up to 1e6)\n",
					optarg);
				return 2;
			}
			cfg.rate = d;
			break;
		}
		case 'd':
		case 'g': {
			char *end;
			double d = strtod(optarg, &end);

			if (*end || !(d > 0) || d > 86400) {
				fprintf(stderr, "mtls-load: bad seconds '%s'\n", optarg);
				return 2;
			}
			if (opt == 'd') {
				cfg.duration = d;
				duration_set = true;
			} else
				cfg.grace = d;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !cfg.target || !cfg.cert || !cfg.key || !cfg.cacert) {
		fprintf(stderr, "mtls-load: --connect, --cert, --key and --cacert are required\n");
		usage(stderr);
		return 2;
	}
	if (bench_parse_hostport(cfg.target, &cfg.addr, &cfg.addr_len) != 0) {
		fprintf(stderr, "mtls-load: bad --connect '%s' (want HOST:PORT)\n", cfg.target);
		return 2;
	}
	if (cfg.rate > 0 && cfg.mode != MODE_HANDSHAKE) {
		fprintf(stderr, "mtls-load: --rate is for handshake mode\n");
		return 2;
	}
	if (cfg.rate > 0 && conns_set) {
		/* Open loop: the slots are the in-flight bound, --parallel; two names for one
		 * number would only leave the reader guessing which one won. */
		fprintf(stderr, "mtls-load: with --rate, --parallel bounds the connections in "
				"flight (--conns is for the closed loop)\n");
		return 2;
	}
	if (cfg.count && (cfg.mode != MODE_HANDSHAKE || cfg.rate > 0)) {
		fprintf(stderr, "mtls-load: --count is for handshake mode's closed loop\n");
		return 2;
	}
	if (cfg.count && !duration_set)
		cfg.duration = 86400; /* the count ends the run; --duration still bounds it */
	if (cfg.rate > 0)
		cfg.conns = cfg.parallel;
	else if (!conns_set)
		cfg.conns = cfg.mode == MODE_HANDSHAKE ? 8 : cfg.mode == MODE_IDLE ? 100 : 1;
	if (cfg.mode == MODE_IDLE && !duration_set)
		cfg.duration = 3600; /* hold until signalled; --grace still bounds setup */
	if (cfg.threads > cfg.conns)
		cfg.threads = cfg.conns;
	if (cfg.mode == MODE_IDLE)
		cfg.threads = 1; /* one worker owns the ready file */

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (cfg.mode == MODE_IDLE && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < cfg.conns + 64) {
		fprintf(stderr, "mtls-load: --conns %u needs ulimit -n >= %u (it is %llu)\n",
			cfg.conns, cfg.conns + 64, (unsigned long long)rl.rlim_cur);
		return 2;
	}

	ctx = make_ctx(&cfg);
	if (!ctx)
		return 2;
	pattern = malloc(CHUNK + PATTERN_P);
	workers = calloc(cfg.threads, sizeof(*workers));
	tids = calloc(cfg.threads, sizeof(*tids));
	if (!pattern || !workers || !tids)
		return 1;
	for (size_t i = 0; i < CHUNK + PATTERN_P; i++)
		pattern[i] = (uint8_t)(i % PATTERN_P);

	/* Signals end a run early (idle mode's normal end): every worker sees the fd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	t0 = now_ns();
	for (unsigned int t = 0; t < cfg.threads; t++) {
		struct worker *w = &workers[t];
		struct epoll_event e = { .events = EPOLLIN };

		w->cfg = &cfg;
		w->ctx = ctx;
		w->pattern = pattern;
		w->sigfd = sigfd;
		w->stop = &stop;
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->nconns = cfg.conns / cfg.threads + (t < cfg.conns % cfg.threads);
		w->to_start = cfg.count / cfg.threads + (t < cfg.count % cfg.threads);
		w->conns = calloc(w->nconns, sizeof(*w->conns));
		if (w->ep < 0 || !w->conns)
			return 1;
		for (unsigned int i = 0; i < w->nconns; i++) {
			w->conns[i] = calloc(1, sizeof(struct conn));
			if (!w->conns[i])
				return 1;
			w->conns[i]->w = w;
			w->conns[i]->fd = -1;
			w->conns[i]->state = ST_DONE;
		}
		if (cfg.mode == MODE_LATENCY || cfg.mode == MODE_HANDSHAKE) {
			w->res.samples = malloc(MAX_SAMPLES_PER_THREAD * sizeof(uint64_t));
			if (!w->res.samples)
				return 1;
		}
		e.data.ptr = &w->sigfd;
		epoll_ctl(w->ep, EPOLL_CTL_ADD, sigfd, &e);
		w->t0 = t0;
		w->deadline = t0 + (uint64_t)(cfg.duration * 1e9);
		w->hard_deadline = w->deadline + (uint64_t)(cfg.grace * 1e9);
		if (cfg.rate > 0) {
			/* Each worker takes rate/threads; their first starts are staggered across
			 * one interval so the threads do not start in step. */
			w->start_interval = (uint64_t)(1e9 * cfg.threads / cfg.rate);
			if (!w->start_interval)
				w->start_interval = 1;
			w->next_start = t0 + w->start_interval * t / cfg.threads;
		}
		if (cfg.bytes && (cfg.mode == MODE_UP || cfg.mode == MODE_DOWN))
			w->hard_deadline = t0 + (uint64_t)((cfg.duration + cfg.grace) * 1e9);
		if (pthread_create(&tids[t], NULL, worker_run, w) != 0) {
			fprintf(stderr, "mtls-load: pthread_create failed\n");
			return 1;
		}
	}
	for (unsigned int t = 0; t < cfg.threads; t++)
		pthread_join(tids[t], NULL);
	t1 = now_ns();
	secs = (double)(t1 - t0) / 1e9;

	for (unsigned int t = 0; t < cfg.threads; t++) {
		struct result *r = &workers[t].res;

		tot.handshakes += r->handshakes;
		tot.resumed += r->resumed;
		tot.failures += r->failures;
		tot.bytes += r->bytes;
		tot.conns_done += r->conns_done;
		tot.mismatches += r->mismatches;
		tot.nsamples += r->nsamples;
		tot.starts_missed += r->starts_missed;
		if (!tot.first_error[0] && r->first_error[0])
			memcpy(tot.first_error, r->first_error, sizeof(tot.first_error));
	}
	/* Idle: what was held at the peak is what was established (closing lowers it). */
	for (unsigned int t = 0; t < cfg.threads; t++)
		tot.established += workers[t].res.handshakes;

	printf("{\"mode\":\"%s\",\"target\":\"%s\",\"threads\":%u,\"conns\":%u,"
	       "\"seconds\":%.3f,\"handshakes\":%llu,\"resumed\":%llu,\"failures\":%llu,"
	       "\"mismatches\":%llu",
	       mode_names[cfg.mode], cfg.target, cfg.threads, cfg.conns, secs,
	       (unsigned long long)tot.handshakes, (unsigned long long)tot.resumed,
	       (unsigned long long)tot.failures, (unsigned long long)tot.mismatches);
	switch (cfg.mode) {
	case MODE_HANDSHAKE:
		printf(",\"handshakes_per_s\":%.1f", (double)tot.handshakes / secs);
		/* connect to 1-byte echo of each handshake, in microseconds */
		if (print_percentiles(workers, cfg.threads))
			return 1;
		if (cfg.rate > 0)
			printf(",\"rate\":%g,\"parallel\":%u,\"starts_missed\":%llu", cfg.rate,
			       cfg.parallel, (unsigned long long)tot.starts_missed);
		break;
	case MODE_UP:
	case MODE_DOWN:
		printf(",\"bytes\":%llu,\"conns_done\":%llu,\"bytes_per_conn\":%llu,"
		       "\"mib_per_s\":%.2f",
		       (unsigned long long)tot.bytes, (unsigned long long)tot.conns_done,
		       (unsigned long long)cfg.bytes, (double)tot.bytes / 1048576.0 / secs);
		break;
	case MODE_LATENCY:
		printf(",\"size\":%zu", cfg.size);
		if (print_percentiles(workers, cfg.threads))
			return 1;
		break;
	case MODE_IDLE:
		printf(",\"established\":%llu", (unsigned long long)tot.established);
		break;
	}
	printf(",\"first_error\":\"");
	for (const char *p = tot.first_error; *p; p++)
		if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
			putchar(*p);
	printf("\"}\n");
	fflush(stdout);

	/* Nonzero exit when the run did not do what it was asked: scripts can rely on it. */
	if (tot.mismatches)
		rc = 1;
	else if (cfg.mode == MODE_HANDSHAKE && !tot.handshakes)
		rc = 1;
	else if ((cfg.mode == MODE_UP || cfg.mode == MODE_DOWN) &&
		 (!tot.bytes || (cfg.bytes && tot.conns_done != cfg.conns)))
		rc = 1;
	else if (cfg.mode == MODE_LATENCY && !tot.nsamples)
		rc = 1;
	else if (cfg.mode == MODE_IDLE && tot.established != cfg.conns)
		rc = 1;

	for (unsigned int t = 0; t < cfg.threads; t++) {
		for (unsigned int i = 0; i < workers[t].nconns; i++) {
			SSL_SESSION_free(workers[t].conns[i]->sess);
			free(workers[t].conns[i]);
		}
		free(workers[t].conns);
		free(workers[t].res.samples);
		close(workers[t].ep);
	}
	free(workers);
	free(tids);
	free(pattern);
	SSL_CTX_free(ctx);
	close(sigfd);
	return rc;
}

/*
 * bench-backend: the plaintext service every benchmarked proxy forwards to.
 *
 * One thread, one epoll, non-blocking sockets: it must stay far cheaper than the proxy
 * in front of it so that the proxy is what the benchmark measures.  In --mode auto (the
 * default) the first byte of each connection picks what the connection does, so one
 * backend port serves all of mtls-load's modes through the same proxy configuration:
 *
 *   'E'            echo: everything, including that first byte, is sent back
 *   'K' + u64 len  sink: read and discard len bytes (0 = until EOF), then answer the
 *                  8-byte big-endian count of bytes received, so the client can check
 *                  that the proxy delivered every byte
 *   'R' + u64 len  source: send len bytes (0 = until the peer goes away) of the pattern
 *                  byte(i) = i % 251, then shut down the write side
 *
 * Counters go to --stats FILE (key=value lines) on SIGUSR1 and on exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"

#define BUF_SIZE   (64 * 1024)
#define PATTERN_P  251
#define MAX_EVENTS 256

enum bmode { M_AUTO, M_ECHO, M_SINK, M_SOURCE };

struct bconn {
	int fd;
	enum bmode mode;
	uint8_t hdr[9];
	unsigned int hdr_len;
	uint64_t limit; /* 0 = unbounded */
	uint64_t count; /* bytes received (sink) or sent (source) after the header */
	uint8_t *pend;	/* echo: bytes read but not yet written back */
	size_t pend_off, pend_len;
	uint8_t ack[8];
	unsigned int ack_off; /* sink: 8 when nothing to answer, else progress */
	bool src_done;
	uint32_t events;
};

struct backend {
	int ep, lfd, sfd;
	enum bmode fixed;
	const char *stats_path;
	uint8_t *pattern; /* BUF_SIZE + PATTERN_P bytes of the source pattern */
	uint64_t conns_total, conns_open, rx_bytes, tx_bytes, sink_bytes, source_bytes;
	uint64_t echo_bytes;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench-backend --listen HOST:PORT [--mode auto|echo|sink|source]\n"
		   "                     [--stats FILE]\n"
		   "  auto: first byte 'E' echo, 'K'+u64 sink, 'R'+u64 source (see the source)\n"
		   "  SIGUSR1 writes the counters to FILE; SIGTERM/SIGINT write them and exit\n");
}

static void write_stats(struct backend *b)
{
	char tmp[4096];
	FILE *f;

	if (!b->stats_path)
		return;
	/* Write then rename: a reader polling the file never sees half of it. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", b->stats_path);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "bench-backend: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f,
		"conns_total=%llu\nconns_open=%llu\nrx_bytes=%llu\ntx_bytes=%llu\n"
		"sink_bytes=%llu\nsource_bytes=%llu\necho_bytes=%llu\n",
		(unsigned long long)b->conns_total, (unsigned long long)b->conns_open,
		(unsigned long long)b->rx_bytes, (unsigned long long)b->tx_bytes,
		(unsigned long long)b->sink_bytes, (unsigned long long)b->source_bytes,
		(unsigned long long)b->echo_bytes);
	fclose(f);
	if (rename(tmp, b->stats_path) != 0)
		fprintf(stderr, "bench-backend: rename %s: %s\n", tmp, strerror(errno));
}

static void conn_close(struct backend *b, struct bconn *c)
{
	close(c->fd);
	free(c->pend);
	free(c);
	b->conns_open--;
}

static void conn_set_events(struct backend *b, struct bconn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->events)
		return;
	if (epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->events = ev;
}

/* Returns false when the connection is finished and was closed. */
static bool conn_step(struct backend *b, struct bconn *c)
{
	uint8_t buf[BUF_SIZE];
	ssize_t n;

	for (;;) {
		/* Writes first: pending echo bytes, the sink's answer, source data. */
		if (c->pend_len > c->pend_off) {
			n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off,
				 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN)
					goto wait_out;
				goto out_close;
			}
			c->pend_off += (size_t)n;
			b->tx_bytes += (uint64_t)n;
			if (c->pend_off < c->pend_len)
				goto wait_out;
			c->pend_off = c->pend_len = 0;
		}
		if (c->mode == M_SINK && c->ack_off < sizeof(c->ack)) {
			n = send(c->fd, c->ack + c->ack_off, sizeof(c->ack) - c->ack_off,
				 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN)
					goto wait_out;
				goto out_close;
			}
			c->ack_off += (unsigned int)n;
			b->tx_bytes += (uint64_t)n;
			continue;
		}
		if (c->mode == M_SOURCE && !c->src_done) {
			size_t len = BUF_SIZE;

			if (c->limit && c->limit - c->count < len)
				len = (size_t)(c->limit - c->count);
			n = send(c->fd, b->pattern + c->count % PATTERN_P, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN)
					goto wait_out;
				goto out_close;
			}
			c->count += (uint64_t)n;
			b->tx_bytes += (uint64_t)n;
			b->source_bytes += (uint64_t)n;
			if (c->limit && c->count == c->limit) {
				c->src_done = true;
				shutdown(c->fd, SHUT_WR);
			}
			/* Keep the peer's input drained so it can never stall us. */
			n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0)
				goto out_close;
			if (n > 0)
				b->rx_bytes += (uint64_t)n;
			continue;
		}

		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EAGAIN) {
				conn_set_events(b, c, EPOLLIN);
				return true;
			}
			goto out_close;
		}
		if (n == 0)
			goto out_close;
		b->rx_bytes += (uint64_t)n;

		size_t off = 0;
		while (c->mode == M_AUTO && off < (size_t)n) {
			c->hdr[c->hdr_len++] = buf[off++];
			if (c->hdr[0] == 'E') {
				c->mode = M_ECHO;
				off--; /* the 'E' is echoed like any other byte */
			} else if (c->hdr[0] != 'K' && c->hdr[0] != 'R') {
				fprintf(stderr, "bench-backend: unknown mode byte 0x%02x\n",
					c->hdr[0]);
				goto out_close;
			} else if (c->hdr_len == sizeof(c->hdr)) {
				uint64_t v = 0;

				for (int i = 1; i < 9; i++)
					v = v << 8 | c->hdr[i];
				c->limit = v;
				c->mode = c->hdr[0] == 'K' ? M_SINK : M_SOURCE;
			}
		}
		size_t rest = (size_t)n - off;

		if (c->mode == M_ECHO && rest) {
			c->pend = c->pend ? c->pend : malloc(BUF_SIZE);
			if (!c->pend)
				goto out_close;
			memcpy(c->pend, buf + off, rest);
			c->pend_off = 0;
			c->pend_len = rest;
			b->echo_bytes += rest;
		} else if (c->mode == M_SINK && rest) {
			bool was_below = !c->limit || c->count < c->limit;

			c->count += rest;
			b->sink_bytes += rest;
			if (c->limit && was_below && c->count >= c->limit) {
				for (int i = 0; i < 8; i++)
					c->ack[i] = (uint8_t)(c->count >> (56 - 8 * i));
				c->ack_off = 0;
			}
		}
	}

wait_out:
	/* Not EPOLLIN: a readable socket we are not going to read would spin the loop. */
	conn_set_events(b, c, EPOLLOUT);
	return true;
out_close:
	conn_close(b, c);
	return false;
}

static void do_accept(struct backend *b)
{
	for (;;) {
		int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;
		struct bconn *c;
		struct epoll_event e;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				fprintf(stderr, "bench-backend: accept: %s\n", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->mode = b->fixed;
		c->ack_off = sizeof(c->ack);
		/* A fixed source starts sending at once, so it also waits for EPOLLOUT. */
		c->events = c->mode == M_SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN;
		e.events = c->events;
		e.data.ptr = c;
		if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
			close(fd);
			free(c);
			continue;
		}
		b->conns_total++;
		b->conns_open++;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ "stats", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct backend b = { .fixed = M_AUTO };
	const char *listen_addr = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct rlimit rl;
	sigset_t mask;
	struct epoll_event ev[MAX_EVENTS];
	int one = 1, opt;
	bool running = true;

	while ((opt = getopt_long(argc, argv, "l:m:s:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_addr = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "auto"))
				b.fixed = M_AUTO;
			else if (!strcmp(optarg, "echo"))
				b.fixed = M_ECHO;
			else if (!strcmp(optarg, "sink"))
				b.fixed = M_SINK;
			else if (!strcmp(optarg, "source"))
				b.fixed = M_SOURCE;
			else {
				fprintf(stderr, "bench-backend: unknown mode '%s'\n", optarg);
				return 2;
			}
			break;
		case 's':
			b.stats_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!listen_addr || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (bench_parse_hostport(listen_addr, &ss, &sl) != 0) {
		fprintf(stderr, "bench-backend: bad --listen '%s' (want HOST:PORT)\n", listen_addr);
		return 2;
	}
	/* Idle-connection runs hold thousands of sockets open. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	b.pattern = malloc(BUF_SIZE + PATTERN_P);
	if (!b.pattern)
		return 1;
	for (size_t i = 0; i < BUF_SIZE + PATTERN_P; i++)
		b.pattern[i] = (uint8_t)(i % PATTERN_P);

	b.lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b.lfd < 0 || setsockopt(b.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(b.lfd, (struct sockaddr *)&ss, sl) != 0 || listen(b.lfd, 4096) != 0) {
		fprintf(stderr, "bench-backend: listen on %s: %s\n", listen_addr, strerror(errno));
		return 1;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	b.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	b.ep = epoll_create1(EPOLL_CLOEXEC);
	if (b.sfd < 0 || b.ep < 0) {
		fprintf(stderr, "bench-backend: setup: %s\n", strerror(errno));
		return 1;
	}
	ev[0] = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &b.lfd };
	epoll_ctl(b.ep, EPOLL_CTL_ADD, b.lfd, &ev[0]);
	ev[0] = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &b.sfd };
	epoll_ctl(b.ep, EPOLL_CTL_ADD, b.sfd, &ev[0]);
	write_stats(&b);

	while (running) {
		int n = epoll_wait(b.ep, ev, MAX_EVENTS, -1);

		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "bench-backend: epoll_wait: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == &b.lfd) {
				do_accept(&b);
			} else if (ev[i].data.ptr == &b.sfd) {
				struct signalfd_siginfo si;

				while (read(b.sfd, &si, sizeof(si)) == sizeof(si)) {
					write_stats(&b);
					if (si.ssi_signo != SIGUSR1)
						running = false;
				}
			} else {
				conn_step(&b, ev[i].data.ptr);
			}
		}
	}
	return 0;
}

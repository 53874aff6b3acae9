// SPDX-License-Identifier: MIT
/* Per-source handshake counts, the handshake rate and log rate limits of one worker (admit.h). */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"

/*
 * A recurring event may log now (true, with how many were not logged since the last line
 * in *ret_suppressed) or only be counted (false): a flood of refusals cannot flood the log.
 */
bool ratelim_pass(struct ratelim *r, uint64_t now, unsigned *ret_suppressed)
{
	if (r->last_ns && now - r->last_ns < RL_INTERVAL) {
		r->suppressed++;
		return false;
	}
	*ret_suppressed = r->suppressed;
	r->suppressed = 0;
	r->last_ns = now;
	return true;
}

uint64_t hs_rate_interval(unsigned per_second, unsigned threads)
{
	if (!per_second)
		return 0;
	return (uint64_t)(threads ? threads : 1) * 1000000000ull / per_second;
}

/* The bucket holds at least one handshake, else no interval longer than it would fit. */
static uint64_t hs_rate_burst(uint64_t interval)
{
	return interval > HS_RATE_BURST_NS ? interval : HS_RATE_BURST_NS;
}

uint64_t hs_rate_wait(const struct hs_rate *r, uint64_t now, uint64_t interval)
{
	uint64_t burst = hs_rate_burst(interval);

	if (!interval || r->tat + interval <= now + burst)
		return 0;
	return r->tat + interval - burst - now;
}

uint64_t hs_rate_take(struct hs_rate *r, uint64_t now, uint64_t interval)
{
	if (!interval)
		return 0;
	if (r->tat < now)
		r->tat = now; /* an idle bucket is full, never more than full */
	r->tat += interval;
	return hs_rate_wait(r, now, interval);
}

/* The 16 address bytes mixed under the worker's random seed (splitmix64 finalizers). */
static uint32_t src_hash(const struct src_table *t, const uint8_t addr[16])
{
	uint64_t a, b, h;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	h = (a ^ t->seed) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	h = (h ^ b ^ (t->seed >> 7)) * 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	h *= 0x94d049bb133111ebull;
	return (uint32_t)(h ^ (h >> 31));
}

/* The slot holding addr, or the empty slot where it would go (the table is never full). */
static struct src_entry *src_slot(const struct src_table *t, const uint8_t addr[16])
{
	uint32_t i = src_hash(t, addr) & t->mask;

	while (t->e[i].n && memcmp(t->e[i].addr, addr, 16))
		i = (i + 1) & t->mask;
	return &t->e[i];
}

/* Doubles the table; it never shrinks, so its size follows the peak of handshakes. */
static int src_grow(struct src_table *t)
{
	uint32_t cap = t->e ? (t->mask + 1) * 2 : 64;
	struct src_table n = { .mask = cap - 1, .used = t->used, .seed = t->seed };

	n.e = calloc(cap, sizeof(*n.e));
	if (!n.e)
		return -ENOMEM;
	for (uint32_t i = 0; t->e && i <= t->mask; i++)
		if (t->e[i].n)
			*src_slot(&n, t->e[i].addr) = t->e[i];
	free(t->e);
	*t = n;
	return 0;
}

uint32_t src_count(const struct src_table *t, const uint8_t addr[16])
{
	return t->e ? src_slot(t, addr)->n : 0;
}

int src_add(struct src_table *t, const uint8_t addr[16])
{
	struct src_entry *e;
	int rc;

	if (!t->e || (t->used + 1) * 2 > t->mask + 1) {
		rc = src_grow(t);
		if (rc)
			return rc;
	}
	e = src_slot(t, addr);
	if (!e->n) {
		memcpy(e->addr, addr, 16);
		t->used++;
	}
	e->n++;
	return 0;
}

/* Linear probing without tombstones: close the gap by moving later entries back. */
void src_del(struct src_table *t, const uint8_t addr[16])
{
	struct src_entry *e = src_slot(t, addr);
	uint32_t i = (uint32_t)(e - t->e), j = i;

	if (!e->n || --e->n)
		return;
	t->used--;
	for (;;) {
		uint32_t home;

		j = (j + 1) & t->mask;
		if (!t->e[j].n)
			break;
		home = src_hash(t, t->e[j].addr) & t->mask;
		/* Entry j may fill the hole at i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->e[i] = t->e[j];
		i = j;
	}
	t->e[i].n = 0;
}

/*
 * The key a client is limited under: its IPv4 address (as ::ffff:a.b.c.d, so a dual-stack
 * listener agrees) or its IPv6 /64, the smallest block a site is given: one host with a
 * /64 would otherwise be 2^64 sources.
 */
bool src_key(const struct sockaddr_storage *ss, uint8_t ret_key[16])
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (ss->ss_family == AF_INET) {
		memcpy(ret_key, mapped, 12);
		memcpy(ret_key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;

		memcpy(ret_key, a, 16);
		if (memcmp(a, mapped, 12))
			memset(ret_key + 8, 0, 8);
		return true;
	}
	return false;
}

void src_table_free(struct src_table *t)
{
	free(t->e);
	t->e = NULL;
}

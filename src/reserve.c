/*
 * reserve: the lock-free stack of ready pages (a Treiber stack whose head
 * is a tagged word). Nothing here may lock, allocate or make a system call:
 * it runs in signal handlers and under seccomp filters that forbid them.
 * Filling the reserve is page.c's business (ordinary context).
 */
#include "reserve.h"

#define TAG_ONE (1ULL << 32)

uint32_t reserve_pop(struct wing *w, struct reserve *r)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	for (;;) {
		uint32_t top = (uint32_t)head;
		if (!top)
			return CELL_NONE;
		/* The record stays mapped while the labyrinth is open, so reading
		 * the link of a page another thread just took is harmless: the
		 * tag makes our swap fail. */
		uint32_t below = atomic_load_explicit(&page_rec_of(w, top - 1)->next,
						      memory_order_relaxed);
		uint64_t next = ((head & ~0xffffffffULL) + TAG_ONE) | below;
		if (atomic_compare_exchange_weak_explicit(&r->head, &head, next,
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			atomic_fetch_sub_explicit(&r->count, 1, memory_order_relaxed);
			return top - 1;
		}
	}
}

void reserve_push(struct wing *w, struct reserve *r, uint32_t cell)
{
	struct page_rec *rec = page_rec_of(w, cell);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t next;
	atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
	do {
		atomic_store_explicit(&rec->next, (uint32_t)head, memory_order_relaxed);
		next = ((head & ~0xffffffffULL) + TAG_ONE) | (cell + 1);
	} while (!atomic_compare_exchange_weak_explicit(&r->head, &head, next,
							memory_order_release,
							memory_order_relaxed));
}

/* ---- a pool's quarantine ---------------------------------------------- */

static inline uint64_t rotl(uint64_t x, unsigned r)
{
	return x << r | x >> (64 - r);
}

static inline void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13) ^ v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17) ^ v[2];
	v[2] = rotl(v[2], 32);
}

/*
 * SipHash-1-3 of one word: a keyed function whose outputs say nothing of
 * the key, so where the stage puts a block cannot be learnt from where
 * earlier ones went. Any thread, any context: no state but the counter.
 */
static uint64_t draw(const struct pool_quarantine *q, uint64_t n, uint64_t gen_key)
{
	uint64_t k0 = q->key[0] ^ gen_key, k1 = q->key[1];
	uint64_t v[4] = { k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
			  k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL };
	uint64_t last = 8ULL << 56;
	v[3] ^= n;
	sip_round(v);
	v[0] ^= n;
	v[3] ^= last;
	sip_round(v);
	v[0] ^= last;
	v[2] ^= 0xff;
	sip_round(v);
	sip_round(v);
	sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

void pool_quarantine_init(struct pool_quarantine *q, uint32_t n, uint64_t k0, uint64_t k1)
{
	if (n > POOL_STAGE_MAX + POOL_FIFO_MAX)
		n = POOL_STAGE_MAX + POOL_FIFO_MAX;
	q->nstage = n / 2;
	q->nfifo = n - q->nstage;
	q->key[0] = k0;
	q->key[1] = k1;
}

/*
 * Each place holds at most one cell and every move is an exchange, so two
 * frees (or a free and a take) racing for one place each get a different
 * cell out of it: none is lost, none handed out twice.
 */
uint32_t pool_quarantine_push(struct pool_quarantine *q, uint32_t cell, uint64_t gen_key)
{
	uint64_t n = atomic_fetch_add_explicit(&q->frees, 1, memory_order_relaxed);
	uint32_t in = cell + 1;
	if (q->nstage) {
		uint32_t i = (uint32_t)(((uint64_t)(uint32_t)draw(q, n, gen_key) * q->nstage) >> 32);
		uint64_t held = n << 32 | in;
		in = (uint32_t)atomic_exchange_explicit(&q->stage[i], held, memory_order_acq_rel);
		if (!in)
			return CELL_NONE;
	}
	if (q->nfifo)
		in = atomic_exchange_explicit(&q->fifo[n % q->nfifo], in, memory_order_acq_rel);
	return in ? in - 1 : CELL_NONE;
}

/* The queue's places from the oldest (the one the next free overwrites). */
static uint32_t take_from_fifo(struct pool_quarantine *q, uint64_t n)
{
	for (uint32_t k = 0; k < q->nfifo; k++) {
		_Atomic uint32_t *at = &q->fifo[(n + k) % q->nfifo];
		if (!atomic_load_explicit(at, memory_order_relaxed))
			continue;
		uint32_t held = atomic_exchange_explicit(at, 0, memory_order_acq_rel);
		if (held)
			return held - 1;
	}
	return CELL_NONE;
}

/*
 * The stage's longest held block: the one whose free number is furthest
 * behind n. Taken with a compare-and-swap, so a block that a free put there
 * meanwhile is not taken in its place; a few lost races, and any will do.
 */
static uint32_t take_from_stage(struct pool_quarantine *q, uint64_t n)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t best = 0;
		uint32_t best_age = 0, at = 0;
		for (uint32_t i = 0; i < q->nstage; i++) {
			uint64_t v = atomic_load_explicit(&q->stage[i], memory_order_relaxed);
			uint32_t age = (uint32_t)n - (uint32_t)(v >> 32);
			if (v && (!best || age > best_age)) {
				best = v;
				best_age = age;
				at = i;
			}
		}
		if (!best)
			return CELL_NONE;
		if (atomic_compare_exchange_strong_explicit(&q->stage[at], &best, 0,
							    memory_order_acq_rel,
							    memory_order_relaxed))
			return (uint32_t)best - 1;
	}
	for (uint32_t i = 0; i < q->nstage; i++) {
		uint32_t held = (uint32_t)atomic_exchange_explicit(&q->stage[i], 0,
								   memory_order_acq_rel);
		if (held)
			return held - 1;
	}
	return CELL_NONE;
}

uint32_t pool_quarantine_take(struct pool_quarantine *q)
{
	uint64_t n = atomic_load_explicit(&q->frees, memory_order_relaxed);
	uint32_t cell = take_from_fifo(q, n);
	return cell == CELL_NONE ? take_from_stage(q, n) : cell;
}

uint64_t pool_quarantine_held(const struct pool_quarantine *q)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < q->nstage; i++)
		n += atomic_load_explicit(&q->stage[i], memory_order_relaxed) != 0;
	for (uint32_t i = 0; i < q->nfifo; i++)
		n += atomic_load_explicit(&q->fifo[i], memory_order_relaxed) != 0;
	return n;
}

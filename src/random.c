/*
 * random: ChaCha with 8 rounds as a keystream generator. Eight rounds keep a
 * wide security margin for choosing addresses (no known attack gets close)
 * at half the cost of ChaCha20. Each generator is owned by one lock domain, so
 * it needs no atomics; the key comes from getrandom and is never reused.
 */
#include "random.h"
#include "os.h"

#include <string.h>

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define QUARTER(a, b, c, d)                                   \
	do {                                                  \
		a += b; d ^= a; d = ROTL(d, 16);              \
		c += d; b ^= c; b = ROTL(b, 12);              \
		a += b; d ^= a; d = ROTL(d, 8);               \
		c += d; b ^= c; b = ROTL(b, 7);               \
	} while (0)

static void chacha8_block(struct rng *r)
{
	uint32_t in[16] = {
		0x61707865, 0x3320646e, 0x79622d32, 0x6b206574,
		r->key[0], r->key[1], r->key[2], r->key[3],
		r->key[4], r->key[5], r->key[6], r->key[7],
		(uint32_t)r->counter, (uint32_t)(r->counter >> 32), 0, 0,
	};
	uint32_t x[16];
	memcpy(x, in, sizeof x);
	for (int i = 0; i < 4; i++) {
		QUARTER(x[0], x[4], x[8], x[12]);
		QUARTER(x[1], x[5], x[9], x[13]);
		QUARTER(x[2], x[6], x[10], x[14]);
		QUARTER(x[3], x[7], x[11], x[15]);
		QUARTER(x[0], x[5], x[10], x[15]);
		QUARTER(x[1], x[6], x[11], x[12]);
		QUARTER(x[2], x[7], x[8], x[13]);
		QUARTER(x[3], x[4], x[9], x[14]);
	}
	for (int i = 0; i < 16; i++)
		r->block[i] = x[i] + in[i];
	r->counter++;
	r->used = 0;
}

void rng_seed(struct rng *r)
{
	os_random_bytes(r->key, sizeof r->key);
	r->counter = 0;
	r->used = 16;
}

uint32_t rng_u32(struct rng *r)
{
	if (r->used == 16)
		chacha8_block(r);
	uint32_t v = r->block[r->used];
	r->block[r->used++] = 0;        /* spent output is not left lying around */
	return v;
}

uint64_t rng_u64(struct rng *r)
{
	uint64_t hi = rng_u32(r);
	return hi << 32 | rng_u32(r);
}

/* Lemire's multiply-shift with rejection: one multiply, rarely a retry. */
uint32_t rng_below(struct rng *r, uint32_t n)
{
	uint64_t m = (uint64_t)rng_u32(r) * n;
	uint32_t low = (uint32_t)m;
	if (low < n) {
		uint32_t floor = -n % n;
		while (low < floor) {
			m = (uint64_t)rng_u32(r) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

uint64_t rng_below64(struct rng *r, uint64_t n)
{
	if (n <= UINT32_MAX)
		return rng_below(r, (uint32_t)n);
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t v;
	do
		v = rng_u64(r);
	while (v >= limit);
	return v % n;
}

void rng_derive(struct rng *child, struct rng *parent)
{
	for (int i = 0; i < 8; i++)
		child->key[i] = rng_u32(parent);
	child->counter = 0;
	child->used = 16;
}

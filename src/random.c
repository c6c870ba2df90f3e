/*
 * random: ChaCha with 8 rounds as a keystream generator. Eight rounds keep a
 * wide security margin for choosing addresses (no known attack gets close)
 * at half the cost of ChaCha20; four blocks are made at once in vector
 * lanes, and draws below 65536 take half a word. Each generator is owned by one lock domain, so
 * it needs no atomics; the key comes from getrandom and is never reused.
 */
#include "random.h"
#include "generation.h"
#include "os.h"

#include <string.h>

/* Four blocks side by side: lane j of every vector belongs to block j, so
 * one vector instruction does the work of four scalar ones. */
typedef uint32_t vec4 __attribute__((vector_size(16)));

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define QUARTER(a, b, c, d)                                   \
	do {                                                  \
		a += b; d ^= a; d = ROTL(d, 16);              \
		c += d; b ^= c; b = ROTL(b, 12);              \
		a += b; d ^= a; d = ROTL(d, 8);               \
		c += d; b ^= c; b = ROTL(b, 7);               \
	} while (0)

static const uint32_t sigma[4] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };

static void reseed(struct rng *r, uint32_t gen)
{
	os_random_bytes(r->key, sizeof r->key);
	r->counter = 0;
	r->used = RNG_WORDS;
	r->has_half = 0;
	r->gen = gen;
}

void rng_renew_if_stale(struct rng *r)
{
	uint32_t gen = generation_now();
	if (__builtin_expect(r->gen != gen, 0))
		reseed(r, gen);
}

void rng_refill(struct rng *r)
{
	rng_renew_if_stale(r);
	vec4 in[16], x[16];
	for (int i = 0; i < 4; i++)
		in[i] = (vec4){ sigma[i], sigma[i], sigma[i], sigma[i] };
	for (int i = 0; i < 8; i++)
		in[4 + i] = (vec4){ r->key[i], r->key[i], r->key[i], r->key[i] };
	uint64_t c = r->counter;
	in[12] = (vec4){ (uint32_t)c, (uint32_t)(c + 1), (uint32_t)(c + 2), (uint32_t)(c + 3) };
	in[13] = (vec4){ (uint32_t)(c >> 32), (uint32_t)((c + 1) >> 32),
			 (uint32_t)((c + 2) >> 32), (uint32_t)((c + 3) >> 32) };
	in[14] = in[15] = (vec4){ 0, 0, 0, 0 };
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
	/* Word i of block j; the order of words does not matter to a keystream
	 * used only for random numbers, but keep it the standard one. */
	for (int i = 0; i < 16; i++) {
		vec4 v = x[i] + in[i];
		for (int j = 0; j < 4; j++)
			r->block[j * 16 + i] = v[j];
	}
	memset(x, 0, sizeof x);
	r->counter = c + 4;
	r->used = 0;
}

void rng_seed(struct rng *r)
{
	reseed(r, generation_now());
}

void rng_seed_from(struct rng *r, const uint32_t key[8], uint32_t gen)
{
	memcpy(r->key, key, sizeof r->key);
	r->counter = 0;
	r->used = RNG_WORDS;
	r->has_half = 0;
	r->gen = gen;
}

uint64_t rng_u64(struct rng *r)
{
	uint64_t hi = rng_u32(r);
	return hi << 32 | rng_u32(r);
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
	/* Buffered words of a stale parent are its parent's: drop them too. */
	rng_renew_if_stale(parent);
	for (int i = 0; i < 8; i++)
		child->key[i] = rng_u32(parent);
	child->counter = 0;
	child->used = RNG_WORDS;
	child->has_half = 0;
	child->gen = parent->gen;
}

/* random: a ChaCha8 keystream seeded from getrandom, one per lock domain. */
#ifndef LAB_RANDOM_H
#define LAB_RANDOM_H

#include <stdint.h>

#include <stdbool.h>

/* Eight ChaCha blocks are made at once (one per vector lane): 128 words. */
#define RNG_BLOCKS 8
#define RNG_WORDS (16 * RNG_BLOCKS)

struct rng {
	uint32_t key[8];
	uint64_t counter;       /* of the next block */
	unsigned used;          /* words of block already handed out */
	uint32_t half;          /* the unused half of a word, if has_half */
	unsigned has_half;
	uint32_t gen;           /* the process generation its key was drawn in */
	uint32_t block[RNG_WORDS];
};

void rng_seed(struct rng *r);
/* Key r with key[8] in process generation gen (a fork handler: no system call). */
void rng_seed_from(struct rng *r, const uint32_t key[8], uint32_t gen);
/* Rekey r from getrandom if it was keyed in another process generation:
 * a child that no fork handler saw must not go on with its parent's stream. */
void rng_renew_if_stale(struct rng *r);
/* Make the next RNG_WORDS words; used by rng_u32 when the buffer is spent.
 * A generator inherited from another process generation is rekeyed first. */
void rng_refill(struct rng *r);
/* ChaCha8 blocks counter + [0, RNG_BLOCKS) under key: word i of block j
 * into out[i * RNG_BLOCKS + j]; wide (AVX2) or not, the same words. */
void rng_fill(const uint32_t key[8], uint64_t counter, uint32_t out[RNG_WORDS], bool wide);
uint64_t rng_u64(struct rng *r);
/* Uniform in [0, n) for 64-bit ranges. */
uint64_t rng_below64(struct rng *r, uint64_t n);
/* Key a new generator from an existing one: no system call. */
void rng_derive(struct rng *child, struct rng *parent);

/* The next keystream word, the caller having checked that one is left
 * (used < RNG_WORDS): no refill, so no call. Spent output is not left
 * lying around. */
static inline uint32_t rng_take(struct rng *r)
{
	uint32_t v = r->block[r->used];
	r->block[r->used++] = 0;
	return v;
}

static inline uint32_t rng_u32(struct rng *r)
{
	if (__builtin_expect(r->used == RNG_WORDS, 0))
		rng_refill(r);
	return rng_take(r);
}

/* Uniform in [0, n), n > 0, without modulo bias: Lemire's multiply-shift
 * with rejection, one multiply and rarely a retry. */
static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
	uint64_t m = (uint64_t)rng_u32(r) * n;
	uint32_t low = (uint32_t)m;
	if (__builtin_expect(low < n, 0)) {
		uint32_t floor = -n % n;
		while (low < floor) {
			m = (uint64_t)rng_u32(r) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

/* Half a keystream word: most draws (a slot, a place in the quarantine)
 * need no more, and the keystream is the cost. */
static inline uint32_t rng_u16(struct rng *r)
{
	if (r->has_half) {
		r->has_half = 0;
		return r->half;
	}
	uint32_t v = rng_u32(r);
	r->half = v >> 16;
	r->has_half = 1;
	return v & 0xffff;
}

/* Uniform in [0, n), 0 < n <= 65536, from bits, 16 random bits the caller
 * drew: a multiply and a shift, and a fresh draw only in the rare case
 * that would bias the result. */
static inline uint32_t rng_pick_bits(struct rng *r, uint32_t bits, uint32_t n)
{
	uint32_t m = bits * n;
	uint32_t low = m & 0xffff;
	if (__builtin_expect(low < n, 0)) {
		uint32_t floor = (0x10000 - n) % n;
		while (low < floor) {
			m = rng_u16(r) * n;
			low = m & 0xffff;
		}
	}
	return m >> 16;
}

/* The same in one try: false where rng_pick_bits() would draw again
 * (n / 65536 of the time), so that a caller which must not call out can
 * do something else instead; when true, *out is exactly uniform. */
static inline bool rng_pick_once(uint32_t bits, uint32_t n, uint32_t *out)
{
	uint32_t m = bits * n;
	uint32_t low = m & 0xffff;
	if (__builtin_expect(low < n, 0) && low < (0x10000 - n) % n)
		return false;
	*out = m >> 16;
	return true;
}

/* Uniform in [0, n) like rng_below, from 16 bits when n <= 65536. */
static inline uint32_t rng_pick(struct rng *r, uint32_t n)
{
	if (n > 0x10000)
		return rng_below(r, n);
	return rng_pick_bits(r, rng_u16(r), n);
}

#endif

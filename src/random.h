/* random: a ChaCha8 keystream seeded from getrandom, one per lock domain. */
#ifndef LAB_RANDOM_H
#define LAB_RANDOM_H

#include <stdint.h>

struct rng {
	uint32_t key[8];
	uint64_t counter;
	uint32_t block[16];
	unsigned used;          /* words of block already handed out */
};

void rng_seed(struct rng *r);
uint32_t rng_u32(struct rng *r);
uint64_t rng_u64(struct rng *r);
/* Uniform in [0, n), n > 0, without modulo bias. */
uint32_t rng_below(struct rng *r, uint32_t n);
/* Uniform in [0, n) for 64-bit ranges. */
uint64_t rng_below64(struct rng *r, uint64_t n);



/* Key a new generator from an existing one: no system call. */
void rng_derive(struct rng *child, struct rng *parent);
#endif

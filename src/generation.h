/*
 * generation: which process of a family this is. The process that loads
 * labyrinth is generation 1; a forked child is one more than its parent.
 * Children of one parent share everything the parent had, its secrets too,
 * so each generation draws its own: a canary key of its own, and new keys
 * for every generator (lab.c's fork handler, or the slow points below).
 *
 * The current generation lives in a page the kernel hands a child as zeros
 * (MADV_WIPEONFORK). A child that no atfork handler saw (a raw clone or
 * _Fork) reads 0 there, and renews its generation at its next slow point:
 * a generator's refill, a room's key, a small allocation's canary.
 */
#ifndef LAB_GENERATION_H
#define LAB_GENERATION_H

#include "random.h"

#include <stdatomic.h>
#include <stdint.h>

/* Canary keys for generations 1 to GEN_TAGS - 1; a block records which. */
#define GEN_TAGS 256

/* The page wiped at fork: zero means "renew before use". */
struct gen_page {
	_Atomic uint32_t tag_bits;      /* the tag << GEN_TAG_SHIFT, for slot owner words */
	_Atomic uint32_t gen;
	uint64_t key;           /* gen_keys[tag], beside the tag (owner_word() reads both) */
};

/* A small slot's owner tag is its arena (7 bits) and its generation's tag. */
#define GEN_TAG_SHIFT 7

extern struct gen_page *gen_page;
/* gen_keys[tag]: the canary key of the generation with that tag; [0] is 0. */
extern uint64_t gen_keys[GEN_TAGS];

uint32_t generation_slow(void);

/* This process's generation (renewed first if a fork wiped it). */
static inline uint32_t generation_now(void)
{
	uint32_t g = atomic_load_explicit(&gen_page->gen, memory_order_acquire);
	return __builtin_expect(g != 0, 1) ? g : generation_slow();
}

/* The current generation's page, renewed first if a fork wiped it: its
 * tag_bits name its canary key (key) in a slot's owner word. */
static inline const struct gen_page *generation_page(void)
{
	const struct gen_page *g = gen_page;
	if (__builtin_expect(!atomic_load_explicit(&g->tag_bits, memory_order_acquire), 0)) {
		generation_slow();
		g = gen_page;
	}
	return g;
}

/* The canary key of the generation whose tag is in owner bits `owner`. */
static inline uint64_t generation_key(uint32_t owner)
{
	return gen_keys[(owner >> GEN_TAG_SHIFT) & (GEN_TAGS - 1)];
}

/*
 * In a forked child (an atfork handler: async-signal-safe, one getrandom):
 * the next generation, its canary key, and *seed keyed for the caller to
 * derive every other generator from.
 */
void generation_fork_child(struct rng *seed);

#endif

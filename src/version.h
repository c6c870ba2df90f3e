/*
 * version: the 64-bit atomic word that every room and every slot carries.
 *
 *   bits 0-1   state: free, owned, quarantined, retired
 *   bits 2-23  owner tag (the arena for slots and rooms)
 *   bits 24-63 generation, +1 on every change
 *
 * Every ownership change is one compare-and-swap. A release whose swap fails
 * means the word was not what the caller believed: a double free, a stale
 * pointer or a race, and the caller reports it.
 */
#ifndef LAB_VERSION_H
#define LAB_VERSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef _Atomic uint64_t version_t;

enum version_state {
	V_FREE = 0,
	V_OWNED = 1,
	V_QUARANTINED = 2,
	V_RETIRED = 3,
};

#define V_OWNER_BITS 22
#define V_GEN_SHIFT 24

static inline unsigned v_state(uint64_t v) { return (unsigned)(v & 3); }
static inline unsigned v_owner(uint64_t v) { return (unsigned)(v >> 2) & ((1u << V_OWNER_BITS) - 1); }
static inline uint64_t v_gen(uint64_t v) { return v >> V_GEN_SHIFT; }

/* The word's bits below the generation: state and owner tag. */
static inline uint64_t v_low(unsigned state, unsigned owner)
{
	return (uint64_t)(owner & ((1u << V_OWNER_BITS) - 1)) << 2 | state;
}
/* The word after old, with low bits `low` (v_low). */
static inline uint64_t v_next_low(uint64_t old, uint64_t low)
{
	return (v_gen(old) + 1) << V_GEN_SHIFT | low;
}
static inline uint64_t v_next(uint64_t old, unsigned state, unsigned owner)
{
	return v_next_low(old, v_low(state, owner));
}

/* Move the word from state `from` to `to`; false if it was not in `from`.
 * *seen is the word found, before the move. */
static inline bool version_move(version_t *w, unsigned from, unsigned to,
				unsigned owner, uint64_t *seen)
{
	uint64_t v = atomic_load_explicit(w, memory_order_acquire);
	for (;;) {
		if (v_state(v) != from) {
			*seen = v;
			return false;
		}
		if (atomic_compare_exchange_weak_explicit(w, &v, v_next(v, to, owner),
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			*seen = v;      /* the word before the move */
			return true;
		}
	}
}

static inline bool version_claim(version_t *w, unsigned owner, uint64_t *seen)
{
	return version_move(w, V_FREE, V_OWNED, owner, seen);
}

static inline bool version_release(version_t *w, uint64_t *seen)
{
	return version_move(w, V_OWNED, V_FREE, 0, seen);
}

/*
 * A claim in two steps, for a block whose taker holds it alone while it
 * is free (a placed large cell, a page popped from the reserve) and whose
 * canary depends on the word: the word the claim will make (0 if it is not
 * free), so that the block is finished before version_publish() makes it
 * owned. A fork between the two leaves the child a free block, never an
 * owned one with half a canary. Publishing fails if the word changed.
 */
static inline uint64_t version_claim_next(version_t *w, unsigned owner, uint64_t *old)
{
	*old = atomic_load_explicit(w, memory_order_acquire);
	return v_state(*old) == V_FREE ? v_next(*old, V_OWNED, owner) : 0;
}

static inline bool version_publish(version_t *w, uint64_t old, uint64_t next)
{
	return atomic_compare_exchange_strong_explicit(w, &old, next, memory_order_acq_rel,
						       memory_order_acquire);
}

/*
 * Move a word that the caller holds alone (under a lock, or in a thread's
 * batch or quarantine), where no other move can race: a plain store. The
 * new word, or 0 (nothing written) if it was not in state `from`. The
 * _low form takes the new state and owner as v_low() made them, which a
 * caller that moves many words to one owner works out once.
 */
static inline uint64_t version_set_low(version_t *w, unsigned from, uint64_t low)
{
	uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
	if (__builtin_expect(v_state(old) != from, 0))
		return 0;
	uint64_t next = v_next_low(old, low);
	atomic_store_explicit(w, next, memory_order_release);
	return next;
}
static inline uint64_t version_set(version_t *w, unsigned from, unsigned to, unsigned owner)
{
	return version_set_low(w, from, v_low(to, owner));
}

static inline uint64_t version_read(version_t *w)
{
	return atomic_load_explicit(w, memory_order_acquire);
}

#endif

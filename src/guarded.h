/*
 * guarded: the guard-every-allocation mode (LABYRINTH_GUARD_ALL) and its
 * sampled form (LABYRINTH_SAMPLE). A guarded block has pages of its own,
 * its end against a guard page; it lives in a reservation of its own beside
 * the maze, so the maze and its wings are untouched by the mode.
 */
#ifndef LAB_GUARDED_H
#define LAB_GUARDED_H

#include "lab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guarded;

/* The region for lab, if the configuration asks for one; NULL otherwise
 * (and when it cannot be reserved: then the mode is off, with a warning). */
struct guarded *guarded_open(enum guard_mode mode);
void guarded_close(struct guarded *g);

/*
 * A guarded block for this request, or NULL when this allocation is not
 * sampled, the request does not fit the mode (alignment above a page, more
 * than GUARDED_MAX bytes) or the region is full: the caller then serves it
 * the ordinary way. align 0: the natural alignment of the size, at most 16.
 */
static inline void *guarded_take(struct labyrinth *lab, size_t size, size_t align);

/* p lies in lab's guarded region (so only guarded.c may free it). */
static inline bool guarded_has(const struct labyrinth *lab, const void *p);

/* Like small_free/small_usable for a pointer guarded_has() claimed. */
void guarded_free(struct labyrinth *lab, void *p, int kind, size_t expect);
size_t guarded_usable(struct labyrinth *lab, const void *p, int kind);
/* The generation of the block at p (0: never allocated). */
uint64_t guarded_generation(struct labyrinth *lab, const void *p);
/* Check the canaries of every live guarded block; the number damaged. */
size_t guarded_sweep(struct labyrinth *lab);

/* Counters for stats: allocations, frees, bytes of live runs. */
void guarded_counts(struct labyrinth *lab, uint64_t *allocs, uint64_t *frees,
		    uint64_t *live_bytes);

void guarded_lock(struct guarded *g);
/* In a forked child, the region's lock held: new keys, a new sampling draw. */
void guarded_fork_child(struct guarded *g, struct rng *seed);
void guarded_unlock(struct guarded *g);

/* The region's bounds and sampling rate, read without a lock: fixed when
 * it opens. */
struct guarded_span {
	char *base;
	size_t bytes;
	unsigned sample;        /* one allocation in this many; 0: every one */
};

static inline bool guarded_has(const struct labyrinth *lab, const void *p)
{
	const struct guarded_span *s = (const struct guarded_span *)lab->guarded;
	return s && (uintptr_t)p - (uintptr_t)s->base < s->bytes;
}

/* Whether every allocation must be guarded (LABYRINTH_GUARD_ALL, or a
 * sample of one in 1), not one in N (LABYRINTH_SAMPLE=N). */
static inline bool guarded_all(const struct labyrinth *lab)
{
	const struct guarded_span *s = (const struct guarded_span *)lab->guarded;
	return s && s->sample <= 1;
}

/* Allocations this thread has left before its next sample (guarded.c). */
extern __thread uint32_t guarded_countdown __attribute__((tls_model("initial-exec")));
void *guarded_take_drawn(struct labyrinth *lab, size_t size, size_t align);

/* Whether lab samples (LABYRINTH_SAMPLE=N) and this thread's next
 * allocation is not the sample: the caller serves it the ordinary way
 * and counts it (guarded_countdown--). */
static inline bool guarded_between_samples(const struct labyrinth *lab)
{
	const struct guarded_span *s = (const struct guarded_span *)lab->guarded;
	return s && s->sample > 1 && __builtin_expect(guarded_countdown > 1, 1);
}

/* Inline: under sampling, all but one call in N end at the countdown,
 * and a call to another file for each would be most of their cost. */
static inline void *guarded_take(struct labyrinth *lab, size_t size, size_t align)
{
	if (guarded_between_samples(lab)) {
		guarded_countdown--;
		return NULL;
	}
	return guarded_take_drawn(lab, size, align);
}

#endif

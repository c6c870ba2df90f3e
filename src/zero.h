/*
 * zero: zero-size blocks. malloc(0) and its kin return a unique pointer
 * into the zero region, a reservation that is never made accessible, so a
 * read or a write through it faults. Its slots' version words live out of
 * line, like all metadata; whether a pointer is one is arithmetic.
 */
#ifndef LAB_ZERO_H
#define LAB_ZERO_H

#include "random.h"
#include "version.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Two lanes of 4 GiB each: slots 16 bytes apart for malloc(0) and alignments
 * up to 16, a page apart for larger alignments (their version words stay
 * dense: a page-aligned block in the first lane would touch a page of
 * index for every two blocks).
 */
#define ZERO_LANE_SHIFT 32
#define ZERO_LANES 2
#define ZERO_BYTES ((size_t)ZERO_LANES << ZERO_LANE_SHIFT)
#define ZERO_ALIGN_MAX (1UL << 20)      /* larger alignments go the ordinary way */

/* One lane: an extent of slots placed at random, and their versions. */
struct zero_lane {
	version_t *versions;            /* per slot, in the index reservation */
	unsigned shift;                 /* log2 of the bytes between two slots */
	uint32_t nslots;
	uint32_t lo, cells;             /* the extent: slots [lo, lo + cells) */
	_Atomic uint32_t open_hi;       /* versions of slots below it are read-write */
	uint32_t taken;                 /* slots owned or quarantined */
};

/* Embedded in struct labyrinth, whose other fields never point here. Its
 * reservations are made at the first zero-size request, so a process that
 * never asks for one pays nothing. */
struct zero_region {
	_Atomic(uintptr_t) base;        /* first slot; 0 until the region opens */
	pthread_mutex_t lock;           /* a leaf: held with no other lock */
	struct rng rng;
	struct zero_lane lanes[ZERO_LANES];
	uint32_t *ring;                 /* the quarantine FIFO: lane << 31 | slot */
	uint32_t ring_head, ring_count;
	bool failed;                    /* the reservation was refused: no retry */
	char *mem, *index;              /* the reservations, for closing */
	_Atomic uint64_t allocs, frees;
};

void zero_init(struct zero_region *z, struct rng *seed);
void zero_close(struct zero_region *z);
/* A new zero-size block aligned to align (at most ZERO_ALIGN_MAX), or NULL. */
void *zero_alloc(struct zero_region *z, size_t align);
/* Free p, which zero_has() claimed; a sized free must say 0. */
void zero_free(struct zero_region *z, void *p, int kind, size_t expect);
/* 0 for a live block; SIZE_MAX (reported) for anything else. */
size_t zero_usable(struct zero_region *z, const void *p, int kind);
/* The generation of the block at p (0: never allocated). */
uint64_t zero_generation(struct zero_region *z, const void *p);
/*
 * For the fault explainer, in a signal handler (no lock): the slot holding
 * p, which zero_has() claimed. *start: the slot's first byte; the result:
 * its version word, 0 if its word was never opened (never allocated).
 */
uint64_t zero_slot_version(const struct zero_region *z, const void *p, uintptr_t *start);
/* The region's lock, for the fork handlers; and new keys in the child. */
void zero_lock(struct zero_region *z);
void zero_unlock(struct zero_region *z);
void zero_fork_child(struct zero_region *z, struct rng *seed);

/* p lies in the zero region: "an access to a zero-size allocation". */
static inline bool zero_has(const struct zero_region *z, const void *p)
{
	uintptr_t b = atomic_load_explicit(&z->base, memory_order_relaxed);
	return b && (uintptr_t)p - b < ZERO_BYTES;
}

#endif

/*
 * lab: the labyrinth instance and its arenas. Internal: the public view is
 * the opaque labyrinth_t of include/labyrinth.h.
 */
#ifndef LAB_LAB_H
#define LAB_LAB_H

#include "maze.h"
#include "quarantine.h"
#include "random.h"
#include "reserve.h"
#include "zero.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMALL_CLASSES 64
#define SMALL_MAX 16384
#define MAX_ARENAS 64
#define PAGE_ORDERS 5           /* LAB_PAGE_MAX_ORDER + 1 */

/* One size class of one arena: the room being filled, rooms with room left,
 * and at most one empty room kept open for the next refill. */
struct bin {
	uint32_t current;       /* cell, or CELL_NONE */
	uint32_t partial;       /* head of a list of cells, or CELL_NONE */
	uint32_t spare;         /* an empty open room, or CELL_NONE */
	uint32_t spare_kept;    /* its bytes counted in the arena's spares_kept */
	uint64_t spare_epoch;   /* the maze epoch in which it became empty */
};

/* A lock domain. Threads are spread over arenas; a room belongs to one. */
struct arena {
	pthread_mutex_t lock;
	struct rng rng;
	unsigned id;            /* owner tag in version words: index + 1 */
	struct bin bins[SMALL_CLASSES];
	struct quarantine quarantine;   /* slots of this arena's rooms */
	size_t spares_kept;     /* bytes of big spares keeping their pages */
	/* Written under the lock, read by stats without it. */
	_Atomic uint64_t allocs, frees, live_bytes;
} __attribute__((aligned(64)));

/* The detection layer's settings, fixed when a labyrinth opens. */
struct protections {
	bool canary;            /* keyed canary after every allocation */
	bool zero;              /* zero small slots at free */
	bool uaf_check;         /* check reused slots are still zero */
	uint32_t quarantine;    /* slots held back per arena */
	uint32_t large_quarantine;      /* large regions held back */
};

/* Freed large regions: closed at once, their cells kept taken for a while. */
struct region_quarantine {
	pthread_mutex_t lock;
	uint64_t *ring;         /* wing index << 32 | cell */
	uint32_t size, head, count;
};

struct guarded;
struct thread_cache;

struct labyrinth {
	struct maze maze;
	struct guarded *guarded;        /* LABYRINTH_GUARD_ALL/SAMPLE region, or NULL */
	struct zero_region zero;        /* zero-size blocks: never accessible */
	struct protections prot;
	struct region_quarantine regions;
	struct arena *arenas;
	unsigned narenas;
	unsigned nlarge;        /* large classes; their wings follow the small ones */
	size_t max_alloc;
	size_t self_bytes;      /* the mapping that holds this struct and the arenas */
	_Atomic uint64_t large_allocs, large_frees, large_live_bytes, peak_live;
	struct labyrinth *next; /* every open labyrinth, for fork handling */
	pthread_mutex_t key_lock;       /* a leaf: guards key_rng */
	struct rng key_rng;     /* canary keys of large regions and pool pages */
	bool is_default;
	uint64_t serial;        /* this labyrinth's number, never reused */
	struct thread_cache *idle_caches;       /* exited threads' (tcache.c's lock) */
	/* The page API: a wing and a reserve per block order. */
	bool pool;              /* prefaulted: labyrinth_malloc is served from the reserve */
	bool mlock;             /* lock the reserve's pages in memory */
	unsigned page_wing0;    /* index of the order-0 page wing; orders follow */
	struct reserve reserves[PAGE_ORDERS];
	struct pool_quarantine pool_quarantine;        /* a pool's freed blocks, order 0 */
	_Atomic uint64_t page_allocs, page_frees, page_live_bytes;
};

/*
 * Counters that one writer at a time moves (under a lock, or a thread's
 * own): no lock prefix. Readers load them relaxed. On x86-64 one add to
 * memory, which no reader sees torn; C has no unlocked atomic add, and
 * a relaxed load and store are three instructions.
 */
static inline void counter_add(_Atomic uint64_t *c, uint64_t d)
{
#ifdef __x86_64__
	__asm__("addq %1, %0" : "+m"(*(uint64_t *)c) : "er"(d));
#else
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
			      memory_order_relaxed);
#endif
}

/*
 * The bytes a small slot needs for a request: every small request keeps at
 * least one canary byte, so an exact fit takes the next class. More than
 * SMALL_MAX (never wrapping) means the request is large.
 */
static inline size_t small_need(const struct labyrinth *lab, size_t size)
{
	return size > SMALL_MAX ? SIZE_MAX : size + lab->prot.canary;
}

static inline unsigned wing_index(const struct labyrinth *lab, const struct wing *w)
{
	(void)lab;
	return w->index;
}

static inline bool wing_is_small(const struct labyrinth *lab, const struct wing *w)
{
	return wing_index(lab, w) < SMALL_CLASSES;
}

/* Made on first use; every malloc of the preload asks for it. */
extern struct labyrinth *_Atomic lab_default_ptr;
struct labyrinth *lab_default_create(void);

static inline struct labyrinth *lab_default(void)
{
	struct labyrinth *lab = atomic_load_explicit(&lab_default_ptr, memory_order_acquire);
	return __builtin_expect(lab != NULL, 1) ? lab : lab_default_create();
}

static inline bool wing_is_page(const struct labyrinth *lab, const struct wing *w)
{
	return wing_index(lab, w) >= lab->page_wing0;
}

/* The generations (by tag, a bit each) that this process or an ancestor
 * since the last exec forked from while other threads had caches: slots
 * they were handing out or freeing may be half made here (sweep.c). */
#define HALF_MADE_WORDS 4       /* GEN_TAGS bits */
extern uint64_t lab_half_made_tags[HALF_MADE_WORDS];
/* General-path in-place resizes under way (any thread, cache or not). */
extern _Atomic unsigned lab_resizing_now;

static inline bool lab_half_made_tag(unsigned tag)
{
	return (lab_half_made_tags[tag / 64] >> (tag % 64)) & 1;
}

static inline bool lab_half_made_any(void)
{
	uint64_t any = 0;
	for (unsigned i = 0; i < HALF_MADE_WORDS; i++)
		any |= lab_half_made_tags[i];
	return any != 0;
}

/* What an in-place resize did: the block stays (resized), must move, or
 * was refused with a report (it is no live block: a free raced the
 * realloc), which LABYRINTH_ON_ERROR=log let return. */
enum resize {
	RESIZE_MOVE,
	RESIZE_STAYS,
	RESIZE_REFUSED,
};

/* For a report's reason: p belongs to another open labyrinth. */
bool lab_other_holds(const struct labyrinth *lab, const void *p);
/* The default labyrinth if something already created it, else NULL. */
struct labyrinth *lab_default_if_open(void);
void lab_note_peak(struct labyrinth *lab);
/* A new canary key from the labyrinth's key stream (takes key_lock). */
uint64_t lab_key_new(struct labyrinth *lab);
uint64_t lab_live_bytes(struct labyrinth *lab);

#endif

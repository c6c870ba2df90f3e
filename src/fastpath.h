/*
 * fastpath: malloc and free of small blocks by the default labyrinth, each
 * in one inlined piece, for the preload shim.
 *
 * Every protection is on here at full strength: the canary, the zeroing
 * and the reuse check, the version word's compare-and-swap, the random
 * quarantine. What the fast path leaves out is the general path's
 * configuration tests and call layers. One per-thread word (tcache_fast)
 * says that the thread has a cache and that its labyrinth runs with the
 * default protections and nothing else to consult (no guarded blocks, no
 * pool); then malloc is a batch pop and a hand-out, free a lookup, a
 * retire and a quarantine push.
 *
 * Under LABYRINTH_SAMPLE, malloc's word is off (every call may be the one
 * to guard) and the shim's general malloc counts the calls down itself,
 * taking the fast path between samples: the default mode pays nothing.
 *
 * Both are leaves: anything out of the common case (no cache yet, an empty
 * batch, a spent keystream buffer, a full release list, malloc's first
 * call in a forked child, a slot of a page or more, a pointer that is no
 * slot) is seen before any change and sends the caller to the general
 * path, which does the same steps with every test. So on the common case
 * they call nothing and save no registers; the reports they make are calls
 * at the end of cold paths. A forked child's frees before its first malloc
 * stay here, as they do on the general path: they draw quarantine places
 * from the words its cache's generator had buffered (see tcache_forked()).
 */
#ifndef LAB_FASTPATH_H
#define LAB_FASTPATH_H

#include "lab.h"
#include "report.h"
#include "slot.h"
#include "tcache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The protections fast_path_fits() (tcache.c) requires and the classes
 * served, as constants the compiler folds into the inlined steps. */
static const struct protections fast_prot = {
	.canary = true, .zero = true, .uaf_check = true, .quarantine = 1,
};
static const struct step_terms fast_terms = {
	.prot = &fast_prot, .class_max = FAST_CLASS_MAX, .leaf = true,
};

/* A block of 1 to FAST_REQUEST_MAX bytes from tc's batches, or NULL: take
 * the general path. */
static inline __attribute__((always_inline)) void *fast_malloc_on(struct thread_cache *tc,
								  size_t size)
{
	if (__builtin_expect(!tc || size - 1 >= FAST_REQUEST_MAX, 0))
		return NULL;
	const struct gen_page *g = gen_page;
	if (__builtin_expect(tc->gen != atomic_load_explicit(&g->gen, memory_order_relaxed), 0))
		return NULL;    /* a forked child: tcache_forked() first */
	unsigned cls = small_class(size + 1);
	if (__builtin_expect(tc->batch[cls].n == 0, 0))
		return NULL;
	return tcache_hand_out(&fast_terms, tc->lab, tc, cls, size);
}

static inline __attribute__((always_inline)) void *fast_malloc(size_t size)
{
	return fast_malloc_on(tcache_fast_malloc, size);
}

/* p's room (and its wing, cell and slot) if p starts a slot of the fast
 * path's classes in tc's labyrinth, else NULL. Large and page wings have
 * no class below a page. */
static inline __attribute__((always_inline)) struct room *
fast_slot_of(struct thread_cache *tc, void *p, struct wing **wp, uint32_t *cell, uint16_t *slot)
{
	struct wing *w = maze_wing_of(&tc->lab->maze, p);
	if (__builtin_expect(!w || w->class_size > FAST_CLASS_MAX, 0))
		return NULL;
	*wp = w;
	return slot_find(w, p, cell, slot);
}

/* Free p if it is a small slot the fast path can retire; false (nothing
 * done) for the general path. expect is the size a sized free passed, or
 * SIZE_MAX. */
static inline __attribute__((always_inline)) bool fast_free_sized(void *p, size_t expect)
{
	struct thread_cache *tc = tcache_fast;
	/* The keystream word and the release place that tcache_free_with()
	 * uses are there: it calls nothing. */
	if (__builtin_expect(!tc || tc->rng.used == RNG_WORDS || tc->nrelease == RELEASE_MAX, 0))
		return false;
	struct labyrinth *lab = tc->lab;
	struct wing *w;
	uint32_t cell;
	uint16_t slot;
	struct room *r = fast_slot_of(tc, p, &w, &cell, &slot);
	if (__builtin_expect(!r, 0))
		return false;
	struct slot_ref ref;
	uint64_t seen;
	switch (slot_retire_found(&fast_terms, lab, w, r, p, cell, slot, ERR_INVALID_FREE, expect,
				  &ref, &tc->quarantine, &seen)) {
	case RETIRE_DONE:
		tcache_free_with(&fast_terms, &quarantine_default_shape, lab, tc, ref);
		break;
	case RETIRE_DAMAGED:
		tcache_free_damaged(tc, w, p, seen, expect);
		break;
	case RETIRE_REFUSED:
		break;
	}
	return true;
}

static inline __attribute__((always_inline)) bool fast_free(void *p)
{
	return fast_free_sized(p, SIZE_MAX);
}

/*
 * realloc's first step, for p a live slot of the fast path's classes that
 * this process generation handed out, and size a request it serves: the
 * block's request size, and *stays set when size keeps its class, in
 * which case it is resized in place here (its canary checked, then
 * written from the new end, as small_resize()
 * does). SIZE_MAX: nothing done, take the general path, which reports a
 * pointer that is no live block and a damaged canary. A block that must
 * move is the caller's to copy into a fast malloc and free.
 */
static inline __attribute__((always_inline)) size_t fast_resize(void *p, size_t size, bool *stays)
{
	struct thread_cache *tc = tcache_fast;
	if (__builtin_expect(!tc || size - 1 >= FAST_REQUEST_MAX, 0))
		return SIZE_MAX;
	struct wing *w;
	uint32_t cell;
	uint16_t slot;
	struct room *r = fast_slot_of(tc, p, &w, &cell, &slot);
	if (__builtin_expect(!r, 0))
		return SIZE_MAX;
	uint64_t v = version_read(slot_version(r, slot));
	/* A block of an earlier process generation takes this one's tag
	 * first, on the general path (small_resize()). */
	if (__builtin_expect(v_state(v) != V_OWNED ||
			     !slot_tagged(v, atomic_load_explicit(&gen_page->tag_bits,
								  memory_order_relaxed)), 0))
		return SIZE_MAX;
	size_t cs = class_size_at_most(w, FAST_CLASS_MAX);
	uint16_t *req = slot_size(w, r, slot);
	size_t old = *req;
	*stays = small_class(size + 1) == w->index;
	if (!*stays)
		return old;
	uint64_t pat = slot_pattern(r, p, v);
	if (__builtin_expect(!canary_intact_slot(p, old, cs, pat), 0))
		return SIZE_MAX;
	annotate_open(p, cs);
	*req = (uint16_t)size;
	if (size > old)         /* the old canary: handed out, it would tell the pattern */
		memset(p + old, 0, size - old);
	canary_write_slot(p, size, cs, pat);
	annotate_resize(p, old, size, cs);
	return old;
}

#endif

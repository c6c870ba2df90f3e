/*
 * arena: the top of the allocator. Threads are spread over arenas so they do
 * not all wait on one lock; the wing of a pointer (address arithmetic) says
 * whether it is small or large, so free reads no heap memory to decide.
 */
#include "arena.h"
#include "annotate.h"
#include "guarded.h"
#include "large.h"
#include "os.h"
#include "page.h"
#include "report.h"
#include "room.h"
#include "slot.h"
#include "tcache.h"
#include "zero.h"

#include <errno.h>
#include <string.h>

static _Atomic unsigned next_thread_slot;
static __thread unsigned thread_slot __attribute__((tls_model("initial-exec")));

/* Round-robin at a thread's first call: no syscall, no per-thread state to free. */
static struct arena *arena_for_thread(struct labyrinth *lab)
{
	unsigned s = thread_slot;
	if (__builtin_expect(s == 0, 0)) {
		s = atomic_fetch_add_explicit(&next_thread_slot, 1, memory_order_relaxed) + 1;
		thread_slot = s;
	}
	return &lab->arenas[(s - 1) % lab->narenas];
}

/* The thread's cache of lab; NULL when it cannot have one (exiting, or
 * out of memory): the arena path then. */
static inline struct thread_cache *thread_cache(struct labyrinth *lab)
{
	struct thread_cache *tc = tcache_self;
	if (__builtin_expect(tc != NULL && tc->lab == lab, 1))
		return tc;
	if (lab->is_default)
		return tcache_attach(lab, arena_for_thread(lab));
	tc = tcache_private_find(lab);
	return tc ? tc : tcache_private_attach(lab, arena_for_thread(lab));
}

static void *small_malloc(struct labyrinth *lab, unsigned cls, size_t size)
{
	struct thread_cache *tc = thread_cache(lab);
	if (tc)
		return tcache_alloc(lab, tc, cls, size);
	return small_alloc(lab, arena_for_thread(lab), cls, size);
}

/*
 * When the default labyrinth's open rooms have grown by a quarter and 1 MiB
 * since a thread last looked, or every GIVE_BACK_PLACEMENTS room
 * placements, that thread's next call this way (a batch to refill, a large
 * block) gives back what the labyrinth holds idle, as labyrinth_trim does,
 * keeping every quarantined slot quarantined. A program that passes through
 * many sizes once, a shell growing a string, otherwise keeps a room of
 * cleared, resident slots open in every class it left, pinned by a slot in
 * its batch, for good, and every fork copies them. A heap that neither
 * grows nor places rooms never gives back, so a steady one pays nothing; a
 * growing one, once per quarter of growth. A new thread starts counting at
 * its first call, so thread churn pays nothing either. Not at fork: a fork
 * from a signal handler that interrupted this thread's malloc or free
 * would have its cache changed under the call.
 */
#define GIVE_BACK_PLACEMENTS 4096
static __thread uint64_t gave_back_at __attribute__((tls_model("initial-exec")));
static __thread uint64_t gave_back_mapped __attribute__((tls_model("initial-exec")));

/* Out of line, so that the common case saves no registers for it. */
static __attribute__((noinline, cold)) void give_back(struct labyrinth *lab, uint64_t at)
{
	bool first = gave_back_at == 0;
	gave_back_at = at;
	if (!first)
		lab_trim(lab);
	uint64_t mapped = atomic_load_explicit(&lab->maze.mapped_bytes, memory_order_relaxed);
	gave_back_mapped = mapped + mapped / 4 + (1UL << 20);
}

static void give_back_now_and_then(struct labyrinth *lab)
{
	struct maze *m = &lab->maze;
	uint64_t at = atomic_load_explicit(&m->rooms_placed, memory_order_relaxed) /
		      GIVE_BACK_PLACEMENTS + 1;         /* 0: the thread's first call */
	uint64_t mapped = atomic_load_explicit(&m->mapped_bytes, memory_order_relaxed);
	if (__builtin_expect(at == gave_back_at && mapped <= gave_back_mapped, 1) ||
	    !lab->is_default)
		return;
	give_back(lab, at);
}

static void *malloc_unguarded(struct labyrinth *lab, size_t size)
{
	if (lab->pool)          /* prefaulted: no system call, so no rooms to open */
		return page_malloc(lab, size);
	give_back_now_and_then(lab);
	size_t need = small_need(lab, size);
	if (need <= SMALL_MAX) {
		/* malloc(0): a pointer into the zero region, which never opens. */
		if (__builtin_expect(size == 0, 0))
			return zero_alloc(&lab->zero, 0);
		return small_malloc(lab, small_class(need), size);
	}
	return large_alloc(lab, size, PAGE_SIZE);
}

void *lab_malloc(struct labyrinth *lab, size_t size)
{
	if (__builtin_expect(lab->guarded != NULL, 0) && size) {  /* LABYRINTH_GUARD_ALL/SAMPLE */
		void *g = guarded_take(lab, size, 0);
		if (g)
			return g;
	}
	return malloc_unguarded(lab, size);
}

/* The guarded region first: its blocks are only as aligned as asked. */
void *lab_aligned(struct labyrinth *lab, size_t align, size_t size)
{
	if (__builtin_expect(lab->guarded != NULL, 0) && size) {
		void *g = guarded_take(lab, size, align);
		if (g)
			return g;
	}
	if (align <= 16 || (lab->pool && align <= PAGE_SIZE))
		return malloc_unguarded(lab, size);
	if (lab->pool)
		return NULL;
	if (size == 0 && align <= ZERO_ALIGN_MAX)
		return zero_alloc(&lab->zero, align);
	if (align <= PAGE_SIZE && size < SMALL_MAX) {
		int cls = small_class_aligned(small_need(lab, size), align);
		if (cls >= 0)
			return small_malloc(lab, (unsigned)cls, size);
	}
	return large_alloc(lab, size, align);
}

void *lab_calloc(struct labyrinth *lab, size_t size)
{
	void *p = lab_malloc(lab, size);
	/* Slots are zeroed at free and checked on reuse; large rooms open on
	 * fresh zero pages. Without both checks a slot may hold old bytes. */
	bool zeroed = small_need(lab, size) > SMALL_MAX || (lab->prot.zero && lab->prot.uaf_check);
	if (p && !zeroed)
		memset(p, 0, size);
	if (p)
		annotate_defined(p, size);
	return p;
}

static struct wing *wing_or_report(struct labyrinth *lab, const void *p, int kind)
{
	struct wing *w = maze_wing_of(&lab->maze, p);
	if (!w) {
		struct error_site site = { .addr = p, .why = lab_other_holds(lab, p)
							   ? "of another labyrinth" : "not in the heap" };
		report_heap_error(kind, &site);
	}
	return w;
}

/* A pointer outside the maze and the guarded region: a zero-size block,
 * or nothing of ours. Off the fast path: the maze's range check comes first. */
static void free_outside(struct labyrinth *lab, void *p, size_t expect)
{
	if (zero_has(&lab->zero, p))
		zero_free(&lab->zero, p, ERR_INVALID_FREE, expect);
	else
		wing_or_report(lab, p, ERR_INVALID_FREE);
}

void lab_free_sized(struct labyrinth *lab, void *p, size_t expect)
{
	if (__builtin_expect(guarded_has(lab, p), 0)) {
		guarded_free(lab, p, ERR_INVALID_FREE, expect);
		return;
	}
	struct wing *w = maze_wing_of(&lab->maze, p);
	if (__builtin_expect(!w, 0)) {
		free_outside(lab, p, expect);
		return;
	}
	if (wing_is_small(lab, w)) {
		struct thread_cache *tc = thread_cache(lab);
		struct slot_ref ref;
		if (!tc)
			small_free(lab, w, p, ERR_INVALID_FREE, expect);
		else if (slot_retire(lab, w, p, ERR_INVALID_FREE, expect, &ref, &tc->quarantine))
			tcache_free(lab, tc, ref);
	} else if (wing_is_page(lab, w))
		page_malloc_free(lab, w, p, ERR_INVALID_FREE, expect);
	else
		large_free(lab, w, p, ERR_INVALID_FREE, expect);
}

void lab_free(struct labyrinth *lab, void *p)
{
	lab_free_sized(lab, p, SIZE_MAX);
}

static size_t usable(struct labyrinth *lab, struct wing *w, const void *p, int kind)
{
	if (wing_is_small(lab, w))
		return small_usable(lab, w, p, kind);
	if (wing_is_page(lab, w))
		return page_malloc_usable(lab, w, p, kind);
	return large_usable(lab, w, p, kind);
}

/* p's usable bytes; SIZE_MAX (after a report of kind `kind`) if it is no
 * live block. */
static size_t block_usable(struct labyrinth *lab, const void *p, int kind)
{
	if (__builtin_expect(guarded_has(lab, p), 0))
		return guarded_usable(lab, p, kind);
	struct wing *w = maze_wing_of(&lab->maze, p);
	return w ? usable(lab, w, p, kind)
		 : zero_has(&lab->zero, p) ? zero_usable(&lab->zero, p, kind)
		 : (wing_or_report(lab, p, kind), SIZE_MAX);
}

size_t lab_usable(struct labyrinth *lab, const void *p)
{
	size_t n = block_usable(lab, p, ERR_INVALID_USABLE_SIZE);
	return n == SIZE_MAX ? 0 : n;
}

void lab_free_sized_max(struct labyrinth *lab, void *p)
{
	/* Found as a free would find it, so that a pointer that is no live
	 * block is reported as a free of it is. */
	size_t n = block_usable(lab, p, ERR_INVALID_FREE);
	if (n == SIZE_MAX)
		return;
	report_wrong_size(p, SIZE_MAX, n, 0);
	lab_free(lab, p);
}

/* A guarded block (w NULL) always moves, so a stale pointer to it faults;
 * so does a zero-size one, into a real block. */
static enum resize resize_in_place(struct labyrinth *lab, struct wing *w, void *p, size_t size)
{
	if (!w || wing_is_page(lab, w))
		return RESIZE_MOVE;
	if (wing_is_small(lab, w))      /* same class: stay; a smaller one: move */
		return small_resize(lab, w, p, size);
	return large_resize(lab, w, p, size);
}

void *lab_realloc(struct labyrinth *lab, void *p, size_t size)
{
	bool guarded = guarded_has(lab, p), zero = zero_has(&lab->zero, p);
	struct wing *w = guarded || zero ? NULL : wing_or_report(lab, p, ERR_INVALID_REALLOC);
	size_t old = guarded ? guarded_usable(lab, p, ERR_INVALID_REALLOC)
		     : zero ? zero_usable(&lab->zero, p, ERR_INVALID_REALLOC)
		     : w ? usable(lab, w, p, ERR_INVALID_REALLOC) : SIZE_MAX;
	if (old == SIZE_MAX) {          /* reported, and LABYRINTH_ON_ERROR=log */
		errno = EINVAL;
		return NULL;
	}
	switch (resize_in_place(lab, w, p, size)) {
	case RESIZE_STAYS:
		return p;
	case RESIZE_REFUSED:    /* a free raced it: reported, nothing to copy */
		errno = EINVAL;
		return NULL;
	case RESIZE_MOVE:
		break;
	}
	/* Growth in place skips the guarded region: only guard-all must not. */
	bool growing = !guarded_all(lab) && size > old && small_need(lab, size) > SMALL_MAX;
	void *n = growing ? large_alloc_growing(lab, size) : lab_malloc(lab, size);
	if (!n)
		return NULL;
	memcpy(n, p, old < size ? old : size);
	lab_free(lab, p);
	return n;
}

size_t lab_trim(struct labyrinth *lab)
{
	size_t released = tcache_trim(lab);
	for (unsigned i = 0; i < lab->narenas; i++)
		released += small_trim(lab, &lab->arenas[i]);
	maze_close_hollow(&lab->maze);
	return released;
}

/*
 * tcache: the thread cache of the default labyrinth, which makes the small
 * fast path take no lock.
 *
 * A thread takes a batch of randomly chosen free slots of one class from its
 * arena under one lock, and hands them out without locking. Frees are
 * retired on the slot's version word as always (so a double free is caught
 * exactly, from any thread), then held in the thread's own quarantine; the
 * slots that leave it are released to their rooms a few dozen at a time,
 * under each room's arena lock. Nothing here changes what a slot's version
 * says: a slot in a batch is free, a slot in the quarantine is quarantined.
 */
#ifndef LAB_TCACHE_H
#define LAB_TCACHE_H

#include "generation.h"
#include "lab.h"
#include "quarantine.h"
#include "random.h"
#include "slot.h"

#include <stddef.h>
#include <stdint.h>

#define BATCH_MAX 32
#define RELEASE_MAX 32
/* A slot leaving the quarantine joins a batch only among this many others;
 * else it goes back to its room, where a refill draws among all the free
 * slots of the arena's rooms. */
#define RECYCLE_MIN 8

struct batch {
	uint16_t n, cap;
	/* In a forked child: slots ref[0, inherited) the parent took, which
	 * every sibling would hand out too. They go back to their rooms at the
	 * class's next refill, and cap is 0 until then, so nothing lands on
	 * them (n is 0). */
	uint16_t inherited;
	/* Slots of this class the owning thread handed out and freed (read by
	 * stats): one count per operation; live bytes are derived when read. */
	_Atomic uint64_t allocs, frees;
	struct slot_ref ref[BATCH_MAX];
};

struct thread_cache {
	struct labyrinth *lab;
	struct arena *arena;            /* batches are taken from its bins */
	struct owner_word owned;        /* its id and gen's tag, for slots handed out */
	uint32_t gen;           /* the process generation its batches, rng and owned are of */
	struct rng rng;
	struct quarantine quarantine;
	uint16_t nrelease;
	struct slot_ref release[RELEASE_MAX];   /* left the quarantine, to release */
	struct thread_cache *_Atomic next;      /* every cache, never unlinked */
	struct thread_cache *next_idle;
	uint64_t lab_serial;    /* a private labyrinth's serial, while of one */
	uint32_t capacity;      /* quarantine entries its storage holds */
	bool orphan;            /* left by a thread that a fork did not copy */
	bool in_use;            /* a thread's now: not idle, blank or orphan */
	struct batch batch[SMALL_CLASSES];
	/* the quarantine's storage follows */
};

extern __thread struct thread_cache *tcache_self
	__attribute__((tls_model("initial-exec")));
/* The same cache, or NULL, when its labyrinth runs with the fast path's
 * settings (fastpath.h): the one word the shim's free tests. Guarded
 * blocks lie outside the maze, so free takes it with them too. */
extern __thread struct thread_cache *tcache_fast
	__attribute__((tls_model("initial-exec")));
/* The word malloc tests: tcache_fast when no allocation may have to be
 * guarded; under LABYRINTH_SAMPLE the shim takes the fast path between
 * samples from its general path (fast_malloc_on). */
extern __thread struct thread_cache *tcache_fast_malloc
	__attribute__((tls_model("initial-exec")));
/* The largest request the fast path serves: with its canary byte, its
 * class is below a page (3,840 bytes), so zeroing never gives pages back. */
#define FAST_REQUEST_MAX 3839
#define FAST_CLASS_MAX 3840

/* Called when tcache_self is not lab's: the calling thread's cache for the
 * default labyrinth, made on its first call, taking batches from arena a;
 * NULL for a private labyrinth or a thread that is exiting (they take the
 * arena path). */
struct thread_cache *tcache_attach(struct labyrinth *lab, struct arena *a);

/*
 * Private labyrinths' caches (tcache_private.c). A thread names up to
 * PRIVATE_CACHES of them; find is the common case, attach the first call
 * (NULL: the thread is exiting, or out of memory; the arena path then).
 */
struct thread_cache *tcache_private_find(const struct labyrinth *lab);
struct thread_cache *tcache_private_attach(struct labyrinth *lab, struct arena *a);

/* Between tcache.c and tcache_private.c. The pool's lock guards the idle
 * and blank lists, lab->idle_caches and a cache's lab and lab_serial; it
 * is held across fork too, so that a child never inherits it taken. */
void tcache_pool_lock(void);
void tcache_pool_unlock(void);
struct thread_cache *tcache_pool_blank(struct labyrinth *lab);
struct thread_cache *tcache_pool_take(struct labyrinth *lab, struct thread_cache **idle_of,
				      bool *fresh);
void tcache_clear(struct labyrinth *lab, struct thread_cache *tc);
void tcache_rekey(struct thread_cache *tc, struct arena *a);
/* In a forked child, under the pool's lock: every orphan of lab made
 * whole, its quarantine kept (tcache.c). */
size_t tcache_salvage_orphans(struct labyrinth *lab);
size_t tcache_give_back(struct labyrinth *lab, struct thread_cache *tc);
void tcache_hook_exit(void);
/* Whether the calling thread's exit hook has run. */
bool tcache_exiting(void);
/* At the calling thread's exit: its private caches go idle. */
void tcache_private_exit(void);
/* In a forked child: whether tc is one of the forking thread's own. */
bool tcache_private_mine(const struct thread_cache *tc);

/* The slow halves of the two below: a batch is taken under the arena's
 * lock (false if the wing is full); the release list is emptied. */
bool tcache_batch_fill(struct labyrinth *lab, struct thread_cache *tc, unsigned cls)
	__attribute__((noinline));
/* The cache's first malloc in a forked child: see tcache.c. */
void tcache_forked(struct labyrinth *lab, struct thread_cache *tc) __attribute__((noinline));
size_t tcache_release_flush(struct labyrinth *lab, struct thread_cache *tc)
	__attribute__((noinline));

/*
 * An entry is written before the count that covers it, never after: a fork
 * may catch another thread between the two, and the child that takes over
 * that thread's cache should at worst lose an entry. (Pages copied at
 * different moments can still disagree; the child salvages such a cache
 * slot by slot, see tcache.c.) A compiler barrier: x86 stores are seen in
 * program order anyway.
 */
static inline void tcache_order(void)
{
	atomic_signal_fence(memory_order_seq_cst);
}

/* Hand out the top slot of tc's batch of class cls (not empty). */
static inline __attribute__((always_inline)) void *
tcache_hand_out(const struct step_terms *t, struct labyrinth *lab, struct thread_cache *tc,
		unsigned cls, size_t size)
{
	struct batch *b = &tc->batch[cls];
	/* The next slot is not prefetched: that cost 31 instructions a pair
	 * and saved no time, with 4,096 live blocks or 262,144 (churn). */
	struct slot_ref ref = b->ref[--b->n];
	tcache_order();
	counter_add(&b->allocs, 1);
	ref.cls = (uint16_t)cls;        /* as stored: the class known, not loaded */
	return slot_hand_out_with(t, lab, ref, size, &tc->owned);
}

/* A slot of class cls for a request of size bytes, or NULL when the wing is full. */
static inline void *tcache_alloc(struct labyrinth *lab, struct thread_cache *tc, unsigned cls,
				 size_t size)
{
	const struct gen_page *g = generation_page();
	if (__builtin_expect(tc->gen != atomic_load_explicit(&g->gen, memory_order_relaxed), 0))
		tcache_forked(lab, tc);
	if (__builtin_expect(tc->batch[cls].n == 0, 0) && !tcache_batch_fill(lab, tc, cls))
		return NULL;
	struct step_terms t = step_terms_general(lab);
	return tcache_hand_out(&t, lab, tc, cls, size);
}

/* A slot that slot_retire() accepted enters the thread's quarantine; the
 * one it pushes out waits in the release list. sh is the quarantine's
 * shape; with t->leaf the caller checked that the keystream has a word
 * left and the release list a place. */
static inline __attribute__((always_inline)) void
tcache_free_with(const struct step_terms *t, const struct quarantine_shape *sh,
		 struct labyrinth *lab, struct thread_cache *tc, struct slot_ref ref)
{
	counter_add(&tc->batch[ref.cls].frees, 1);
	/* The release list is flushed once it is full, not when the next
	 * slot needs its place: frees whose slots all go to batches would
	 * leave it full, and the fast path, which never flushes, would give
	 * way every time. Checked before adding, too: a child may take over
	 * a cache whose thread the fork caught with the list full. */
	if (!t->leaf && __builtin_expect(tc->nrelease == RELEASE_MAX, 0))
		tcache_release_flush(lab, tc);
	struct slot_ref out = ref;
	if (t->prot->quarantine) {
		/* One keystream word per free: its low half places ref in the
		 * stage, its high half places the leaving slot in a batch. */
		uint32_t u = t->leaf ? rng_take(&tc->rng) : rng_u32(&tc->rng);
		if (!quarantine_push_shaped(&tc->quarantine, sh, &tc->rng, u, ref, &out))
			return;
		out = quarantine_leave(&tc->quarantine, &lab->maze, out);
		/* Long out of use and chosen by the quarantine's random stage:
		 * reuse it directly, skipping a lock and a room round trip, at
		 * a random place of a batch that holds others. On top of the
		 * batch, frees of other sizes (which move the quarantine on)
		 * would make it the very next malloc of its size; into a
		 * near-empty batch, one of the next few. */
		struct batch *b = &tc->batch[out.cls];
		uint32_t at;
		/* A place that needs a second draw (1 time in 2,000 at most):
		 * the slot goes back to its room instead, no call made. */
		if (b->n >= RECYCLE_MIN && b->n < b->cap && rng_pick_once(u >> 16, b->n + 1u, &at)) {
			slot_recycle(lab, out);
			slot_ref_put(&b->ref[b->n], b->ref[at]);
			slot_ref_put(&b->ref[at], out);
			tcache_order();
			b->n++;
			return;
		}
	}
	slot_ref_put(&tc->release[tc->nrelease], out);
	tcache_order();
	tc->nrelease++;
}

/* The fast path's free of a slot slot_retire_found() quarantined and found
 * damaged or of another size than expect (its version word was seen while
 * owned): the reports, then the rest of the free. */
void tcache_free_damaged(struct thread_cache *tc, struct wing *w, char *p, uint64_t seen,
			 size_t expect) __attribute__((noinline));

static inline void tcache_free(struct labyrinth *lab, struct thread_cache *tc, struct slot_ref ref)
{
	struct quarantine_shape sh = quarantine_shape_of(&tc->quarantine);
	struct step_terms t = step_terms_general(lab);
	tcache_free_with(&t, &sh, lab, tc, ref);
}

/* The calling thread's cache and those of exited threads give back their
 * batches, release lists and the pages of their quarantined slots, which
 * stay quarantined; bytes of rooms closed. */
size_t tcache_trim(struct labyrinth *lab);
/* The counters of every cache of lab, added to *allocs, *frees and *live,
 * and the slots in their quarantines to *quarantined (if not NULL). */
void tcache_counts(struct labyrinth *lab, uint64_t *allocs, uint64_t *frees, uint64_t *live,
		   uint64_t *quarantined);
/* A private labyrinth closes: its caches become blank (tcache.c). */
void tcache_close(struct labyrinth *lab);
/* In a forked child, every lock held: every cache but the calling thread's
 * (its thread is gone) goes to the pool of idle caches, for the next thread
 * or labyrinth_trim. The calling thread's renews itself at its next malloc.
 * True if another thread was using a cache at the fork. */
bool tcache_fork_child(void);

#endif

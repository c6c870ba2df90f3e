/* slot: the life of one small allocation, from claim to quarantine to reuse. */
#ifndef LAB_SLOT_H
#define LAB_SLOT_H

#include "annotate.h"
#include "canary.h"
#include "generation.h"
#include "lab.h"
#include "maze.h"
#include "os.h"
#include "report.h"
#include "room.h"
#include "version.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * The steps, which both the arena path (below) and the thread cache
 * (tcache.c) are made of:
 *
 *   take      under the arena's lock: random free slots of the bin's rooms
 *   hand out  no lock: the slot becomes the caller's allocation
 *   retire    no lock: a freed slot is checked, quarantined and zeroed
 *   release   under the room's arena's lock: back to the room's free list
 *   recycle   no lock: a slot leaving a thread's quarantine goes straight
 *             into that thread's batch, as if released and taken again
 *   put back  under the room's arena's lock: a taken slot never handed out
 */
/* Up to `want` slots, each chosen at random among its room's free slots;
 * fewer (how many is returned) only when the wing is full. */
unsigned slot_take(struct labyrinth *lab, struct arena *a, unsigned cls, struct slot_ref *out,
		   unsigned want);
size_t slot_release(struct labyrinth *lab, struct arena *a, struct slot_ref ref);
/* Release *n quarantined slots, or put back *n taken ones, each under its
 * room's arena's lock, taking each lock once per run of slots of one arena;
 * *n counts down to 0 as they go. The bytes of rooms closed. */
size_t slot_release_all(struct labyrinth *lab, const struct slot_ref *refs, uint16_t *n);
size_t slot_put_back_all(struct labyrinth *lab, const struct slot_ref *refs, uint16_t *n);
/* The same for the lists of a thread that a fork left behind, which may
 * disagree with the maze index: only what the index confirms moves. */
size_t slot_salvage_all(struct labyrinth *lab, const struct slot_ref *refs, uint32_t n,
			bool quarantined);
/*
 * A dead thread's quarantine is kept, entry by entry, in two passes over
 * every such list of the labyrinth: mark moves a slot the index confirms
 * as quarantined to the salvage mark (V_RETIRED, which no slot otherwise
 * takes), so that a second entry for it, in any of those lists, is seen
 * and dropped (false: drop the entry); unmark moves each kept one back.
 */
bool slot_salvage_mark(struct labyrinth *lab, struct slot_ref ref);
void slot_salvage_unmark(struct labyrinth *lab, struct slot_ref ref);
/* The arena that owns the slot's room (its lock guards the room). */
struct arena *slot_arena(struct labyrinth *lab, struct slot_ref ref);

/* The out-of-line reports of the inline steps below. */
void slot_bad_release(struct wing *w, struct room *r, void *p, int kind, uint64_t seen);
/* A slot's damaged canary (pattern pat), or its bytes changed since it was
 * freed: the report names the next slot too when the damage is near the
 * end (canary.h, NEAR_END). */
void slot_canary_report(struct wing *w, struct room *r, const char *p, size_t req, uint64_t pat,
			uint64_t gen);
void slot_zero_report(struct wing *w, struct room *r, char *p, uint64_t gen);
void slot_corrupt(void) __attribute__((noreturn));
void slot_corrupt_quarantine(void) __attribute__((noreturn));

/* The address of a slot of w, whose class size cs the caller has read
 * (after the version word's atomics, reading it here would be a reload). */
static inline char *slot_addr(const struct wing *w, uint32_t cell, uint16_t slot, size_t cs)
{
	return cell_addr(w, cell) + (size_t)slot * cs;
}

/*
 * Make the pages of a slot present and writable before it is read. The
 * reuse check reads a slot before anything writes it; on a page never
 * touched that read maps the shared zero page, and the first write then
 * faults a second time to replace it. One write-intent instruction per
 * page that changes no byte (an OR of 0; the slot is ours alone) takes
 * the one fault a plain malloc would take.
 */
static inline void slot_touch(char *p, size_t size)
{
#if defined(__x86_64__) || defined(__i386__)
	char *last = p + size - 1;
	/* Up to a page, the first and the last byte are on every page. */
	if (size > PAGE_SIZE)
		for (char *q = p; q <= last; q = (char *)(((uintptr_t)q | (PAGE_SIZE - 1)) + 1))
			__asm__ volatile("orb $0, %0" : "+m"(*q));
	else
		__asm__ volatile("orb $0, %0" : "+m"(*p));
	__asm__ volatile("orb $0, %0" : "+m"(*last));
#else
	(void)p;
	(void)size;
#endif
}

/* The canary pattern of the slot at p while its version word is v: the
 * room's key, and the key of the generation whose tag v's owner carries. */
static inline uint64_t slot_pattern(const struct room *r, const char *p, uint64_t v)
{
	return canary_pattern(r->key ^ generation_key(v_owner(v)), p, v);
}

/*
 * What the inlined steps below may take for granted. The general path
 * passes its labyrinth's settings (step_terms_general()); the fast path
 * (fastpath.h) constants, which the compiler folds: every test of a
 * setting goes, and so do the branches for slots bigger than class_max.
 * With leaf set, no step calls out on the common case (the caller checked
 * that a keystream word and a release place are ready, and class_max is
 * below a page), so the compiler saves no registers for calls.
 */
struct step_terms {
	const struct protections *prot;
	size_t class_max;
	bool leaf;
};

static inline struct step_terms step_terms_general(const struct labyrinth *lab)
{
	return (struct step_terms){ .prot = &lab->prot, .class_max = SMALL_MAX, .leaf = false };
}

/* The class size of w, which the caller knows is at most class_max. Read
 * once: the version word's atomics would make the compiler read it again
 * after each. */
static inline __attribute__((always_inline)) size_t class_size_at_most(const struct wing *w,
									size_t class_max)
{
	size_t cs = w->class_size;
	if (cs > class_max)
		__builtin_unreachable();
	return cs;
}

/*
 * Whom a hand-out makes a slot's owner: the version word's low bits (owned,
 * by this arena, in this generation) and the generation's canary key. A
 * thread cache keeps its own, made when it learns its generation, so that
 * malloc neither builds the bits nor looks the key up.
 */
struct owner_word {
	uint64_t low;
	uint64_t key;
};

static inline struct owner_word owner_word(unsigned arena_id, const struct gen_page *g)
{
	return (struct owner_word){
		.low = v_low(V_OWNED, arena_id | atomic_load_explicit(&g->tag_bits,
								     memory_order_relaxed)),
		.key = g->key,
	};
}

/* Whether a slot whose version word is v was handed out by the generation
 * whose tag_bits are tags (the owner's bits above the arena's). */
static inline bool slot_tagged(uint64_t v, uint32_t tags)
{
	const uint64_t tag_field = v_low(0, (1u << V_OWNER_BITS) - (1u << GEN_TAG_SHIFT));
	return !((v ^ v_low(0, tags)) & tag_field);
}

/* The rest of a hand-out once the slot is known clean: the canary, then
 * the block is the caller's. key is the canary key of the generation that
 * v's owner tag names. */
static inline __attribute__((always_inline)) void *
slot_hand_over(const struct protections *prot, size_t cs, struct room *r, char *p, size_t size,
	       uint64_t v, uint64_t key)
{
	if (prot->canary)
		canary_write_slot(p, size, cs, canary_pattern(r->key ^ key, p, v));
	annotate_alloc(p, size, cs);
	return p;
}

/* A slot found written after it was freed: the report, then the rest of
 * the hand-out. Out of line, so the clean case saves no registers. */
void *slot_hand_out_dirty(const struct protections *prot, struct wing *w, struct room *r,
			  char *p, size_t size, uint64_t v) __attribute__((noinline, returns_nonnull));

/* Hand out a slot as an allocation of size bytes, owned as o says. */
static inline __attribute__((always_inline)) void *
slot_hand_out_with(const struct step_terms *t, struct labyrinth *lab, struct slot_ref ref,
		   size_t size, const struct owner_word *o)
{
	struct wing *w = &lab->maze.wings[ref.cls];
	size_t cs = class_size_at_most(w, t->class_max);
	struct room *r = room_of(w, ref.cell);
	*slot_size(w, r, ref.slot) = (uint16_t)size;
	uint64_t v = version_set_low(slot_version(r, ref.slot), V_FREE, o->low);
	if (__builtin_expect(!v, 0))
		slot_corrupt();
	char *p = slot_addr(w, ref.cell, ref.slot, cs);
	annotate_open(p, cs);
	if (t->prot->uaf_check) {
		slot_touch(p, cs);
		if (__builtin_expect(!slot_bytes_zero(p, cs, t->leaf), 0))
			return slot_hand_out_dirty(t->prot, w, r, p, size, v);
	}
	return slot_hand_over(t->prot, cs, r, p, size, v, o->key);
}

/* Hand out a slot taken from arena `owner`'s rooms; its owner tag also
 * names this process generation, g. */
static inline void *slot_hand_out(struct labyrinth *lab, struct slot_ref ref, size_t size,
				  unsigned owner, const struct gen_page *g)
{
	struct step_terms t = step_terms_general(lab);
	struct owner_word o = owner_word(owner, g);
	return slot_hand_out_with(&t, lab, ref, size, &o);
}

/* p's room, cell and slot; NULL if p is not the start of a slot of w's
 * extent. No report: the fast path hands such a pointer to the general one. */
static inline __attribute__((always_inline)) struct room *
slot_find(struct wing *w, const void *p, uint32_t *cellp, uint16_t *slot)
{
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	if (__builtin_expect(cell == CELL_NONE, 0))
		return NULL;
	/* A small room holds at most 65,535 slots: room_slots is exact. */
	uint32_t i = fast_div((uint32_t)off, w->class_magic);
	if (__builtin_expect(off != (size_t)i * w->class_size || i >= slots_per_room(w), 0))
		return NULL;
	*cellp = cell;
	*slot = (uint16_t)i;
	return room_of(w, cell);
}

/* Report p, which slot_find() refused, as no slot of w. */
void slot_not_a_slot(struct wing *w, const void *p, int kind) __attribute__((noinline));

/* p's room, cell and slot; NULL (after a report) if p is no slot at all. */
static inline struct room *slot_of(struct wing *w, const void *p, int kind, uint32_t *cellp,
				   uint16_t *slot)
{
	struct room *r = slot_find(w, p, cellp, slot);
	if (__builtin_expect(!r, 0))
		slot_not_a_slot(w, p, kind);
	return r;
}

/* v: the slot's version word while it was owned; gen goes into a report. */
static inline void slot_check_canary(struct labyrinth *lab, struct wing *w, struct room *r,
				     char *p, size_t req, uint64_t v, uint64_t gen)
{
	if (!lab->prot.canary)
		return;
	uint64_t pat = slot_pattern(r, p, v);
	if (__builtin_expect(!canary_intact_slot(p, req, w->class_size, pat), 0))
		slot_canary_report(w, r, p, req, pat, gen);
}

/*
 * Zero a freed slot that is about to enter quarantine q. Slots are cleared
 * in place while q's resident bytes allow (giving pages back costs a system
 * call at free and a fault at reuse, which gave a compiler, gcc -O2, 2.3
 * times the page faults of clearing them); past QUARANTINE_RESIDENT_MAX
 * their whole pages go back to the kernel (they read as zero), so the
 * quarantine pins at most that much. The largest class counts against the
 * same bound: giving its pages back at every free cost gcc's cc1 a fault per
 * page at each reuse. True if the slot stays resident and counts in q.
 * Private labyrinths without a quarantine (q NULL) clear in place below
 * SLOT_DISCARD_MIN and give the largest slots' pages back.
 */
#define SLOT_DISCARD_MIN 16384
/* Slots are 16-aligned and a multiple of 16 long (16 at least). Small ones
 * are cleared with stores right here, overlapping at the end rather than
 * looping (gcc turns such a loop back into rep stos): a call to memset
 * through the PLT, then its own size dispatch, costs more than clearing. */
static inline void slot_store0(char *p)
{
#ifdef __SSE2__
	_mm_store_si128((__m128i *)p, _mm_setzero_si128());
#else
	memset(p, 0, 16);
#endif
}

static inline __attribute__((always_inline)) void slot_clear(char *p, size_t size, bool leaf)
{
	if (size <= 32) {
		slot_store0(p);
		slot_store0(p + size - 16);
		return;
	}
	if (size <= 64) {
		slot_store0(p);
		slot_store0(p + 16);
		slot_store0(p + size - 32);
		slot_store0(p + size - 16);
		return;
	}
	if (!leaf) {
		memset(p, 0, size);
		return;
	}
	/* No call: 64 bytes a step, then the last 16-byte lines. The empty
	 * asms keep gcc from turning the loops back into memset calls. */
	size_t i = 0;
	for (; i + 64 <= size; i += 64) {
		__asm__("" : "+r"(i));
		slot_store0(p + i);
		slot_store0(p + i + 16);
		slot_store0(p + i + 32);
		slot_store0(p + i + 48);
	}
	for (; i < size; i += 16) {
		__asm__("" : "+r"(i));
		slot_store0(p + i);
	}
}

static inline __attribute__((always_inline)) bool
slot_zero(size_t size, char *p, struct quarantine *q, bool leaf)
{
	/* Below a page a slot holds no whole page to give back. */
	if (size < PAGE_SIZE) {
		slot_clear(p, size, leaf);
		return false;
	}
	char *lo = (char *)(((uintptr_t)p + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
	char *hi = (char *)(((uintptr_t)p + size) & ~(PAGE_SIZE - 1));
	if (hi <= lo || (size < SLOT_DISCARD_MIN && !q)) {
		memset(p, 0, size);
		return false;
	}
	if (q && q->resident + size <= QUARANTINE_RESIDENT_MAX) {
		memset(p, 0, size);
		q->resident += size;
		return true;
	}
	memset(p, 0, (size_t)(lo - p));
	os_discard(lo, (size_t)(hi - lo));
	memset(hi, 0, (size_t)(p + size - hi));
	return false;
}

/* The last step of a retire, the slot's bytes checked: it is zeroed and
 * named by the ref returned. */
static inline __attribute__((always_inline)) struct slot_ref
slot_retire_end(const struct step_terms *t, const struct wing *w, size_t cs, char *p,
		uint32_t cell, uint16_t slot, struct quarantine *q)
{
	const struct protections *prot = t->prot;
	bool resident = prot->zero && slot_zero(cs, p, prot->quarantine ? q : NULL, t->leaf);
	annotate_free(p, cs);
	return (struct slot_ref){ .cell = cell | (resident ? SLOT_REF_RESIDENT : 0),
				  .cls = (uint16_t)w->index, .slot = slot };
}

/* A retire that found the canary damaged or the wrong size passed: the
 * reports, then the rest. Out of line, so the clean case saves no registers. */
struct slot_ref slot_retire_damaged(struct labyrinth *lab, struct wing *w, struct room *r,
				    char *p, uint32_t cell, uint16_t slot, size_t expect,
				    uint64_t seen, struct quarantine *q) __attribute__((noinline));

enum retire {
	RETIRE_REFUSED,         /* not a live slot: reported */
	RETIRE_DONE,            /* *out names the slot, for the quarantine */
	RETIRE_DAMAGED,         /* (leaf only) quarantined, canary or size bad:
				 * the caller reports and finishes out of line */
};

/* Retire the slot at p, found by slot_find(), on its way into quarantine q
 * (NULL: an arena's). *seen is its version word while it was owned. */
static inline __attribute__((always_inline)) enum retire
slot_retire_found(const struct step_terms *t, struct labyrinth *lab, struct wing *w,
		  struct room *r, char *p, uint32_t cell, uint16_t slot, int kind, size_t expect,
		  struct slot_ref *out, struct quarantine *q, uint64_t *seen)
{
	const struct protections *prot = t->prot;
	size_t cs = class_size_at_most(w, t->class_max);
	/* A slot of a room never opened has version 0: free, so this fails too. */
	if (__builtin_expect(!version_move(slot_version(r, slot), V_OWNED, V_QUARANTINED, 0,
					   seen), 0)) {
		slot_bad_release(w, r, p, kind, *seen);
		return RETIRE_REFUSED;
	}
	/* The slot is ours until it leaves the quarantine: no lock needed here. */
	size_t req = *slot_size(w, r, slot);
	annotate_open(p, cs);
	bool clean = expect == SIZE_MAX || expect == req;
	if (prot->canary)
		clean &= canary_intact_slot(p, req, cs, slot_pattern(r, p, *seen));
	if (__builtin_expect(!clean, 0)) {
		if (t->leaf)
			return RETIRE_DAMAGED;
		*out = slot_retire_damaged(lab, w, r, p, cell, slot, expect, *seen, q);
	} else {
		*out = slot_retire_end(t, w, cs, p, cell, slot, q);
	}
	return RETIRE_DONE;
}

/* Retire a freed slot on its way into quarantine q (NULL: an arena's):
 * false (after a report) if p is not a live slot. */
static inline bool slot_retire(struct labyrinth *lab, struct wing *w, void *p, int kind,
			       size_t expect, struct slot_ref *out, struct quarantine *q)
{
	uint32_t cell;
	uint16_t slot;
	struct room *r = slot_of(w, p, kind, &cell, &slot);
	struct step_terms t = step_terms_general(lab);
	uint64_t seen;
	return r && slot_retire_found(&t, lab, w, r, p, cell, slot, kind, expect, out, q,
				      &seen) == RETIRE_DONE;
}

/* A slot that left its holder's quarantine becomes free again without
 * going back to its room: the holder keeps it to hand out. */
static inline void slot_recycle(struct labyrinth *lab, struct slot_ref ref)
{
	struct wing *w = &lab->maze.wings[ref.cls];
	if (__builtin_expect(!version_set(slot_version(room_of(w, ref.cell), ref.slot),
					  V_QUARANTINED, V_FREE, 0), 0))
		slot_corrupt_quarantine();
}

/* The arena path: a slot of class cls for a request of size bytes (size <
 * class size when canaries are on), or NULL when the wing is full. */
void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls, size_t size);
/* Free p, a pointer into small wing w; expect is the size a sized free
 * passed, or SIZE_MAX. Misuse is reported as error kind `kind`. */
void small_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect);
/* Usable bytes at p (the request when canaries are on); SIZE_MAX if p is
 * not a live slot and LABYRINTH_ON_ERROR=log let the report return. */
size_t small_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind);
/* Resize a live slot in place, if size still belongs in its class. */
enum resize small_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size);
/* Close the arena's empty rooms and give back the whole pages of the slots
 * its quarantine holds (they stay quarantined); bytes closed. */
size_t small_trim(struct labyrinth *lab, struct arena *a);

#endif

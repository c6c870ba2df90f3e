/*
 * slot: what happens to one small allocation.
 *
 * A slot is taken at random from the free slots of its bin's room (under
 * the arena's lock), then handed out: its requested size is recorded out of
 * line, it is checked to be still all zero (a write after free shows there),
 * the rest of it gets the canary, and its version word becomes owned. Free
 * retires it: one compare-and-swap from owned to quarantined (the check that
 * catches a double free, from any thread), the canary check, the zeroing.
 * The slot that leaves the quarantine is released back to its room.
 *
 * Only the move from owned to quarantined can race (two frees of one
 * pointer); every other move of a slot's version is made by whoever holds
 * the slot alone, a lock or a thread's batch, so it is a plain store.
 */
#include "slot.h"
#include "generation.h"
#include "annotate.h"
#include "canary.h"
#include "epoch.h"
#include "os.h"
#include "report.h"
#include "room.h"
#include "version.h"

#include <string.h>

void slot_not_a_slot(struct wing *w, const void *p, int kind)
{
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	bool past = cell == CELL_NONE || off / w->class_size >= slots_per_room(w);
	struct error_site site = { .addr = p, .class_size = w->class_size,
				   .why = past ? "never allocated" : "not the start of a slot" };
	report_heap_error(kind, &site);
}

void slot_bad_release(struct wing *w, struct room *r, void *p, int kind, uint64_t seen)
{
	report_failed_release(kind, p, w->class_size, r->nslots ? v_gen(seen) : 0);
}

/* The slot after p in its room, or NULL if p is the room's last. */
static const char *slot_next(struct wing *w, struct room *r, const char *p)
{
	size_t off = 0;
	if (wing_cell_of(w, p, &off) == CELL_NONE)
		return NULL;
	return off / w->class_size + 1 < r->nslots ? p + w->class_size : NULL;
}

void slot_canary_report(struct wing *w, struct room *r, const char *p, size_t req, uint64_t pat,
			uint64_t gen)
{
	size_t to = w->class_size;
	const char *next = canary_damage_near_end(p, req, to, pat) ? slot_next(w, r, p) : NULL;
	canary_report_near(p, next, canary_damage(p, req, to, pat), to, gen);
}

void slot_zero_report(struct wing *w, struct room *r, char *p, uint64_t gen)
{
	size_t len = w->class_size;
	const char *next = word_at(p + len - NEAR_END) ? slot_next(w, r, p) : NULL;
	zero_report_near(p, next, zero_damage(p, len), len, gen);
}

void *slot_hand_out_dirty(const struct protections *prot, struct wing *w, struct room *r,
			  char *p, size_t size, uint64_t v)
{
	slot_zero_report(w, r, p, v_gen(v));
	return slot_hand_over(prot, w->class_size, r, p, size, v, generation_key(v_owner(v)));
}

struct slot_ref slot_retire_damaged(struct labyrinth *lab, struct wing *w, struct room *r,
				    char *p, uint32_t cell, uint16_t slot, size_t expect,
				    uint64_t seen, struct quarantine *q)
{
	size_t req = *slot_size(w, r, slot);
	report_wrong_size_if(p, expect, req, w->class_size);
	slot_check_canary(lab, w, r, p, req, seen, v_gen(seen) + 1);
	struct step_terms t = step_terms_general(lab);
	return slot_retire_end(&t, w, w->class_size, p, cell, slot, q);
}

void slot_corrupt(void)
{
	report_fatal("heap corruption: a free-listed slot was owned");
}

unsigned slot_take(struct labyrinth *lab, struct arena *a, unsigned cls, struct slot_ref *out,
		   unsigned want)
{
	struct wing *w = &lab->maze.wings[cls];
	struct bin *b = &a->bins[cls];
	unsigned got = 0;
	while (got < want) {
		uint32_t cell = b->current;
		if (cell == CELL_NONE || room_of(w, cell)->nfree == 0) {
			cell = bin_refill(lab, a, w, b);
			if (cell == CELL_NONE)
				break;
		}
		struct room *r = room_of(w, cell);
		uint16_t *fs = free_slots(r);
		unsigned nfree = r->nfree;      /* kept in a register: out[] may alias */
		for (; got < want && nfree; got++) {
			uint32_t i = rng_pick(&a->rng, nfree);
			slot_ref_put(&out[got], slot_ref_make(cell, cls, fs[i]));
			fs[i] = fs[--nfree];
		}
		r->nfree = (uint16_t)nfree;
	}
	return got;
}

/* The room cannot change hands while one of its slots is held. */
static inline struct arena *room_arena(struct labyrinth *lab, struct room *r)
{
	return &lab->arenas[v_owner(version_read(&r->version)) - 1];
}

struct arena *slot_arena(struct labyrinth *lab, struct slot_ref ref)
{
	return room_arena(lab, room_of(&lab->maze.wings[ref.cls], ref.cell));
}

/* A slot rejoins its room's free list; the bytes of the room if that closes
 * it. An empty room that is not the bin's current one becomes the bin's
 * spare, kept open for the next refill (so a steady load does not open and
 * close rooms over and over); a second empty room is closed. */
static inline size_t room_put(struct labyrinth *lab, struct arena *a, struct wing *w,
			      struct room *r, struct slot_ref ref)
{
	struct bin *b = &a->bins[ref.cls];
	free_slots(r)[r->nfree++] = ref.slot;
	if (ref.cell == b->current)
		return 0;
	if (r->nfree == r->nslots) {
		if (r->in_partial)
			partial_unlink(w, b, ref.cell);
		if (b->spare == CELL_NONE) {
			b->spare = ref.cell;
			b->spare_epoch = epoch_now(&lab->maze);
			spare_keep_or_discard(a, b, w);
			return 0;
		}
		room_close(lab, w, ref.cell);
		return w->room_bytes;
	}
	if (!r->in_partial)
		partial_push(w, b, ref.cell);
	return 0;
}

void slot_corrupt_quarantine(void)
{
	report_fatal("heap corruption: a quarantined slot changed state");
}

static inline size_t release_in(struct labyrinth *lab, struct arena *a, struct wing *w,
				 struct room *r, struct slot_ref ref)
{
	if (!version_set(slot_version(r, ref.slot), V_QUARANTINED, V_FREE, 0))
		slot_corrupt_quarantine();
	return room_put(lab, a, w, r, ref);
}

size_t slot_release(struct labyrinth *lab, struct arena *a, struct slot_ref ref)
{
	struct wing *w = &lab->maze.wings[ref.cls];
	return release_in(lab, a, w, room_of(w, ref.cell), ref);
}

/* Slots leave a quarantine long after they entered it: their records are
 * cold, and each is fetched a few slots ahead so the misses overlap.
 * Always inlined, or gcc takes a function made only of prefetches for one
 * without effects and drops its calls, prefetches and all. */
#define RELEASE_AHEAD 4

static inline __attribute__((always_inline)) void release_prefetch(struct labyrinth *lab, struct slot_ref ref)
{
	const struct wing *w = &lab->maze.wings[ref.cls];
	struct room *r = room_of(w, ref.cell);
	__builtin_prefetch(r, 1);
	__builtin_prefetch(slot_version(r, ref.slot), 1);
}

/*
 * Slots back to their rooms, each under its room's arena's lock, taken once
 * per run of one arena's slots; quarantined ones are released, free ones
 * (taken, never handed out) put back. The list is [0, *left), worked from
 * its end, and *left shrinks under the lock that covers each slot's move:
 * a fork (which holds every arena lock) never finds a slot moved but still
 * listed, so a child that takes over a dead thread's list moves none twice.
 */
static size_t return_all(struct labyrinth *lab, const struct slot_ref *refs, uint16_t *left,
			 bool quarantined)
{
	size_t closed = 0;
	struct arena *held = NULL;
	uint32_t n = *left;
	for (uint32_t i = n; i-- > 0 && i + RELEASE_AHEAD >= n;)
		release_prefetch(lab, refs[i]);
	for (uint32_t i = n; i-- > 0;) {
		if (i >= RELEASE_AHEAD)
			release_prefetch(lab, refs[i - RELEASE_AHEAD]);
		struct wing *w = &lab->maze.wings[refs[i].cls];
		struct room *r = room_of(w, refs[i].cell);
		struct arena *a = room_arena(lab, r);
		if (a != held) {
			if (held)
				pthread_mutex_unlock(&held->lock);
			pthread_mutex_lock(&a->lock);
			held = a;
		}
		closed += quarantined ? release_in(lab, a, w, r, refs[i]) : room_put(lab, a, w, r, refs[i]);
		*left = (uint16_t)i;
	}
	if (held)
		pthread_mutex_unlock(&held->lock);
	return closed;
}

size_t slot_release_all(struct labyrinth *lab, const struct slot_ref *refs, uint16_t *n)
{
	return return_all(lab, refs, n, true);
}

size_t slot_put_back_all(struct labyrinth *lab, const struct slot_ref *refs, uint16_t *n)
{
	return return_all(lab, refs, n, false);
}

/* ---- a dead thread's slots, in a forked child ------------------------- */

/* Whether slot is on its room's free list (under the room's arena's lock). */
static bool listed(struct room *r, uint16_t slot)
{
	const uint16_t *fs = free_slots(r);
	for (uint32_t i = 0; i < r->nfree; i++)
		if (fs[i] == slot)
			return true;
	return false;
}

/* The arena whose lock guards the room ref names, if ref names a slot of
 * an open room of lab's small wings (a dead thread's entry may name
 * anything); NULL if not. */
static struct arena *salvage_arena(struct labyrinth *lab, struct slot_ref ref, struct wing **wp,
				   struct room **rp)
{
	if (ref.cls >= SMALL_CLASSES)
		return NULL;
	struct wing *w = &lab->maze.wings[ref.cls];
	if (ref.cell >= atomic_load(&w->ext_cells) || ref.slot >= slots_per_room(w))
		return NULL;
	struct room *r = room_of(w, ref.cell);
	unsigned owner = v_owner(version_read(&r->version));
	if (owner == 0 || owner > lab->narenas)
		return NULL;
	*wp = w;
	*rp = r;
	return &lab->arenas[owner - 1];
}

/* Under a's lock: whether a still owns room r. */
static bool salvage_room_held(const struct arena *a, struct room *r)
{
	uint64_t room = version_read(&r->version);
	return v_state(room) == V_OWNED && v_owner(room) == a->id;
}

/* One slot of a dead thread's list: returned only if the index agrees. */
static size_t salvage_one(struct labyrinth *lab, struct slot_ref ref, bool quarantined)
{
	struct wing *w;
	struct room *r;
	struct arena *a = salvage_arena(lab, ref, &w, &r);
	if (!a)
		return 0;
	size_t closed = 0;
	pthread_mutex_lock(&a->lock);
	uint64_t v = version_read(slot_version(r, ref.slot));
	if (salvage_room_held(a, r)) {
		if (quarantined && v_state(v) == V_QUARANTINED)
			closed = release_in(lab, a, w, r, ref);
		else if (!quarantined && v_state(v) == V_FREE && !listed(r, ref.slot))
			closed = room_put(lab, a, w, r, ref);
	}
	pthread_mutex_unlock(&a->lock);
	return closed;
}

bool slot_salvage_mark(struct labyrinth *lab, struct slot_ref ref)
{
	struct wing *w;
	struct room *r;
	struct arena *a = salvage_arena(lab, ref, &w, &r);
	if (!a)
		return false;
	pthread_mutex_lock(&a->lock);
	bool kept = salvage_room_held(a, r) &&
		    version_set(slot_version(r, ref.slot), V_QUARANTINED, V_RETIRED, 0);
	pthread_mutex_unlock(&a->lock);
	return kept;
}

void slot_salvage_unmark(struct labyrinth *lab, struct slot_ref ref)
{
	struct wing *w = &lab->maze.wings[ref.cls];
	if (!version_set(slot_version(room_of(w, ref.cell), ref.slot), V_RETIRED, V_QUARANTINED, 0))
		slot_corrupt_quarantine();
}

/*
 * A fork copies memory page by page while other threads run, so a dead
 * thread's cache may disagree with the maze index (each page is as it was
 * when the kernel copied it): a list may still hold a slot that already
 * moved on, or miss one. Its slots go back one at a time, each only if
 * its version still says quarantined (release) or free and on no room's
 * list (put back); the rest are left as they are, never moved twice.
 */
size_t slot_salvage_all(struct labyrinth *lab, const struct slot_ref *refs, uint32_t n,
			bool quarantined)
{
	size_t closed = 0;
	for (uint32_t i = 0; i < n; i++)
		closed += salvage_one(lab, refs[i], quarantined);
	return closed;
}

/* ---- the arena path: every step under the arena's lock ---------------- */

void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls, size_t size)
{
	struct slot_ref ref;
	pthread_mutex_lock(&a->lock);
	if (!slot_take(lab, a, cls, &ref, 1)) {
		pthread_mutex_unlock(&a->lock);
		return NULL;
	}
	counter_add(&a->allocs, 1);
	counter_add(&a->live_bytes, lab->maze.wings[cls].class_size);
	pthread_mutex_unlock(&a->lock);
	return slot_hand_out(lab, ref, size, a->id, generation_page());
}

void small_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect)
{
	struct slot_ref ref, out;
	if (!slot_retire(lab, w, p, kind, expect, &ref, NULL))
		return;
	struct arena *a = slot_arena(lab, ref);
	pthread_mutex_lock(&a->lock);
	counter_add(&a->frees, 1);
	counter_add(&a->live_bytes, -(uint64_t)w->class_size);
	if (!lab->prot.quarantine)
		slot_release(lab, a, ref);
	else if (quarantine_push(&a->quarantine, &a->rng, rng_u32(&a->rng), ref, &out))
		slot_release(lab, a, out);     /* the quarantine holds a's slots only */
	pthread_mutex_unlock(&a->lock);
}

/* p as a live slot: its room and slot, or NULL after a report. The version
 * and the size are found from the wing's slot count, not the room's header
 * (see slot_size()), so malloc_usable_size waits for one cache miss, not
 * the header's and then theirs; a room never opened reads as free slots. */
static struct room *live_slot(struct wing *w, const void *p, int kind, uint16_t *slot)
{
	uint32_t cell;
	struct room *r = slot_of(w, p, kind, &cell, slot);
	if (!r)
		return NULL;
	uint64_t v = version_read(slot_version(r, *slot));
	if (v_state(v) != V_OWNED) {
		report_failed_release(kind, p, w->class_size, v_gen(v));
		return NULL;
	}
	return r;
}

size_t small_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind)
{
	uint16_t slot;
	struct room *r = live_slot(w, p, kind, &slot);
	if (!r)
		return SIZE_MAX;
	return lab->prot.canary ? *slot_size(w, r, slot) : w->class_size;
}

/*
 * Before a block handed out by an earlier process generation changes in
 * place, its owner tag moves to this one's (a new version word, so the
 * canary is written afresh with this generation's key): a fork from
 * another thread midway then leaves the child a block of the forking
 * generation, which its sweep passes over as half made (sweep.c), never
 * one of an older generation with half a canary, which it would check.
 * The word in force, or 0 after a report (a free raced the resize).
 */
static uint64_t slot_adopt(struct wing *w, struct room *r, void *p, uint16_t slot, uint64_t v)
{
	uint32_t tags = atomic_load_explicit(&generation_page()->tag_bits, memory_order_relaxed);
	if (slot_tagged(v, tags))
		return v;
	uint64_t next = v_next(v, V_OWNED, (v_owner(v) & ((1u << GEN_TAG_SHIFT) - 1)) | tags);
	if (!version_publish(slot_version(r, slot), v, next)) {
		report_failed_release(ERR_INVALID_REALLOC, p, w->class_size,
				      v_gen(version_read(slot_version(r, slot))));
		return 0;
	}
	return next;
}

enum resize small_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size)
{
	size_t need = small_need(lab, size);
	if (need > SMALL_MAX || small_class(need) != wing_index(lab, w))
		return RESIZE_MOVE;
	uint16_t slot;
	struct room *r = live_slot(w, p, ERR_INVALID_REALLOC, &slot);
	if (!r)
		return RESIZE_REFUSED;
	uint16_t *req = slot_size(w, r, slot);
	annotate_open(p, w->class_size);
	uint64_t v = version_read(slot_version(r, slot));
	/* Freed since live_slot() looked: slot_adopt() would swap the
	 * quarantined word (its owner tag 0 is no generation's) to owned. */
	if (v_state(v) != V_OWNED) {
		report_failed_release(ERR_INVALID_REALLOC, p, w->class_size, v_gen(v));
		return RESIZE_REFUSED;
	}
	slot_check_canary(lab, w, r, p, *req, v, v_gen(v));
	/* A fork from another thread from here to the canary's last byte
	 * leaves the child a half-made slot of this generation: say so even
	 * if this thread has no cache (tcache_fork_child() sees only those). */
	atomic_fetch_add_explicit(&lab_resizing_now, 1, memory_order_seq_cst);
	v = slot_adopt(w, r, p, slot, v);
	if (!v) {
		atomic_fetch_sub_explicit(&lab_resizing_now, 1, memory_order_release);
		return RESIZE_REFUSED;
	}
	size_t old = *req;
	*req = (uint16_t)size;
	if (size > old)         /* the old canary: handed out, it would tell the pattern */
		memset(p + old, 0, size - old);
	if (lab->prot.canary)
		canary_write(p, size, w->class_size, slot_pattern(r, p, v));
	atomic_fetch_sub_explicit(&lab_resizing_now, 1, memory_order_release);
	annotate_resize(p, old, size, w->class_size);
	return RESIZE_STAYS;
}

/* Under the arena's lock: close the bin's room if it holds no allocation. */
static size_t close_if_empty(struct labyrinth *lab, struct wing *w, uint32_t *cell)
{
	if (*cell == CELL_NONE || room_of(w, *cell)->nfree != room_of(w, *cell)->nslots)
		return 0;
	room_close(lab, w, *cell);
	*cell = CELL_NONE;
	return w->room_bytes;
}

/* The arena's quarantine keeps its slots (trim must not shorten the delay
 * before a freed address comes back); their whole pages go back. */
size_t small_trim(struct labyrinth *lab, struct arena *a)
{
	size_t released = 0;
	pthread_mutex_lock(&a->lock);
	quarantine_discard(&a->quarantine, &lab->maze, true);
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct wing *w = &lab->maze.wings[c];
		spare_uncount(a, &a->bins[c]);
		released += close_if_empty(lab, w, &a->bins[c].spare);
		released += close_if_empty(lab, w, &a->bins[c].current);
	}
	pthread_mutex_unlock(&a->lock);
	return released;
}

/*
 * sweep: check the canaries of every live allocation, and the zeros of every
 * free small slot, walking the maze index (never heap memory) for the
 * blocks. An overflow is otherwise found when its block is freed, and a
 * write into a freed block when its slot is handed out again; a block never
 * freed, or a slot never handed out again, needs the sweep, which runs at
 * exit under LABYRINTH_EXIT_CHECK and on demand (labyrinth_check).
 *
 * A wing's lock is held while its cells are read: rooms and large regions
 * close under that lock, so no page closes under the sweep. Blocks change
 * hands outside any lock; a block that looks damaged is looked at again
 * after pauses, and reported only if it is still the same block and still
 * damaged.
 */
#include "annotate.h"
#include "canary.h"
#include "config.h"
#include "generation.h"
#include "guarded.h"
#include "large.h"
#include "lab.h"
#include "labyrinth.h"
#include "os.h"
#include "page.h"
#include "reserve.h"
#include "room.h"
#include "sweep.h"
#include "version.h"

#include <string.h>
#include <time.h>

/*
 * Where the sweep reads a block: its version word, then the bounds of its
 * canary in its record. A block's size is written before its version when
 * it is handed out, and changed in place by a resize that keeps its
 * version, so a block is reported only while both read the same.
 *
 * A free slot (in a room's free list, a thread's batch or a quarantine) is
 * a block with no canary: all of it must be zero, as it was zeroed at free
 * (or is a fresh page, or a page given back), and a write into it would
 * otherwise stay hidden until the slot is handed out again, if ever.
 */
struct block {
	char *base;
	version_t *v;
	const volatile void *from;      /* the size requested: a uint16_t (slot),
					   uint32_t (pool page), size_t (large);
					   NULL for a free slot */
	unsigned from_bytes;
	const volatile uint32_t *pages; /* to = *pages pages, or NULL: to is fixed */
	size_t to;
	uint64_t key;                   /* the block's key; a slot's version also
					   names a generation's key (slot) */
	bool slot;
	size_t class_size;              /* for the report */
	const char *next;               /* the slot after it in its room, or NULL */
	uint8_t absent;                 /* a free slot: its pages not in memory, bit
					   i for the i-th page it touches */
};

struct look {
	uint64_t seen;
	size_t from, to;
};

static struct look look_at(const struct block *b)
{
	struct look l = { .seen = version_read(b->v), .from = 0, .to = b->to };
	if (b->from_bytes == 2)
		l.from = *(const volatile uint16_t *)b->from;
	else if (b->from_bytes == 4)
		l.from = *(const volatile uint32_t *)b->from;
	else if (b->from_bytes == 8)
		l.from = *(const volatile uint64_t *)b->from;
	if (b->pages)
		l.to = (size_t)*b->pages * PAGE_SIZE;
	return l;
}

static bool same_look(struct look a, struct look b)
{
	return a.seen == b.seen && a.from == b.from && a.to == b.to;
}

/* The first non-zero byte of free slot b, in the pages it has in memory,
 * or NO_DAMAGE; *near_end if its last NEAR_END bytes are not zero. */
static size_t free_damage(const struct block *b, bool *near_end)
{
	size_t bad = NO_DAMAGE;
	*near_end = false;
	uintptr_t first_page = (uintptr_t)b->base / PAGE_SIZE;
	for (size_t i = 0; i < b->to && bad == NO_DAMAGE;) {
		size_t end = ((uintptr_t)b->base + i) / PAGE_SIZE * PAGE_SIZE + PAGE_SIZE -
			     (uintptr_t)b->base;
		if (end > b->to)
			end = b->to;
		if (!((b->absent >> (((uintptr_t)b->base + i) / PAGE_SIZE - first_page)) & 1) &&
		    !bytes_all_zero(b->base + i, end - i))
			bad = i + zero_damage(b->base + i, end - i);
		i = end;
	}
	size_t last = b->to - NEAR_END;
	if (bad != NO_DAMAGE &&
	    !((b->absent >> (((uintptr_t)b->base + last) / PAGE_SIZE - first_page)) & 1))
		*near_end = word_at(b->base + last) != 0;
	return bad;
}

/* The first damaged byte of b as bounded by l, or NO_DAMAGE; *near_end if
 * any damage lies in its last NEAR_END bytes. */
static size_t damage_at(const struct block *b, struct look l, bool *near_end)
{
	if (!b->from)
		return free_damage(b, near_end);
	uint64_t key = b->slot ? b->key ^ generation_key(v_owner(l.seen)) : b->key;
	uint64_t pat = canary_pattern(key, b->base, l.seen);
	annotate_open(b->base + l.from, l.to - l.from);
	size_t bad = canary_damage(b->base, l.from, l.to, pat);
	*near_end = bad != NO_DAMAGE && canary_damage_near_end(b->base, l.from, l.to, pat);
	annotate_noaccess(b->base + l.from, l.to - l.from);
	return bad;
}

/*
 * A block that looks damaged may be one that another thread is handing
 * out, resizing or freeing at this moment: its version word (or size)
 * moves first, its bytes after. It is looked at again after a pause, then
 * after longer ones, and reported only if it stayed the same block and
 * stayed damaged throughout: a thread preempted halfway through can be
 * off its CPU for longer than one short pause (on 2 busy cores, a single
 * 2 ms pause made false reports; 20 ms made none in our runs). Damaged
 * blocks are gathered per wing, so the pauses are paid once for them all.
 */
#define SUSPECTS_MAX 32
static const unsigned pause_ms[] = { 2, 20, 200 };

struct suspects {
	unsigned n;
	struct block b[SUSPECTS_MAX];
	struct look a[SUSPECTS_MAX];
};

static void pause_for(unsigned ms)
{
	struct timespec t = { 0, (long)ms * 1000 * 1000 };
	nanosleep(&t, NULL);
}

/* Look at every suspect again after the pauses; report those that stayed
 * damaged and the same, and empty the list. How many were reported. */
static size_t settle(struct suspects *s)
{
	for (unsigned k = 0; k < sizeof pause_ms / sizeof pause_ms[0] && s->n; k++) {
		pause_for(pause_ms[k]);
		for (unsigned i = 0; i < s->n;) {
			bool near_end;
			bool same = same_look(s->a[i], look_at(&s->b[i]));
			if (same && damage_at(&s->b[i], s->a[i], &near_end) != NO_DAMAGE) {
				i++;
				continue;
			}
			s->n--;
			s->b[i] = s->b[s->n];
			s->a[i] = s->a[s->n];
		}
	}
	size_t reported = 0;
	for (unsigned i = 0; i < s->n; i++) {
		const struct block *b = &s->b[i];
		bool near_end;
		size_t bad = damage_at(b, s->a[i], &near_end);
		/* The bytes, then the version: a thread that had taken the slot
		 * in between changed its version before writing it. */
		atomic_thread_fence(memory_order_acquire);
		if (bad == NO_DAMAGE || !same_look(s->a[i], look_at(b)))
			continue;
		const char *next = near_end ? b->next : NULL;
		if (b->from)
			canary_report_near(b->base, next, bad, b->class_size, v_gen(s->a[i].seen));
		else
			free_slot_report(b->base, next, bad, b->class_size, v_gen(s->a[i].seen));
		reported++;
	}
	s->n = 0;
	return reported;
}

/*
 * In a child forked while other threads ran, a slot one of them was
 * handing out or freeing at the fork stays half made for good: owned with
 * no canary yet, or quarantined and not yet zeroed; settle() cannot tell
 * it from damage (37 of 50 such children aborted at their exit check). So
 * there, and in its descendants, the sweep passes over slots handed out
 * by the generation that forked (their owner tag says which) and
 * quarantined ones (whose version keeps no owner); a write into a
 * quarantined slot is still found when it is handed out again, and an
 * overflow of a block when it is freed.
 */
static bool half_made_at_fork(const struct block *b, struct look a)
{
	if (!b->slot || !lab_half_made_any())
		return false;
	if (v_state(a.seen) == V_QUARANTINED)
		return true;
	return v_state(a.seen) == V_OWNED && lab_half_made_tag(v_owner(a.seen) >> GEN_TAG_SHIFT);
}

/* Look at b, whose look a the caller made (and checked the bounds of): a
 * damaged block joins the suspects (which are settled when full). */
static size_t check_block(struct suspects *s, const struct block *b, struct look a)
{
	bool near_end;
	bool live = v_state(a.seen) == V_OWNED;
	bool free_slot = v_state(a.seen) == V_FREE || v_state(a.seen) == V_QUARANTINED;
	if (!(b->from ? live && a.from < a.to : free_slot) || half_made_at_fork(b, a) ||
	    damage_at(b, a, &near_end) == NO_DAMAGE)
		return 0;
	s->b[s->n] = *b;
	s->a[s->n] = a;
	return ++s->n == SUSPECTS_MAX ? settle(s) : 0;
}

/*
 * Free slots are checked unless ASan or memcheck runs: those poison free
 * slots and catch a write into one when it is made, and the sweep would
 * have to unpoison a slot to read it, racing a thread that hands it out.
 */
static bool free_slots_checked(const struct labyrinth *lab)
{
	return !annotate_free_poisoned() && lab->prot.uaf_check;
}

/*
 * Which pages of a room are in memory, so that the free slots' pages that
 * are not (pages given back at free, or never touched) are not read: they
 * read as zero, and reading them would fault each in (the zero page), one
 * fault per page (10,000 freed 16 KiB blocks: 40,000 faults, 200 ms more).
 * A page swapped out is skipped too; hand-out still checks it. All present
 * if the kernel will not say.
 */
#define ROOM_PAGES_MAX 256
static void room_residency(struct wing *w, uint32_t cell, unsigned char *vec)
{
	size_t pages = w->room_bytes / PAGE_SIZE;
	if (pages > ROOM_PAGES_MAX || !os_resident(cell_addr(w, cell), w->room_bytes, vec))
		memset(vec, 1, pages < ROOM_PAGES_MAX ? pages : ROOM_PAGES_MAX);
}

/* The pages of the slot at offset off of its room not in memory, as bits. */
static uint8_t slot_absent(const unsigned char *vec, size_t off, size_t size)
{
	uint8_t absent = 0;
	for (size_t pg = off / PAGE_SIZE, i = 0; pg <= (off + size - 1) / PAGE_SIZE; pg++, i++)
		absent |= (uint8_t)((pg < ROOM_PAGES_MAX && !(vec[pg] & 1)) << i);
	return absent;
}

static size_t sweep_room(struct labyrinth *lab, struct suspects *sus, struct wing *w,
			 uint32_t cell)
{
	struct room *r = room_of(w, cell);
	size_t damaged = 0;
	if (v_state(version_read(&r->version)) != V_OWNED)
		return 0;
	bool free_too = free_slots_checked(lab);
	unsigned char vec[ROOM_PAGES_MAX];
	if (free_too)
		room_residency(w, cell, vec);
	uint16_t n = r->nslots;
	for (uint16_t s = 0; s < n; s++) {
		size_t off = (size_t)s * w->class_size;
		char *p = cell_addr(w, cell) + off;
		struct block b = { .base = p, .v = &slot_versions(r)[s], .to = w->class_size,
				   .key = r->key, .slot = true, .class_size = w->class_size,
				   .next = s + 1 < n ? p + w->class_size : NULL };
		struct look a = look_at(&b);
		if (v_state(a.seen) == V_OWNED && lab->prot.canary) {
			b.from = &slot_req(r, n)[s];
			b.from_bytes = 2;
			damaged += check_block(sus, &b, look_at(&b));
		} else if (v_state(a.seen) != V_OWNED && free_too) {
			b.absent = slot_absent(vec, off, w->class_size);
			damaged += check_block(sus, &b, a);
		}
	}
	return damaged;
}

/*
 * A large block's and a pool block's key and place are written before
 * their claim publishes the version word (version_publish()), so they are
 * read after it: a block placed meanwhile by another thread is skipped
 * (the word changed), never checked with the key of the cell's last block.
 */
static size_t sweep_large(struct suspects *sus, struct wing *w, uint32_t cell)
{
	struct large *l = cell_record(w, cell);
	uint64_t v = version_read(&l->version);
	uint32_t first = l->first_page;
	struct block b = { .base = cell_addr(w, cell) + (size_t)first * PAGE_SIZE, .v = &l->version,
			   .from = &l->size, .from_bytes = sizeof l->size, .pages = &l->npages,
			   .key = l->key, .class_size = w->class_size };
	struct look a = look_at(&b);
	/* The maze's record of open pages bounds what may be read (a resize
	 * moves them first, then the block's record); the later looks must
	 * find the same pages. */
	if (a.seen != v || first + a.to / PAGE_SIZE > cell_hdr(w, cell)->open_end)
		return 0;
	return check_block(sus, &b, a);
}

/* A pool's labyrinth_malloc block (the page API's blocks have no canary). */
static size_t sweep_pool_page(struct suspects *sus, struct wing *w, uint32_t cell)
{
	struct page_rec *rec = page_rec_of(w, cell);
	uint64_t v = version_read(&rec->version);
	struct block b = { .base = cell_addr(w, cell), .v = &rec->version, .from = &rec->size,
			   .from_bytes = sizeof rec->size, .to = w->room_bytes,
			   .key = rec->key ^ gen_keys[rec->gen_tag], .class_size = w->class_size };
	struct look a = look_at(&b);
	if (a.seen != v || rec->kind != PAGE_MALLOC)
		return 0;
	return check_block(sus, &b, a);
}

/* The suspects are settled before the wing's lock is let go: its rooms
 * cannot close while they are looked at. */
static size_t sweep_wing(struct labyrinth *lab, struct wing *w)
{
	struct suspects sus = { .n = 0 };
	size_t damaged = 0;
	pthread_mutex_lock(&w->lock);
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (uint32_t c = cell_next_taken(w, 0, ext); c < ext; c = cell_next_taken(w, c + 1, ext)) {
		if (wing_is_small(lab, w))
			damaged += sweep_room(lab, &sus, w, c);
		else if (!lab->prot.canary)
			break;
		else if (!wing_is_page(lab, w))
			damaged += sweep_large(&sus, w, c);
		else if (lab->pool)
			damaged += sweep_pool_page(&sus, w, c);
	}
	damaged += settle(&sus);
	pthread_mutex_unlock(&w->lock);
	return damaged;
}

size_t lab_sweep(struct labyrinth *lab)
{
	if (!lab->prot.canary && !free_slots_checked(lab) && !lab->guarded)
		return 0;
	size_t damaged = lab->guarded ? guarded_sweep(lab) : 0;
	if (lab->prot.canary || free_slots_checked(lab))
		for (unsigned i = 0; i < lab->maze.nwings; i++)
			damaged += sweep_wing(lab, &lab->maze.wings[i]);
	return damaged;
}

/* ---- generations, for the fuzz harness's "versions only grow" ------------ */

uint64_t lab_generation(struct labyrinth *lab, const void *p)
{
	if (guarded_has(lab, p))
		return guarded_generation(lab, p);
	if (zero_has(&lab->zero, p))
		return zero_generation(&lab->zero, p);
	struct wing *w = maze_wing_of(&lab->maze, p);
	size_t off = 0;
	uint32_t cell = w ? wing_cell_of(w, p, &off) : CELL_NONE;
	if (cell == CELL_NONE)
		return 0;
	if (!wing_is_small(lab, w))
		return v_gen(version_read(&((struct large *)cell_record(w, cell))->version));
	struct room *r = room_of(w, cell);
	uint16_t n = slots_per_room(w);
	if (off / w->class_size >= n)
		return 0;
	return v_gen(version_read(&slot_versions(r)[off / w->class_size]));
}

/* ---- at exit, and the API -------------------------------------------- */

static bool exit_check_on(void)
{
	const struct config *c = config_get();
	if (c->exit_check == CFG_EXIT_CHECK_AUTO)
		return c->guard_all || c->sample;
	return c->exit_check == CFG_EXIT_CHECK_ON;
}

/* Runs when the library unloads or the process exits. */
__attribute__((destructor)) static void sweep_at_exit(void)
{
	struct labyrinth *lab = lab_default_if_open();
	if (lab && exit_check_on())
		lab_sweep(lab);
}

#define LAB_API __attribute__((visibility("default")))

LAB_API size_t labyrinth_check(labyrinth_t *lab)
{
	struct labyrinth *l = lab ? lab : lab_default_if_open();
	return l ? lab_sweep(l) : 0;
}

/*
 * sweep: check the canaries of every live allocation, walking the maze index
 * (never heap memory) for the blocks. An overflow is otherwise found when
 * its block is freed; a block that is never freed needs the sweep, which
 * runs at exit under LABYRINTH_EXIT_CHECK and on demand (labyrinth_check).
 *
 * A wing's lock is held while its cells are read: rooms and large regions
 * close under that lock, so no page closes under the sweep. Blocks are
 * claimed before their canary is written, outside any lock; a block that
 * looks damaged is looked at again a moment later, and reported only if it
 * is still the same block and still damaged.
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

#include <time.h>

/* A block that looks damaged may be one another thread is handing out or
 * freeing at this moment (its version word moves first, its bytes after):
 * it is looked at again after this pause. */
static void settle(void)
{
	struct timespec pause = { 0, 2 * 1000 * 1000 };
	nanosleep(&pause, NULL);
}

/*
 * The canary [from, to) of the block at base is damaged, and stays so while
 * *v reads the same: then report it (class_size and the generation go into
 * the line) and say so. key is the block's key; a small slot's version word
 * also names the generation whose key is mixed in (slot). next is the slot
 * that follows base in its room, or NULL: damage near the end names it too.
 */
static bool check_block(char *base, size_t from, size_t to, version_t *v, size_t class_size,
			uint64_t key, bool slot, const char *next)
{
	uint64_t seen = version_read(v);
	uint64_t pat = canary_pattern(slot ? key ^ generation_key(v_owner(seen)) : key, base, seen);
	annotate_open(base + from, to - from);
	bool bad = canary_damage(base, from, to, pat) != NO_DAMAGE;
	if (bad) {
		settle();
		bad = canary_damage(base, from, to, pat) != NO_DAMAGE && version_read(v) == seen &&
		      v_state(seen) == V_OWNED;
	}
	if (bad)
		canary_report_near(base, canary_damage_near_end(base, from, to, pat) ? next : NULL,
				   canary_damage(base, from, to, pat), class_size, v_gen(seen));
	annotate_noaccess(base + from, to - from);
	return bad;
}

/*
 * Free slots (in a room's free list, a thread's batch or a quarantine) are
 * all zero: zeroed at free, or fresh pages, or pages given back. Hand-out
 * checks that, but a slot that is never handed out again would keep a write
 * into it hidden; the sweep looks at them too. Not under ASan or memcheck,
 * which poison free slots and catch such a write when it is made; reading
 * them would also have to unpoison them, racing a thread handing one out.
 */
static bool free_slots_checked(const struct labyrinth *lab)
{
#ifdef LAB_ASAN
	(void)lab;
	return false;
#else
#ifdef HAVE_VALGRIND_MEMCHECK_H
	if (annotate_valgrind)
		return false;
#endif
	return lab->prot.uaf_check;
#endif
}

/* The free slot p (version word *v, read as seen) is not zero and stays so
 * while *v reads the same: report it, naming next if the write is near the
 * end, and say so. A slot is claimed before it is written, and zeroed right
 * after it is quarantined: the pause lets either finish. */
static bool check_free(char *p, size_t size, version_t *v, uint64_t seen, const char *next)
{
	if (bytes_all_zero(p, size))
		return false;
	settle();
	atomic_thread_fence(memory_order_acquire);
	if (version_read(v) != seen || bytes_all_zero(p, size))
		return false;
	bool near_end = word_at(p + size - NEAR_END) != 0;
	free_slot_report(p, near_end ? next : NULL, zero_damage(p, size), size, v_gen(seen));
	return true;
}

static size_t sweep_room(struct labyrinth *lab, struct wing *w, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	size_t damaged = 0;
	if (v_state(version_read(&r->version)) != V_OWNED)
		return 0;
	bool free_too = free_slots_checked(lab);
	uint16_t n = r->nslots;
	for (uint16_t s = 0; s < n; s++) {
		version_t *v = &slot_versions(r)[s];
		uint64_t seen = version_read(v);
		char *p = cell_addr(w, cell) + (size_t)s * w->class_size;
		char *next = s + 1 < n ? p + w->class_size : NULL;
		if (v_state(seen) == V_FREE || v_state(seen) == V_QUARANTINED) {
			if (free_too)
				damaged += check_free(p, w->class_size, v, seen, next);
			continue;
		}
		if (v_state(seen) != V_OWNED || !lab->prot.canary)
			continue;
		size_t req = slot_req(r, n)[s];
		if (req < w->class_size)
			damaged += check_block(p, req, w->class_size, v, w->class_size, r->key, true,
					       next);
	}
	return damaged;
}

static size_t sweep_large(struct wing *w, uint32_t cell)
{
	struct large *l = cell_record(w, cell);
	if (v_state(version_read(&l->version)) != V_OWNED)
		return 0;
	/* The maze's record of open pages bounds what may be read (a resize
	 * moves them first, then the block's record). */
	uint32_t end = l->first_page + l->npages;
	if (end > cell_hdr(w, cell)->open_end || l->size >= (size_t)l->npages * PAGE_SIZE)
		return 0;
	char *p = cell_addr(w, cell) + (size_t)l->first_page * PAGE_SIZE;
	size_t to = (size_t)l->npages * PAGE_SIZE;
	return check_block(p, l->size, to, &l->version, w->class_size, l->key, false, NULL);
}

/* A pool's labyrinth_malloc block (the page API's blocks have no canary). */
static size_t sweep_pool_page(struct wing *w, uint32_t cell)
{
	struct page_rec *rec = page_rec_of(w, cell);
	if (v_state(version_read(&rec->version)) != V_OWNED || rec->kind != PAGE_MALLOC ||
	    rec->size >= w->room_bytes)
		return 0;
	return check_block(cell_addr(w, cell), rec->size, w->room_bytes, &rec->version,
			   w->class_size, rec->key ^ gen_keys[rec->gen_tag], false, NULL);
}

static size_t sweep_wing(struct labyrinth *lab, struct wing *w)
{
	size_t damaged = 0;
	pthread_mutex_lock(&w->lock);
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (uint32_t c = cell_next_taken(w, 0, ext); c < ext; c = cell_next_taken(w, c + 1, ext)) {
		if (wing_is_small(lab, w))
			damaged += sweep_room(lab, w, c);
		else if (!lab->prot.canary)
			continue;
		else if (!wing_is_page(lab, w))
			damaged += sweep_large(w, c);
		else if (lab->pool)
			damaged += sweep_pool_page(w, c);
	}
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

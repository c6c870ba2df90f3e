/*
 * slot: what happens to one small allocation.
 *
 * Allocation takes a random free slot of the bin's room, checks the slot is
 * still all zero (a write after free shows there), records the requested
 * size out of line, and fills the rest of the slot with the canary. Free
 * moves the slot's version from owned to quarantined (the one compare-and-
 * swap that catches a double free), checks the canary, zeroes the slot, and
 * puts it in the arena's quarantine; the slot that leaves the quarantine
 * goes back to its room.
 */
#include "slot.h"
#include "annotate.h"
#include "canary.h"
#include "os.h"
#include "report.h"
#include "room.h"
#include "version.h"

#include <string.h>

static char *slot_addr(const struct wing *w, uint32_t cell, uint16_t slot)
{
	return cell_addr(w, cell) + (size_t)slot * w->class_size;
}

/* A slot to hand out is all zero unless something wrote to it while free. */
static void check_reused(struct labyrinth *lab, struct wing *w, char *p, uint64_t gen)
{
	if (lab->prot.uaf_check)
		zero_check(p, w->class_size, gen);
}

void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls, size_t size)
{
	struct wing *w = &lab->maze.wings[cls];
	struct bin *b = &a->bins[cls];
	pthread_mutex_lock(&a->lock);
	uint32_t cell = b->current;
	if (cell == CELL_NONE || room_of(w, cell)->nfree == 0) {
		cell = bin_refill(lab, a, w, b);
		if (cell == CELL_NONE) {
			pthread_mutex_unlock(&a->lock);
			return NULL;
		}
	}
	struct room *r = room_of(w, cell);
	uint16_t n = slots_per_room(w), *fs = free_slots(r);
	uint32_t i = rng_below(&a->rng, r->nfree);
	uint16_t slot = fs[i];
	fs[i] = fs[--r->nfree];
	slot_req(r, n)[slot] = (uint16_t)size;
	uint64_t seen;
	version_t *v = &slot_versions(r, n)[slot];
	if (!version_claim(v, a->id, &seen))
		report_fatal("heap corruption: a free-listed slot was owned");
	counter_add(&a->allocs, 1);
	counter_add(&a->live_bytes, w->class_size);
	pthread_mutex_unlock(&a->lock);

	char *p = slot_addr(w, cell, slot);
	annotate_open(p, w->class_size);
	check_reused(lab, w, p, v_gen(version_read(v)));
	if (lab->prot.canary)
		canary_write(p, size, w->class_size);
	annotate_alloc(p, size, w->class_size);
	return p;
}

/* Find p's room, cell and slot; NULL (after a report) if p is no slot at all. */
static struct room *slot_of(struct wing *w, const void *p, int kind, uint32_t *cellp,
			    uint16_t *slot)
{
	struct error_site site = { .addr = p, .class_size = w->class_size };
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	if (cell == CELL_NONE || off >= w->room_bytes || off / w->class_size >= slots_per_room(w))
		site.why = "never allocated";
	else if (off % w->class_size)
		site.why = "not the start of a slot";
	if (site.why) {
		report_heap_error(kind, &site);
		return NULL;
	}
	*cellp = cell;
	*slot = (uint16_t)(off / w->class_size);
	return room_of(w, cell);
}

static void check_canary(struct labyrinth *lab, struct wing *w, char *p, size_t req,
			 uint64_t gen)
{
	if (lab->prot.canary)
		canary_check(p, req, w->class_size, w->class_size, gen);
}

/*
 * Zero a freed slot. The whole pages of a slot go back to the kernel instead
 * (they read as zero), so slots waiting in quarantine, and the rest of the
 * rooms they keep open, pin no memory.
 */
static void zero_slot(struct wing *w, char *p)
{
	size_t size = w->class_size;
	char *lo = (char *)(((uintptr_t)p + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
	char *hi = (char *)(((uintptr_t)p + size) & ~(PAGE_SIZE - 1));
	if (hi <= lo) {
		memset(p, 0, size);
		return;
	}
	memset(p, 0, (size_t)(lo - p));
	os_discard(lo, (size_t)(hi - lo));
	memset(hi, 0, (size_t)(p + size - hi));
}

/* Under the arena's lock: a slot leaves the quarantine for its room; the
 * bytes of the room if that closes it. */
static size_t release_slot(struct labyrinth *lab, struct arena *a, struct qentry e)
{
	struct wing *w = &lab->maze.wings[e.cls];
	struct room *r = room_of(w, e.cell);
	struct bin *b = &a->bins[e.cls];
	uint64_t seen;
	if (!version_move(&slot_versions(r, r->nslots)[e.slot], V_QUARANTINED, V_FREE, 0, &seen))
		report_fatal("heap corruption: a quarantined slot changed state");
	free_slots(r)[r->nfree++] = e.slot;
	if (e.cell == b->current)
		return 0;
	if (r->nfree == r->nslots) {
		if (r->in_partial)
			partial_unlink(w, b, e.cell);
		room_close(lab, w, e.cell);
		return w->room_bytes;
	}
	if (!r->in_partial)
		partial_push(w, b, e.cell);
	return 0;
}

void small_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect)
{
	uint32_t cell;
	uint16_t slot;
	struct room *r = slot_of(w, p, kind, &cell, &slot);
	if (!r)
		return;
	uint16_t n = slots_per_room(w);
	uint64_t seen;
	if (!version_move(&slot_versions(r, n)[slot], V_OWNED, V_QUARANTINED, 0, &seen)) {
		report_failed_release(kind, p, w->class_size, v_gen(seen));
		return;
	}
	/* The slot is ours until it leaves the quarantine: no lock needed here. */
	size_t req = slot_req(r, n)[slot];
	annotate_open(p, w->class_size);
	report_wrong_size_if(p, expect, req, w->class_size);
	check_canary(lab, w, p, req, v_gen(version_read(&slot_versions(r, n)[slot])));
	if (lab->prot.zero)
		zero_slot(w, p);
	annotate_free(p, w->class_size);

	struct arena *a = &lab->arenas[v_owner(version_read(&r->version)) - 1];
	struct qentry e = { .cell = cell, .cls = (uint16_t)wing_index(lab, w), .slot = slot };
	struct qentry out;
	pthread_mutex_lock(&a->lock);
	counter_add(&a->frees, 1);
	counter_add(&a->live_bytes, -(uint64_t)w->class_size);
	if (!lab->prot.quarantine)
		release_slot(lab, a, e);
	else if (quarantine_push(&a->quarantine, &a->rng, e, &out))
		release_slot(lab, a, out);
	pthread_mutex_unlock(&a->lock);
}

/* p as a live slot: its room and slot, or NULL after a report. */
static struct room *live_slot(struct wing *w, const void *p, int kind, uint16_t *slot)
{
	uint32_t cell;
	struct room *r = slot_of(w, p, kind, &cell, slot);
	if (!r)
		return NULL;
	uint64_t v = version_read(&slot_versions(r, slots_per_room(w))[*slot]);
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
	return lab->prot.canary ? slot_req(r, slots_per_room(w))[slot] : w->class_size;
}

bool small_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size)
{
	size_t need = small_need(lab, size);
	if (need > SMALL_MAX || small_class(need) != wing_index(lab, w))
		return false;
	uint16_t slot;
	struct room *r = live_slot(w, p, ERR_INVALID_REALLOC, &slot);
	if (!r)
		return false;
	uint16_t *req = &slot_req(r, slots_per_room(w))[slot];
	annotate_open(p, w->class_size);
	check_canary(lab, w, p, *req, v_gen(version_read(&slot_versions(r, slots_per_room(w))[slot])));
	size_t old = *req;
	*req = (uint16_t)size;
	if (lab->prot.canary)
		canary_write(p, size, w->class_size);
	annotate_resize(p, old, size, w->class_size);
	return true;
}

size_t small_trim(struct labyrinth *lab, struct arena *a)
{
	size_t released = 0;
	struct qentry e;
	pthread_mutex_lock(&a->lock);
	while (quarantine_pop(&a->quarantine, &e))
		released += release_slot(lab, a, e);
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct wing *w = &lab->maze.wings[c];
		struct bin *b = &a->bins[c];
		uint32_t cell = b->current;
		if (cell == CELL_NONE || room_of(w, cell)->nfree != room_of(w, cell)->nslots)
			continue;
		b->current = CELL_NONE;
		room_close(lab, w, cell);
		released += w->room_bytes;
	}
	pthread_mutex_unlock(&a->lock);
	return released;
}

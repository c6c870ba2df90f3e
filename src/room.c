/*
 * room: small allocations. A room is a run of pages in the wing of one size
 * class, cut into equal slots. Its record in the maze index holds the room's
 * version, the list of its free slots, and one version word per slot; none
 * of it lives in heap pages, so an overflow cannot reach it.
 */
#include "room.h"
#include "os.h"
#include "report.h"
#include "version.h"

#include <string.h>

/* The upper part of a cell record in a small wing. */
struct room {
	version_t version;      /* owned by an arena while the room is open */
	uint32_t next, prev;    /* the bin's partial list */
	uint16_t nslots, nfree;
	uint8_t in_partial;
	uint8_t pad[3];
	/* uint16_t free_slot[nslots], then version_t slot_version[nslots] */
};

static uint16_t *free_slots(struct room *r)
{
	return (uint16_t *)(r + 1);
}

static version_t *slot_versions(struct room *r, uint16_t nslots)
{
	size_t off = ((size_t)nslots * sizeof(uint16_t) + 7) & ~(size_t)7;
	return (version_t *)((char *)(r + 1) + off);
}

/* ---- size classes ----------------------------------------------------- */

/* 16 to 128 by 16, then four classes per doubling: at most 25% waste. */
size_t small_class_size(unsigned cls)
{
	if (cls < 8)
		return 16 * (cls + 1);
	unsigned group = (cls - 8) / 4, k = (cls - 8) % 4;
	return (size_t)(5 + k) << (group + 5);
}

unsigned small_class(size_t size)
{
	if (size <= 128)
		return size ? (unsigned)((size + 15) / 16 - 1) : 0;
	size_t s = size - 1;
	unsigned b = 63 - (unsigned)__builtin_clzl(s);
	unsigned shift = b - 2;
	return 8 + (b - 7) * 4 + (unsigned)((s >> shift) & 3);
}

int small_class_aligned(size_t size, size_t align)
{
	if (size > SMALL_MAX)
		return -1;
	for (unsigned c = small_class(size); c < SMALL_CLASSES; c++)
		if (small_class_size(c) % align == 0)
			return (int)c;
	return -1;
}

/* At least 16 slots and 16 KiB; then the page count that wastes least. */
static size_t room_bytes_for(size_t size)
{
	size_t base = size * 16 > 16384 ? size * 16 : 16384;
	base = (base + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	size_t best = base, best_waste = base % size;
	for (size_t b = base; b <= base * 2; b += PAGE_SIZE) {
		size_t waste = b % size;
		if (waste * best < best_waste * b) {
			best = b;
			best_waste = waste;
		}
	}
	return best;
}

void room_specs(struct wing_spec *out)
{
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		size_t size = small_class_size(c);
		size_t room = room_bytes_for(size);
		size_t nslots = room / size;
		out[c].room_bytes = room;
		out[c].class_size = size;
		out[c].record_bytes = sizeof(struct room) +
				      ((nslots * sizeof(uint16_t) + 7) & ~(size_t)7) +
				      nslots * sizeof(version_t);
	}
}

/* ---- the bin's list of rooms with free slots -------------------------- */

static uint16_t slots_per_room(const struct wing *w)
{
	return (uint16_t)(w->room_bytes / w->class_size);
}

static struct room *room_of(struct wing *w, uint32_t cell)
{
	return cell_record(w, cell);
}

static void partial_push(struct wing *w, struct bin *b, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	r->prev = CELL_NONE;
	r->next = b->partial;
	if (b->partial != CELL_NONE)
		room_of(w, b->partial)->prev = cell;
	b->partial = cell;
	r->in_partial = 1;
}

static void partial_unlink(struct wing *w, struct bin *b, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	if (r->prev != CELL_NONE)
		room_of(w, r->prev)->next = r->next;
	else
		b->partial = r->next;
	if (r->next != CELL_NONE)
		room_of(w, r->next)->prev = r->prev;
	r->in_partial = 0;
}

/* ---- opening and closing rooms ---------------------------------------- */

static uint32_t room_open(struct labyrinth *lab, struct arena *a, struct wing *w)
{
	uint32_t cell = wing_place(&lab->maze, w, (uint32_t)(w->room_bytes / PAGE_SIZE),
				   PAGE_SIZE, NULL);
	if (cell == CELL_NONE)
		return CELL_NONE;
	struct room *r = room_of(w, cell);
	uint64_t seen;
	if (!version_claim(&r->version, a->id, &seen))
		report_fatal("heap corruption: a placed room was already owned");
	uint16_t n = slots_per_room(w);
	r->nslots = n;
	r->nfree = n;
	r->next = r->prev = CELL_NONE;
	r->in_partial = 0;
	uint16_t *fs = free_slots(r);
	for (uint16_t i = 0; i < n; i++)
		fs[i] = i;
	/* Slot versions keep their generations across room lifetimes. */
	lab_note_peak(lab);
	return cell;
}

static void room_close(struct labyrinth *lab, struct wing *w, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	uint64_t seen;
	if (!version_release(&r->version, &seen))
		report_fatal("heap corruption: a closing room was not owned");
	wing_retire(&lab->maze, w, cell);
}

/* The slow path: the bin's current room is full. */
static uint32_t bin_refill(struct labyrinth *lab, struct arena *a, struct wing *w,
			   struct bin *b)
{
	if (b->partial != CELL_NONE) {
		uint32_t cell = b->partial;
		partial_unlink(w, b, cell);
		return b->current = cell;
	}
	return b->current = room_open(lab, a, w);
}

/* ---- allocation and free ---------------------------------------------- */

void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls)
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
	uint16_t *fs = free_slots(r);
	uint32_t i = rng_below(&a->rng, r->nfree);
	uint16_t slot = fs[i];
	fs[i] = fs[--r->nfree];
	uint64_t seen;
	if (!version_claim(&slot_versions(r, r->nslots)[slot], a->id, &seen))
		report_fatal("heap corruption: a free-listed slot was owned");
	counter_add(&a->allocs, 1);
	counter_add(&a->live_bytes, w->class_size);
	pthread_mutex_unlock(&a->lock);
	return cell_addr(w, cell) + (size_t)slot * w->class_size;
}

/* Find p's room and slot, or report why p is no slot at all. */
static struct room *slot_of(struct wing *w, const void *p, int kind, uint16_t *slot)
{
	struct error_site site = { .addr = p, .class_size = w->class_size };
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	if (cell == CELL_NONE || off >= w->room_bytes) {
		site.why = "never allocated";
		report_heap_error(kind, &site);
	}
	if (off % w->class_size) {
		site.why = "not the start of a slot";
		report_heap_error(kind, &site);
	}
	struct room *r = room_of(w, cell);
	size_t s = off / w->class_size;
	if (s >= slots_per_room(w)) {
		site.why = "never allocated";
		report_heap_error(kind, &site);
	}
	*slot = (uint16_t)s;
	return r;
}

void small_free(struct labyrinth *lab, struct wing *w, void *p, int kind)
{
	uint16_t slot;
	struct room *r = slot_of(w, p, kind, &slot);
	uint64_t seen;
	if (!version_release(&slot_versions(r, slots_per_room(w))[slot],
			     &seen))
		report_failed_release(kind, p, w->class_size, v_gen(seen));

	/* The slot was ours, so its room is open and owned by one arena. */
	struct arena *a = &lab->arenas[v_owner(version_read(&r->version)) - 1];
	unsigned cls = wing_index(lab, w);
	struct bin *b = &a->bins[cls];
	uint32_t cell = (uint32_t)(((size_t)((char *)p - w->base) / w->cell_bytes) - w->ext_lo);
	pthread_mutex_lock(&a->lock);
	free_slots(r)[r->nfree++] = slot;
	counter_add(&a->frees, 1);
	counter_add(&a->live_bytes, -(uint64_t)w->class_size);
	if (cell != b->current) {
		if (r->nfree == r->nslots) {
			if (r->in_partial)
				partial_unlink(w, b, cell);
			room_close(lab, w, cell);
		} else if (!r->in_partial) {
			partial_push(w, b, cell);
		}
	}
	pthread_mutex_unlock(&a->lock);
}

size_t small_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind)
{
	(void)lab;
	uint16_t slot;
	struct room *r = slot_of(w, p, kind, &slot);
	uint64_t v = version_read(&slot_versions(r, slots_per_room(w))[slot]);
	if (v_state(v) != V_OWNED)
		report_failed_release(kind, p, w->class_size, v_gen(v));
	return w->class_size;
}

size_t small_trim(struct labyrinth *lab, struct arena *a)
{
	size_t released = 0;
	pthread_mutex_lock(&a->lock);
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct wing *w = &lab->maze.wings[c];
		struct bin *b = &a->bins[c];
		uint32_t cell = b->current;
		if (cell == CELL_NONE)
			continue;
		struct room *r = room_of(w, cell);
		if (r->nfree != r->nslots)
			continue;
		b->current = CELL_NONE;
		room_close(lab, w, cell);
		released += w->room_bytes;
	}
	pthread_mutex_unlock(&a->lock);
	return released;
}

/*
 * room: size classes, and the rooms of small allocations. A room is a run of
 * pages in the wing of one size class, cut into equal slots. Its record in
 * the maze index holds the room's version, the list of its free slots, each
 * slot's requested size and version word; none of it lives in heap pages, so
 * an overflow cannot reach it. What happens to one slot is in slot.c.
 */
#include "room.h"
#include "epoch.h"
#include "os.h"
#include "report.h"
#include "version.h"

#include <string.h>

/* ---- size classes ----------------------------------------------------- */

/*
 * 16 to 128 by 16, then eight classes per doubling: at most 12.5% waste.
 * Every small request keeps a canary byte, so the common power-of-two
 * requests land in the class just above (256 -> 288, not 320): a class
 * every eighth of a doubling keeps that cost low.
 */
size_t small_class_size(unsigned cls)
{
	if (cls < 8)
		return 16 * (cls + 1);
	unsigned group = (cls - 8) / 8, k = (cls - 8) % 8;
	return (size_t)(9 + k) << (group + 4);
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
		out[c].joinable = true;
		out[c].class_size = size;
		out[c].record_bytes = room_record_bytes((uint16_t)nslots);
	}
}

/* ---- the bin's list of rooms with free slots -------------------------- */

void partial_push(struct wing *w, struct bin *b, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	r->prev = CELL_NONE;
	r->next = b->partial;
	if (b->partial != CELL_NONE)
		room_of(w, b->partial)->prev = cell;
	b->partial = cell;
	r->in_partial = 1;
}

void partial_unlink(struct wing *w, struct bin *b, uint32_t cell)
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

/*
 * The partial room a refill takes: one of the first PARTIAL_PICK of the
 * list, at random. The list's head is the room a slot last went back to,
 * often one just out of quarantine; taking the head every time would hand
 * that slot out again at a count an attacker can work out.
 */
#define PARTIAL_PICK 8

static uint32_t partial_pick(struct arena *a, struct wing *w, struct bin *b)
{
	uint32_t seen[PARTIAL_PICK];
	unsigned n = 0;
	for (uint32_t c = b->partial; c != CELL_NONE && n < PARTIAL_PICK; c = room_of(w, c)->next)
		seen[n++] = c;
	return seen[n > 1 ? rng_pick(&a->rng, n) : 0];
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
	/* A new key per room: one room's canaries say nothing of another's. */
	rng_renew_if_stale(&a->rng);
	r->key = rng_u64(&a->rng);
	uint16_t *fs = free_slots(r);
	for (uint16_t i = 0; i < n; i++)
		fs[i] = i;
	/* Slot versions keep their generations across room lifetimes. */
	lab_note_peak(lab);
	return cell;
}

void room_close(struct labyrinth *lab, struct wing *w, uint32_t cell)
{
	struct room *r = room_of(w, cell);
	uint64_t seen;
	if (!version_release(&r->version, &seen))
		report_fatal("heap corruption: a closing room was not owned");
	wing_retire(&lab->maze, w, cell);
}

/*
 * A spare of SPARE_DISCARD_MIN or more keeps its cleared pages only while
 * the arena's kept spares hold less than SPARE_KEPT_MAX; past that its
 * pages go back (they read as zero, as its free slots must). A class used
 * in bursts takes its spare back at the next refill, and pages given back
 * then cost a fault each (gcc -O2: 1,800 of its 19,400 faults, its 4 KiB
 * class); but every class a program passes through would keep a room's
 * worth of cleared pages without a bound, which fork copies (bash growing
 * a string through every class: 13 MiB). Smaller spares always keep them.
 */
#define SPARE_DISCARD_MIN (64UL << 10)
#define SPARE_KEPT_MAX (1UL << 20)
void spare_keep_or_discard(struct arena *a, struct bin *b, const struct wing *w)
{
	if (w->room_bytes < SPARE_DISCARD_MIN)
		return;
	if (a->spares_kept + w->room_bytes <= SPARE_KEPT_MAX) {
		a->spares_kept += w->room_bytes;
		b->spare_kept = (uint32_t)w->room_bytes;
		return;
	}
	os_discard(cell_addr(w, b->spare), w->room_bytes);
}

/* The bin's spare leaves the count (taken, or about to close). */
void spare_uncount(struct arena *a, struct bin *b)
{
	a->spares_kept -= b->spare_kept;
	b->spare_kept = 0;
}

/* The slow path: the bin's current room is full. */
uint32_t bin_refill(struct labyrinth *lab, struct arena *a, struct wing *w,
			   struct bin *b)
{
	if (b->partial != CELL_NONE) {
		uint32_t cell = partial_pick(a, w, b);
		partial_unlink(w, b, cell);
		return b->current = cell;
	}
	if (b->spare != CELL_NONE) {
		uint32_t spare = b->spare;
		spare_uncount(a, b);
		b->spare = CELL_NONE;
		/* An empty room is reused in place only within its epoch. */
		if (b->spare_epoch == epoch_now(&lab->maze))
			return b->current = spare;
		room_close(lab, w, spare);
	}
	return b->current = room_open(lab, a, w);
}


/*
 * large: every large allocation gets a room of its own in the wing of its
 * class (four classes per doubling of the page count). Only the pages the
 * request needs are opened; the rest of the room and the cell's guard page
 * stay guarded, so a linear overflow faults at the first page past the end;
 * the bytes between the request and the end of its last page hold a canary.
 * Free closes the pages, which returns them to the kernel, and keeps the
 * cell out of use for a while (the region quarantine).
 */
#include "large.h"
#include "annotate.h"
#include "canary.h"
#include "maze.h"
#include "os.h"
#include "report.h"
#include "version.h"

#define LARGE_MIN_PAGES (SMALL_MAX / PAGE_SIZE + 1)

/* Pages of large class k: 5, 6, 7, 8, 10, 12, 14, 16, 20, ... */
static size_t class_pages(unsigned k)
{
	return (size_t)(5 + k % 4) << (k / 4);
}

static unsigned class_of_pages(size_t pages)
{
	size_t s = pages - 1;
	unsigned b = 63 - (unsigned)__builtin_clzl(s);
	unsigned shift = b - 2;
	return (b - 2) * 4 + (unsigned)((s >> shift) & 3);
}

unsigned large_class_count(size_t max_alloc)
{
	size_t pages = (max_alloc + PAGE_SIZE - 1) / PAGE_SIZE;
	if (pages < LARGE_MIN_PAGES)
		pages = LARGE_MIN_PAGES;
	return class_of_pages(pages) + 1;
}

void large_specs(struct wing_spec *out, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		out[k].room_bytes = class_pages(k) * PAGE_SIZE;
		out[k].class_size = class_pages(k) * PAGE_SIZE;
		out[k].record_bytes = sizeof(struct large);
		out[k].joinable = false;        /* its overflow must fault (maze.c) */
	}
}

static size_t pages_for(size_t size)
{
	return (size + PAGE_SIZE - 1) / PAGE_SIZE;
}

/* The tail of the last page, after the request, holds the canary; v is
 * the version word the block has while it is owned. */
static void tail_canary_write(struct labyrinth *lab, struct large *l, char *p, uint64_t v)
{
	if (lab->prot.canary)
		canary_write(p, l->size, (size_t)l->npages * PAGE_SIZE, canary_pattern(l->key, p, v));
}

/* v: the region's version word while it was owned; gen goes into a report. */
static void tail_canary_check(struct labyrinth *lab, struct wing *w, struct large *l, char *p,
			      uint64_t v, uint64_t gen)
{
	if (lab->prot.canary)
		canary_check(p, l->size, (size_t)l->npages * PAGE_SIZE, canary_pattern(l->key, p, v),
			     w->class_size, gen);
}

static bool region_evict(struct labyrinth *lab, struct wing *w);

/* A cell of the first wing from class k up that has one, or CELL_NONE. */
static uint32_t place_from(struct labyrinth *lab, unsigned k, uint32_t npages, size_t align,
			   struct wing **wp, uint32_t *first)
{
	for (; k < lab->nlarge; k++) {
		*wp = &lab->maze.wings[SMALL_CLASSES + k];
		uint32_t cell = wing_place(&lab->maze, *wp, npages, align, first);
		if (cell != CELL_NONE)
			return cell;
	}
	return CELL_NONE;
}

/*
 * A full wing must not fail an allocation that a bigger class's wing can
 * hold: the block takes a bigger cell, only its own pages open. When every
 * wing that could hold it is full, the oldest region the quarantine holds
 * in one of them leaves it: the biggest classes have only a few cells, and
 * held regions would otherwise refuse every later request of their size.
 */
static uint32_t place_cell(struct labyrinth *lab, size_t need, uint32_t npages, size_t align,
			   struct wing **wp, uint32_t *first)
{
	unsigned k0 = class_of_pages(need);
	uint32_t cell = place_from(lab, k0, npages, align, wp, first);
	for (unsigned k = k0; cell == CELL_NONE && k < lab->nlarge;) {
		struct wing *w = &lab->maze.wings[SMALL_CLASSES + k];
		if (!region_evict(lab, w)) {
			k++;
			continue;
		}
		*wp = w;
		cell = wing_place(&lab->maze, w, npages, align, first);
	}
	return cell;
}

/* A room of at least `room` pages, of which the request's are opened. */
static void *large_place(struct labyrinth *lab, size_t size, size_t align, size_t room)
{
	if (size > lab->max_alloc)
		return NULL;
	size_t npages = size ? pages_for(size) : 1;     /* aligned_alloc(a, 0) too */
	size_t slack = align > PAGE_SIZE ? align / PAGE_SIZE - 1 : 0;
	size_t need = npages + slack > room ? npages + slack : room;
	if (need < LARGE_MIN_PAGES)
		need = LARGE_MIN_PAGES;
	struct wing *w = NULL;
	uint32_t first;
	uint32_t cell = place_cell(lab, need, (uint32_t)npages, align, &w, &first);
	if (cell == CELL_NONE)
		return NULL;
	struct large *l = cell_record(w, cell);
	l->first_page = first;
	l->npages = (uint32_t)npages;
	l->size = size;
	l->key = lab_key_new(lab);
	/* Finished, canary and all, before it is owned: a fork from another
	 * thread must not leave the child an owned block with no canary. */
	uint64_t old, v = version_claim_next(&l->version, 1, &old);
	if (!v)
		report_fatal("heap corruption: a placed large room was already owned");
	char *p = cell_addr(w, cell) + (size_t)first * PAGE_SIZE;
	annotate_open(p, npages * PAGE_SIZE);
	tail_canary_write(lab, l, p, v);
	annotate_alloc(p, size, npages * PAGE_SIZE);
	if (!version_publish(&l->version, old, v))
		report_fatal("heap corruption: a placed large room was already owned");
	atomic_fetch_add_explicit(&lab->large_allocs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lab->large_live_bytes, npages * PAGE_SIZE, memory_order_relaxed);
	lab_note_peak(lab);
	return p;
}

void *large_alloc(struct labyrinth *lab, size_t size, size_t align)
{
	return large_place(lab, size, align, 0);
}

/*
 * A block that realloc outgrew gets a room twice its new size: the pages
 * past the request stay guarded (they cost address space, no memory), and
 * the next growths open them in place instead of copying the block again.
 * Buffers that grow by steps then copy at each doubling, not at each step.
 */
void *large_alloc_growing(struct labyrinth *lab, size_t size)
{
	void *p = NULL;
	if (size <= lab->max_alloc / 2)
		p = large_place(lab, size, PAGE_SIZE, pages_for(size) * 2);
	return p ? p : large_place(lab, size, PAGE_SIZE, 0);
}

/* Find p's room; NULL (after a report) if p is not the start of a large allocation. */
static struct large *large_of(struct wing *w, const void *p, int kind, uint32_t *cellp)
{
	struct error_site site = { .addr = p, .class_size = w->class_size };
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	struct large *l = NULL;
	if (cell == CELL_NONE || off >= w->room_bytes) {
		site.why = "never allocated";
	} else {
		l = cell_record(w, cell);
		uint64_t v = version_read(&l->version);
		site.version = v_gen(v);
		site.has_version = v_gen(v) != 0;
		if (off % PAGE_SIZE ||
		    (v_state(v) == V_OWNED && off != (size_t)l->first_page * PAGE_SIZE))
			site.why = "not the start of an allocation";
	}
	if (site.why) {
		report_heap_error(kind, &site);
		return NULL;
	}
	*cellp = cell;
	return l;
}

/* p as a live large allocation, or NULL after a report. */
static struct large *live_large(struct wing *w, const void *p, int kind, uint32_t *cell)
{
	struct large *l = large_of(w, p, kind, cell);
	if (!l)
		return NULL;
	uint64_t v = version_read(&l->version);
	if (v_state(v) != V_OWNED) {
		report_failed_release(kind, p, w->class_size, v_gen(v));
		return NULL;
	}
	return l;
}

/* Under the lock: the oldest held region, if any. */
static bool region_take_locked(struct region_quarantine *q, uint64_t *out)
{
	if (!q->count)
		return false;
	*out = q->ring[q->head];
	q->head = (q->head + 1) % q->size;
	q->count--;
	return true;
}

static void region_retire(struct labyrinth *lab, uint64_t held)
{
	wing_retire(&lab->maze, &lab->maze.wings[held >> 32], (uint32_t)held);
}

/*
 * A full wing gets a cell back: the oldest region the quarantine holds in
 * it leaves (the entries before it in the ring move up one place), so its
 * address comes back as late as the wing allows. Nothing leaves for a wing
 * with a free cell: a request refused for another reason (the cap) must not
 * drain the quarantine.
 */
static bool region_evict(struct labyrinth *lab, struct wing *w)
{
	struct region_quarantine *q = &lab->regions;
	if (!q->size || !wing_full(&lab->maze, w))
		return false;
	uint64_t want = wing_index(lab, w), out = 0;
	bool found = false;
	pthread_mutex_lock(&q->lock);
	for (uint32_t i = 0; i < q->count && !found; i++) {
		if (q->ring[(q->head + i) % q->size] >> 32 != want)
			continue;
		out = q->ring[(q->head + i) % q->size];
		for (uint32_t j = i; j > 0; j--)
			q->ring[(q->head + j) % q->size] = q->ring[(q->head + j - 1) % q->size];
		q->head = (q->head + 1) % q->size;
		q->count--;
		found = true;
	}
	pthread_mutex_unlock(&q->lock);
	if (found)
		region_retire(lab, out);
	return found;
}

/*
 * A freed region's pages are closed at once (any access faults, and the
 * kernel has its memory and, with its span dark, its page tables back), but
 * its cell stays taken for the next few frees, so the address is not handed
 * out again straight away. Holding it costs address space and a record
 * only, so labyrinth_trim leaves it held: retiring it gave back nothing and
 * only let its address come back early.
 */
static void region_quarantine(struct labyrinth *lab, struct wing *w, uint32_t cell)
{
	struct region_quarantine *q = &lab->regions;
	if (!q->size) {
		wing_retire(&lab->maze, w, cell);
		return;
	}
	if (!wing_close(&lab->maze, w, cell)) {         /* joined: its pages are an island's */
		wing_retire(&lab->maze, w, cell);
		return;
	}
	uint64_t out = 0;
	pthread_mutex_lock(&q->lock);
	bool evict = q->count == q->size && region_take_locked(q, &out);
	q->ring[(q->head + q->count) % q->size] = (uint64_t)wing_index(lab, w) << 32 | cell;
	q->count++;
	pthread_mutex_unlock(&q->lock);
	if (evict)
		region_retire(lab, out);
}

void large_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect)
{
	uint32_t cell;
	struct large *l = large_of(w, p, kind, &cell);
	if (!l)
		return;
	uint64_t seen;
	if (!version_release(&l->version, &seen)) {
		report_failed_release(kind, p, w->class_size, v_gen(seen));
		return;
	}
	annotate_open(p, (size_t)l->npages * PAGE_SIZE);
	report_wrong_size_if(p, expect, l->size, w->class_size);
	tail_canary_check(lab, w, l, p, seen, v_gen(seen) + 1);
	annotate_free(p, (size_t)l->npages * PAGE_SIZE);
	atomic_fetch_add_explicit(&lab->large_frees, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&lab->large_live_bytes, (size_t)l->npages * PAGE_SIZE,
				  memory_order_relaxed);
	region_quarantine(lab, w, cell);
}

size_t large_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind)
{
	uint32_t cell;
	struct large *l = live_large(w, p, kind, &cell);
	if (!l)
		return SIZE_MAX;
	return lab->prot.canary ? l->size : (size_t)l->npages * PAGE_SIZE;
}

/* Open or close the pages of l's room so that it spans npages. */
static bool resize_pages(struct labyrinth *lab, struct wing *w, struct large *l, uint32_t cell,
			 size_t npages)
{
	size_t old = (size_t)l->npages * PAGE_SIZE;
	if (npages * PAGE_SIZE == old)
		return true;
	if (!wing_resize(&lab->maze, w, cell, (uint32_t)(l->first_page + npages)))
		return false;
	l->npages = (uint32_t)npages;
	atomic_fetch_add_explicit(&lab->large_live_bytes, npages * PAGE_SIZE - old,
				  memory_order_relaxed);
	lab_note_peak(lab);
	return true;
}

/*
 * Growth stays in place while it fits the room; a block that shrinks below
 * a quarter of its room moves, so that small blocks do not hold big cells.
 *
 * While its pages, record and canary change, the block carries the resize
 * mark (V_RETIRED, which a large block otherwise never takes): a fork from
 * another thread then leaves its child no owned block whose canary
 * disagrees with its record (the child's sweep took one for damage, about
 * one child in a hundred whose parent's threads resized large blocks), and
 * a free that races the resize is refused. The mark goes with a new
 * version word, so the canary is written afresh for it.
 */
enum resize large_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size)
{
	uint32_t cell;
	struct large *l = live_large(w, p, ERR_INVALID_REALLOC, &cell);
	if (!l)
		return RESIZE_REFUSED;
	size_t room_pages = w->room_bytes / PAGE_SIZE;
	size_t npages = pages_for(size);
	if (size <= SMALL_MAX || size > lab->max_alloc ||
	    l->first_page + npages > room_pages || npages * 4 <= room_pages)
		return RESIZE_MOVE;
	size_t old_size = l->size, old_end = (size_t)l->npages * PAGE_SIZE;
	annotate_open(p, old_end);
	uint64_t v = version_read(&l->version);
	if (v_state(v) != V_OWNED) {    /* freed (or marked) since live_large() looked */
		report_failed_release(ERR_INVALID_REALLOC, p, w->class_size, v_gen(v));
		return RESIZE_REFUSED;
	}
	tail_canary_check(lab, w, l, p, v, v_gen(v));
	uint64_t marked = v_next(v, V_RETIRED, v_owner(v)), next = v_next(marked, V_OWNED, v_owner(v));
	if (!version_publish(&l->version, v, marked)) {
		report_failed_release(ERR_INVALID_REALLOC, p, w->class_size,
				      v_gen(version_read(&l->version)));
		return RESIZE_REFUSED;
	}
	bool stays = resize_pages(lab, w, l, cell, npages);
	if (stays) {
		l->size = size;
		annotate_open(p, (size_t)l->npages * PAGE_SIZE);      /* pages it gained */
		if (size > old_size)    /* the old canary (pages gained are fresh) */
			memset(p + old_size, 0, (size < old_end ? size : old_end) - old_size);
	}
	tail_canary_write(lab, l, p, next);
	if (!version_publish(&l->version, marked, next))
		report_fatal("heap corruption: a large block changed while it was resized");
	if (!stays) {
		annotate_noaccess(p + old_size, old_end - old_size);
		return RESIZE_MOVE;
	}
	annotate_resize(p, old_size, size, (size_t)l->npages * PAGE_SIZE);
	return RESIZE_STAYS;
}

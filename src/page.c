/*
 * page: blocks of 2^order pages for the page API. Each order has a wing of
 * its own (cells of one block and one guard page, placed at random like any
 * room) and a reserve of ready blocks. Ownership is the block's version
 * word: owned with owner tag 0 (any thread may free it) or with the tag of
 * the one thread that may (LAB_GFP_EXCLUSIVE). Every freed block is zeroed
 * before it can be handed out again, and the reserve checks it on reuse.
 *
 * The atomic path is reserve_pop, one compare-and-swap on the version, and
 * relaxed counters: no lock, no system call, nothing that can wait.
 */
#include "page.h"
#include "canary.h"
#include "generation.h"
#include "os.h"
#include "report.h"
#include "reserve.h"
#include "version.h"

#include <errno.h>
#include <string.h>

/* ---- thread tags ------------------------------------------------------ */

static _Atomic uint32_t next_tag;
static __thread uint32_t my_tag __attribute__((tls_model("initial-exec")));

/* Drawn at a thread's first use, without a system call (signal-safe).
 * Tags are V_OWNER_BITS wide: they repeat after 4 million threads. */
uint32_t page_thread_tag(void)
{
	uint32_t t = my_tag;
	if (__builtin_expect(t == 0, 0)) {
		do
			t = (atomic_fetch_add_explicit(&next_tag, 1, memory_order_relaxed) + 1) &
			    ((1u << V_OWNER_BITS) - 1);
		while (t == 0);
		my_tag = t;
	}
	return t;
}

/* ---- wings and lookup ------------------------------------------------- */

void page_specs(struct wing_spec *out)
{
	for (unsigned k = 0; k < PAGE_ORDERS; k++) {
		out[k].room_bytes = PAGE_SIZE << k;
		out[k].class_size = PAGE_SIZE << k;
		out[k].record_bytes = sizeof(struct page_rec);
		out[k].joinable = false;
	}
}

static struct wing *page_wing(struct labyrinth *lab, unsigned order)
{
	return &lab->maze.wings[lab->page_wing0 + order];
}

static unsigned order_of(struct labyrinth *lab, const struct wing *w)
{
	return wing_index(lab, w) - lab->page_wing0;
}

uint32_t page_find(struct labyrinth *lab, const void *p, struct wing **wp, const char **why)
{
	struct wing *w = maze_wing_of(&lab->maze, p);
	*wp = w;
	if (!w) {
		*why = lab_other_holds(lab, p) ? "of another labyrinth" : "not in the heap";
		return CELL_NONE;
	}
	size_t off = 0;
	uint32_t cell = wing_is_page(lab, w) ? wing_cell_of(w, p, &off) : CELL_NONE;
	if (!wing_is_page(lab, w))
		*why = "not a page";
	else if (cell == CELL_NONE || off >= w->room_bytes)
		*why = "never allocated";
	else if (off)
		*why = "not the start of a page";
	else
		return cell;
	return CELL_NONE;
}

void page_report(int kind, const void *p, const struct wing *w, const char *why, uint64_t gen)
{
	struct error_site site = {
		.addr = p, .why = why, .class_size = w ? w->class_size : 0,
		.version = gen, .has_version = gen != 0,
	};
	report_heap_error(kind, &site);
}

/* ---- taking blocks ---------------------------------------------------- */

/* Touch every page now, so the atomic path never takes a page fault. */
static bool fault_in(struct labyrinth *lab, char *p, size_t bytes)
{
	for (size_t i = 0; i < bytes; i += PAGE_SIZE)
		((volatile char *)p)[i] = 0;
	return !lab->mlock || os_lock(p, bytes);
}

static uint32_t place_block(struct labyrinth *lab, unsigned order)
{
	struct wing *w = page_wing(lab, order);
	uint32_t cell = wing_place(&lab->maze, w, 1u << order, PAGE_SIZE, NULL);
	if (cell == CELL_NONE)
		return cell;
	page_rec_of(w, cell)->from_reserve = 0;
	/* Drawn here: a pool's labyrinth_malloc takes no lock. */
	if (lab->pool)
		page_rec_of(w, cell)->key = lab_key_new(lab);
	return cell;
}

static void raise_target(struct reserve *r, uint64_t n)
{
	uint64_t t = atomic_load_explicit(&r->target, memory_order_relaxed);
	while (t < n && !atomic_compare_exchange_weak_explicit(&r->target, &t, n,
							       memory_order_relaxed,
							       memory_order_relaxed))
		;
}

/* Ordinary context: place, fault and push blocks until the reserve holds n. */
size_t page_fill(struct labyrinth *lab, unsigned order, size_t n)
{
	struct reserve *r = &lab->reserves[order];
	struct wing *w = page_wing(lab, order);
	raise_target(r, n);
	while (reserve_count(r) < n) {
		uint32_t cell = place_block(lab, order);
		if (cell == CELL_NONE)
			break;
		if (!fault_in(lab, cell_addr(w, cell), w->room_bytes)) {
			wing_retire(&lab->maze, w, cell);
			break;
		}
		page_rec_of(w, cell)->from_reserve = 1;
		reserve_push(w, r, cell);
	}
	return reserve_count(r);
}

static uint64_t low_mark(struct reserve *r)
{
	uint64_t low = atomic_load_explicit(&r->low, memory_order_relaxed);
	return low ? low : atomic_load_explicit(&r->target, memory_order_relaxed) / 2;
}

/* The slow path: refill a reserve that fell below its mark, then place. */
static uint32_t take_ordinary(struct labyrinth *lab, unsigned order)
{
	struct reserve *r = &lab->reserves[order];
	uint64_t target = atomic_load_explicit(&r->target, memory_order_relaxed);
	if (target && reserve_count(r) < low_mark(r))
		page_fill(lab, order, target);
	uint32_t cell = place_block(lab, order);
	/* At the cap or out of memory: the reserve is better than failing. */
	return cell != CELL_NONE ? cell : reserve_pop(page_wing(lab, order), r);
}

static uint32_t take_block(struct labyrinth *lab, unsigned order, lab_gfp_t flags)
{
	struct reserve *r = &lab->reserves[order];
	if (!(flags & LAB_GFP_ATOMIC) && !lab->pool)
		return take_ordinary(lab, order);
	uint32_t cell = reserve_pop(page_wing(lab, order), r);
	/* A pool's budget is fixed: with the reserve dry, what its quarantine
	 * holds is handed out, the oldest first, rather than nothing. */
	if (cell == CELL_NONE && lab->pool && order == 0)
		cell = pool_quarantine_take(&lab->pool_quarantine);
	if (__builtin_expect(cell == CELL_NONE, 0))
		atomic_fetch_add_explicit(&r->empty, 1, memory_order_relaxed);
	return cell;
}

/* The block's key and the key of the generation that handed it out. */
static uint64_t pool_pattern(const struct page_rec *rec, const char *p, uint64_t v)
{
	return canary_pattern(rec->key ^ gen_keys[rec->gen_tag], p, v);
}

/*
 * Make a taken block the caller's: its version goes from free to owned,
 * once the block is checked and a pool's labyrinth_malloc block has its
 * canary, so that a fork from another thread never leaves the child an
 * owned block with half a canary (its sweep would take it for damage).
 */
static char *claim(struct labyrinth *lab, struct wing *w, uint32_t cell, uint32_t owner,
		   unsigned kind, uint64_t *version)
{
	struct page_rec *rec = page_rec_of(w, cell);
	rec->kind = (uint8_t)kind;
	uint64_t old, v = version_claim_next(&rec->version, owner, &old);
	if (!v)
		report_fatal("heap corruption: a free page was owned");
	char *p = cell_addr(w, cell);
	if (rec->from_reserve && lab->prot.uaf_check)
		zero_check(p, w->room_bytes, v_gen(v));
	if (kind == PAGE_MALLOC && lab->prot.canary)
		canary_write(p, rec->size, w->room_bytes, pool_pattern(rec, p, v));
	if (!version_publish(&rec->version, old, v))
		report_fatal("heap corruption: a free page was owned");
	atomic_fetch_add_explicit(&lab->page_allocs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lab->page_live_bytes, w->room_bytes, memory_order_relaxed);
	if (version)
		*version = v;
	return p;
}

void *page_alloc(struct labyrinth *lab, unsigned order, lab_gfp_t flags, uint64_t *version)
{
	uint32_t cell = take_block(lab, order, flags);
	if (cell == CELL_NONE) {
		if (flags & LAB_GFP_NOFAIL)
			report_fatal("the labyrinth has no exit: page allocation failed, out of memory");
		return NULL;
	}
	uint32_t owner = flags & LAB_GFP_EXCLUSIVE ? page_thread_tag() : 0;
	return claim(lab, page_wing(lab, order), cell, owner, PAGE_API, version);
}

/* ---- giving blocks back ----------------------------------------------- */

/*
 * Move the block's version from owned to free for the calling thread: one
 * compare-and-swap, retried only if a give raced with it. `expect` is a
 * handle's version (0: none). False after a report.
 */
static bool disown(struct wing *w, void *p, struct page_rec *rec, uint64_t expect,
		   unsigned kind, int err, uint64_t *owned)
{
	uint64_t v = version_read(&rec->version);
	for (;;) {
		if (expect && v != expect) {
			page_report(ERR_STALE_HANDLE, p, w, v_state(v) == V_OWNED
				    ? "reallocated or given since" : "freed since", v_gen(expect));
			return false;
		}
		if (v_state(v) != V_OWNED) {
			report_failed_release(err, p, w->class_size, v_gen(v));
			return false;
		}
		if (rec->kind != kind) {
			page_report(err, p, w, kind == PAGE_API ? "a labyrinth_malloc block"
				    : "a page of the page API", v_gen(v));
			return false;
		}
		if (v_owner(v) && v_owner(v) != page_thread_tag()) {
			page_report(ERR_INVALID_PAGE_FREE, p, w, "exclusive page of another thread",
				    v_gen(v));
			return false;
		}
		if (atomic_compare_exchange_weak_explicit(&rec->version, &v,
							  v_next(v, V_FREE, 0),
							  memory_order_acq_rel, memory_order_acquire)) {
			*owned = v;
			return true;
		}
	}
}

/* A freed block goes back to the reserve (zeroed) if it came from there or
 * the reserve is short, else back to the maze; a pool's, through its
 * quarantine (zeroed first: a write while it waits shows at reuse). */
static void put_block(struct labyrinth *lab, struct wing *w, uint32_t cell, char *p)
{
	struct page_rec *rec = page_rec_of(w, cell);
	struct reserve *r = &lab->reserves[order_of(lab, w)];
	atomic_fetch_add_explicit(&lab->page_frees, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&lab->page_live_bytes, w->room_bytes, memory_order_relaxed);
	if (!rec->from_reserve && !reserve_takes_back(r)) {
		wing_retire(&lab->maze, w, cell);       /* closing drops the contents */
		return;
	}
	memset(p, 0, w->room_bytes);
	rec->from_reserve = 1;
	if (lab->pool && r == &lab->reserves[0])
		cell = pool_quarantine_push(&lab->pool_quarantine, cell, generation_page()->key);
	if (cell != CELL_NONE)
		reserve_push(w, r, cell);
}

void page_free(struct labyrinth *lab, void *p, uint64_t expect)
{
	struct wing *w;
	const char *why = NULL;
	uint32_t cell = page_find(lab, p, &w, &why);
	if (cell == CELL_NONE) {
		page_report(expect ? ERR_STALE_HANDLE : ERR_INVALID_PAGE_FREE, p, w, why, 0);
		return;
	}
	uint64_t owned;
	if (disown(w, p, page_rec_of(w, cell), expect, PAGE_API, ERR_INVALID_FREE, &owned))
		put_block(lab, w, cell, p);
}

/* ---- a prefaulted labyrinth's labyrinth_malloc ------------------------ */

void *page_malloc(struct labyrinth *lab, size_t size)
{
	size_t need = size + lab->prot.canary;
	unsigned order = 0;
	while ((PAGE_SIZE << order) < need)
		if (++order == PAGE_ORDERS)
			return NULL;
	uint32_t cell = take_block(lab, order, LAB_GFP_ATOMIC);
	if (cell == CELL_NONE)
		return NULL;
	struct wing *w = page_wing(lab, order);
	struct page_rec *rec = page_rec_of(w, cell);
	rec->size = (uint32_t)size;
	rec->gen_tag = (uint8_t)(generation_page()->tag_bits >> GEN_TAG_SHIFT);
	return claim(lab, w, cell, 0, PAGE_MALLOC, NULL);
}

/* p as a live labyrinth_malloc block of a pool, or NULL after a report. */
static struct page_rec *malloc_block(struct labyrinth *lab, struct wing *w, const void *p,
				     int kind, uint32_t *cellp)
{
	size_t off = 0;
	uint32_t cell = wing_cell_of(w, p, &off);
	const char *why = !lab->pool ? "a page of the page API"
			  : cell == CELL_NONE || off >= w->room_bytes ? "never allocated"
			  : off ? "not the start of an allocation" : NULL;
	if (why) {
		page_report(kind, p, w, why, 0);
		return NULL;
	}
	*cellp = cell;
	return page_rec_of(w, cell);
}

void page_malloc_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect)
{
	uint32_t cell;
	struct page_rec *rec = malloc_block(lab, w, p, kind, &cell);
	uint64_t owned;
	if (!rec || !disown(w, p, rec, 0, PAGE_MALLOC, kind, &owned))
		return;
	report_wrong_size_if(p, expect, rec->size, w->class_size);
	if (lab->prot.canary)
		canary_check(p, rec->size, w->room_bytes, pool_pattern(rec, p, owned),
			     w->class_size, v_gen(owned) + 1);
	put_block(lab, w, cell, p);
}

size_t page_malloc_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind)
{
	uint32_t cell;
	struct page_rec *rec = malloc_block(lab, w, p, kind, &cell);
	if (!rec)
		return SIZE_MAX;
	uint64_t v = version_read(&rec->version);
	if (v_state(v) != V_OWNED || rec->kind != PAGE_MALLOC) {
		report_failed_release(kind, p, w->class_size, v_gen(v));
		return SIZE_MAX;
	}
	return lab->prot.canary ? rec->size : w->room_bytes;
}

/* ---- counters and opening ------------------------------------------- */

uint64_t page_reserve_total(struct labyrinth *lab)
{
	uint64_t pages = 0;
	for (unsigned k = 0; k < PAGE_ORDERS; k++)
		pages += reserve_count(&lab->reserves[k]) << k;
	return pages + (lab->pool ? pool_quarantine_held(&lab->pool_quarantine) : 0);
}

uint64_t page_reserve_empty(struct labyrinth *lab)
{
	uint64_t n = 0;
	for (unsigned k = 0; k < PAGE_ORDERS; k++)
		n += atomic_load_explicit(&lab->reserves[k].empty, memory_order_relaxed);
	return n;
}

size_t page_set_low(struct labyrinth *lab, unsigned order, size_t low)
{
	return atomic_exchange_explicit(&lab->reserves[order].low, low, memory_order_relaxed);
}

/*
 * A pool's quarantine holds a quarter of its pages, at most the slot
 * quarantine's length (LABYRINTH_QUARANTINE) and 256: a program that keeps
 * three quarters of its pool live still gets the whole delay.
 */
static void pool_quarantine_open(struct labyrinth *lab, size_t pages)
{
	size_t n = pages / 4;
	if (n > lab->prot.quarantine)
		n = lab->prot.quarantine;
	uint64_t k0 = lab_key_new(lab), k1 = lab_key_new(lab);
	pool_quarantine_init(&lab->pool_quarantine, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX),
			     k0, k1);
}

bool page_open_reserve(struct labyrinth *lab, size_t pages, size_t low)
{
	page_set_low(lab, 0, low);
	if (!pages)
		return true;
	size_t filled = page_fill(lab, 0, pages);
	if (lab->pool)
		pool_quarantine_open(lab, filled);
	return filled >= pages;
}

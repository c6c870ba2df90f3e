/*
 * guarded: Electric Fence without running out of mappings.
 *
 * A guarded block gets a run of pages of its own in a reservation beside the
 * maze. Its end is placed against the guard page that follows the run, as
 * tightly as its alignment allows (an 8-byte request is 8-aligned and ends
 * exactly at the guard; a 13-byte one is 16-aligned and leaves 3 slack
 * bytes), so a linear overflow of one byte faults or, in the slack, is
 * caught by the canary. The bytes of the run before the block and any slack
 * after it hold the keyed canary, checked at free and by the sweep.
 *
 * Runs are placed by a cursor that only moves forward through the region and
 * wraps around at its end, so a freed run's address is not handed out again
 * until the cursor has been once around (256 GiB of address space). Freed
 * runs become guard pages again at once. The ring is guarded_ring.c's:
 * there, the records and page tables of what the cursor left far behind go
 * back to the kernel, so that a process's memory does not grow with every
 * block it samples.
 *
 * With guard markers a guard is a page-table entry, not a mapping: the whole
 * region is one mapping however many blocks are live. With mprotect guards
 * every run costs mappings, so the mode serves runs only within a budget of
 * the map count and hands the rest back to the ordinary allocator.
 */
#include "guarded.h"
#include "guarded_ring.h"
#include "aslr.h"
#include "annotate.h"
#include "canary.h"
#include "config.h"
#include "fault.h"
#include "os.h"
#include "report.h"
#include "version.h"

#include <pthread.h>
#include <string.h>

/* ---- opening the region --------------------------------------------- */

static bool index_map(struct guarded *g)
{
	size_t bits = GUARDED_PAGES / 8;
	size_t recs = GUARDED_PAGES * sizeof(struct grec);
	size_t traces = (TRACE_SLOTS * sizeof(struct trace) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	g->index_bytes = bits + recs + traces + 4 * PAGE_SIZE;
	g->index = aslr_reserve_or_plain(&g->rng, g->index_bytes, PAGE_SIZE, false);
	if (!g->index)
		return false;
	/* Guard pages around and between the bitmap, the records and the traces. */
	char *b = g->index + PAGE_SIZE, *r = b + bits + PAGE_SIZE, *t = r + recs + PAGE_SIZE;
	if (!os_protect_rw(b, bits) || !os_protect_rw(r, recs) || !os_protect_rw(t, traces))
		return false;
	g->taken = (uint64_t *)b;
	g->recs = (struct grec *)r;
	g->traces = (struct trace *)t;
	return true;
}

static bool region_map(struct guarded *g, enum guard_mode mode)
{
	/* Its blocks are heap memory: at a random place, like the maze. */
	g->span.base = aslr_reserve_or_plain(&g->rng, GUARDED_BYTES, PAGE_SIZE, false);
	if (!g->span.base)
		return false;
	g->span.bytes = GUARDED_BYTES;
	/* Markers: one read-write mapping whose pages are marked before use,
	 * made read-write only as they are (guarded_ring.c, ensure_marked). */
	g->markers = mode == GUARD_MARKERS;
	long maps = os_read_long_file("/proc/sys/vm/max_map_count", 65530);
	g->run_budget = (uint64_t)(maps > 0 ? maps : 65530) / 4;
	g->stretch_budget = (size_t)g->run_budget / 8;
	return true;
}

struct guarded *guarded_open(enum guard_mode mode)
{
	const struct config *c = config_get();
	if (!c->guard_all && !c->sample)
		return NULL;
	size_t self = (sizeof(struct guarded) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	char *mem = os_reserve(self + 2 * PAGE_SIZE);
	if (!mem || !os_protect_rw(mem + PAGE_SIZE, self)) {
		report_warning("LABYRINTH_GUARD_ALL", ": cannot reserve its region, off", NULL);
		return NULL;
	}
	struct guarded *g = (struct guarded *)(mem + PAGE_SIZE);
	rng_seed(&g->rng);
	if (!index_map(g) || !region_map(g, mode)) {
		report_warning("LABYRINTH_GUARD_ALL", ": cannot reserve its region, off", NULL);
		guarded_close(g);
		return NULL;
	}
	g->span.sample = c->guard_all ? 0 : c->sample;
	pthread_mutex_init(&g->lock, NULL);
	/* A random start in the first 1/64 of the region; the ring is [lo, end). */
	g->lo = 1 + rng_below64(&g->rng, GUARDED_PAGES / 64);
	g->cursor = g->marked = g->lo;
	atomic_store(&g->hiwater, g->lo);
	return g;
}

void guarded_close(struct guarded *g)
{
	if (!g)
		return;
	if (g->span.base)
		os_unmap(g->span.base, GUARDED_BYTES);
	if (g->index)
		os_unmap(g->index, g->index_bytes);
	size_t self = (sizeof(struct guarded) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	os_unmap((char *)g - PAGE_SIZE, self + 2 * PAGE_SIZE);
}

/* ---- sampling ------------------------------------------------------- */

__thread uint32_t guarded_countdown __attribute__((tls_model("initial-exec")));

/* About one call in N (g->span.sample) says yes, at random intervals
 * (mean N); a thread's first call draws its interval. N = 1 is every call,
 * the first too. guarded_take counts down inline; this is its end. */
static bool sample_now(struct guarded *g)
{
	unsigned n = g->span.sample;
	if (n == 1)
		return true;
	if (guarded_countdown > 1) {
		guarded_countdown--;
		return false;
	}
	bool first = guarded_countdown == 0;
	pthread_mutex_lock(&g->lock);
	guarded_countdown = 1 + rng_below(&g->rng, 2 * n - 1);
	pthread_mutex_unlock(&g->lock);
	return !first;
}

/* ---- blocks --------------------------------------------------------- */

/*
 * The alignment the C standard promises for a request of this size: an
 * object that fits in 8 bytes needs at most 8-byte alignment, a larger one
 * up to 16 (max_align_t). Tighter would end odd-sized structs exactly at
 * the guard, but programs put aligned headers in front of odd lengths.
 */
static size_t natural_align(size_t size)
{
	size_t a = 1;
	while (a < size && a < 16)
		a <<= 1;
	return a;
}

/* v: the run's version word while its block is live. */
static void canaries_write(struct grec *r, char *run, char *p, uint64_t v)
{
	size_t head = (size_t)(p - run);
	uint64_t pat = canary_pattern(r->key, run, v);
	canary_write(run, 0, head, pat);
	canary_write(run, head + r->size, (size_t)r->npages * PAGE_SIZE, pat);
}

/* The first damaged canary byte's offset from run, or NO_DAMAGE. Every
 * free reads up to a page of canary: a wide pass decides the common case,
 * intact, and only damage is looked for byte by byte. */
static size_t canaries_damage(const struct grec *r, const char *run, uint64_t v)
{
	size_t head = r->in_page, end = (size_t)r->npages * PAGE_SIZE;
	uint64_t pat = canary_pattern(r->key, run, v);
	if (canary_intact(run, 0, head, pat) && canary_intact(run, head + r->size, end, pat))
		return NO_DAMAGE;
	size_t bad = canary_damage(run, 0, head, pat);
	if (bad == NO_DAMAGE)
		bad = canary_damage(run, head + r->size, (size_t)r->npages * PAGE_SIZE, pat);
	return bad;
}

/*
 * The block ends at the run's end, its start rounded down to align (at most
 * a page), so the run is the block's span rounded up to align, in pages.
 * Under the lock, so the sweep never sees a run before its canaries.
 */
static uint64_t trace_tag(size_t at, uint64_t gen)
{
	return (uint64_t)at << 38 | (gen & ((1ULL << 38) - 1));
}

static struct trace *trace_of(const struct guarded *g, size_t at)
{
	return &g->traces[at % TRACE_SLOTS];
}

static void *block_alloc(struct guarded *g, size_t size, size_t align)
{
	struct stack st;
	stack_here(&st, 2);     /* block_alloc and guarded_take_drawn */
	size_t span = size ? size : 16;         /* malloc(0): 16 canary bytes */
	size_t bytes = (span + align - 1) & ~(align - 1);
	size_t npages = (bytes + PAGE_SIZE - 1) / PAGE_SIZE;
	pthread_mutex_lock(&g->lock);
	size_t at = ring_take(g, npages);
	if (at == NO_PAGE) {
		pthread_mutex_unlock(&g->lock);
		return NULL;
	}
	char *run = g->span.base + at * PAGE_SIZE;
	char *p = run + npages * PAGE_SIZE - bytes;
	struct grec *r = &g->recs[at];
	r->npages = (uint32_t)npages;
	r->in_page = (uint32_t)(p - run);
	r->size = size;
	rng_renew_if_stale(&g->rng);
	r->key = rng_u64(&g->rng);
	uint64_t seen;
	if (!version_claim(&r->version, 1, &seen))
		report_fatal("heap corruption: a placed guarded run was already owned");
	annotate_open(run, npages * PAGE_SIZE);
	canaries_write(r, run, p, version_read(&r->version));
	annotate_noaccess(run, r->in_page);
	annotate_alloc(p, size, bytes);
	struct trace *t = trace_of(g, at);
	atomic_store_explicit(&t->tag, 0, memory_order_relaxed);
	t->alloc = st;
	t->freed.n = 0;
	atomic_store_explicit(&t->tag, trace_tag(at, v_gen(version_read(&r->version))),
			      memory_order_release);
	pthread_mutex_unlock(&g->lock);
	atomic_fetch_add_explicit(&g->allocs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&g->live_bytes, npages * PAGE_SIZE, memory_order_relaxed);
	return p;
}

void *guarded_take_drawn(struct labyrinth *lab, size_t size, size_t align)
{
	struct guarded *g = lab->guarded;
	if (g->span.sample && !sample_now(g))
		return NULL;
	if (size > GUARDED_MAX || align > PAGE_SIZE)
		return NULL;
	if (align < natural_align(size))
		align = natural_align(size);
	void *p = block_alloc(g, size, align);
	if (p)
		lab_note_peak(lab);
	return p;
}

/* ---- finding a block from its pointer -------------------------------- */

/* p's record; NULL (after a report) unless p is the start of a block. */
static struct grec *block_of(struct guarded *g, const void *p, int kind)
{
	size_t off = (size_t)((const char *)p - g->span.base);
	size_t page = off / PAGE_SIZE;
	struct grec *r = page < atomic_load_explicit(&g->hiwater, memory_order_acquire) ? &g->recs[page] : NULL;
	uint64_t v = r ? version_read(&r->version) : 0;
	struct error_site site = {
		.addr = p, .version = v_gen(v), .has_version = v_gen(v) != 0,
	};
	if (v_gen(v) == 0)
		site.why = "never allocated";
	else if (off % PAGE_SIZE != r->in_page)
		site.why = "not the start of an allocation";
	if (site.why) {
		report_heap_error(kind, &site);
		return NULL;
	}
	return r;
}

static void check_canaries(const struct grec *r, const char *run, const void *p, uint64_t v,
			   uint64_t gen)
{
	size_t bad = canaries_damage(r, run, v);
	if (bad == NO_DAMAGE)
		return;
	/* The bytes before a guarded block are its own canary, not another
	 * block's end: damage there can only be this block's underflow. */
	struct error_site site = {
		.addr = p, .why = "canary changed", .version = gen, .has_version = 1,
		.allocated = r->size, .has_allocated = 1,
	};
	if (bad < r->in_page) {
		site.why = "canary changed ";
		site.before = r->in_page - bad;
		site.has_before = 1;
	} else {
		site.offset = bad - r->in_page;
		site.has_offset = 1;
	}
	report_heap_error(site.has_before ? ERR_UNDERFLOW : ERR_OVERFLOW, &site);
}

void guarded_free(struct labyrinth *lab, void *p, int kind, size_t expect)
{
	struct guarded *g = lab->guarded;
	struct grec *r = block_of(g, p, kind);
	if (!r)
		return;
	uint64_t seen;
	if (!version_release(&r->version, &seen)) {
		report_failed_release(kind, p, 0, v_gen(seen));
		return;
	}
	size_t at = (size_t)(r - g->recs);
	char *run = g->span.base + at * PAGE_SIZE;
	size_t n = r->npages;
	struct stack st;
	stack_here(&st, 1);
	/* The free's stack is kept before the checks, so that a report they
	 * make says where the block was freed: here. (Not reported under the
	 * lock: a handler of the abort that follows may allocate.) */
	pthread_mutex_lock(&g->lock);
	struct trace *t = trace_of(g, at);
	if (atomic_load_explicit(&t->tag, memory_order_relaxed) == trace_tag(at, v_gen(seen)))
		t->freed = st;
	pthread_mutex_unlock(&g->lock);
	annotate_open(run, n * PAGE_SIZE);
	report_wrong_size_if(p, expect, r->size, 0);
	check_canaries(r, run, p, seen, v_gen(seen) + 1);
	annotate_free(p, n * PAGE_SIZE - r->in_page);
	annotate_noaccess(run, r->in_page);
	/* Closed under the lock, so the sweep never reads a page as it closes. */
	pthread_mutex_lock(&g->lock);
	ring_give(g, at, n);
	pthread_mutex_unlock(&g->lock);
	atomic_fetch_add_explicit(&g->frees, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&g->live_bytes, n * PAGE_SIZE, memory_order_relaxed);
}

size_t guarded_usable(struct labyrinth *lab, const void *p, int kind)
{
	struct grec *r = block_of(lab->guarded, p, kind);
	if (!r)
		return SIZE_MAX;
	uint64_t v = version_read(&r->version);
	if (v_state(v) != V_OWNED) {
		report_failed_release(kind, p, 0, v_gen(v));
		return SIZE_MAX;
	}
	return r->size;
}

uint64_t guarded_generation(struct labyrinth *lab, const void *p)
{
	struct guarded *g = lab->guarded;
	size_t page = (size_t)((const char *)p - g->span.base) / PAGE_SIZE;
	return page < GUARDED_PAGES ? v_gen(version_read(&g->recs[page].version)) : 0;
}

/* ---- the sweep, the counters, fork ---------------------------------- */

/* Under the lock (blocks placed and freed under it are whole): one block. */
static bool sweep_one(const struct grec *r, char *run, uint64_t v)
{
	char *p = run + r->in_page, *end = run + (size_t)r->npages * PAGE_SIZE;
	annotate_open(run, r->in_page);
	annotate_open(p + r->size, (size_t)(end - p) - r->size);
	bool bad = canaries_damage(r, run, v) != NO_DAMAGE;
	if (bad)
		check_canaries(r, run, p, v, v_gen(v));
	annotate_noaccess(run, r->in_page);
	annotate_noaccess(p + r->size, (size_t)(end - p) - r->size);
	return bad;
}

size_t guarded_sweep(struct labyrinth *lab)
{
	struct guarded *g = lab->guarded;
	size_t damaged = 0;
	pthread_mutex_lock(&g->lock);
	size_t hi = atomic_load(&g->hiwater);
	for (size_t i = g->lo; i < hi; i++) {
		i = ring_first_taken(g, i, hi);
		if (i == NO_PAGE)
			break;
		struct grec *r = &g->recs[i];
		char *run = g->span.base + i * PAGE_SIZE;
		uint64_t v = version_read(&r->version);
		if (v_state(v) == V_OWNED && sweep_one(r, run, v))
			damaged++;
		i += r->npages;         /* the run's guard page follows */
	}
	pthread_mutex_unlock(&g->lock);
	return damaged;
}

void guarded_counts(struct labyrinth *lab, uint64_t *allocs, uint64_t *frees,
		    uint64_t *live_bytes)
{
	struct guarded *g = lab->guarded;
	*allocs = g ? atomic_load(&g->allocs) : 0;
	*frees = g ? atomic_load(&g->frees) : 0;
	*live_bytes = g ? atomic_load(&g->live_bytes) : 0;
}

void guarded_fork_child(struct guarded *g, struct rng *seed)
{
	if (!g)
		return;
	rng_derive(&g->rng, seed);
	guarded_countdown = 0;  /* the forking thread's next sample is drawn anew */
}

void guarded_lock(struct guarded *g)
{
	if (g)
		pthread_mutex_lock(&g->lock);
}

void guarded_unlock(struct guarded *g)
{
	if (g)
		pthread_mutex_unlock(&g->lock);
}

/* ---- explaining faults (fault.c, in a signal handler: no lock) ------- */

bool guarded_scene(const struct labyrinth *lab, const void *a, struct fault_scene *sc)
{
	const struct guarded *g = lab->guarded;
	if (!g)
		return false;
	if ((uintptr_t)a - (uintptr_t)g->index < g->index_bytes) {
		sc->metadata = "the guarded region's records";
		return true;
	}
	if (!guarded_has(lab, a))
		return false;
	size_t page = (size_t)((const char *)a - g->span.base) / PAGE_SIZE;
	size_t hi = atomic_load_explicit(&((struct guarded *)g)->hiwater, memory_order_acquire);
	/* A run covering the page or ending just before it starts at most a
	 * largest run and its guard below it; one just after it, one page on. */
	size_t from = page > GUARDED_MAX / PAGE_SIZE + 1 ? page - GUARDED_MAX / PAGE_SIZE - 1 : 0;
	for (size_t i = from < g->lo ? g->lo : from; i <= page + 1 && i < hi; i++) {
		const struct grec *r = &g->recs[i];
		uint64_t v = version_read((version_t *)&r->version);
		if (!v_gen(v) || i + r->npages + 1 < page)
			continue;
		struct heap_block b = {
			.start = (uintptr_t)g->span.base + i * PAGE_SIZE + r->in_page,
			.size = r->size, .span = (size_t)r->npages * PAGE_SIZE - r->in_page,
			.gen = v_gen(v), .live = v_state(v) == V_OWNED,
		};
		struct heap_block *slot = b.start <= (uintptr_t)a ? &sc->below : &sc->above;
		if (!slot->start || (slot == &sc->below ? b.start > slot->start : b.start < slot->start))
			*slot = b;
	}
	return true;
}

/* A stack of the block at start whose generation is gen. The block's
 * allocation bumped its generation once, its free once more. One at a
 * time: the caller may be on a small alternate stack. */
enum trace_state guarded_stack(const struct labyrinth *lab, uintptr_t start, uint64_t gen,
			       bool freed, struct stack *out)
{
	const struct guarded *g = lab->guarded;
	size_t at = (start - (uintptr_t)g->span.base) / PAGE_SIZE;
	const struct trace *t = trace_of(g, at);
	out->n = 0;
	uint64_t tag = atomic_load_explicit(&((struct trace *)t)->tag, memory_order_acquire);
	if (tag != trace_tag(at, gen) && tag != trace_tag(at, gen - 1))
		return TRACE_LOST;
	*out = freed ? t->freed : t->alloc;
	if (out->n > STACK_FRAMES)
		out->n = 0;
	/* A free keeps its stack as soon as it owns the block's release:
	 * none yet, the free is under way in another thread. */
	return freed && out->n == 0 ? TRACE_PENDING : TRACE_KEPT;
}

/*
 * guarded_ring: placing runs in the guarded region and giving back what
 * the cursor leaves behind; see guarded_ring.h.
 */
#include "guarded_ring.h"
#include "os.h"

static bool page_taken(const struct guarded *g, size_t i)
{
	return (g->taken[i / 64] >> (i % 64)) & 1;
}

static void mark_taken(struct guarded *g, size_t at, size_t n, bool taken)
{
	for (size_t i = at; i < at + n; i++) {
		uint64_t bit = 1ULL << (i % 64);
		if (taken)
			g->taken[i / 64] |= bit;
		else
			g->taken[i / 64] &= ~bit;
	}
}

/* Skips free words whole. */
size_t ring_first_taken(const struct guarded *g, size_t from, size_t to)
{
	for (size_t i = from; i < to;) {
		if (i % 64 == 0 && i + 64 <= to && g->taken[i / 64] == 0) {
			i += 64;
			continue;
		}
		if (page_taken(g, i))
			return i;
		i++;
	}
	return NO_PAGE;
}

/* First pass of the ring: pages become read-write and marked as guards at
 * once, before any run reaches them. Until then they stay PROT_NONE (the
 * region was read-write and unmarked ahead of the cursor: a stray write
 * there went unnoticed). */
static bool ensure_marked(struct guarded *g, size_t end)
{
	if (!g->markers)
		return true;
	while (g->marked < end) {
		size_t n = GUARDED_PAGES - g->marked < MARK_CHUNK_PAGES ? GUARDED_PAGES - g->marked
									 : MARK_CHUNK_PAGES;
		char *p = g->span.base + g->marked * PAGE_SIZE;
		if (!os_guard_install(p, n * PAGE_SIZE) || !os_protect_rw(p, n * PAGE_SIZE))
			return false;
		g->marked += n;
	}
	return true;
}

/* Pages in the ring [lo, end). */
static size_t ring_pages(const struct guarded *g)
{
	return GUARDED_PAGES - g->lo;
}

/*
 * Under the lock: a first page for a run of n pages with a free page before
 * and after it (its guards), from the cursor on, once around the ring at most.
 */
static size_t find_run(struct guarded *g, size_t n)
{
	size_t at = g->cursor + rng_below(&g->rng, 4), scanned = 0;
	while (scanned < ring_pages(g)) {
		if (at + n + 1 > GUARDED_PAGES) {
			scanned += GUARDED_PAGES - at;
			at = g->lo + 1;
			continue;
		}
		size_t bad = ring_first_taken(g, at - 1, at + n + 1);
		if (bad == NO_PAGE)
			return at;
		scanned += bad + 2 - at;
		at = bad + 2;
	}
	return NO_PAGE;
}

static bool run_open(struct guarded *g, size_t at, size_t n)
{
	char *p = g->span.base + at * PAGE_SIZE;
	if (g->markers) {
		os_guard_remove(p, n * PAGE_SIZE);
		return true;
	}
	if (g->live_runs >= g->run_budget || !os_protect_rw(p, n * PAGE_SIZE))
		return false;
	g->live_runs++;
	return true;
}

/* The run's pages become guards again; their contents go back to the kernel. */
static void run_close(struct guarded *g, size_t at, size_t n)
{
	char *p = g->span.base + at * PAGE_SIZE;
	if (g->markers && os_guard_install(p, n * PAGE_SIZE))
		return;
	if (!g->markers)
		g->live_runs--;
	if (!os_replace_none(p, n * PAGE_SIZE)) {
		os_discard(p, n * PAGE_SIZE);
		(void)os_protect_none(p, n * PAGE_SIZE);
	}
}

/* ---- giving back what the cursor left behind ------------------------ */

/* The page `back` pages before page `at`, round the ring. */
static size_t ring_back(const struct guarded *g, size_t at, size_t back)
{
	back %= ring_pages(g);
	return at - g->lo >= back ? at - back : at + ring_pages(g) - back;
}

/* How many pages page `at` lies behind the cursor, round the ring. */
static size_t behind_cursor(const struct guarded *g, size_t at)
{
	return g->cursor >= at ? g->cursor - at : g->cursor + ring_pages(g) - at;
}

/* Under the lock: whether every page of [first, end) was used, is more
 * than RECS_KEPT_PAGES behind the cursor round the ring, and is in no
 * live run. */
static bool idle_behind(const struct guarded *g, size_t first, size_t end)
{
	if (first < g->lo || end > atomic_load_explicit(&g->hiwater, memory_order_relaxed))
		return false;
	if ((g->cursor >= first && g->cursor < end) || behind_cursor(g, end - 1) <= RECS_KEPT_PAGES)
		return false;
	return ring_first_taken(g, first, end) == NO_PAGE;
}

/* Under the lock: the page of records k (RECS_PER_PAGE pages' records). */
static void recs_drop_if_idle(struct guarded *g, size_t k)
{
	size_t first = k * RECS_PER_PAGE;
	if (idle_behind(g, first, first + RECS_PER_PAGE))
		os_discard(&g->recs[first], PAGE_SIZE);
}

/* Chunks are aligned in the address space, not in the region. */
static size_t chunk_lead(const struct guarded *g)
{
	return (uintptr_t)g->span.base / PAGE_SIZE % CHUNK_PAGES;
}

static size_t chunk_of(const struct guarded *g, size_t page)
{
	return (page + chunk_lead(g)) / CHUNK_PAGES;
}

/* The first page of chunk c, which must not start before the region. */
static size_t chunk_first(const struct guarded *g, size_t c)
{
	return c * CHUNK_PAGES - chunk_lead(g);
}

static bool chunk_released(const struct guarded *g, size_t c)
{
	return c < GUARDED_CHUNKS && (g->released[c / 64] >> (c % 64)) & 1;
}

/* Released chunks beside chunk c: 0, 1 or 2. */
static unsigned chunk_near(const struct guarded *g, size_t c)
{
	return (c > 0 && chunk_released(g, c - 1)) + chunk_released(g, c + 1);
}

static void chunk_mark(struct guarded *g, size_t c, bool released)
{
	unsigned near = chunk_near(g, c);
	/* A stretch starts or ends, or two join. */
	if (released)
		g->released_stretches += near == 0 ? 1 : near == 2 ? (size_t)-1 : 0;
	else
		g->released_stretches += near == 0 ? (size_t)-1 : near == 2 ? 1 : 0;
	uint64_t bit = 1ULL << (c % 64);
	g->released[c / 64] = released ? g->released[c / 64] | bit : g->released[c / 64] & ~bit;
}

/* Under the lock: chunk c goes PROT_NONE, its page table freed. */
static void chunk_drop_if_idle(struct guarded *g, size_t c)
{
	if (chunk_released(g, c) || c * CHUNK_PAGES < chunk_lead(g))
		return;
	size_t first = chunk_first(g, c);
	if (!idle_behind(g, first, first + CHUNK_PAGES))
		return;
	if (g->markers && chunk_near(g, c) == 0 && g->released_stretches >= g->stretch_budget)
		return;
	if (os_replace_none(g->span.base + first * PAGE_SIZE, CHUNK_PAGES * PAGE_SIZE))
		chunk_mark(g, c, true);
}

/* Under the lock, before a run opens on pages [at, at + n): the chunks it
 * touches are the region's again (with markers: read-write and marked). */
static bool chunks_reopen(struct guarded *g, size_t at, size_t n)
{
	for (size_t c = chunk_of(g, at); c <= chunk_of(g, at + n - 1); c++) {
		if (!chunk_released(g, c))
			continue;
		char *p = g->span.base + chunk_first(g, c) * PAGE_SIZE;
		if (g->markers && (!os_protect_rw(p, CHUNK_PAGES * PAGE_SIZE) ||
				   !os_guard_install(p, CHUNK_PAGES * PAGE_SIZE)))
			return false;
		chunk_mark(g, c, false);
	}
	return true;
}

/* Under the lock, the cursor moved on from page `was`: the pages of
 * records that it left RECS_KEPT_PAGES behind on the way. */
static void recs_drop_passed(struct guarded *g, size_t was)
{
	size_t moved = behind_cursor(g, was);
	size_t at = ring_back(g, was, RECS_KEPT_PAGES);
	for (size_t i = 0; i <= moved / RECS_PER_PAGE + 1 && i <= ring_pages(g) / RECS_PER_PAGE; i++) {
		recs_drop_if_idle(g, at / RECS_PER_PAGE);
		chunk_drop_if_idle(g, chunk_of(g, at));
		at = ring_back(g, at, ring_pages(g) - RECS_PER_PAGE);  /* a page of records on */
	}
}

size_t ring_take(struct guarded *g, size_t n)
{
	size_t at = find_run(g, n);
	if (at == NO_PAGE || !ensure_marked(g, at + n + 1) || !chunks_reopen(g, at, n) ||
	    !run_open(g, at, n))
		return NO_PAGE;
	mark_taken(g, at, n, true);
	size_t was = g->cursor;
	g->cursor = at + n + 1;
	if (g->cursor > atomic_load_explicit(&g->hiwater, memory_order_relaxed))
		atomic_store_explicit(&g->hiwater, g->cursor, memory_order_release);
	recs_drop_passed(g, was);
	return at;
}

void ring_give(struct guarded *g, size_t at, size_t n)
{
	run_close(g, at, n);
	mark_taken(g, at, n, false);
	/* Every page of records and chunk the run covered: the cursor passed
	 * them while the run held them (a long run, a long-lived block). */
	for (size_t k = at / RECS_PER_PAGE; k <= (at + n - 1) / RECS_PER_PAGE; k++)
		recs_drop_if_idle(g, k);
	for (size_t c = chunk_of(g, at); c <= chunk_of(g, at + n - 1); c++)
		chunk_drop_if_idle(g, c);
}

/*
 * maze: reservation, wings, random room placement, guard pages, the index.
 *
 * The maze is PROT_NONE except where rooms are open. Two ways to open them:
 *  - markers (Linux 6.13+): rooms open inside lit spans (span.c), 2 MiB
 *    read-write pieces in which every page that is not part of an open room
 *    carries a guard marker. Markers live in the page tables, so they cost
 *    no mapping, and a span goes dark again when its last room closes, so
 *    the page tables follow the open rooms.
 *  - mprotect: free pages are PROT_NONE. Every open room is an island of
 *    read-write pages, and each island costs up to two mappings of the
 *    process's vm.max_map_count. Past a budget of islands, new rooms are
 *    joined to a live neighbour (the guard page between them is opened), so
 *    the maze loses spread instead of failing allocations.
 */
#include "maze.h"
#include "aslr.h"
#include "epoch.h"
#include "os.h"
#include "report.h"
#include "span.h"

#include <errno.h>
#include <string.h>

/* Islands of the mprotect mode, over every maze of the process. */
static _Atomic uint64_t islands;
static _Atomic uint64_t island_budget;          /* 0 until mprotect mode needs it */

/* Islands change by small steps; never let a stray decrement wrap the count. */
static void islands_add(int64_t delta)
{
	uint64_t v = atomic_load_explicit(&islands, memory_order_relaxed), next;
	do
		next = delta < 0 && v < (uint64_t)-delta ? 0 : v + (uint64_t)delta;
	while (!atomic_compare_exchange_weak_explicit(&islands, &v, next,
						      memory_order_relaxed, memory_order_relaxed));
}

static size_t round_page(size_t n)
{
	return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

static size_t round_up(size_t n, size_t unit)
{
	return (n + unit - 1) / unit * unit;
}

static void add_mapped(struct maze *m, int64_t delta)
{
	uint64_t now = atomic_fetch_add_explicit(&m->mapped_bytes, (uint64_t)delta,
						 memory_order_relaxed) + (uint64_t)delta;
	uint64_t peak = atomic_load_explicit(&m->peak_mapped, memory_order_relaxed);
	while (now > peak && !atomic_compare_exchange_weak_explicit(
			&m->peak_mapped, &peak, now, memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- guard pages ------------------------------------------------------ */

static bool markers_mode(struct maze *m)
{
	return atomic_load_explicit(&m->guard_mode, memory_order_relaxed) == GUARD_MARKERS;
}

/*
 * Set a cell's open pages, keeping count of the wing's open rooms and, in
 * markers mode, of the islands: a room that opens in a wing that is not lit
 * is one. A wing whose last room closes is no longer lit (its spans are
 * dark), so its next rooms are islands again.
 */
static void set_open(struct maze *m, struct wing *w, struct cell_hdr *h,
		     uint32_t first, uint32_t end)
{
	bool was = h->open_end > h->open_first, now = end > first;
	h->open_first = first;
	h->open_end = end;
	if (was == now)
		return;
	if (now) {
		w->open_rooms++;
		if (markers_mode(m) && !w->lit) {
			h->island = 1;
			islands_add(1);
		}
		return;
	}
	if (h->island) {
		h->island = 0;
		islands_add(-1);
	}
	if (--w->open_rooms == 0)
		w->lit = false;
}

/* Under w's lock, before the cell's record lists the pages as open. */
static bool pages_open(struct maze *m, struct wing *w, char *p, size_t bytes)
{
	if (markers_mode(m))
		return span_open(m, w, p, p + bytes);
	/* Pages of a span lit before the fall-back may still carry markers. */
	if (atomic_load_explicit(&m->markers_used, memory_order_relaxed))
		os_guard_remove(p, bytes);
	return os_protect_rw(p, bytes);
}

/*
 * Under w's lock, once the cell's record no longer lists the pages as open:
 * their contents go back to the kernel (span.c). Outside lit spans a fresh
 * PROT_NONE mapping replaces them, over the whole span when nothing else is
 * open in it: mprotect would leave the range tied to its old anon_vma,
 * unable to merge with its neighbours, the map count would stay high after
 * the heap shrinks, and the span's page-table page would stay.
 */
static void pages_close(struct maze *m, struct wing *w, char *p, size_t bytes)
{
	if (bytes)
		span_close(m, w, p, p + bytes);
}

/* ---- extents ---------------------------------------------------------- */

static uint32_t growth_target(const struct wing *w, uint32_t ext)
{
	uint64_t want = (uint64_t)ext * 2;
	uint64_t min_cells = (4UL << 20) / w->cell_bytes;       /* at least 4 MiB */
	if (want < min_cells)
		want = min_cells;
	if (want < 4)
		want = 4;
	return want > w->max_cells ? w->max_cells : (uint32_t)want;
}

/*
 * A wing's first placement draws its key from the maze's epoch stream and,
 * with it, the cell where its extent starts (at random in the wing's first
 * quarter, so that one wing's addresses say little about another's). Not at
 * start-up: keying all 230 wings cost every short process 70 µs of ChaCha.
 * Its generator is the next unused one: ls keys about 20 wings, scattered
 * over the class numbers, and a generator per wing at the wing's own place
 * made it write 9 pages of them instead of 3.
 */
static void wing_first_use(struct maze *m, struct wing *w)
{
	w->rng = &m->rngs[atomic_fetch_add_explicit(&m->rngs_used, 1, memory_order_relaxed)];
	epoch_key_locked(m, w);
	w->ext_lo = rng_below(w->rng, w->cells / 4 + 1);
	w->max_cells = w->cells - w->ext_lo;
}

/*
 * Grow the extent so that it is at most half full after one more room. Only
 * the index grows: the extent's pages stay PROT_NONE until rooms open.
 */
static bool extent_grow(struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	if ((uint64_t)(w->live_cells + 1) * 2 <= ext || ext == w->max_cells)
		return w->live_cells < ext;
	uint32_t next = growth_target(w, ext);
	if (!index_grow(w, next))
		return w->live_cells < ext;
	atomic_store_explicit(&w->ext_cells, next, memory_order_release);
	return true;
}

/* ---- placement -------------------------------------------------------- */

/* A uniformly random free cell: rejection sampling, since the extent is at most half full. */
static uint32_t pick_free_cell(struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (int tries = 0; tries < 64; tries++) {
		uint32_t c = rng_below(w->rng, ext);
		if (!cell_taken(w, c))
			return c;
	}
	uint32_t start = rng_below(w->rng, ext);
	for (uint32_t i = 0; i < ext; i++) {
		uint32_t c = (start + i) % ext;
		if (!cell_taken(w, c))
			return c;
	}
	return CELL_NONE;
}

static char *page_of(const struct wing *w, uint32_t cell, uint32_t page)
{
	return cell_addr(w, cell) + (size_t)page * PAGE_SIZE;
}

/* The first page of a cell at which a block aligned to align can start. */
static uint32_t aligned_first_page(const struct wing *w, uint32_t cell, size_t align)
{
	if (align <= PAGE_SIZE)
		return 0;
	uintptr_t start = (uintptr_t)cell_addr(w, cell);
	return (uint32_t)((align - start % align) % align / PAGE_SIZE);
}

/* Whether a room may join cell c - 1: c free, c - 1 an open room (never a
 * closed one held in a quarantine: it would reopen). */
static bool joinable(const struct wing *w, uint32_t c, uint32_t ext)
{
	return c > 0 && c < ext && !cell_taken(w, c) && cell_taken(w, c - 1) &&
	       cell_hdr(w, c - 1)->open_end > cell_hdr(w, c - 1)->open_first;
}

/*
 * A free cell right after an open room: the one after the last room
 * joined, else the first found from a random point. A heap past its
 * budget joins room after room; a search of the whole extent each time
 * made that quadratic (150,000 blocks of 20 KB: 27 s).
 */
static uint32_t pick_joinable_cell(struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	if (w->join_hint != CELL_NONE && joinable(w, w->join_hint + 1, ext))
		return w->join_hint + 1;
	uint32_t start = rng_below(w->rng, ext);
	for (uint32_t i = 0; i < ext; i++) {
		uint32_t c = (start + i) % ext;
		if (joinable(w, c, ext))
			return c;
	}
	return CELL_NONE;
}

/* Half the process's map count for the maze, each island costing two; read
 * only when needed (mprotect mode, or past 64 islands with markers), so a
 * small process never opens the file. */
static uint64_t island_limit(void)
{
	uint64_t b = atomic_load_explicit(&island_budget, memory_order_relaxed);
	if (!b) {
		long max = os_read_long_file("/proc/sys/vm/max_map_count", 65530);
		b = max > 64 ? (uint64_t)max / 4 : 16;
		atomic_store_explicit(&island_budget, b, memory_order_relaxed);
	}
	return b;
}

/* Markers mode: a process with few islands never reads the limit. */
static bool over_island_budget_lit(void)
{
	uint64_t n = atomic_load_explicit(&islands, memory_order_relaxed);
	return n >= 64 && n >= island_limit();
}

/*
 * mprotect mode: past the island budget a small room joins a live
 * neighbour, losing the guard page between them. A large block or page
 * block, whose guard pages are what make its overflow fault, joins only
 * past one and a half budgets (three quarters of the map count), keeping
 * the last quarter for the rest of the process.
 */
static bool should_join(struct maze *m, const struct wing *w)
{
	if (markers_mode(m))
		return false;
	uint64_t n = atomic_load_explicit(&islands, memory_order_relaxed), limit = island_limit();
	return n >= (w->joinable ? limit : limit / 2 * 3);
}

/* Open all of a live room (it is about to share an island with cell + 1). */
static bool open_fully(struct maze *m, struct wing *w, uint32_t cell)
{
	struct cell_hdr *h = cell_hdr(w, cell);
	uint32_t pages = (uint32_t)(w->room_bytes / PAGE_SIZE);
	if (h->open_first && !pages_open(m, w, page_of(w, cell, 0), (size_t)h->open_first * PAGE_SIZE))
		return false;
	add_mapped(m, (int64_t)h->open_first * (int64_t)PAGE_SIZE);
	h->open_first = 0;
	if (h->open_end < pages &&
	    !pages_open(m, w, page_of(w, cell, h->open_end), (size_t)(pages - h->open_end) * PAGE_SIZE))
		return false;
	add_mapped(m, (int64_t)(pages - h->open_end) * (int64_t)PAGE_SIZE);
	h->open_end = pages;
	return true;
}

static bool open_joined(struct maze *m, struct wing *w, uint32_t cell)
{
	if (!open_fully(m, w, cell - 1) ||
	    !pages_open(m, w, cell_addr(w, cell) - PAGE_SIZE, w->room_bytes + PAGE_SIZE))
		return false;
	struct cell_hdr *h = cell_hdr(w, cell);
	set_open(m, w, h, 0, (uint32_t)(w->room_bytes / PAGE_SIZE));
	h->joined_prev = 1;
	w->join_hint = cell;
	return true;
}

static bool open_alone(struct maze *m, struct wing *w, uint32_t cell, uint32_t first,
		       uint32_t pages)
{
	if (!pages_open(m, w, page_of(w, cell, first), (size_t)pages * PAGE_SIZE))
		return false;
	struct cell_hdr *h = cell_hdr(w, cell);
	h->joined_prev = 0;
	if (!markers_mode(m))
		islands_add(1);
	set_open(m, w, h, first, first + pages);
	return true;
}

/*
 * A wing's rooms are islands while they are few: no guard markers for fork
 * to copy, two mappings each. Past WING_ISLANDS_MAX of them, or when the
 * process's islands reach their budget, the wing lights its spans: its
 * rooms share mappings and their guards are markers.
 */
#define WING_ISLANDS_MAX 16

static void wing_go_lit(struct maze *m, struct wing *w)
{
	span_light_wing(m, w);
	if (!w->lit)
		return;
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (uint32_t c = cell_next_taken(w, 0, ext); c < ext; c = cell_next_taken(w, c + 1, ext)) {
		if (cell_hdr(w, c)->island) {
			cell_hdr(w, c)->island = 0;
			islands_add(-1);
		}
	}
}

static uint32_t place_once(struct maze *m, struct wing *w, uint32_t pages, size_t align)
{
	if (!extent_grow(w))
		return CELL_NONE;
	if (markers_mode(m) && !w->lit &&
	    (w->open_rooms >= WING_ISLANDS_MAX || over_island_budget_lit()))
		wing_go_lit(m, w);
	uint32_t cell = CELL_NONE;
	if (should_join(m, w)) {
		cell = pick_joinable_cell(w);
		if (cell != CELL_NONE && !open_joined(m, w, cell))
			cell = CELL_NONE;
	}
	if (cell == CELL_NONE) {
		cell = pick_free_cell(w);
		if (cell == CELL_NONE ||
		    !open_alone(m, w, cell, aligned_first_page(w, cell, align), pages))
			return CELL_NONE;
	}
	cell_mark(w, cell, true);
	w->live_cells++;
	return cell;
}

static uint32_t place_locked(struct maze *m, struct wing *w, uint32_t pages, size_t align)
{
	if (!w->max_cells)
		wing_first_use(m, w);   /* keyed now: the epoch has nothing to redraw */
	epoch_enter_locked(m, w);
	uint32_t cell = place_once(m, w, pages, align);
	if (cell == CELL_NONE && w->retired_count) {
		/* Never fail an allocation for the sake of spread: end this wing's
		 * epoch early, giving its retired cells back. */
		epoch_release_locked(m, w);
		cell = place_once(m, w, pages, align);
	}
	return cell;
}

/* A capped labyrinth counts bytes before it opens them, so no race passes the cap. */
static bool cap_admit(struct maze *m, size_t bytes)
{
	if (!m->cap_bytes)
		return true;
	uint64_t v = atomic_load_explicit(&m->mapped_bytes, memory_order_relaxed);
	do
		if (v + bytes > m->cap_bytes)
			return false;
	while (!atomic_compare_exchange_weak_explicit(&m->mapped_bytes, &v, v + bytes,
						      memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Bytes now open, less what cap_admit already counted. */
static void cap_settle(struct maze *m, int64_t open, size_t admitted)
{
	add_mapped(m, open - (m->cap_bytes ? (int64_t)admitted : 0));
}

uint32_t wing_place(struct maze *m, struct wing *w, uint32_t pages, size_t align,
		    uint32_t *first)
{
	size_t want = (size_t)pages * PAGE_SIZE;
	if (!cap_admit(m, want))
		return CELL_NONE;
	pthread_mutex_lock(&w->lock);
	uint32_t cell = place_locked(m, w, pages, align);
	pthread_mutex_unlock(&w->lock);
	if (cell == CELL_NONE) {
		cap_settle(m, 0, want);
		return CELL_NONE;
	}
	struct cell_hdr *h = cell_hdr(w, cell);
	cap_settle(m, (int64_t)(h->open_end - h->open_first) * (int64_t)PAGE_SIZE, want);
	atomic_fetch_add_explicit(&m->live_rooms, 1, memory_order_relaxed);
	epoch_count_placement(m);
	if (first)
		*first = aligned_first_page(w, cell, align);
	return cell;
}

static bool next_joined(const struct wing *w, uint32_t cell)
{
	uint32_t ext = atomic_load_explicit(&((struct wing *)w)->ext_cells, memory_order_relaxed);
	return cell + 1 < ext && cell_taken(w, cell + 1) && cell_hdr(w, cell + 1)->joined_prev;
}

/*
 * mprotect mode: closing a room inside a run of joined rooms splits its
 * island in two, two mappings more. Past seven eighths of the map count
 * (seven quarters of the island budget) a room there is left hollow
 * instead: its pages are emptied (they read as zero and hold no memory)
 * but stay read-write in their island, and its cell stays taken for the
 * life of the process. Splitting went on to the kernel's limit, where new
 * rooms could no longer open: 150,000 blocks of 20 KB, a third freed, then
 * 18,261 of 37,500 blocks of 40 KB refused. The loss: a freed block there
 * does not fault.
 */
static bool past_split_bound(void)
{
	return atomic_load_explicit(&islands, memory_order_relaxed) >= island_limit() / 4 * 7;
}

static bool leave_hollow(struct maze *m, struct wing *w, uint32_t cell)
{
	struct cell_hdr *h = cell_hdr(w, cell);
	if (markers_mode(m) || !h->joined_prev || !next_joined(w, cell) || !past_split_bound())
		return false;
	char *lo = page_of(w, cell, h->open_first);
	size_t bytes = (size_t)(h->open_end - h->open_first) * PAGE_SIZE;
	/* MADV_DONTNEED fails on locked pages (mlock, mlockall): the room stays
	 * read-write, so its bytes must not outlive the free. */
	if (!os_discard(lo, bytes))
		memset(lo, 0, bytes);
	h->hollow = 1;
	w->hollow_count++;
	return true;
}

/* Under w's lock: close the cell's pages and free the cell (or retire it
 * for the epoch); the bytes that were open. */
static size_t retire_locked(struct maze *m, struct wing *w, uint32_t cell)
{
	struct cell_hdr *h = cell_hdr(w, cell);
	char *lo = page_of(w, cell, h->open_first);
	char *hi = page_of(w, cell, h->open_end);
	size_t open = (size_t)(hi - lo);
	int joins = 0;
	if (h->joined_prev) {
		lo -= PAGE_SIZE;        /* give cell-1 its guard page back */
		joins++;
	}
	if (next_joined(w, cell)) {
		hi += PAGE_SIZE;        /* our guard page was lent to cell+1 */
		cell_hdr(w, cell + 1)->joined_prev = 0;
		joins++;
	}
	bool counted = h->island;       /* opened as an island in markers mode */
	set_open(m, w, h, 0, 0);
	h->joined_prev = 0;
	if (h->hollow) {
		h->hollow = 0;
		w->hollow_count--;
	}
	pages_close(m, w, lo, (size_t)(hi - lo));
	if (!markers_mode(m) && !counted)
		islands_add(joins - 1);
	if (!epoch_retire_locked(m, w, cell)) {
		cell_mark(w, cell, false);
		w->live_cells--;
	}
	return open;
}

/* Under w's lock, after cell was retired: hollow rooms it leaves at the
 * end of their run close too (no split), and the ones behind them. */
static size_t retire_hollow_beside(struct maze *m, struct wing *w, uint32_t cell)
{
	size_t open = 0;
	for (uint32_t c = cell; c > 0 && cell_hdr(w, c - 1)->hollow && !next_joined(w, c - 1); c--)
		open += retire_locked(m, w, c - 1);
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (uint32_t c = cell + 1; c < ext && cell_taken(w, c) && cell_hdr(w, c)->hollow &&
				    !cell_hdr(w, c)->joined_prev; c++)
		open += retire_locked(m, w, c);
	return open;
}

/* Close the hollow rooms, splitting their islands, while the map count
 * stays under the bound that made them (labyrinth_trim): a live room at the
 * end of a run would otherwise keep them open for as long as it lives. */
void maze_close_hollow(struct maze *m)
{
	for (unsigned i = 0; i < m->nwings; i++) {
		struct wing *w = &m->wings[i];
		if (!w->hollow_count)   /* read unlocked: a trim may miss one made meanwhile */
			continue;
		size_t open = 0;
		pthread_mutex_lock(&w->lock);
		uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
		for (uint32_t c = cell_next_taken(w, 0, ext);
		     c < ext && w->hollow_count && !past_split_bound();
		     c = cell_next_taken(w, c + 1, ext))
			if (cell_hdr(w, c)->hollow)
				open += retire_locked(m, w, c);
		pthread_mutex_unlock(&w->lock);
		add_mapped(m, -(int64_t)open);
	}
}

void wing_retire(struct maze *m, struct wing *w, uint32_t cell)
{
	size_t open = 0;
	pthread_mutex_lock(&w->lock);
	if (!leave_hollow(m, w, cell))
		open = retire_locked(m, w, cell) + retire_hollow_beside(m, w, cell);
	pthread_mutex_unlock(&w->lock);
	add_mapped(m, -(int64_t)open);
	atomic_fetch_sub_explicit(&m->live_rooms, 1, memory_order_relaxed);
}

bool wing_close(struct maze *m, struct wing *w, uint32_t cell)
{
	pthread_mutex_lock(&w->lock);
	struct cell_hdr *h = cell_hdr(w, cell);
	size_t open = (size_t)(h->open_end - h->open_first) * PAGE_SIZE;
	/* A joined room's pages belong to an island: only retiring undoes that. */
	bool joined = h->joined_prev || next_joined(w, cell);
	if (!joined) {
		char *lo = page_of(w, cell, h->open_first);
		set_open(m, w, h, h->open_first, h->open_first);
		pages_close(m, w, lo, open);
	}
	pthread_mutex_unlock(&w->lock);
	if (!joined)
		add_mapped(m, -(int64_t)open);
	return !joined;
}

bool wing_full(struct maze *m, struct wing *w)
{
	(void)m;
	pthread_mutex_lock(&w->lock);
	/* Retired cells come back when a placement finds no other. */
	bool full = w->max_cells && w->live_cells - w->retired_count >= w->max_cells;
	pthread_mutex_unlock(&w->lock);
	return full;
}

bool wing_resize(struct maze *m, struct wing *w, uint32_t cell, uint32_t end)
{
	bool ok = true;
	int64_t delta = 0;
	pthread_mutex_lock(&w->lock);
	struct cell_hdr *h = cell_hdr(w, cell);
	if (h->joined_prev || next_joined(w, cell)) {
		/* A joined room stays fully open: its pages are part of an island. */
		ok = (size_t)end * PAGE_SIZE <= w->room_bytes;
	} else if (end > h->open_end) {
		size_t add = (size_t)(end - h->open_end) * PAGE_SIZE;
		ok = cap_admit(m, add);
		if (ok && !pages_open(m, w, page_of(w, cell, h->open_end), add)) {
			cap_settle(m, 0, add);
			ok = false;
		}
		if (ok) {
			delta = (int64_t)add - (m->cap_bytes ? (int64_t)add : 0);
			set_open(m, w, h, h->open_first, end);
		}
	} else if (end < h->open_end) {
		size_t cut = (size_t)(h->open_end - end) * PAGE_SIZE;
		set_open(m, w, h, h->open_first, end);
		pages_close(m, w, page_of(w, cell, end), cut);
		delta = -(int64_t)cut;
	}
	pthread_mutex_unlock(&w->lock);
	if (delta)
		add_mapped(m, delta);
	return ok;
}

/* ---- reservation ------------------------------------------------------ */

static size_t wing_size(const struct wing_spec *s, size_t wing_bytes)
{
	size_t cell = s->room_bytes + PAGE_SIZE;
	return round_up(cell * 4 > wing_bytes ? cell * 4 : wing_bytes, wing_bytes);
}

static bool meta_map(struct maze *m, size_t bytes)
{
	m->meta_bytes = round_page(bytes) + 2 * PAGE_SIZE;
	char *p = os_reserve(m->meta_bytes);
	if (!p)
		return false;
	if (!os_protect_rw(p + PAGE_SIZE, m->meta_bytes - 2 * PAGE_SIZE)) {
		os_unmap(p, m->meta_bytes);
		return false;
	}
	m->meta = p;
	return true;
}

static void wing_setup(struct wing *w, const struct wing_spec *s, char *base, size_t bytes)
{
	w->base = base;
	w->bytes = bytes;
	w->room_bytes = s->room_bytes;
	w->cell_bytes = s->room_bytes + PAGE_SIZE;
	w->record_bytes = (s->record_bytes + sizeof(struct cell_hdr) + 7) & ~(size_t)7;
	w->class_size = s->class_size;
	w->joinable = s->joinable;
	size_t slots = s->class_size ? s->room_bytes / s->class_size : 0;
	w->room_slots = slots <= UINT16_MAX ? (uint16_t)slots : 0;
	w->cell_magic = div_magic((uint32_t)(w->cell_bytes / PAGE_SIZE));
	w->class_magic = s->class_size <= UINT32_MAX ? div_magic((uint32_t)s->class_size) : 0;
	size_t cells = bytes / w->cell_bytes;
	if (cells > UINT32_MAX / 2)
		cells = UINT32_MAX / 2;
	w->cells = (uint32_t)cells;     /* keyed and placed at first use */
	atomic_init(&w->ext_cells, 0);
	w->retired_head = CELL_NONE;
	w->join_hint = CELL_NONE;
	pthread_mutex_init(&w->lock, NULL);
}

/* The maze starts at a span boundary, so that no span crosses a wing: a
 * random one (aslr.c), else where mmap puts it, with a span of slack. */
static bool maze_map(struct maze *m, size_t total)
{
	m->reserved_bytes = total;
	m->reserved = aslr_reserve(&m->epoch_rng, total, SPAN_BYTES, false);
	if (!m->reserved && errno != ENOMEM) {
		m->reserved_bytes = total + SPAN_BYTES;
		m->reserved = os_reserve(m->reserved_bytes);
	}
	if (!m->reserved)
		return false;
	m->base = (char *)(((uintptr_t)m->reserved + SPAN_BYTES - 1) & ~(SPAN_BYTES - 1));
	m->bytes = total;
	return true;
}

bool maze_reserve(struct maze *m, const struct wing_spec *specs, unsigned n,
		  size_t wing_bytes, enum guard_mode mode, struct rng *seed)
{
	memset(m, 0, sizeof *m);
	rng_derive(&m->epoch_rng, seed);        /* first draws: where the maze and index go */
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t b = wing_size(&specs[i], wing_bytes);
		/* wing_cell_of() counts a wing's pages in 32 bits. */
		if (b / PAGE_SIZE > UINT32_MAX) {
			errno = ENOMEM;
			return false;
		}
		total += b;
	}
	size_t nslices = total / wing_bytes;
	size_t rngs_at = (n * sizeof(struct wing) + nslices * sizeof(uint16_t) + 63) & ~(size_t)63;
	if (!meta_map(m, rngs_at + n * sizeof(struct rng)))
		return false;
	if (!maze_map(m, total)) {
		maze_release(m);
		return false;
	}
	m->wings = (struct wing *)((char *)m->meta + PAGE_SIZE);
	m->slice_wing = (uint16_t *)(m->wings + n);
	m->rngs = (struct rng *)((char *)m->wings + rngs_at);
	m->slice_shift = (unsigned)__builtin_ctzl(wing_bytes);
	m->nwings = n;
	atomic_init(&m->guard_mode, mode);

	char *base = m->base;
	for (unsigned i = 0; i < n; i++) {
		size_t b = wing_size(&specs[i], wing_bytes);
		for (size_t s = 0; s < b / wing_bytes; s++)
			m->slice_wing[(size_t)(base - m->base) / wing_bytes + s] = (uint16_t)i;
		wing_setup(&m->wings[i], &specs[i], base, b);
		m->wings[i].index = i;
		base += b;
	}
	if (!index_open(m)) {
		maze_release(m);
		return false;
	}
	pthread_mutex_init(&m->epoch_lock, NULL);
	return true;
}

void maze_release(struct maze *m)
{
	if (m->reserved)
		os_unmap(m->reserved, m->reserved_bytes);
	if (m->index)
		os_unmap(m->index, m->index_bytes);
	if (m->meta)
		os_unmap(m->meta, m->meta_bytes);
	m->base = m->reserved = m->index = NULL;
	m->meta = NULL;
}

void maze_reseed(struct maze *m, struct rng *seed)
{
	rng_derive(&m->epoch_rng, seed);
	atomic_fetch_add_explicit(&m->reseeds, 1, memory_order_relaxed);
}

void maze_lock_all(struct maze *m)
{
	for (unsigned i = 0; i < m->nwings; i++)
		pthread_mutex_lock(&m->wings[i].lock);
	pthread_mutex_lock(&m->epoch_lock);
}

void maze_unlock_all(struct maze *m)
{
	pthread_mutex_unlock(&m->epoch_lock);
	for (unsigned i = 0; i < m->nwings; i++)
		pthread_mutex_unlock(&m->wings[i].lock);
}

/*
 * maze: reservation, wings, random room placement, guard pages, the index.
 *
 * Two ways to make a guard page:
 *  - markers (Linux 6.13+): the extent is one read-write mapping in which
 *    every page that is not part of an open room carries a guard marker.
 *    Markers live in the page tables, so they cost no mapping at all.
 *  - mprotect: free pages are PROT_NONE. Every open room is an island of
 *    read-write pages, and each island costs up to two mappings of the
 *    process's vm.max_map_count. Past a budget of islands, new rooms are
 *    joined to a live neighbour (the guard page between them is opened), so
 *    the maze loses spread instead of failing allocations.
 */
#include "maze.h"
#include "epoch.h"
#include "os.h"
#include "report.h"

#include <string.h>

/*
 * Wings whose cells are at most this big have their whole extent marked when
 * it grows (page tables cost 1/512 of it, about what the rooms need anyway);
 * larger cells guard their surroundings when a room is placed.
 */
#define EXTENT_MARK_MAX_CELL (256UL << 10)

/* Islands of the mprotect mode, over every maze of the process. */
static _Atomic uint64_t islands;
static uint64_t island_budget;

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

/* An old kernel, or an mlocked range, refuses markers: use mprotect from now on. */
static void fall_back_to_mprotect(struct maze *m)
{
	atomic_store(&m->guard_mode, GUARD_MPROTECT);
}

static bool pages_open(struct maze *m, char *p, size_t bytes)
{
	if (atomic_load_explicit(&m->guard_mode, memory_order_relaxed) == GUARD_MARKERS) {
		os_guard_remove(p, bytes);
		return true;
	}
	if (atomic_load_explicit(&m->markers_used, memory_order_relaxed))
		os_guard_remove(p, bytes);
	return os_protect_rw(p, bytes);
}

/*
 * Close pages: their contents go back to the kernel. In mprotect mode a fresh
 * PROT_NONE mapping replaces them: mprotect would leave the range tied to its
 * old anon_vma, unable to merge with its neighbours, and the map count would
 * stay high after the heap shrinks. If the kernel refuses (map count
 * exhausted) the pages stay readable zeros: a lost guard, never a failed free.
 */
static void pages_close(struct maze *m, char *p, size_t bytes)
{
	if (!bytes)
		return;
	if (atomic_load_explicit(&m->guard_mode, memory_order_relaxed) == GUARD_MARKERS) {
		if (os_guard_install(p, bytes))
			return;
		fall_back_to_mprotect(m);
	}
	if (os_replace_none(p, bytes))
		return;
	os_discard(p, bytes);
	(void)os_protect_none(p, bytes);
}

/* ---- the index -------------------------------------------------------- */

static bool index_cover(char *region, size_t *mapped, size_t need)
{
	need = round_page(need);
	if (need <= *mapped)
		return true;
	if (!os_protect_rw(region + *mapped, need - *mapped))
		return false;
	*mapped = need;
	return true;
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

/* Grow the extent so that it is at most half full after one more room. */
static bool extent_grow(struct maze *m, struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	if ((uint64_t)(w->live_cells + 1) * 2 <= ext || ext == w->max_cells)
		return w->live_cells < ext;
	uint32_t next = growth_target(w, ext);
	if (!index_cover((char *)w->cell_map, &w->map_mapped, (next + 63) / 64 * 8) ||
	    !index_cover(w->records, &w->rec_mapped, (size_t)next * w->record_bytes))
		return w->live_cells < ext;
	if (atomic_load(&m->guard_mode) == GUARD_MARKERS) {
		char *lo = cell_addr(w, ext), *hi = cell_addr(w, next);
		if (!os_protect_rw(lo, (size_t)(hi - lo)))
			return w->live_cells < ext;
		if (!w->extent_marked || os_guard_install(lo, (size_t)(hi - lo))) {
			atomic_store(&m->markers_used, true);
			w->extent_rw = true;
		} else {
			fall_back_to_mprotect(m);
			os_protect_none(lo, (size_t)(hi - lo));
		}
	}
	atomic_store_explicit(&w->ext_cells, next, memory_order_release);
	return true;
}

/* ---- placement -------------------------------------------------------- */

/* A uniformly random free cell: rejection sampling, since the extent is at most half full. */
static uint32_t pick_free_cell(struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	for (int tries = 0; tries < 64; tries++) {
		uint32_t c = rng_below(&w->rng, ext);
		if (!cell_taken(w, c))
			return c;
	}
	uint32_t start = rng_below(&w->rng, ext);
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

/* A free cell right after an open room, starting at a random point. */
static uint32_t pick_joinable_cell(struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	uint32_t start = rng_below(&w->rng, ext);
	for (uint32_t i = 0; i < ext; i++) {
		uint32_t c = (start + i) % ext;
		/* Never join a closed room held in a quarantine: it would reopen. */
		if (c > 0 && !cell_taken(w, c) && cell_taken(w, c - 1) &&
		    cell_hdr(w, c - 1)->open_end > cell_hdr(w, c - 1)->open_first)
			return c;
	}
	return CELL_NONE;
}

static bool over_island_budget(struct maze *m)
{
	return atomic_load(&m->guard_mode) == GUARD_MPROTECT &&
	       atomic_load_explicit(&islands, memory_order_relaxed) >= island_budget;
}

/*
 * Where a wing's extent was made read-write without marking it all (wings of
 * large cells: marking would build page tables for gigabytes nobody uses), a
 * room guards its own surroundings when placed: the pages of its cell it
 * does not open, and the guard page of the cell before it.
 */
static void guard_surroundings(struct maze *m, struct wing *w, uint32_t cell)
{
	if (w->extent_marked || !w->extent_rw)
		return;
	struct cell_hdr *h = cell_hdr(w, cell);
	uint32_t cell_pages = (uint32_t)(w->cell_bytes / PAGE_SIZE);
	if (h->open_first)
		pages_close(m, page_of(w, cell, 0), (size_t)h->open_first * PAGE_SIZE);
	pages_close(m, page_of(w, cell, h->open_end), (size_t)(cell_pages - h->open_end) * PAGE_SIZE);
	if (cell > 0)
		pages_close(m, cell_addr(w, cell) - PAGE_SIZE, PAGE_SIZE);
}

/* Open all of a live room (it is about to share an island with cell + 1). */
static bool open_fully(struct maze *m, struct wing *w, uint32_t cell)
{
	struct cell_hdr *h = cell_hdr(w, cell);
	uint32_t pages = (uint32_t)(w->room_bytes / PAGE_SIZE);
	if (h->open_first && !pages_open(m, page_of(w, cell, 0), (size_t)h->open_first * PAGE_SIZE))
		return false;
	add_mapped(m, (int64_t)h->open_first * (int64_t)PAGE_SIZE);
	h->open_first = 0;
	if (h->open_end < pages &&
	    !pages_open(m, page_of(w, cell, h->open_end), (size_t)(pages - h->open_end) * PAGE_SIZE))
		return false;
	add_mapped(m, (int64_t)(pages - h->open_end) * (int64_t)PAGE_SIZE);
	h->open_end = pages;
	return true;
}

static bool open_joined(struct maze *m, struct wing *w, uint32_t cell)
{
	if (!open_fully(m, w, cell - 1) ||
	    !pages_open(m, cell_addr(w, cell) - PAGE_SIZE, w->room_bytes + PAGE_SIZE))
		return false;
	struct cell_hdr *h = cell_hdr(w, cell);
	h->open_first = 0;
	h->open_end = (uint32_t)(w->room_bytes / PAGE_SIZE);
	h->joined_prev = 1;
	return true;
}

static bool open_alone(struct maze *m, struct wing *w, uint32_t cell, uint32_t first,
		       uint32_t pages)
{
	if (!pages_open(m, page_of(w, cell, first), (size_t)pages * PAGE_SIZE))
		return false;
	struct cell_hdr *h = cell_hdr(w, cell);
	h->open_first = first;
	h->open_end = first + pages;
	h->joined_prev = 0;
	if (atomic_load(&m->guard_mode) == GUARD_MPROTECT)
		islands_add(1);
	guard_surroundings(m, w, cell);
	return true;
}

static uint32_t place_once(struct maze *m, struct wing *w, uint32_t pages, size_t align)
{
	if (!extent_grow(m, w))
		return CELL_NONE;
	uint32_t cell = CELL_NONE;
	if (over_island_budget(m)) {
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

void wing_retire(struct maze *m, struct wing *w, uint32_t cell)
{
	pthread_mutex_lock(&w->lock);
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
	pages_close(m, lo, (size_t)(hi - lo));
	if (atomic_load(&m->guard_mode) == GUARD_MPROTECT)
		islands_add(joins - 1);
	h->open_first = h->open_end = 0;
	h->joined_prev = 0;
	if (!epoch_retire_locked(m, w, cell)) {
		cell_mark(w, cell, false);
		w->live_cells--;
	}
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
		pages_close(m, page_of(w, cell, h->open_first), open);
		h->open_end = h->open_first;
	}
	pthread_mutex_unlock(&w->lock);
	if (!joined)
		add_mapped(m, -(int64_t)open);
	return !joined;
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
		if (ok && !pages_open(m, page_of(w, cell, h->open_end), add)) {
			cap_settle(m, 0, add);
			ok = false;
		}
		if (ok) {
			delta = (int64_t)add - (m->cap_bytes ? (int64_t)add : 0);
			h->open_end = end;
		}
	} else if (end < h->open_end) {
		size_t cut = (size_t)(h->open_end - end) * PAGE_SIZE;
		pages_close(m, page_of(w, cell, end), cut);
		delta = -(int64_t)cut;
		h->open_end = end;
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

static size_t index_size(const struct wing_spec *s, size_t bytes)
{
	size_t cells = bytes / (s->room_bytes + PAGE_SIZE);
	size_t rec = s->record_bytes + sizeof(struct cell_hdr);
	rec = (rec + 7) & ~(size_t)7;
	/* bitmap, guard page, records, guard page */
	return round_page((cells + 63) / 64 * 8) + PAGE_SIZE +
	       round_page(cells * rec) + PAGE_SIZE;
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

static void wing_setup(struct wing *w, const struct wing_spec *s, char *base,
		       size_t bytes, char **index, struct rng *rng)
{
	w->base = base;
	w->bytes = bytes;
	w->room_bytes = s->room_bytes;
	w->cell_bytes = s->room_bytes + PAGE_SIZE;
	w->record_bytes = (s->record_bytes + sizeof(struct cell_hdr) + 7) & ~(size_t)7;
	w->class_size = s->class_size;
	size_t slots = s->class_size ? s->room_bytes / s->class_size : 0;
	w->room_slots = slots <= UINT16_MAX ? (uint16_t)slots : 0;
	w->cell_magic = div_magic((uint32_t)(w->cell_bytes / PAGE_SIZE));
	w->class_magic = s->class_size <= UINT32_MAX ? div_magic((uint32_t)s->class_size) : 0;
	w->extent_marked = w->cell_bytes <= EXTENT_MARK_MAX_CELL;
	size_t cells = bytes / w->cell_bytes;
	if (cells > UINT32_MAX / 2)
		cells = UINT32_MAX / 2;
	/* Start the extent at a random cell of the first quarter, so that
	 * knowing one wing's addresses says little about another's. */
	rng_derive(&w->rng, rng);
	w->ext_lo = rng_below(&w->rng, (uint32_t)(cells / 4) + 1);
	w->max_cells = (uint32_t)(cells - w->ext_lo);
	atomic_init(&w->ext_cells, 0);
	w->cell_map = (uint64_t *)*index;
	w->records = (char *)w->cell_map + round_page((cells + 63) / 64 * 8) + PAGE_SIZE;
	*index += index_size(s, bytes);
	w->retired_head = CELL_NONE;
	pthread_mutex_init(&w->lock, NULL);
}

static void set_island_budget(void)
{
	/* Half the process's map count for the maze; each island costs two. */
	long max = os_read_long_file("/proc/sys/vm/max_map_count", 65530);
	island_budget = max > 64 ? (uint64_t)max / 4 : 16;
}

bool maze_reserve(struct maze *m, const struct wing_spec *specs, unsigned n,
		  size_t wing_bytes, enum guard_mode mode)
{
	memset(m, 0, sizeof *m);
	size_t total = 0, index_total = PAGE_SIZE;
	for (unsigned i = 0; i < n; i++) {
		size_t b = wing_size(&specs[i], wing_bytes);
		total += b;
		index_total += index_size(&specs[i], b);
	}
	size_t nslices = total / wing_bytes;
	if (!meta_map(m, n * sizeof(struct wing) + nslices * sizeof(uint16_t)))
		return false;
	m->base = os_reserve(total);
	m->index = os_reserve(index_total);
	if (!m->base || !m->index) {
		maze_release(m);
		return false;
	}
	m->bytes = total;
	m->index_bytes = index_total;
	m->wings = (struct wing *)((char *)m->meta + PAGE_SIZE);
	m->slice_wing = (uint16_t *)(m->wings + n);
	m->slice_shift = (unsigned)__builtin_ctzl(wing_bytes);
	m->nwings = n;
	atomic_init(&m->guard_mode, mode);
	set_island_budget();

	struct rng rng;
	rng_seed(&rng);
	char *base = m->base, *index = m->index + PAGE_SIZE;
	for (unsigned i = 0; i < n; i++) {
		size_t b = wing_size(&specs[i], wing_bytes);
		for (size_t s = 0; s < b / wing_bytes; s++)
			m->slice_wing[(size_t)(base - m->base) / wing_bytes + s] = (uint16_t)i;
		wing_setup(&m->wings[i], &specs[i], base, b, &index, &rng);
		m->wings[i].index = i;
		base += b;
	}
	pthread_mutex_init(&m->epoch_lock, NULL);
	rng_derive(&m->epoch_rng, &rng);
	memset(&rng, 0, sizeof rng);
	return true;
}

void maze_release(struct maze *m)
{
	if (m->base)
		os_unmap(m->base, m->bytes);
	if (m->index)
		os_unmap(m->index, m->index_bytes);
	if (m->meta)
		os_unmap(m->meta, m->meta_bytes);
	m->base = m->index = NULL;
	m->meta = NULL;
}

void maze_reseed(struct maze *m)
{
	rng_seed(&m->epoch_rng);
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

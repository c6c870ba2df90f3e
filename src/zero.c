/*
 * zero: the zero region. A zero-size block owns no byte, so it needs no
 * page: its pointer names a 16-byte slot of a reservation that stays
 * PROT_NONE for the labyrinth's life, and any access through it faults
 * (hardened_malloc does the same). Only the slot's version word is real,
 * kept out of line in an index of its own, so free, realloc and
 * malloc_usable_size check it like any other block's: one swap from owned
 * to quarantined, and a double or invalid free is reported.
 *
 * Placement follows the maze's extents: a random start in the region's
 * first quarter, an extent of slots that doubles so it stays at most half
 * taken, a uniformly random free slot in it (rejection sampling), and a FIFO
 * quarantine of freed slots, so a freed pointer is neither predictable nor
 * handed out again soon. The index opens (mprotect) as the extent grows:
 * 8 bytes per slot of the extent, touched only where blocks were placed.
 *
 * Zero-size requests are rare and never hot: one lock, a leaf, guards the
 * placement and the quarantine. The free's swap is made before it.
 */
#include "zero.h"
#include "aslr.h"
#include "os.h"
#include "report.h"

#define SLOT_SHIFT 4                            /* malloc(0): 16 bytes apart */
#define EXTENT_MIN 4096                         /* slots */
#define QUARANTINE 1024                         /* freed slots held back, one page */
#define TRIES 32
#define ALIGNED_MIN 64          /* an aligned pick chooses among at least this many */
#define LANE_BIT 31             /* a ring entry: lane << 31 | slot */
#define NO_SLOT UINT64_MAX

void zero_init(struct zero_region *z, struct rng *seed)
{
	pthread_mutex_init(&z->lock, NULL);
	rng_derive(&z->rng, seed);
	for (unsigned i = 0; i < ZERO_LANES; i++) {
		z->lanes[i].shift = i == 0 ? SLOT_SHIFT : PAGE_SHIFT;
		z->lanes[i].nslots = (uint32_t)(1UL << (ZERO_LANE_SHIFT - z->lanes[i].shift));
	}
}

static size_t versions_bytes(const struct zero_lane *l)
{
	return (size_t)l->nslots * sizeof(version_t);
}

/* The quarantine ring, then each lane's versions, a guard page before each. */
static size_t index_bytes(const struct zero_region *z)
{
	size_t n = 2 * PAGE_SIZE + QUARANTINE * sizeof(uint32_t);
	for (unsigned i = 0; i < ZERO_LANES; i++)
		n += versions_bytes(&z->lanes[i]) + PAGE_SIZE;
	return n;
}

/* Both reservations, at the first zero-size request, at addresses of their
 * own draw, as the maze's: where mmap would put them, a leaked zero-size
 * pointer would say where the libraries are. The region is aligned to
 * ZERO_ALIGN_MAX (it has that much slack) so that an aligned block is a
 * multiple of slots. */
static bool zero_open(struct zero_region *z)
{
	char *mem = aslr_reserve_or_plain(&z->rng, ZERO_BYTES + ZERO_ALIGN_MAX, ZERO_ALIGN_MAX,
					  false);
	char *index = mem ? aslr_reserve_or_plain(&z->rng, index_bytes(z), PAGE_SIZE, false) : NULL;
	if (!index || !os_protect_rw(index + PAGE_SIZE, QUARANTINE * sizeof(uint32_t))) {
		if (index)
			os_unmap(index, index_bytes(z));
		if (mem)
			os_unmap(mem, ZERO_BYTES + ZERO_ALIGN_MAX);
		z->failed = true;
		report_warning("malloc(0)", ": cannot reserve the zero region", NULL);
		return false;
	}
	z->mem = mem;
	z->index = index;
	z->ring = (uint32_t *)(index + PAGE_SIZE);
	char *at = index + 2 * PAGE_SIZE + QUARANTINE * sizeof(uint32_t);
	for (unsigned i = 0; i < ZERO_LANES; i++) {
		struct zero_lane *l = &z->lanes[i];
		l->versions = (version_t *)at;
		at += versions_bytes(l) + PAGE_SIZE;
		/* A random start in the lane's first quarter, as a wing's extent. */
		l->lo = 1 + rng_below(&z->rng, l->nslots / 4);
		l->cells = EXTENT_MIN;
		atomic_store_explicit(&l->open_hi, l->lo, memory_order_relaxed);
	}
	uintptr_t base = ((uintptr_t)mem + ZERO_ALIGN_MAX - 1) & ~(ZERO_ALIGN_MAX - 1);
	atomic_store_explicit(&z->base, base, memory_order_release);
	return true;
}

void zero_close(struct zero_region *z)
{
	if (z->index)
		os_unmap(z->index, index_bytes(z));
	if (z->mem)
		os_unmap(z->mem, ZERO_BYTES + ZERO_ALIGN_MAX);
}

/* Make the version words of slots below hi read-write (the lock held). */
static bool index_open(struct zero_lane *l, uint64_t hi)
{
	uint32_t open = atomic_load_explicit(&l->open_hi, memory_order_relaxed);
	if (hi <= open)
		return true;
	uintptr_t v = (uintptr_t)l->versions;
	uintptr_t from = (v + (uint64_t)open * sizeof(version_t)) & ~(PAGE_SIZE - 1);
	uintptr_t to = (v + hi * sizeof(version_t) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	if (!os_protect_rw((void *)from, to - from))
		return false;
	/* Release: a free that sees the new bound sees the pages open. */
	atomic_store_explicit(&l->open_hi, (uint32_t)((to - v) / sizeof(version_t)),
			      memory_order_release);
	return true;
}

/* Double the extent; false when it already reaches the lane's end. */
static bool extent_grow(struct zero_lane *l)
{
	uint32_t room = l->nslots - l->lo;
	if (l->cells >= room)
		return false;
	l->cells = (uint64_t)l->cells * 2 < room ? l->cells * 2 : room;
	return true;
}

/* A free slot, uniformly at random among the multiples of step in the
 * extent (at least ALIGNED_MIN of them, so a large alignment still has a
 * choice), or NO_SLOT after TRIES taken ones. */
static uint64_t pick(struct zero_region *z, struct zero_lane *l, uint64_t step)
{
	uint64_t first = ((uint64_t)l->lo + step - 1) / step * step;
	uint64_t hi = (uint64_t)l->lo + l->cells;
	uint64_t n = hi > first ? (hi - first + step - 1) / step : 0;
	if (n < ALIGNED_MIN)
		n = ALIGNED_MIN;
	if (first >= l->nslots)
		return NO_SLOT;
	if (first + (n - 1) * step >= l->nslots)
		n = (l->nslots - 1 - first) / step + 1;
	if (!index_open(l, first + (n - 1) * step + 1))
		return NO_SLOT;
	for (int i = 0; i < TRIES; i++) {
		uint64_t s = first + (uint64_t)rng_below(&z->rng, (uint32_t)n) * step;
		if (v_state(version_read(&l->versions[s])) == V_FREE)
			return s;
	}
	return NO_SLOT;
}

static void *place(struct zero_region *z, unsigned lane, size_t align)
{
	struct zero_lane *l = &z->lanes[lane];
	uint64_t step = align >> l->shift ? align >> l->shift : 1;
	if ((uint64_t)(l->taken + 1) * 2 > l->cells)
		extent_grow(l);
	uint64_t s;
	while ((s = pick(z, l, step)) == NO_SLOT && extent_grow(l))
		;
	if (s == NO_SLOT)
		return NULL;
	/* Free to owned is ours alone: the lock is held, and a free only
	 * swaps owned words. */
	version_set(&l->versions[s], V_FREE, V_OWNED, 0);
	l->taken++;
	atomic_fetch_add_explicit(&z->allocs, 1, memory_order_relaxed);
	return (void *)(atomic_load_explicit(&z->base, memory_order_relaxed) +
			((uintptr_t)lane << ZERO_LANE_SHIFT) + (s << l->shift));
}

void *zero_alloc(struct zero_region *z, size_t align)
{
	if (align > ZERO_ALIGN_MAX)
		return NULL;
	void *p = NULL;
	pthread_mutex_lock(&z->lock);
	if (atomic_load_explicit(&z->base, memory_order_relaxed) || (!z->failed && zero_open(z)))
		p = place(z, align > (1u << SLOT_SHIFT), align);
	pthread_mutex_unlock(&z->lock);
	return p;
}

/* The lane and slot of p, if p is a slot start whose version word exists. */
static struct zero_lane *slot_number(struct zero_region *z, const void *p, uint64_t *s)
{
	uintptr_t off = (uintptr_t)p - atomic_load_explicit(&z->base, memory_order_relaxed);
	struct zero_lane *l = &z->lanes[off >> ZERO_LANE_SHIFT];
	off &= (1UL << ZERO_LANE_SHIFT) - 1;
	*s = off >> l->shift;
	bool ok = (off & ((1UL << l->shift) - 1)) == 0 && *s >= l->lo &&
		  *s < atomic_load_explicit(&l->open_hi, memory_order_acquire);
	return ok ? l : NULL;
}

/* Like slot_number, but a pointer that is no block is reported. */
static struct zero_lane *slot_of(struct zero_region *z, const void *p, int kind, uint64_t *s)
{
	struct zero_lane *l = slot_number(z, p, s);
	if (!l) {
		struct error_site site = { .addr = p, .why = "not a zero-size block" };
		report_heap_error(kind, &site);
	}
	return l;
}

/* The slot that falls off the FIFO becomes free (the lock held). */
static void quarantine_push(struct zero_region *z, uint32_t entry)
{
	if (z->ring_count < QUARANTINE) {
		z->ring[(z->ring_head + z->ring_count++) % QUARANTINE] = entry;
		return;
	}
	uint32_t out = z->ring[z->ring_head];
	z->ring[z->ring_head] = entry;
	z->ring_head = (z->ring_head + 1) % QUARANTINE;
	struct zero_lane *l = &z->lanes[out >> LANE_BIT];
	version_set(&l->versions[out & ~(1u << LANE_BIT)], V_QUARANTINED, V_FREE, 0);
	l->taken--;
}

void zero_free(struct zero_region *z, void *p, int kind, size_t expect)
{
	uint64_t s, seen;
	struct zero_lane *l = slot_of(z, p, kind, &s);
	if (!l)
		return;
	if (!version_move(&l->versions[s], V_OWNED, V_QUARANTINED, 0, &seen)) {
		report_failed_release(kind, p, 0, v_gen(seen));
		return;
	}
	report_wrong_size_if(p, expect, 0, 0);
	pthread_mutex_lock(&z->lock);
	quarantine_push(z, (uint32_t)(l - z->lanes) << LANE_BIT | (uint32_t)s);
	atomic_fetch_add_explicit(&z->frees, 1, memory_order_relaxed);
	pthread_mutex_unlock(&z->lock);
}

size_t zero_usable(struct zero_region *z, const void *p, int kind)
{
	uint64_t s;
	struct zero_lane *l = slot_of(z, p, kind, &s);
	if (!l)
		return SIZE_MAX;
	uint64_t v = version_read(&l->versions[s]);
	if (v_state(v) != V_OWNED) {
		report_failed_release(kind, p, 0, v_gen(v));
		return SIZE_MAX;
	}
	return 0;
}

uint64_t zero_generation(struct zero_region *z, const void *p)
{
	uint64_t s;
	struct zero_lane *l = slot_number(z, p, &s);
	return l ? v_gen(version_read(&l->versions[s])) : 0;
}

uint64_t zero_slot_version(const struct zero_region *z, const void *p, uintptr_t *start)
{
	uintptr_t base = atomic_load_explicit(&z->base, memory_order_relaxed);
	uintptr_t off = (uintptr_t)p - base;
	const struct zero_lane *l = &z->lanes[off >> ZERO_LANE_SHIFT];
	uint64_t s = (off & ((1UL << ZERO_LANE_SHIFT) - 1)) >> l->shift;
	*start = base + (off >> ZERO_LANE_SHIFT << ZERO_LANE_SHIFT) + (s << l->shift);
	/* Words below open_hi are mapped (the acquire pairs with index_open). */
	if (s < l->lo || s >= atomic_load_explicit(&((struct zero_lane *)l)->open_hi,
						   memory_order_acquire))
		return 0;
	return version_read(&l->versions[s]);
}

void zero_lock(struct zero_region *z)
{
	pthread_mutex_lock(&z->lock);
}

void zero_unlock(struct zero_region *z)
{
	pthread_mutex_unlock(&z->lock);
}

/* The child must not place blocks where its parent would have. */
void zero_fork_child(struct zero_region *z, struct rng *seed)
{
	rng_derive(&z->rng, seed);
}

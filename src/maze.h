/*
 * maze: the one big reservation, its wings, where rooms go, and the guard
 * pages around them. The maze knows pages and cells, not slots or sizes.
 *
 * A wing is an array of equal cells; a cell is one room followed by one guard
 * page. Rooms are placed at random free cells of the wing's extent, a window
 * of the wing that starts at a random cell and grows as rooms are needed,
 * kept at most half full so that placement keeps its spread.
 *
 * The maze index is the out-of-line record of each cell (in its own
 * reservation): a bitmap of taken cells and a record per cell whose first
 * bytes (struct cell_hdr) belong to the maze and the rest to the layer above.
 */
#ifndef LAB_MAZE_H
#define LAB_MAZE_H

#include "os.h"
#include "random.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CELL_NONE UINT32_MAX

enum guard_mode { GUARD_MARKERS = 1, GUARD_MPROTECT = 2 };

/* What the layer above asks of one wing. */
struct wing_spec {
	size_t room_bytes;      /* page multiple */
	size_t record_bytes;    /* the upper layer's part of a cell record */
	size_t class_size;      /* slot size, or the largest request of a large class */
	/* mprotect mode past the island budget: may a room share an island
	 * with the room before it, losing the guard page between them? Small
	 * rooms; large blocks and page blocks only near the map count's limit. */
	bool joinable;
};

/* The maze's part of a cell record. */
struct cell_hdr {
	uint32_t open_first;    /* the room's pages [open_first, open_end) are open */
	uint32_t open_end;
	uint8_t joined_prev;    /* mprotect mode over budget: shares an island with cell-1 */
	uint8_t retired;        /* emptied this epoch: stays taken and closed until the next */
	uint8_t island;         /* markers mode: open alone, counted in the islands */
	uint8_t hollow;         /* mprotect mode, map count near its limit: freed, its
				   pages emptied but left in their island (maze.c) */
	uint32_t next_retired;  /* the wing's list of retired cells */
};

struct wing {
	char *base;
	size_t bytes;
	size_t cell_bytes;
	size_t room_bytes;
	size_t record_bytes;    /* cell_hdr included */
	size_t class_size;
	uint16_t room_slots;    /* slots per room (small wings); 0 if over 65535 */
	bool joinable;          /* see struct wing_spec */
	unsigned index;         /* in the maze's wings: the size class */
	uint64_t cell_magic;    /* divides page offsets by the cell's pages */
	uint64_t class_magic;   /* divides offsets in a cell by class_size */
	uint32_t cells;         /* in the wing */
	uint32_t max_cells;     /* cells from ext_lo to the end of the wing; 0: never used */
	uint32_t ext_lo;        /* the extent's first cell, drawn at random */
	_Atomic uint32_t ext_cells;     /* grows only; records below it are mapped */
	uint32_t live_cells;    /* taken cells, retired ones included */
	uint32_t open_rooms;    /* cells with open pages */
	bool lit;               /* markers mode: rooms open in lit spans, not as islands */
	uint32_t retired_head;  /* cells retired this epoch, or CELL_NONE */
	uint32_t retired_count;
	uint32_t join_hint;     /* the cell the last joined room took, or CELL_NONE */
	uint32_t hollow_count;  /* cells left hollow (maze.c) */
	uint64_t epoch;         /* the maze epoch this wing's key was drawn in */
	uint64_t reseeds;       /* the maze's reseeds when this wing's key was drawn */
	/* The maze index (index.c): a bit per extent cell (taken) and a record
	 * per cell, the first head_cells of them in the index's shared head. */
	uint32_t head_cells, head_words;
	uint64_t *map_head, *map_tail;  /* map_tail[0] is word head_words */
	char *rec_head;
	uintptr_t rec_tail;     /* less head_cells records: cell * record_bytes indexes it */
	size_t tail_mapped;     /* bytes of the tail that are read-write */
	pthread_mutex_t lock;
	/* Its placement key, out of the wing: a process keys only the wings it
	 * uses, and 230 generators inline would make every process touch 70 KiB.
	 * NULL until the wing's first placement hands it the maze's next one. */
	struct rng *rng;
} __attribute__((aligned(256)));	/* a power of two: wings[cls] is a shift */

struct maze {
	char *base;             /* aligned to a span (2 MiB) */
	size_t bytes;
	char *reserved;         /* the reservation, base's slack included */
	size_t reserved_bytes;
	char *index;            /* the maze index reservation */
	size_t index_bytes;
	bool index_rw;          /* mapped read-write at once (no strict overcommit) */
	void *meta;             /* this struct's wings and slice table */
	size_t meta_bytes;
	unsigned slice_shift;   /* wing lookup: (p - base) >> slice_shift */
	uint16_t *slice_wing;
	struct wing *wings;
	unsigned nwings;
	/* The wings' generators, handed out in the order wings are first used,
	 * so the few a short process keys share a page or two. */
	struct rng *rngs;
	_Atomic unsigned rngs_used;
	_Atomic unsigned guard_mode;
	_Atomic bool markers_used;
	_Atomic bool stale_lit;         /* a lit span may have failed to go dark */
	_Atomic uint64_t live_rooms, rooms_placed, mapped_bytes, peak_mapped;
	size_t cap_bytes;       /* most bytes of rooms open at once; 0: no cap */
	uint32_t epoch_len;     /* room placements per epoch; 0: no epochs */
	_Atomic uint64_t epoch;
	pthread_mutex_t epoch_lock;     /* a leaf: guards epoch_rng */
	struct rng epoch_rng;   /* draws each wing's placement key, epoch by epoch */
	_Atomic uint64_t reseeds;       /* bumped when a forked child reseeds */
};

/* index.c: reserve the maze index and point every wing at its part;
 * make sure the records of cells [0, cells) of w are mapped. */
bool index_open(struct maze *m);
bool index_grow(struct wing *w, uint32_t cells);

/* Reserve a maze for the given wings; wing_bytes must be a power of two.
 * Its stream is derived from seed, and draws where the maze and its index go. */
bool maze_reserve(struct maze *m, const struct wing_spec *specs, unsigned n,
		  size_t wing_bytes, enum guard_mode mode, struct rng *seed);
void maze_release(struct maze *m);

/*
 * Place a room in w and open `pages` of its pages, from the first page at
 * which a block aligned to `align` can start (returned in *first if not
 * NULL). CELL_NONE if the wing is full or the kernel refuses.
 */
uint32_t wing_place(struct maze *m, struct wing *w, uint32_t pages, size_t align,
		    uint32_t *first);
/* Close a room's pages (their contents are lost) and free its cell. */
void wing_retire(struct maze *m, struct wing *w, uint32_t cell);
/* Close rooms left hollow while the map count allows (maze.c). */
void maze_close_hollow(struct maze *m);
/* Close a room's pages but keep its cell taken (quarantine), to retire it
 * later; false (nothing done) for a joined room, which must be retired. */
bool wing_close(struct maze *m, struct wing *w, uint32_t cell);
/* Whether every cell w may use is taken (a placement would fail). */
bool wing_full(struct maze *m, struct wing *w);
/* Move the end of a live room's open pages to page `end`; false if it cannot. */
bool wing_resize(struct maze *m, struct wing *w, uint32_t cell, uint32_t end);

/*
 * In a forked child (an atfork handler: async-signal-safe, no lock taken):
 * key a new epoch stream from seed, so that every wing redraws its
 * placement key from it at its next placement. Retired cells stay retired.
 */
void maze_reseed(struct maze *m, struct rng *seed);

/* An old kernel, or an mlocked range, refuses markers: mprotect from now on. */
static inline void maze_fall_back(struct maze *m)
{
	atomic_store(&m->guard_mode, GUARD_MPROTECT);
}

/* Lock order: arena, then wing, then the epoch lock. Exposed for fork handling. */
void maze_lock_all(struct maze *m);
void maze_unlock_all(struct maze *m);

static inline struct wing *maze_wing_of(const struct maze *m, const void *p)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)m->base;
	if (off >= m->bytes)
		return NULL;
	return &m->wings[m->slice_wing[off >> m->slice_shift]];
}

/*
 * n / d for any 32-bit n, by one multiplication with magic = 2^64 / d + 1
 * (Lemire, Kaser and Kurz): a division costs tens of cycles, and every free
 * needs two.
 */
static inline uint64_t div_magic(uint32_t d)
{
	return UINT64_MAX / d + 1;
}

static inline uint32_t fast_div(uint32_t n, uint64_t magic)
{
	return (uint32_t)(((unsigned __int128)magic * n) >> 64);
}

static inline char *cell_addr(const struct wing *w, uint32_t cell)
{
	return w->base + (size_t)(w->ext_lo + cell) * w->cell_bytes;
}

/* The record of a cell: in the index's head or in the wing's tail. */
static inline char *index_record(const struct wing *w, uint32_t cell)
{
	uintptr_t base = cell < w->head_cells ? (uintptr_t)w->rec_head : w->rec_tail;
	return (char *)(base + (size_t)cell * w->record_bytes);
}

static inline struct cell_hdr *cell_hdr(const struct wing *w, uint32_t cell)
{
	return (struct cell_hdr *)index_record(w, cell);
}

/* The upper layer's record of a cell. */
static inline void *cell_record(const struct wing *w, uint32_t cell)
{
	return index_record(w, cell) + sizeof(struct cell_hdr);
}

/* Word i of the wing's bitmap of taken cells. */
static inline uint64_t *map_word(const struct wing *w, uint32_t i)
{
	return i < w->head_words ? &w->map_head[i] : &w->map_tail[i - w->head_words];
}

/*
 * Which cell of w holds p, and p's offset in it; CELL_NONE if p is outside the
 * extent (so no room was ever there). p must lie in w's part of the maze (as
 * maze_wing_of() found it), whose pages maze_reserve() keeps countable in 32
 * bits. A cell below the extent wraps round to above it: one compare.
 */
static inline uint32_t wing_cell_of(const struct wing *w, const void *p, size_t *offset)
{
	size_t off = (size_t)((const char *)p - w->base);
	uint32_t cell = fast_div((uint32_t)(off / PAGE_SIZE), w->cell_magic);
	uint32_t ext = atomic_load_explicit(&((struct wing *)w)->ext_cells, memory_order_acquire);
	if (cell - w->ext_lo >= ext)
		return CELL_NONE;
	*offset = off - (size_t)cell * w->cell_bytes;
	return cell - w->ext_lo;
}

static inline bool cell_taken(const struct wing *w, uint32_t cell)
{
	return (*map_word(w, cell / 64) >> (cell % 64)) & 1;
}

/* The first taken cell of w in [cell, end), or end: a word of the bitmap
 * at a time over the cells no room holds. */
static inline uint32_t cell_next_taken(const struct wing *w, uint32_t cell, uint32_t end)
{
	while (cell < end) {
		uint64_t bits = *map_word(w, cell / 64) >> (cell % 64);
		if (bits) {
			cell += (uint32_t)__builtin_ctzll(bits);
			return cell < end ? cell : end;
		}
		cell = (cell | 63) + 1;
	}
	return end;
}

static inline void cell_mark(struct wing *w, uint32_t cell, bool taken)
{
	uint64_t bit = 1ULL << (cell % 64);
	if (taken)
		*map_word(w, cell / 64) |= bit;
	else
		*map_word(w, cell / 64) &= ~bit;
}

#endif

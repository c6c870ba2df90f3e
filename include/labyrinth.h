/*
 * labyrinth: a hardened memory allocator.
 *
 * Two ways in:
 *   - LD_PRELOAD=liblabyrinth-preload.so program  (replaces malloc and friends)
 *   - #include <labyrinth.h>, link with -llabyrinth: this API, for code that
 *     wants private, guarded heaps ("labyrinths") beside its normal malloc.
 *
 * Every function below is thread-safe. A NULL labyrinth_t argument means the
 * process-wide default labyrinth (the one the preload shim uses).
 * See labyrinth(3) for the full description and labyrinth(7) for the design.
 */
#ifndef LABYRINTH_H
#define LABYRINTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LABYRINTH_VERSION_MAJOR 0
#define LABYRINTH_VERSION_MINOR 1

/* An allocator instance: its own maze, wings, rooms and statistics. */
typedef struct labyrinth labyrinth_t;

/* How guard pages are made. */
enum lab_guard_mode {
	LAB_GUARD_DEFAULT = 0,  /* LABYRINTH_GUARD, else markers if the kernel has them */
	LAB_GUARD_MARKERS = 1,  /* madvise(MADV_GUARD_INSTALL): no mapping per guard */
	LAB_GUARD_MPROTECT = 2, /* PROT_NONE pages: costs mappings, works everywhere */
};

/* Flags of labyrinth_options_t.flags. */
#define LAB_OPEN_PREFAULT 0x1u  /* map and fault the whole cap at open; never grow */
#define LAB_OPEN_MLOCK 0x2u     /* with LAB_OPEN_PREFAULT: mlock those pages too */

/*
 * Options for labyrinth_open(). Zero every field you do not set (a zeroed
 * struct gives the defaults) and set .size = sizeof(labyrinth_options_t), so
 * that later versions can add fields without breaking your binary. Fields
 * are only ever appended; a smaller .size leaves the later ones at default.
 */
typedef struct labyrinth_options {
	size_t size;            /* sizeof(labyrinth_options_t) */
	size_t wing_bytes;      /* virtual size of each wing; 0: 1 GiB for a private labyrinth */
	size_t max_alloc;       /* largest request served; 0: wing_bytes / 4 */
	unsigned arenas;        /* arenas (lock domains); 0: twice the CPUs, at most 16 */
	enum lab_guard_mode guard;
	/* added with the page API: read only if .size covers them */
	size_t cap_bytes;       /* hard cap on the bytes of rooms and pages open at once; 0: none */
	unsigned flags;         /* LAB_OPEN_* */
	unsigned epoch;         /* room placements per epoch; 0: LABYRINTH_EPOCH */
	size_t reserve_pages;   /* pages put in the reserve at open (with PREFAULT: 0 = the cap) */
	size_t reserve_low;     /* the reserve's low-water mark; 0: half of what it was filled to */
} labyrinth_options_t;

/* Statistics of one labyrinth, as counted at the moment of the call. */
typedef struct labyrinth_stats {
	uint64_t allocations;   /* successful allocations, all kinds */
	uint64_t frees;         /* successful frees */
	uint64_t live_bytes;    /* bytes of slots and large regions in use */
	uint64_t peak_live_bytes;
	uint64_t live_rooms;    /* rooms mapped read-write */
	uint64_t rooms_placed;  /* room placements since open */
	uint64_t mapped_bytes;  /* bytes of rooms currently made accessible */
	uint64_t peak_mapped_bytes;
	uint64_t maze_bytes;    /* size of the reserved maze */
	unsigned guard_mode;    /* LAB_GUARD_MARKERS or LAB_GUARD_MPROTECT in force */
	unsigned arenas;
	/* Added after 0.1 (appended: the fields above keep their offsets). */
	uint64_t guard_pages;   /* guard pages in the cells of live rooms and held regions */
	uint64_t quarantined_slots;     /* freed small slots waiting in quarantine */
	uint64_t quarantined_regions;   /* freed large regions whose cells are held */
	uint64_t heap_errors;   /* heap errors reported by this process (LABYRINTH_ON_ERROR=log) */
	uint64_t mappings;      /* the process's mappings (/proc/self/maps), all libraries */
	uint64_t max_map_count; /* the kernel's limit on them, vm.max_map_count */
	uint64_t epochs;        /* epochs ended since open (labyrinth_epoch) */
	uint64_t reserve_pages; /* pages waiting in the reserve, all orders */
	uint64_t reserve_empty; /* LAB_GFP_ATOMIC allocations that found the reserve empty */
	uint64_t page_allocations;      /* page API allocations (also in .allocations) */
	uint64_t page_frees;    /* page API frees (also in .frees) */
} labyrinth_stats_t;

/*
 * labyrinth_open: create a private labyrinth. Its memory never mixes with the
 * default heap or with other labyrinths; pointers from it must be freed with it.
 * opts may be NULL for the defaults. Returns NULL with errno set: ENOMEM if the
 * maze cannot be reserved; for bad options, after one warning line on stderr
 * naming the field, EINVAL (an unknown field value or flag, a combination it
 * cannot serve) or ERANGE (a number out of range).
 */
labyrinth_t *labyrinth_open(const labyrinth_options_t *opts);

/*
 * labyrinth_close: destroy a private labyrinth and unmap all its memory,
 * including allocations still live. Closing NULL or the default labyrinth does
 * nothing.
 */
void labyrinth_close(labyrinth_t *lab);

/* labyrinth_default: the process-wide labyrinth, created on first use. */
labyrinth_t *labyrinth_default(void);

/*
 * labyrinth_malloc: size bytes, 16-byte aligned, uninitialised. size 0 gives a
 * unique pointer. NULL with errno ENOMEM when out of memory or size is larger
 * than the labyrinth serves.
 */
void *labyrinth_malloc(labyrinth_t *lab, size_t size);

/* labyrinth_calloc: n * size zeroed bytes; NULL with ENOMEM on overflow. */
void *labyrinth_calloc(labyrinth_t *lab, size_t n, size_t size);

/*
 * labyrinth_realloc: resize p, keeping its contents up to the smaller size.
 * p NULL acts as labyrinth_malloc. size 0 frees p and returns NULL. On failure
 * returns NULL with ENOMEM and p is untouched.
 */
void *labyrinth_realloc(labyrinth_t *lab, void *p, size_t size);

/*
 * labyrinth_free: release p (NULL is ignored). A pointer that this labyrinth
 * did not hand out, or one already freed, ends the process with a one-line
 * report on stderr naming the error and the address.
 */
void labyrinth_free(labyrinth_t *lab, void *p);

/*
 * labyrinth_aligned_alloc: size bytes aligned to alignment, which must be a
 * power of two (else NULL with EINVAL). Freed with labyrinth_free.
 */
void *labyrinth_aligned_alloc(labyrinth_t *lab, size_t alignment, size_t size);

/*
 * labyrinth_usable_size: bytes usable at p (at least what was requested).
 * 0 for NULL; an invalid pointer is reported like an invalid free.
 */
size_t labyrinth_usable_size(labyrinth_t *lab, const void *p);

/*
 * labyrinth_get_stats: fill *out with lab's statistics. It walks the maze
 * index (for guard_pages) and reads /proc/self/maps (for mappings).
 */
void labyrinth_get_stats(labyrinth_t *lab, labyrinth_stats_t *out);

/*
 * labyrinth_trim: return the memory of empty rooms to the kernel now rather
 * than when the allocator would by itself. Returns the bytes released.
 */
size_t labyrinth_trim(labyrinth_t *lab);

/* ---- the page API ------------------------------------------------------
 *
 * Whole pages, each block in a room of its own with a guard page on both
 * sides, owned through a 64-bit version word. Every page is handed out
 * zeroed: freed pages are scrubbed before anyone can get them again.
 */

typedef unsigned lab_gfp_t;

/* Never sleep, never make a system call, never wait on a lock: take a page
 * from the reserve (lock-free) or return NULL. Safe in a signal handler. */
#define LAB_GFP_ATOMIC 0x1u
/* The page is owned by the calling thread alone: only it may free it or
 * give it away (labyrinth_page_give); it never passes through a cache that
 * another thread could take it from without its being scrubbed. */
#define LAB_GFP_EXCLUSIVE 0x2u
/* The page must be zero. Every page is handed out zeroed; the flag costs nothing. */
#define LAB_GFP_ZERO 0x4u
/* Never return NULL: on failure, end the process with the line
 * "labyrinth: the labyrinth has no exit: page allocation failed, out of memory". */
#define LAB_GFP_NOFAIL 0x8u

/* Blocks of 2^order pages, order 0 to LAB_PAGE_MAX_ORDER. */
#define LAB_PAGE_MAX_ORDER 4

/* A thread's identity for ownership: small, nonzero, no system call to get. */
typedef uint32_t lab_thread_t;

/* A page and the version it had when handed out: outlives nothing. Once the
 * page is freed, given away or reallocated, the handle is stale. */
typedef struct lab_page_handle {
	void *page;             /* NULL: no page */
	uint64_t version;
} lab_page_handle_t;

/* Results of labyrinth_page_give and labyrinth_handle_give. */
enum lab_page_error {
	LAB_PAGE_OK = 0,
	LAB_PAGE_NOT_OWNER = -1,        /* the calling thread does not own the page */
	LAB_PAGE_STALE = -2,            /* the handle's version is not the page's */
	LAB_PAGE_NOT_EXCLUSIVE = -3,    /* only exclusive pages have an owner to change */
	LAB_PAGE_NOT_ALLOCATED = -4,    /* the page is free (or was never handed out) */
	LAB_PAGE_INVALID = -5,          /* not a page of this labyrinth, or a bad thread */
};

/*
 * labyrinth_alloc_page: one page (4096 bytes, page-aligned) under flags
 * LAB_GFP_*. NULL with errno ENOMEM on failure (or EINVAL for unknown flags),
 * unless LAB_GFP_NOFAIL.
 */
void *labyrinth_alloc_page(labyrinth_t *lab, lab_gfp_t flags);

/* labyrinth_alloc_pages: 2^order contiguous pages (order <= LAB_PAGE_MAX_ORDER). */
void *labyrinth_alloc_pages(labyrinth_t *lab, unsigned order, lab_gfp_t flags);

/* labyrinth_alloc_page_atomic_exclusive: LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE. */
void *labyrinth_alloc_page_atomic_exclusive(labyrinth_t *lab);

/*
 * labyrinth_free_page: free a page or block of the page API (NULL is
 * ignored). Lock-free and without a system call when the page goes back to
 * the reserve, which it always does if it came from there. A double free, a
 * pointer that is not such a page, or an exclusive page freed by a thread
 * that does not own it ends the process with a one-line report.
 */
void labyrinth_free_page(labyrinth_t *lab, void *page);

/* labyrinth_thread_self: the calling thread's identity for labyrinth_page_give. */
lab_thread_t labyrinth_thread_self(void);

/*
 * labyrinth_page_give: hand the exclusive page owned by the calling thread
 * to thread `to`, in one atomic step. LAB_PAGE_OK, or a LAB_PAGE_* error
 * (a second give of the same page is LAB_PAGE_NOT_OWNER).
 */
int labyrinth_page_give(labyrinth_t *lab, void *page, lab_thread_t to);

/*
 * labyrinth_alloc_handle: like labyrinth_alloc_pages, but return the block as
 * a versioned handle ({ NULL, 0 } on failure).
 */
lab_page_handle_t labyrinth_alloc_handle(labyrinth_t *lab, unsigned order, lab_gfp_t flags);

/* labyrinth_handle_of: the current handle of a page the caller holds. */
lab_page_handle_t labyrinth_handle_of(labyrinth_t *lab, void *page);

/*
 * labyrinth_handle_page: the page of h, or NULL with errno ESTALE if h is
 * stale (the page was freed, given or reallocated since), EINVAL if it never
 * named a page.
 */
void *labyrinth_handle_page(labyrinth_t *lab, lab_page_handle_t h);

/*
 * labyrinth_handle_free: free the page of h. A stale handle ends the process
 * with "labyrinth: stale page handle of 0x... (...)"; nothing is freed.
 */
void labyrinth_handle_free(labyrinth_t *lab, lab_page_handle_t h);

/*
 * labyrinth_handle_give: like labyrinth_page_give, checked against h's
 * version; on success *h is updated to the new version, for the receiver.
 */
int labyrinth_handle_give(labyrinth_t *lab, lab_page_handle_t *h, lab_thread_t to);

/* labyrinth_page_strerror: a fixed text for a LAB_PAGE_* code. */
const char *labyrinth_page_strerror(int code);

/*
 * labyrinth_reserve: fill lab's reserve of single pages (for LAB_GFP_ATOMIC)
 * up to `pages`, mapping and faulting them now; may sleep. Returns the pages
 * now in the reserve (fewer if the cap or memory runs out).
 */
size_t labyrinth_reserve(labyrinth_t *lab, size_t pages);

/* labyrinth_reserve_order: the same for the reserve of 2^order-page blocks. */
size_t labyrinth_reserve_order(labyrinth_t *lab, unsigned order, size_t blocks);

/*
 * labyrinth_reserve_low: set the low-water mark of the single-page reserve.
 * Below it, the next ordinary (non-atomic) page allocation refills the
 * reserve first. Returns the previous mark.
 */
size_t labyrinth_reserve_low(labyrinth_t *lab, size_t pages);

/*
 * labyrinth_epoch: the current epoch of lab, the number of epochs ended since
 * it opened. Every LABYRINTH_EPOCH room placements (options .epoch) the key
 * choosing room positions is redrawn, and rooms emptied in the epoch are
 * retired until it ends rather than reused in place.
 */
uint64_t labyrinth_epoch(labyrinth_t *lab);

/*
 * labyrinth_check: check the canaries of every live allocation of lab now
 * (NULL: the default labyrinth), so that an overflow of a block that is
 * never freed is found too. Each damaged block is reported like an overflow
 * found at free (which ends the process unless LABYRINTH_ON_ERROR=log);
 * returns how many were found. LABYRINTH_EXIT_CHECK=1 runs it at exit.
 */
size_t labyrinth_check(labyrinth_t *lab);

#ifdef __cplusplus
}
#endif

#endif /* LABYRINTH_H */

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

/*
 * Options for labyrinth_open(). Zero every field you do not set (a zeroed
 * struct gives the defaults) and set .size = sizeof(labyrinth_options_t), so
 * that later versions can add fields without breaking your binary.
 */
typedef struct labyrinth_options {
	size_t size;            /* sizeof(labyrinth_options_t) */
	size_t wing_bytes;      /* virtual size of each wing; 0: 1 GiB for a private labyrinth */
	size_t max_alloc;       /* largest request served; 0: wing_bytes / 4 */
	unsigned arenas;        /* arenas (lock domains); 0: twice the CPUs, at most 16 */
	enum lab_guard_mode guard;
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
} labyrinth_stats_t;

/*
 * labyrinth_open: create a private labyrinth. Its memory never mixes with the
 * default heap or with other labyrinths; pointers from it must be freed with it.
 * opts may be NULL for the defaults. Returns NULL with errno set (ENOMEM if the
 * maze cannot be reserved, EINVAL for bad options).
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

/* labyrinth_get_stats: fill *out with lab's statistics. */
void labyrinth_get_stats(labyrinth_t *lab, labyrinth_stats_t *out);

/*
 * labyrinth_trim: return the memory of empty rooms to the kernel now rather
 * than when the allocator would by itself. Returns the bytes released.
 */
size_t labyrinth_trim(labyrinth_t *lab);

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

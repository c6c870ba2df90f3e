/*
 * guarded_ring: the guarded region's pages as a ring (guarded.c's private
 * half). A cursor places runs of pages forward through it and wraps round
 * at its end; a bitmap says which pages live runs hold; the records of the
 * pages, and the page tables of the address space, that the cursor left
 * far behind go back to the kernel once no live run is there.
 */
#ifndef LAB_GUARDED_RING_H
#define LAB_GUARDED_RING_H

#include "guarded.h"
#include "random.h"
#include "stack.h"
#include "version.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUARDED_BYTES (256UL << 30)
#define GUARDED_PAGES (GUARDED_BYTES / PAGE_SIZE)
#define GUARDED_MAX (64UL << 20)        /* larger requests go the ordinary way */
#define MARK_CHUNK_PAGES 4096           /* markers installed 16 MiB ahead at a time */
#define NO_PAGE SIZE_MAX
#define TRACE_SLOTS 8192                /* blocks whose stacks are kept */

/* Out of line, at the index of the run's first page (the page of the block). */
struct grec {
	version_t version;
	uint32_t npages;        /* data pages of the run */
	uint32_t in_page;       /* the block's offset in its first page */
	size_t size;            /* bytes requested */
	uint64_t key;           /* canary key, new for every block */
};

/* Records of the pages within this many of the cursor are kept whatever
 * holds them, as long as the stacks (a trace slot is reused as far on):
 * a recent block's double free or fault is explained in full. Farther
 * back, a page of records goes when no live run starts in it, and its
 * blocks read as never allocated (a free of one is still refused). */
#define RECS_KEPT_PAGES TRACE_SLOTS
#define RECS_PER_PAGE (PAGE_SIZE / sizeof(struct grec))

/*
 * The same for the region's page tables: a chunk of the address space that
 * one page-table page maps (2 MiB), far behind the cursor with no live run,
 * is mapped anew as PROT_NONE, which frees its page table and keeps every
 * access faulting. With markers that splits the region's mapping: each
 * stretch of released chunks apart from the others costs two mappings, so
 * there are at most stretch_budget of them (a 32nd of vm.max_map_count;
 * long-lived guarded blocks are what keep stretches apart); a chunk the
 * cursor comes back to is opened and marked again.
 */
#define CHUNK_PAGES 512
#define GUARDED_CHUNKS (GUARDED_PAGES / CHUNK_PAGES + 1)

/*
 * Where a block was allocated and freed, for its reports. A fixed table,
 * slot by the run's first page: bounded memory (2.2 MiB of address space,
 * touched as used), and a slot is taken over by a later run whose first
 * page shares it, so the stacks of old blocks are lost first. The tag
 * names the run and the generation of the block the slot holds.
 */
struct trace {
	_Atomic uint64_t tag;
	struct stack alloc, freed;
};

struct guarded {
	struct guarded_span span;       /* first: guarded_has() reads it */
	struct trace *traces;
	bool markers;
	uint64_t *taken;                /* bit per page: part of a live run */
	struct grec *recs;
	char *index;
	size_t index_bytes;
	pthread_mutex_t lock;
	struct rng rng;
	size_t lo, cursor, marked;      /* pages: ring start, next try, marked up to */
	_Atomic size_t hiwater;         /* pages below it were ever used */
	uint64_t live_runs, run_budget; /* mprotect mode: runs cost mappings */
	uint64_t released[(GUARDED_CHUNKS + 63) / 64];  /* chunks given back */
	size_t released_stretches, stretch_budget;      /* markers mode: apart */
	_Atomic uint64_t allocs, frees, live_bytes;
};

/* Under the lock: place and open a run of n pages; its first page, or
 * NO_PAGE (the ring is full, or the kernel refused). */
size_t ring_take(struct guarded *g, size_t n);
/* Under the lock: the run of n pages at `at` closes (its pages are guards
 * again, their contents gone), and what the cursor left behind and no
 * live run holds goes back to the kernel. */
void ring_give(struct guarded *g, size_t at, size_t n);
/* The first page of [from, to) that a live run holds, or NO_PAGE. */
size_t ring_first_taken(const struct guarded *g, size_t from, size_t to);

#endif

/*
 * reserve: per labyrinth and per block order, a stack of pages that are
 * already open and faulted, from which the atomic path serves without a
 * system call, a lock, or any wait. The stack is linked through the pages'
 * records in the maze index (never through the pages themselves), and its
 * head carries a tag that every push and pop bumps, so a pop that raced with
 * a pop and push of the same page fails its compare-and-swap (ABA).
 * A pool's freed blocks pass through a quarantine on their way back.
 */
#ifndef LAB_RESERVE_H
#define LAB_RESERVE_H

#include "maze.h"
#include "version.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The upper part of a cell record in a page wing. */
struct page_rec {
	version_t version;      /* owner tag: a thread for exclusive pages, else 0 */
	_Atomic uint32_t next;  /* reserve link: cell + 1 of the page below, 0 at the bottom */
	uint32_t size;          /* a pooled labyrinth_malloc: the bytes requested */
	uint8_t kind;           /* enum page_kind */
	uint8_t from_reserve;   /* goes back to the reserve when freed */
	uint8_t gen_tag;        /* a pool's labyrinth_malloc: its generation's key tag */
	uint8_t pad[5];
	uint64_t key;           /* a pool's block: canary key, drawn when placed */
};

struct reserve {
	_Atomic uint64_t head;  /* low 32 bits: cell + 1 of the top, 0 empty; high: tag */
	_Atomic int64_t count;  /* pages in it (briefly off by the pops in flight) */
	_Atomic uint64_t target;        /* what it was filled to: it takes that many back */
	_Atomic uint64_t low;   /* below this, ordinary allocations refill it */
	_Atomic uint64_t empty; /* atomic allocations that found it empty */
} __attribute__((aligned(64)));

/*
 * A pool's quarantine, in front of its order-0 reserve: a freed block lands
 * at a random place of the stage, pushing the block there into a queue of
 * nfifo places; the block the queue pushes out goes back to the reserve. So
 * a freed block waits at least nfifo further frees, and how much longer is
 * unpredictable. Every move is one atomic exchange: no lock, no wait.
 */
#define POOL_STAGE_MAX 128
#define POOL_FIFO_MAX 128

struct pool_quarantine {
	_Atomic uint64_t frees;         /* frees so far: the draws' counter, the queue's tail */
	uint32_t nstage, nfifo;
	uint64_t key[2];                /* the stage's draws: a keyed hash of the counter */
	/* Free number << 32 | cell + 1; 0: empty. The number says which is
	 * oldest when a reserve that ran dry takes from the stage. */
	_Atomic uint64_t stage[POOL_STAGE_MAX];
	_Atomic uint32_t fifo[POOL_FIFO_MAX];
};

static inline struct page_rec *page_rec_of(const struct wing *w, uint32_t cell)
{
	return cell_record(w, cell);
}

/* Lock-free: the top page's cell, or CELL_NONE when empty. */
uint32_t reserve_pop(struct wing *w, struct reserve *r);
/* Lock-free: put a free, zeroed page on top. */
void reserve_push(struct wing *w, struct reserve *r, uint32_t cell);

static inline uint64_t reserve_count(struct reserve *r)
{
	int64_t n = atomic_load_explicit(&r->count, memory_order_relaxed);
	return n < 0 ? 0 : (uint64_t)n;
}

/* Hold up to n blocks (at most POOL_STAGE_MAX + POOL_FIFO_MAX), half of
 * them in the stage; the draws keyed with k0 and k1. */
void pool_quarantine_init(struct pool_quarantine *q, uint32_t n, uint64_t k0, uint64_t k1);
/* Lock-free: hold cell; the cell that leaves (for the reserve), or CELL_NONE.
 * gen_key, the process generation's key, keeps siblings' draws apart. */
uint32_t pool_quarantine_push(struct pool_quarantine *q, uint32_t cell, uint64_t gen_key);
/* Lock-free: take the oldest held cell, for a reserve that ran dry (the
 * queue's, else the stage's longest held); CELL_NONE if none. */
uint32_t pool_quarantine_take(struct pool_quarantine *q);
/* Cells held now (a moment old: for the statistics). */
uint64_t pool_quarantine_held(const struct pool_quarantine *q);

/* Whether a freed page that did not come from the reserve may join it. */
static inline bool reserve_takes_back(struct reserve *r)
{
	return reserve_count(r) < atomic_load_explicit(&r->target, memory_order_relaxed);
}

#endif

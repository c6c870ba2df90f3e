/*
 * reserve: per labyrinth and per block order, a stack of pages that are
 * already open and faulted, from which the atomic path serves without a
 * system call, a lock, or any wait. The stack is linked through the pages'
 * records in the maze index (never through the pages themselves), and its
 * head carries a tag that every push and pop bumps, so a pop that raced with
 * a pop and push of the same page fails its compare-and-swap (ABA).
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

/* Whether a freed page that did not come from the reserve may join it. */
static inline bool reserve_takes_back(struct reserve *r)
{
	return reserve_count(r) < atomic_load_explicit(&r->target, memory_order_relaxed);
}

#endif

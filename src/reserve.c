/*
 * reserve: the lock-free stack of ready pages (a Treiber stack whose head
 * is a tagged word). Nothing here may lock, allocate or make a system call:
 * it runs in signal handlers and under seccomp filters that forbid them.
 * Filling the reserve is page.c's business (ordinary context).
 */
#include "reserve.h"

#define TAG_ONE (1ULL << 32)

uint32_t reserve_pop(struct wing *w, struct reserve *r)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	for (;;) {
		uint32_t top = (uint32_t)head;
		if (!top)
			return CELL_NONE;
		/* The record stays mapped while the labyrinth is open, so reading
		 * the link of a page another thread just took is harmless: the
		 * tag makes our swap fail. */
		uint32_t below = atomic_load_explicit(&page_rec_of(w, top - 1)->next,
						      memory_order_relaxed);
		uint64_t next = ((head & ~0xffffffffULL) + TAG_ONE) | below;
		if (atomic_compare_exchange_weak_explicit(&r->head, &head, next,
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			atomic_fetch_sub_explicit(&r->count, 1, memory_order_relaxed);
			return top - 1;
		}
	}
}

void reserve_push(struct wing *w, struct reserve *r, uint32_t cell)
{
	struct page_rec *rec = page_rec_of(w, cell);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t next;
	atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
	do {
		atomic_store_explicit(&rec->next, (uint32_t)head, memory_order_relaxed);
		next = ((head & ~0xffffffffULL) + TAG_ONE) | (cell + 1);
	} while (!atomic_compare_exchange_weak_explicit(&r->head, &head, next,
							memory_order_release,
							memory_order_relaxed));
}

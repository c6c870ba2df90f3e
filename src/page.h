/*
 * page: the page API (labyrinth_alloc_page and friends): blocks of 2^order
 * pages in page wings of their own, GFP flags, exclusive ownership through
 * the version word, handles, and the reserve's filling. A prefaulted
 * labyrinth (a pool) also serves its labyrinth_malloc here.
 */
#ifndef LAB_PAGE_H
#define LAB_PAGE_H

#include "lab.h"
#include "maze.h"
#include "labyrinth.h"

#include <stddef.h>

enum page_kind { PAGE_API = 1, PAGE_MALLOC = 2 };

/* The wing specs of the PAGE_ORDERS page wings. */
void page_specs(struct wing_spec *out);

/* At open: the reserve of a private labyrinth, from its options. False (the
 * open fails) if a prefaulted labyrinth cannot be filled. */
bool page_open_reserve(struct labyrinth *lab, size_t pages, size_t low);

/* The calling thread's owner tag: nonzero, drawn without a system call. */
uint32_t page_thread_tag(void);

/* The cell of the block that starts at p, or CELL_NONE and why not. */
uint32_t page_find(struct labyrinth *lab, const void *p, struct wing **w, const char **why);
/* One report line about the block at p (w may be NULL; gen 0: unknown). */
void page_report(int kind, const void *p, const struct wing *w, const char *why, uint64_t gen);

/* A block of 2^order pages under LAB_GFP_* flags, its version in *version. */
void *page_alloc(struct labyrinth *lab, unsigned order, lab_gfp_t flags, uint64_t *version);
/* Free a page API block; expect is a handle's version, or 0. */
void page_free(struct labyrinth *lab, void *p, uint64_t expect);
/* Ordinary context: fill the reserve of an order up to n blocks. */
size_t page_fill(struct labyrinth *lab, unsigned order, size_t n);
/* Set a reserve's low-water mark; the previous one. */
size_t page_set_low(struct labyrinth *lab, unsigned order, size_t low);

/* A pool's labyrinth_malloc: whole pages from the reserve, tail canary. */
void *page_malloc(struct labyrinth *lab, size_t size);
/* labyrinth_free/usable of a pointer in a page wing (reported unless pooled). */
void page_malloc_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect);
size_t page_malloc_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind);

uint64_t page_reserve_total(struct labyrinth *lab);
uint64_t page_reserve_empty(struct labyrinth *lab);

#endif

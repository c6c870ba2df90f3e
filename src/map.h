/*
 * map: a read-only walk of the maze index, and the heap map it draws (an SVG
 * picture of wings, rooms, guard pages and free cells). Nothing here changes
 * the heap; every wing is read under its own lock.
 */
#ifndef LAB_MAP_H
#define LAB_MAP_H

#include "lab.h"

#include <stdbool.h>
#include <stdint.h>

/* One taken cell, as the index records it. */
struct cell_view {
	unsigned wing;          /* index in the maze */
	uint32_t cell;          /* in the wing's extent */
	uint32_t room_pages;    /* the cell less its guard page */
	uint32_t open_first, open_end;  /* open pages; equal: a held (quarantined) region */
	bool joined_prev;       /* shares an island with cell-1 (its guard page is open) */
	bool retired;           /* emptied this epoch: closed, kept out of use until it ends */
	const char *addr;       /* the cell's first byte */
	/* What its record says is in use: a small room's live slots of its
	 * slots; a large or page block's bytes asked for (0: not live). */
	uint32_t slots_live, slots;
	uint64_t bytes_live;
};

struct map_visitor {
	/* Before a wing's cells; ext is how many cells its extent has. */
	void (*wing)(void *ctx, const struct wing *w, unsigned index, uint32_t ext);
	void (*cell)(void *ctx, const struct cell_view *c);
	/* After them; busy: the lock could not be taken, no cell was visited. */
	void (*wing_end)(void *ctx, unsigned index, bool busy);
	void *ctx;
};

/*
 * Visit every wing whose extent is not empty, and in it every taken cell in
 * address order. A lock that stays busy (held by the thread this runs on, as
 * in a signal handler) makes the wing be skipped, not a deadlock. Returns the
 * wings skipped.
 */
unsigned map_walk(struct labyrinth *lab, const struct map_visitor *v);

/* Guard pages in the cells of live rooms and held regions. */
uint64_t map_guard_pages(struct labyrinth *lab);

/* Draw lab's heap map as SVG into path ("%p" in it becomes the pid), through
 * a temporary file renamed into place. Allocates nothing; false on failure. */
bool map_draw(struct labyrinth *lab, const char *path);

/* Expand "%p" in pattern into out (size CFG_PATH_MAX + 32). */
void map_expand_path(char *out, size_t size, const char *pattern);

#endif

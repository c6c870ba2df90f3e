/*
 * map: the read-only walk of the maze index that the heap map (map_svg.c)
 * and the guard-page count are made from. It reads records only, never
 * heap memory: it runs at exit and from a SIGUSR2 handler.
 */
#include "map.h"
#include "large.h"
#include "page.h"
#include "reserve.h"
#include "room.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

/* ---- the walk ----------------------------------------------------------- */

/* Bounded: a lock held by the thread we interrupted never comes free. */
static bool lock_briefly(pthread_mutex_t *m)
{
	for (int i = 0; i < 2000; i++) {
		if (pthread_mutex_trylock(m) == 0)
			return true;
		sched_yield();
	}
	return false;
}

/* What c's record says is live: slots of a room, bytes of a block. */
static void cell_use(struct labyrinth *lab, struct wing *w, struct cell_view *c)
{
	if (wing_is_small(lab, w)) {
		struct room *r = room_of(w, c->cell);
		if (v_state(version_read(&r->version)) != V_OWNED)
			return;
		c->slots = r->nslots;
		for (uint16_t s = 0; s < r->nslots; s++)
			c->slots_live += v_state(version_read(&slot_versions(r)[s])) == V_OWNED;
	} else if (wing_is_page(lab, w)) {
		struct page_rec *p = page_rec_of(w, c->cell);
		if (v_state(version_read(&p->version)) == V_OWNED)
			c->bytes_live = p->kind == PAGE_MALLOC ? p->size : w->room_bytes;
	} else {
		struct large *l = cell_record(w, c->cell);
		if (v_state(version_read(&l->version)) == V_OWNED)
			c->bytes_live = l->size;
	}
}

static void walk_cells(struct labyrinth *lab, struct wing *w, unsigned index, uint32_t ext,
		       const struct map_visitor *v)
{
	uint32_t room_pages = (uint32_t)(w->room_bytes / PAGE_SIZE);
	for (uint32_t cell = cell_next_taken(w, 0, ext); cell < ext;
	     cell = cell_next_taken(w, cell + 1, ext)) {
		const struct cell_hdr *h = cell_hdr(w, cell);
		struct cell_view c = {
			.wing = index, .cell = cell, .room_pages = room_pages,
			.open_first = h->open_first, .open_end = h->open_end,
			.joined_prev = h->joined_prev != 0, .retired = h->retired != 0,
			.addr = cell_addr(w, cell),
		};
		cell_use(lab, w, &c);
		v->cell(v->ctx, &c);
	}
}

unsigned map_walk(struct labyrinth *lab, const struct map_visitor *v)
{
	unsigned skipped = 0;
	for (unsigned i = 0; i < lab->maze.nwings; i++) {
		struct wing *w = &lab->maze.wings[i];
		if (atomic_load_explicit(&w->ext_cells, memory_order_acquire) == 0)
			continue;
		bool locked = lock_briefly(&w->lock);
		/* Read under the lock: the extent only grows, and only under it. */
		uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_acquire);
		if (v->wing)
			v->wing(v->ctx, w, i, ext);
		if (locked) {
			if (v->cell)
				walk_cells(lab, w, i, ext, v);
			pthread_mutex_unlock(&w->lock);
		} else {
			skipped++;
		}
		if (v->wing_end)
			v->wing_end(v->ctx, i, !locked);
	}
	return skipped;
}

/* A taken cell's pages that are not open are guard pages, its last one too;
 * a joined room has opened the guard page of the cell before it. */
static void count_guards(void *ctx, const struct cell_view *c)
{
	uint64_t *n = ctx;
	*n += c->room_pages + 1 - (c->open_end - c->open_first);
	if (c->joined_prev)
		*n -= 1;
}

uint64_t map_guard_pages(struct labyrinth *lab)
{
	uint64_t n = 0;
	struct map_visitor v = { .cell = count_guards, .ctx = &n };
	map_walk(lab, &v);
	return n;
}

void map_expand_path(char *out, size_t size, const char *pattern)
{
	size_t n = 0;
	for (const char *s = pattern; *s && n + 24 < size; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			char pid[24];
			int i = sizeof pid;
			unsigned long v = (unsigned long)getpid();
			pid[--i] = 0;
			do {
				pid[--i] = (char)('0' + v % 10);
				v /= 10;
			} while (v);
			size_t l = strlen(pid + i);
			memcpy(out + n, pid + i, l);
			n += l;
			s++;
		} else {
			out[n++] = *s;
		}
	}
	out[n] = 0;
}

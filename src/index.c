/*
 * index: where the maze index keeps each wing's bitmap and cell records.
 *
 * A wing's index is sized for every cell of the wing, gigabytes for the
 * smallest classes, so wings laid one after another put each wing's first
 * records in a page-table page (and a page-middle directory) of their own:
 * two or three page-table pages per size class in use, which fork copies.
 * But a wing's extent starts small (4 MiB of cells) and most processes never
 * grow it. So the records and bitmap words of each wing's first 4 MiB of
 * cells, its head, sit together with every other wing's head in one small
 * area at the start of the index, and only the rest, its tail, in a region
 * of its own. cell_hdr() picks the half with one comparison.
 *
 * Layout: a guard page, the bitmap heads, the record heads, a guard page;
 * then per wing its bitmap tail, record tail and a guard page.
 */
#include "maze.h"
#include "aslr.h"
#include "os.h"

/* The extent's first growth (growth_target's minimum). */
#define HEAD_EXTENT_BYTES (4UL << 20)

static size_t round_page(size_t n)
{
	return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

static uint32_t head_cells(const struct wing *w)
{
	size_t n = HEAD_EXTENT_BYTES / w->cell_bytes;
	n = ((n < 4 ? 4 : n) + 63) & ~(size_t)63;     /* whole bitmap words */
	return n > w->cells ? w->cells : (uint32_t)n;
}

static size_t tail_map_bytes(const struct wing *w)
{
	return round_page(((size_t)(w->cells - w->head_cells) + 63) / 64 * 8);
}

static size_t tail_bytes(const struct wing *w)
{
	return tail_map_bytes(w) + round_page((size_t)(w->cells - w->head_cells) * w->record_bytes) +
	       PAGE_SIZE;
}

static size_t head_bytes(struct maze *m, size_t *maps)
{
	size_t recs = 0;
	*maps = 0;
	for (unsigned i = 0; i < m->nwings; i++) {
		struct wing *w = &m->wings[i];
		w->head_cells = head_cells(w);
		w->head_words = (w->head_cells + 63) / 64;
		*maps += (size_t)w->head_words * 8;
		recs += (size_t)w->head_cells * w->record_bytes;
	}
	return round_page(*maps + recs);
}

/* Point each wing at its head and its tail. */
static void index_lay_out(struct maze *m, size_t maps, size_t head)
{
	char *map = m->index + PAGE_SIZE, *rec = map + maps;
	char *tail = m->index + PAGE_SIZE + head + PAGE_SIZE;
	for (unsigned i = 0; i < m->nwings; i++) {
		struct wing *w = &m->wings[i];
		w->map_head = (uint64_t *)map;
		w->rec_head = rec;
		map += (size_t)w->head_words * 8;
		rec += (size_t)w->head_cells * w->record_bytes;
		w->map_tail = (uint64_t *)tail;
		w->rec_tail = (uintptr_t)tail + tail_map_bytes(w) -
			      (uintptr_t)w->head_cells * w->record_bytes;
		w->tail_mapped = m->index_rw ? tail_bytes(w) - PAGE_SIZE : 0;
		tail += tail_bytes(w);
	}
}

/* At a random place of its own, like the maze (aslr.c): the records are
 * what an attacker with a write would aim at, and an index beside the maze,
 * where mmap puts it, would say where the maze is. */
static char *reserve(struct maze *m, size_t bytes, bool rw)
{
	return aslr_reserve_or_plain(&m->epoch_rng, bytes, PAGE_SIZE, rw);
}

bool index_open(struct maze *m)
{
	size_t maps, head = head_bytes(m, &maps), total = PAGE_SIZE + head + PAGE_SIZE;
	for (unsigned i = 0; i < m->nwings; i++)
		total += tail_bytes(&m->wings[i]);
	/* Read-write from the start: untouched pages cost nothing, and the
	 * index grows with no system call or mapping per wing. A kernel that
	 * counts it against a strict overcommit limit gets the old way:
	 * PROT_NONE, made read-write as the extents grow. */
	m->index = reserve(m, total, true);
	m->index_rw = m->index != NULL;
	if (!m->index) {
		m->index = reserve(m, total, false);
		if (!m->index)
			return false;
		if (!os_protect_rw(m->index + PAGE_SIZE, head)) {
			os_unmap(m->index, total);
			m->index = NULL;
			return false;
		}
	}
	m->index_bytes = total;
	index_lay_out(m, maps, head);
	return true;
}

bool index_grow(struct wing *w, uint32_t cells)
{
	if (cells <= w->head_cells)
		return true;
	size_t need = round_page(tail_map_bytes(w) +
				 (size_t)(cells - w->head_cells) * w->record_bytes);
	if (need <= w->tail_mapped)
		return true;
	if (!os_protect_rw((char *)w->map_tail + w->tail_mapped, need - w->tail_mapped))
		return false;
	w->tail_mapped = need;
	return true;
}

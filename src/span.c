/*
 * span: islands, lit spans and dark spans; see span.h.
 *
 * A room's pages are handled in runs of neighbouring spans that are alike
 * (all with open pages, or all without), so a large room over many dark
 * spans costs one mprotect and at most two marker calls, whatever its size,
 * and the pages it opens are never marked first.
 */
#include "span.h"
#include "os.h"

#include <string.h>

static char *span_floor(const char *p)
{
	return (char *)((uintptr_t)p & ~(SPAN_BYTES - 1));
}

/*
 * The first open range of w's cells that ends after `from` and starts before
 * `end`, in address order (cells are in address order, a cell's open pages
 * inside it). False if there is none.
 */
static bool next_open(const struct wing *w, const char *from, const char *end,
		      char **lo, char **hi)
{
	uint32_t ext = atomic_load_explicit(&((struct wing *)w)->ext_cells, memory_order_relaxed);
	const char *ext_base = cell_addr(w, 0);
	if (end <= ext_base)
		return false;
	size_t first = from > ext_base ? (size_t)(from - ext_base) / w->cell_bytes : 0;
	size_t last = (size_t)(end - 1 - ext_base) / w->cell_bytes + 1;
	if (last > ext)
		last = ext;
	if (first >= last)
		return false;
	for (uint32_t c = cell_next_taken(w, (uint32_t)first, (uint32_t)last); c < last;
	     c = cell_next_taken(w, c + 1, (uint32_t)last)) {
		const struct cell_hdr *h = cell_hdr(w, c);
		char *a = cell_addr(w, c) + (size_t)h->open_first * PAGE_SIZE;
		char *b = cell_addr(w, c) + (size_t)h->open_end * PAGE_SIZE;
		if (a < b && a < end && b > from) {
			*lo = a;
			*hi = b;
			return true;
		}
	}
	return false;
}

static bool span_has_open(const struct wing *w, const char *s)
{
	char *a, *b;
	return next_open(w, s, s + SPAN_BYTES, &a, &b);
}

/* The end of the run of spans from s that are like s, up to hi. */
static char *run_end(const struct wing *w, char *s, const char *hi, bool has_open)
{
	char *e = s + SPAN_BYTES;
	while (e < hi && span_has_open(w, e) == has_open)
		e += SPAN_BYTES;
	return e;
}

/*
 * The next run of pages in [*at, end) that no open room of w holds: true
 * with it in [*lo, *hi), *at moved past it; false when there is none left.
 */
static bool next_gap(const struct wing *w, char **at, char *end, char **lo, char **hi)
{
	char *a, *b;
	while (*at < end) {
		if (!next_open(w, *at, end, &a, &b))
			a = b = end;
		if (a > *at) {
			*lo = *at;
			*hi = a;
			*at = b;
			return true;
		}
		*at = b;
	}
	return false;
}

/*
 * Make the empty pages [a, b) of a lit span fault. They hold nothing, so if
 * the kernel refuses markers (an old one, or a process under mlockall) they
 * go back to PROT_NONE and the maze to mprotect mode for good.
 */
static void guard_gap(struct maze *m, char *a, char *b)
{
	if (a == b || os_guard_install(a, (size_t)(b - a)))
		return;
	maze_fall_back(m);
	(void)os_protect_none(a, (size_t)(b - a));
}

/* Light the span at s around the open ranges already in it. */
static bool light_span(struct maze *m, const struct wing *w, char *s)
{
	char *end = s + SPAN_BYTES, *at = s, *lo, *hi;
	if (!os_protect_rw(s, SPAN_BYTES))
		return false;
	while (next_gap(w, &at, end, &lo, &hi))
		guard_gap(m, lo, hi);
	atomic_store_explicit(&m->markers_used, true, memory_order_relaxed);
	return true;
}

/*
 * Spans lit apart get an anon_vma each when first written (their neighbours,
 * PROT_NONE, have none to share), and neighbours with different ones never
 * merge: a busy wing would cost a mapping per span it lit alone. So before
 * a wing lights its spans, one page in each PROT_NONE piece of its extent
 * (the gaps between its islands) is faulted and given back: the piece keeps
 * the anon_vma, and every span lit in it later shares that. Not done at
 * start-up: a PROT_NONE piece with an anon_vma costs each fork a little
 * (2.5 µs measured), and most processes never light a wing.
 */
static void share_anon(struct maze *m, const struct wing *w, char *ext_end)
{
	char *at = cell_addr(w, 0), *lo, *hi;
	if (atomic_load_explicit(&m->stale_lit, memory_order_relaxed))
		return;         /* a gap may hold marked pages, which a write would hit */
	while (next_gap(w, &at, ext_end, &lo, &hi))
		os_share_anon(lo);
}

void span_light_wing(struct maze *m, struct wing *w)
{
	uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_relaxed);
	char *at = cell_addr(w, 0), *end = cell_addr(w, ext), *a, *b;
	char *lit_to = span_floor(at);          /* spans below it are lit */
	share_anon(m, w, end);
	while (at < end && next_open(w, at, end, &a, &b)) {
		char *s = span_floor(a) > lit_to ? span_floor(a) : lit_to;
		for (; s < b; s += SPAN_BYTES) {
			if (!light_span(m, w, s)) {
				/* The wing stays islands; the spans lit so far
				 * keep their markers until they go dark. */
				atomic_store_explicit(&m->stale_lit, true, memory_order_relaxed);
				return;
			}
		}
		lit_to = s > lit_to ? s : lit_to;
		at = b;
	}
	w->lit = true;
}

static bool open_lit(struct maze *m, struct wing *w, char *lo, char *hi)
{
	for (char *s = span_floor(lo); s < hi;) {
		bool lit = span_has_open(w, s);
		char *e = run_end(w, s, hi, lit);
		char *a = s > lo ? s : lo, *b = e < hi ? e : hi;
		if (lit) {
			os_guard_remove(a, (size_t)(b - a));
		} else if (os_protect_rw(s, (size_t)(e - s))) {
			guard_gap(m, s, a);
			guard_gap(m, b, e);
			atomic_store_explicit(&m->markers_used, true, memory_order_relaxed);
		} else {
			if (a > lo)
				span_close(m, w, lo, a);        /* what this call opened */
			return false;
		}
		s = e;
	}
	return true;
}

bool span_open(struct maze *m, struct wing *w, char *lo, char *hi)
{
	if (w->lit)
		return open_lit(m, w, lo, hi);
	/* A span that could not go dark may still be marked. */
	if (atomic_load_explicit(&m->stale_lit, memory_order_relaxed))
		os_guard_remove(lo, (size_t)(hi - lo));
	return os_protect_rw(lo, (size_t)(hi - lo));
}

/* Pages with contents that must fault from now on. */
static void close_in_place(struct maze *m, bool lit, char *a, char *b)
{
	size_t n = (size_t)(b - a);
	if (lit) {
		if (os_guard_install(a, n))
			return;
		maze_fall_back(m);
	}
	if (!os_replace_none(a, n)) {
		/* Locked pages (mlock) keep their bytes: a room reopened here, or
		 * left read-write if the map count refuses the protection too,
		 * must not show the freed block's. */
		if (!os_discard(a, n))
			memset(a, 0, n);
		(void)os_protect_none(a, n);
	}
}

void span_close(struct maze *m, struct wing *w, char *lo, char *hi)
{
	for (char *s = span_floor(lo); s < hi;) {
		bool has_open = span_has_open(w, s);
		char *e = run_end(w, s, hi, has_open);
		char *a = s > lo ? s : lo, *b = e < hi ? e : hi;
		if (has_open) {
			close_in_place(m, w->lit, a, b);
		} else if (!os_replace_none(s, (size_t)(e - s))) {
			/* The map count is exhausted: the span stays as it is,
			 * its closed pages marked, a cost in page tables only. */
			if (w->lit)
				atomic_store_explicit(&m->stale_lit, true, memory_order_relaxed);
			close_in_place(m, w->lit, a, b);
		}
		s = e;
	}
}

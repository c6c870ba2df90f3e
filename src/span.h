/*
 * span: how the maze's pages are opened and closed so that page tables and
 * mappings follow the open rooms, not the heap's history.
 *
 * A span is one 2 MiB-aligned piece of the maze: the range that one
 * page-table page maps. The maze is PROT_NONE, so every page outside an open
 * room faults. A span whose rooms are all closed is dark: nothing but the
 * reservation, no page-table page, nothing for fork to copy or exit to tear
 * down. Closing the last room of a span maps a fresh PROT_NONE range over
 * the whole span, which gives its page-table page back.
 *
 * An open room is one of two things (chosen per wing, see maze.c):
 *  - an island: only its open pages are read-write, a mapping of their own;
 *    the PROT_NONE around them is the guard. No guard marker, nothing in
 *    the page tables but the room's own pages; costs up to two mappings.
 *  - a room in a lit span: the whole span is read-write and every page of
 *    it that is not part of an open room carries a guard marker
 *    (MADV_GUARD_INSTALL). Many rooms share one mapping, at the price of a
 *    marker entry per guarded page, which fork copies and exit clears.
 *
 * Whether a span is lit is not stored: a wing is lit or not (w->lit), and a
 * span of a lit wing is lit while some cell of the wing has open pages in
 * it, which the cell records say. A span never crosses a wing (the maze is
 * aligned to spans and wings are multiples of them), so the wing's lock
 * covers its spans. Lighting a span twice does no harm.
 */
#ifndef LAB_SPAN_H
#define LAB_SPAN_H

#include "maze.h"

#define SPAN_SHIFT 21
#define SPAN_BYTES (1UL << SPAN_SHIFT)

/* Under w's lock, in markers mode: make [lo, hi) of a room read-write, as
 * an island or in lit spans by the wing's mode. The room's record must not
 * list [lo, hi) as open yet. False if the kernel refuses (nothing opened). */
bool span_open(struct maze *m, struct wing *w, char *lo, char *hi);

/* Under w's lock, in either mode: close [lo, hi) (its contents are lost),
 * darkening the spans left without open pages. The room's record must no
 * longer list [lo, hi) as open. */
void span_close(struct maze *m, struct wing *w, char *lo, char *hi);

/* Under w's lock, in markers mode: turn an island wing into a lit one,
 * lighting every span in which it has open pages. */
void span_light_wing(struct maze *m, struct wing *w);

#endif

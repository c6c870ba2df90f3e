/*
 * How unpredictable is the address of an allocation? Measured, not argued:
 * many labyrinths with the default labyrinth's geometry (32 GiB wings) are
 * opened, and the first 64-byte allocation of each is split into where its
 * wing's extent starts, which cell of the extent its room took, and which
 * slot of the room it got; and where each labyrinth's maze was put. Each
 * part's collision entropy (Renyi order 2, the chance that two runs agree)
 * is estimated from the pairs that collide; SECURITY.md quotes these numbers.
 *
 * n samples show at most 2 log2(n) bits, far less than a whole address has.
 * But an address is (its maze's base, its offset from the base), the base a
 * multiple of a span (2 MiB) drawn apart from the offset, and then
 *   P(a1 = a2) <= P(base1 = base2) * P(a1 mod 2 MiB = a2 mod 2 MiB)
 * (a collision needs the low 21 bits to agree, and given any offsets the
 * bases can agree in one way at most often as in P(base1 = base2), by
 * Cauchy-Schwarz), so the entropies of the base and of the address's place
 * in its span, each measurable here, add up to a lower bound.
 */
#include "collision.h"
#include "helpers.h"
#include "lab.h"
#include "room.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define RUNS 10000
#define BASE_RUNS 100000        /* the base: about 26 bits, so 80 pairs collide */

static uint64_t ext_lo[RUNS], cell[RUNS], slot[RUNS], in_span[RUNS], offset[RUNS], addr[RUNS];
static uint64_t base[BASE_RUNS];

static double report_n(const char *what, uint64_t *v, size_t n, double at_least)
{
	bool bound;
	double bits = collision_bits(v, n, &bound);
	cr_log_info("entropy: %s: %s%.1f bits (%zu runs)", what, bound ? "more than " : "", bits,
		    n);
	cr_assert_geq(bits, at_least, "%s: %.1f bits", what, bits);
	return bits;
}

static double report(const char *what, uint64_t *v, double at_least)
{
	return report_n(what, v, RUNS, at_least);
}

Test(entropy, first_small_allocation_of_a_default_sized_labyrinth, .timeout = 600)
{
	unsigned cls = small_class(65);         /* 64 bytes and their canary byte */
	for (int i = 0; i < BASE_RUNS; i++) {
		labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 32UL << 30,
					  .max_alloc = 1 << 20, .arenas = 1 };
		labyrinth_t *lab = labyrinth_open(&o);
		cr_assert_not_null(lab);
		uintptr_t b = (uintptr_t)lab->maze.base;
		cr_assert_eq(b % (2UL << 20), 0, "the maze at %#lx is not span-aligned", b);
		base[i] = b >> 21;
		if (i >= RUNS) {
			labyrinth_close(lab);
			continue;
		}
		char *p = labyrinth_malloc(lab, 64);
		addr[i] = (uintptr_t)p;
		offset[i] = (uintptr_t)p - b;
		in_span[i] = (uintptr_t)p % (2UL << 20);
		struct wing *w = &lab->maze.wings[cls];
		size_t off = 0;
		uint32_t c = wing_cell_of(w, p, &off);
		cr_assert_neq(c, CELL_NONE);
		ext_lo[i] = w->ext_lo;
		cell[i] = c;
		slot[i] = off / w->class_size;
		labyrinth_close(lab);
	}
	/* Expected from the geometry (80-byte class, cells of 24 KiB): a quarter
	 * of 1.40 M cells (18.4 bits), one of the 170 cells of the first extent
	 * (7.4 bits), one of 256 slots (8 bits). */
	report("extent start in the wing", ext_lo, 17);
	report("room's cell in the first extent", cell, 7);
	report("slot in the room", slot, 7);
	/* The parts above overlap: the cell's place in the wing is the extent's
	 * start plus the cell, about 18.5 bits, not their sum: with the slot
	 * about 26.5, more than 10,000 runs can show (25.6), so a run sees a
	 * few colliding pairs (3 pairs read as 24.0 bits); 22 leaves room. */
	report("the address given the maze's base", offset, 22);
	/* About 25.8 bits: a span of the 116 TiB the maze can start in; where
	 * mmap put it, each maze came back where the last one had been. */
	double b = report_n("the maze's base", base, BASE_RUNS, 24);
	/* About 16 bits: cells start on 256 places 8 KiB apart in a span, each
	 * with 256 slots. */
	double r = report("the address's place in its span", in_span, 15);
	report("the address (at most what the runs can show)", addr, 24);
	cr_log_info("entropy: the address: at least %.1f bits (the two above)", b + r);
	cr_assert_geq(b + r, 40, "the first small allocation: %.1f bits", b + r);
}

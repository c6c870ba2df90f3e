/*
 * How unpredictable is the address of an allocation? Measured, not argued:
 * many labyrinths with the default labyrinth's geometry (32 GiB wings) are
 * opened, and the first 64-byte allocation of each is split into where its
 * wing's extent starts, which cell of the extent its room took, and which
 * slot of the room it got. Each part's collision entropy (Renyi order 2, the
 * chance that two runs agree) is estimated from the pairs that collide;
 * SECURITY.md quotes these numbers.
 */
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* -log2 P(two samples agree), from the colliding pairs among n samples;
 * with no collision, the bound that n samples can show. */
static double collision_bits(uint64_t *v, size_t n, bool *bound)
{
	qsort(v, n, sizeof *v, cmp_u64);
	double pairs = 0;
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && v[j] == v[i]; j++)
			;
		pairs += (double)(j - i) * (double)(j - i - 1) / 2;
	}
	double all = (double)n * (double)(n - 1) / 2;
	*bound = pairs == 0;
	return log2(all / (pairs ? pairs : 1));
}

static uint64_t ext_lo[RUNS], cell[RUNS], slot[RUNS];

static void report(const char *what, uint64_t *v, double at_least)
{
	bool bound;
	double bits = collision_bits(v, RUNS, &bound);
	cr_log_info("entropy: %s: %s%.1f bits (%d runs)", what, bound ? "more than " : "", bits,
		    RUNS);
	cr_assert_geq(bits, at_least, "%s: %.1f bits", what, bits);
}

Test(entropy, first_small_allocation_of_a_default_sized_labyrinth, .timeout = 600)
{
	unsigned cls = small_class(65);         /* 64 bytes and their canary byte */
	for (int i = 0; i < RUNS; i++) {
		labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 32UL << 30,
					  .max_alloc = 1 << 20, .arenas = 1 };
		labyrinth_t *lab = labyrinth_open(&o);
		cr_assert_not_null(lab);
		char *p = labyrinth_malloc(lab, 64);
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
}

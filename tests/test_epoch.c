/*
 * Epochs: every N room placements the placement key is redrawn, and rooms
 * emptied during an epoch are not reused in place before it ends.
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"
#include "maze.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define LARGE 20000     /* large class 0: one room (one placement) each */

static labyrinth_t *open_epoch(unsigned epoch)
{
	labyrinth_options_t o = { .size = sizeof o, .epoch = epoch };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	return lab;
}

Test(epoch, counts_every_n_placements)
{
	labyrinth_t *lab = open_epoch(16);
	void *p[80];
	cr_assert_eq(labyrinth_epoch(lab), 0);
	for (int i = 0; i < 80; i++) {
		p[i] = labyrinth_malloc(lab, LARGE);
		cr_assert_not_null(p[i]);
		cr_assert_eq(labyrinth_epoch(lab), (uint64_t)(i + 1) / 16, "after %d placements", i + 1);
	}
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.epochs, 5);
	cr_assert_eq(s.rooms_placed, 80);
	for (int i = 0; i < 80; i++)
		labyrinth_free(lab, p[i]);
	labyrinth_close(lab);
}

static bool seen_before(uintptr_t *a, int n, uintptr_t v)
{
	for (int i = 0; i < n; i++)
		if (a[i] == v)
			return true;
	return false;
}

/* Without retirement, 400 frees into an extent of a few hundred cells would
 * surely hand an address out twice (the region quarantine holds only 64). */
Test(epoch, emptied_rooms_are_not_reused_within_an_epoch)
{
	enum { N = 400 };
	labyrinth_t *lab = open_epoch(1u << 20);
	static uintptr_t addr[N];
	for (int i = 0; i < N; i++) {
		char *p = labyrinth_malloc(lab, LARGE);
		cr_assert_not_null(p);
		cr_assert(!seen_before(addr, i, (uintptr_t)p), "address reused in place at %d", i);
		addr[i] = (uintptr_t)p;
		labyrinth_free(lab, p);
	}
	cr_assert_eq(labyrinth_epoch(lab), 0);
	labyrinth_close(lab);
}

/* Once the epoch has ended, the retired cells are free again. */
Test(epoch, retired_rooms_come_back_in_the_next_epoch)
{
	enum { N = 2000 };
	labyrinth_t *lab = open_epoch(64);
	static uintptr_t addr[N];
	int reused = 0;
	for (int i = 0; i < N; i++) {
		char *p = labyrinth_malloc(lab, LARGE);
		reused += seen_before(addr, i, (uintptr_t)p);
		addr[i] = (uintptr_t)p;
		labyrinth_free(lab, p);
	}
	cr_assert_gt(reused, 0, "no cell was ever reused: retired cells never return");
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_lt(s.live_rooms, 200, "%lu rooms still open", (unsigned long)s.live_rooms);
	labyrinth_close(lab);
}

/* What the wing's rejection sampling would pick with generator r, given the
 * map of taken cells in which `placed` is still free. */
static uint32_t predict(struct wing *w, struct rng *r, uint32_t placed)
{
	uint32_t ext = atomic_load(&w->ext_cells);
	for (int tries = 0; tries < 64; tries++) {
		uint32_t c = rng_below(r, ext);
		if (c == placed || !cell_taken(w, c))
			return c;
	}
	return CELL_NONE;
}

/*
 * An attacker who learned a wing's key (here: a copy of its generator)
 * predicts every placement of the epoch, and none of the next one.
 */
Test(epoch, a_key_learned_in_one_epoch_predicts_nothing_in_the_next)
{
	enum { EPOCH = 32 };
	labyrinth_t *lab = open_epoch(EPOCH);
	struct wing *w = &lab->maze.wings[SMALL_CLASSES];      /* large class 0 */
	/* A wing draws its key at its first placement: learn it just after. */
	cr_assert_not_null(labyrinth_malloc(lab, LARGE));
	struct rng learned = *w->rng;
	int hits[2] = { 0, 0 };
	for (int i = 1; i < 2 * EPOCH; i++) {
		char *p = labyrinth_malloc(lab, LARGE);
		cr_assert_not_null(p);
		size_t off;
		uint32_t cell = wing_cell_of(w, p, &off);
		hits[i / EPOCH] += predict(w, &learned, cell) == cell;
	}
	cr_assert_eq(hits[0], EPOCH - 1, "the copy should predict its own epoch: %d of %d",
		     hits[0], EPOCH - 1);
	cr_assert_leq(hits[1], 2, "%d of %d placements of the next epoch predicted", hits[1], EPOCH);
	labyrinth_close(lab);
}

Test(epoch, zero_in_the_options_follows_the_variable)
{
	labyrinth_t *lab = open_epoch(0);
	cr_assert_eq(lab->maze.epoch_len, 4096);
	labyrinth_close(lab);
}

/* A small wing full of retired cells still serves: its epoch ends early. */
Test(epoch, a_full_wing_ends_its_epoch_rather_than_fail)
{
	labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 64 << 20, .epoch = 1u << 30 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	for (int i = 0; i < 20000; i++) {
		char *p = labyrinth_malloc(lab, 256 << 10);     /* about 200 cells in the wing */
		cr_assert_not_null(p, "allocation %d failed", i);
		labyrinth_free(lab, p);
	}
	labyrinth_close(lab);
}

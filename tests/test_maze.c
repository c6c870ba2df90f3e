/*
 * The layout: guard pages around every live room, random placement, and a
 * mapping count that stays bounded as the heap grows. Run in both guard modes
 * (tests/run-criterion sets LABYRINTH_GUARD).
 */
#include "helpers.h"
#include "lab.h"
#include "maze.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static struct maze *maze_of(labyrinth_t *lab)
{
	return &((struct labyrinth *)lab)->maze;
}

static char *room_start(labyrinth_t *lab, void *p, struct wing **wp)
{
	struct wing *w = maze_wing_of(maze_of(lab), p);
	cr_assert_not_null(w);
	size_t off;
	uint32_t cell = wing_cell_of(w, p, &off);
	cr_assert_neq(cell, CELL_NONE);
	*wp = w;
	return cell_addr(w, cell);
}

Test(maze, guard_mode_is_the_one_asked_for)
{
	labyrinth_stats_t s;
	labyrinth_t *lab = open_private(0);
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.guard_mode, testing_mprotect() ? LAB_GUARD_MPROTECT : LAB_GUARD_MARKERS);
	labyrinth_close(lab);
}

Test(maze, small_room_has_guard_pages_on_both_sides)
{
	labyrinth_t *lab = open_private(0);
	for (size_t size = 15; size < 16384; size = size * 4 + 3) {
		char *p = labyrinth_malloc(lab, size);
		struct wing *w;
		char *start = room_start(lab, p, &w);
		cr_assert_not(read_faults(start), "the room itself faults");
		cr_assert_not(read_faults(start + w->room_bytes - 1));
		cr_assert(read_faults(start - 1), "no guard before the room of class %zu", size);
		cr_assert(read_faults(start + w->room_bytes), "no guard after the room of class %zu", size);
		cr_assert(write_faults(start + w->room_bytes));
	}
	labyrinth_close(lab);
}

Test(maze, large_region_has_guard_pages_on_both_sides)
{
	labyrinth_t *lab = open_private(0);
	static const size_t sizes[] = { 16385, 100000, 1 << 20, (3 << 20) + 123 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char *p = labyrinth_malloc(lab, sizes[i]);
		size_t end = (sizes[i] + 4095) & ~(size_t)4095;
		cr_assert_not(read_faults(p + sizes[i] - 1));
		cr_assert(read_faults(p - 1), "no guard before a %zu-byte region", sizes[i]);
		cr_assert(read_faults(p + end), "no guard after a %zu-byte region", sizes[i]);
	}
	labyrinth_close(lab);
}

Test(maze, aligned_large_region_has_guard_pages_on_both_sides)
{
	labyrinth_t *lab = open_private(0);
	for (size_t align = 8192; align <= (2 << 20); align *= 4) {
		for (int i = 0; i < 8; i++) {
			char *p = labyrinth_aligned_alloc(lab, align, 20480);
			cr_assert_eq((uintptr_t)p % align, 0);
			cr_assert_not(read_faults(p + 20479));
			cr_assert(read_faults(p - 1), "no guard before a block aligned to %zu", align);
			cr_assert(read_faults(p + 20480), "no guard after a block aligned to %zu", align);
		}
	}
	labyrinth_close(lab);
}

/* Guard markers are page-table entries: a big region must not pay for its neighbours. */
Test(maze, page_tables_follow_use_not_class_size)
{
	labyrinth_t *lab = open_private(64UL << 30);
	long before = vm_pte_kib();
	char *p = labyrinth_malloc(lab, 1UL << 30);
	cr_assert_not_null(p);
	p[0] = 1;
	long after = vm_pte_kib();
	cr_log_info("VmPTE %ld kB before, %ld kB with a 1 GiB region", before, after);
	cr_assert_lt(after - before, 1024, "a 1 GiB region cost %ld kB of page tables", after - before);
	labyrinth_free(lab, p);
	labyrinth_close(lab);
}

/*
 * Near the map count's limit, rooms of any size are joined rather than
 * refused. Large blocks hold out longer than small rooms (one and a half
 * island budgets): 20,000 of them keep the guard page past their end,
 * even with mprotect guards, where the budget is 16,382 islands.
 */
Test(maze, many_large_rooms_fit_the_map_count, .timeout = 300)
{
	enum { N = 40000, GUARDED = 20000 };
	labyrinth_t *lab = open_private(8UL << 30);
	static char *p[N];
	for (int i = 0; i < N; i++) {
		if (i == GUARDED)       /* before any join: later ones may pick them */
			for (int j = 0; j < GUARDED; j += 199)
				cr_assert(write_faults(p[j] + 36 * 1024),
					  "block %d of %d has no guard after it", j, i);
		p[i] = labyrinth_malloc(lab, 36 * 1024);
		cr_assert_not_null(p[i], "allocation %d of 36 KiB failed", i);
		p[i][0] = 1;
	}
	long maps = count_maps();
	cr_log_info("%d rooms of 36 KiB: %ld mappings", N, maps);
	cr_assert_lt(maps, 65530 - 2048);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(p[i][0], 1);
		labyrinth_free(lab, p[i]);
	}
	for (int i = 0; i < N; i += N / 16)     /* past the island budget too */
		cr_assert(read_faults(p[i]), "freed block %d is still readable", i);
	labyrinth_trim(lab);    /* the last frees wait in the region quarantine */
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.mapped_bytes, 0, "%llu bytes still mapped", (unsigned long long)s.mapped_bytes);
	labyrinth_close(lab);
}

/* Rooms of lab left hollow (maze.c), over every wing. */
static unsigned hollow_cells(labyrinth_t *lab)
{
	struct maze *m = &((struct labyrinth *)lab)->maze;
	unsigned n = 0;
	for (unsigned i = 0; i < m->nwings; i++)
		n += m->wings[i].hollow_count;
	return n;
}

/*
 * Past the island budget, frees inside runs of joined rooms must not take
 * the map count to the kernel's limit: 150,000 blocks of 20 KB, a third of
 * them freed, then 37,500 of 40 KB (a wing with no room yet, whose first
 * must open alone). With mprotect guards every split went on to 65,532
 * mappings and 18,261 of the 40 KB blocks were refused; placing each
 * joined room searched the whole extent (27 s). Nothing is touched: the
 * map count is the point, not memory.
 */
Test(maze, frees_inside_joined_runs_keep_the_map_count_in_bounds, .timeout = 300)
{
	enum { N = 150000, M = N / 4 };
	labyrinth_t *lab = open_private(16UL << 30);
	static char *p[N + M];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(p[i] = labyrinth_malloc(lab, 20000), "block %d of 20 KB", i);
	for (int i = 1; i < N; i += 3) {
		labyrinth_free(lab, p[i]);
		p[i] = NULL;
	}
	long after_frees = count_maps();
	int refused = 0;
	for (int i = N; i < N + M; i++)
		refused += !(p[i] = labyrinth_malloc(lab, 40000));
	long maps = count_maps();
	cr_log_info("mappings: %ld after the frees, %ld after %d more blocks", after_frees, maps, M);
	cr_assert_eq(refused, 0, "%d of %d blocks of 40 KB refused (%ld mappings)", refused, M, maps);
	cr_assert_lt(maps, 65530 - 2048);
	/* Rooms left hollow between live neighbours stay until a trim finds the
	 * map count has room again: free the 40 KB blocks and the first half. */
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	unsigned before = hollow_cells(lab);
	if (s.guard_mode == LAB_GUARD_MPROTECT)
		cr_assert_gt(before, 0, "no room was left hollow: the test no longer reaches the bound");
	for (int i = 0; i < N / 2; i++) {
		labyrinth_free(lab, p[i]);
		p[i] = NULL;
	}
	for (int i = N; i < N + M; i++) {
		labyrinth_free(lab, p[i]);
		p[i] = NULL;
	}
	labyrinth_trim(lab);
	cr_log_info("rooms left hollow: %u, %u after a trim", before, hollow_cells(lab));
	cr_assert_eq(hollow_cells(lab), 0, "%u rooms still hollow after the trim", hollow_cells(lab));
	for (int i = 0; i < N + M; i++)
		labyrinth_free(lab, p[i]);
	labyrinth_trim(lab);
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.mapped_bytes, 0, "%llu bytes still open (rooms left hollow)",
		     (unsigned long long)s.mapped_bytes);
	labyrinth_close(lab);
}

Test(maze, freed_large_region_faults)
{
	labyrinth_t *lab = open_private(0);
	char *p = labyrinth_malloc(lab, 200000);
	p[0] = p[199999] = 1;
	labyrinth_free(lab, p);
	cr_assert(read_faults(p), "a freed large region is still readable");
	cr_assert(read_faults(p + 199999));
	labyrinth_close(lab);
}

Test(maze, retired_room_faults)
{
	labyrinth_t *lab = open_private(0);
	char *p = labyrinth_malloc(lab, 700);
	*p = 1;
	labyrinth_free(lab, p);
	flush_quarantine(lab);
	labyrinth_trim(lab);
	cr_assert(read_faults(p), "a retired room is still readable");
	labyrinth_close(lab);
}

/* Room order should look like a shuffle: about half the steps go up. */
Test(maze, room_placement_is_not_sequential)
{
	enum { N = 400 };
	labyrinth_t *lab = open_private(0);
	static uintptr_t addr[N];
	for (int i = 0; i < N; i++)
		addr[i] = (uintptr_t)labyrinth_malloc(lab, 20000);
	int up = 0, adjacent = 0;
	for (int i = 1; i < N; i++) {
		up += addr[i] > addr[i - 1];
		uintptr_t d = addr[i] > addr[i - 1] ? addr[i] - addr[i - 1] : addr[i - 1] - addr[i];
		adjacent += d <= 6 * 4096;      /* the next cell over */
	}
	cr_log_info("ascending steps %d of %d, adjacent %d", up, N - 1, adjacent);
	cr_assert(up > N / 4 && up < 3 * N / 4, "placement looks ordered: %d of %d steps ascend", up, N - 1);
	cr_assert_lt(adjacent, N / 10, "%d of %d rooms placed next to the previous", adjacent, N - 1);
	labyrinth_close(lab);
}

Test(maze, slots_are_handed_out_in_random_order)
{
	labyrinth_t *lab = open_private(0);
	enum { N = 64 };
	uintptr_t a[N];
	int up = 0;
	for (int i = 0; i < N; i++)
		a[i] = (uintptr_t)labyrinth_malloc(lab, 32);
	for (int i = 1; i < N; i++)
		up += a[i] > a[i - 1];
	cr_assert(up > N / 4 && up < 3 * N / 4, "slot order looks sequential: %d of %d ascend", up, N - 1);
	labyrinth_close(lab);
}

Test(maze, first_allocation_offset_differs_between_labyrinths)
{
	enum { N = 8 };
	uintptr_t off[N];
	int distinct = 0;
	for (int i = 0; i < N; i++) {
		labyrinth_t *lab = open_private(0);
		off[i] = (uintptr_t)labyrinth_malloc(lab, 64) - (uintptr_t)maze_of(lab)->base;
		labyrinth_close(lab);
	}
	for (int i = 0; i < N; i++) {
		int seen = 0;
		for (int j = 0; j < i; j++)
			seen |= off[j] == off[i];
		distinct += !seen;
	}
	cr_assert_geq(distinct, N - 1, "only %d distinct first offsets of %d", distinct, N);
}

/* 512 MiB of 64-byte objects: the map count must not follow the room count. */
Test(maze, mapping_count_stays_bounded, .timeout = 300)
{
	const size_t total = 512UL << 20, size = 64, n = total / size;
	labyrinth_t *lab = open_private(4UL << 30);
	long before = count_maps();
	void **p = malloc(n * sizeof *p);
	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++) {
		p[i] = labyrinth_malloc(lab, size);
		cr_assert_not_null(p[i], "allocation %zu failed", i);
		*(char *)p[i] = 1;
	}
	long during = count_maps();
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_log_info("%llu rooms, %ld mappings before, %ld with 512 MiB live",
		    (unsigned long long)s.live_rooms, before, during);
	long max_maps = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f) {
		cr_assert_eq(fscanf(f, "%ld", &max_maps), 1);
		fclose(f);
	}
	if (testing_mprotect())
		cr_assert_leq(during - before, max_maps / 2 + 64, "%ld new mappings", during - before);
	else
		cr_assert_leq(during - before, 64, "%ld new mappings with guard markers", during - before);
	for (size_t i = 0; i < n; i++)
		labyrinth_free(lab, p[i]);
	free(p);
	labyrinth_trim(lab);
	long after = count_maps();
	cr_assert_leq(after - before, 64, "%ld mappings left after freeing everything", after - before);
	labyrinth_close(lab);
}

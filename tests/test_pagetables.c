/*
 * Page tables follow the open rooms, not the heap's history: what a process
 * pays at fork and exit. And every page of the maze outside an open room
 * faults, however the wing guards its rooms.
 */
#include "helpers.h"
#include "lab.h"
#include "maze.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SHADOW "its shadow memory counts in VmPTE and VmRSS"

/* 100 blocks of 1 GiB, one page of each touched, each freed: the page
 * tables of a closed block go back with it. */
Test(pagetables, closed_large_blocks_give_their_page_tables_back, .timeout = 120)
{
	SKIP_UNDER_ASAN(SHADOW);
	labyrinth_t *lab = labyrinth_default();
	long before = vm_pte_kib();
	for (int i = 0; i < 100; i++) {
		char *p = labyrinth_malloc(lab, 1UL << 30);
		cr_assert_not_null(p, "allocation %d of 1 GiB failed", i);
		p[(size_t)i << 20] = 1;
		labyrinth_free(lab, p);
	}
	long after = vm_pte_kib();
	cr_log_info("VmPTE %ld kB before, %ld kB after 100 x 1 GiB", before, after);
	cr_assert_leq(after - before, 1024, "100 x 1 GiB left %ld kB of page tables",
		      after - before);
}

/*
 * A string grown by malloc, copy and free, 20,000 times, to 180 KiB: at
 * most 180 KiB was ever live, but its blocks were placed at 20,000 random
 * cells. glibc's page tables for this program are about 52 KiB; the bound
 * is four times that plus 1 MiB.
 */
Test(pagetables, a_grown_string_leaves_page_tables_for_what_is_live, .timeout = 120)
{
	SKIP_UNDER_ASAN(SHADOW);
	labyrinth_t *lab = labyrinth_default();
	long before = vm_pte_kib();
	char *s = labyrinth_malloc(lab, 1);
	size_t len = 0;
	s[0] = 0;
	for (int i = 0; i < 20000; i++) {
		char *t = labyrinth_malloc(lab, len + 10);
		cr_assert_not_null(t);
		memcpy(t, s, len);
		memset(t + len, 'a', 9);
		len += 9;
		t[len] = 0;
		labyrinth_free(lab, s);
		s = t;
	}
	long after = vm_pte_kib();
	cr_log_info("VmPTE %ld kB before, %ld kB with a %zu-byte string grown", before, after, len);
	cr_assert_leq(after - before, 4 * 52 + 1024, "%ld kB of page tables", after - before);
	labyrinth_free(lab, s);
}

/*
 * A wild write at p + k cells, into cells of the block's wing where no room
 * was ever opened, must fault, not land in memory that a later calloc hands
 * out: small cells and the largest ones, whose wings used to be read-write
 * where no room had been.
 */
static void wild_writes_fault(size_t size)
{
	labyrinth_t *lab = open_private(64UL << 30);
	char *p = labyrinth_malloc(lab, size);
	cr_assert_not_null(p);
	struct wing *w = maze_wing_of(&lab->maze, p);
	cr_assert_not_null(w);
	int tried = 0;
	for (long k = -64; k <= 64; k++) {
		char *q = p + k * (long)w->cell_bytes;
		if (!k || q < w->base || q >= w->base + w->bytes)
			continue;
		tried++;
		cr_expect(write_faults(q), "a write %ld cells from a %zu-byte block landed", k, size);
	}
	cr_assert_gt(tried, 32, "only %d cells around the block", tried);
	labyrinth_free(lab, p);
	labyrinth_close(lab);
}

Test(pagetables, wild_writes_into_unopened_small_cells_fault, .timeout = 120)
{
	wild_writes_fault(16000);
}

Test(pagetables, wild_writes_into_unopened_large_cells_fault, .timeout = 120)
{
	wild_writes_fault(245760);
	wild_writes_fault(3UL << 20);
}

/* A busy wing lights its spans: its rooms share mappings, and every room
 * still has a guard page after it, open neighbours or not. */
Test(pagetables, a_busy_wing_keeps_every_guard, .timeout = 120)
{
	enum { N = 4000 };
	labyrinth_t *lab = open_private(0);
	static char *p[N];
	long before = count_maps();
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_malloc(lab, 4000);
		cr_assert_not_null(p[i]);
	}
	long during = count_maps();
	cr_log_info("%d blocks of 4000 bytes: %ld mappings more", N, during - before);
	if (!testing_mprotect())
		cr_assert_leq(during - before, 64, "%ld mappings for one busy wing", during - before);
	for (int i = 0; i < N; i += 97) {
		struct wing *w = maze_wing_of(&lab->maze, p[i]);
		size_t off;
		uint32_t cell = wing_cell_of(w, p[i], &off);
		cr_assert_neq(cell, CELL_NONE);
		char *guard = cell_addr(w, cell) + w->room_bytes;
		cr_expect(write_faults(guard), "the guard page after block %d took a write", i);
	}
	for (int i = 0; i < N; i++)
		labyrinth_free(lab, p[i]);
	labyrinth_close(lab);
}

/*
 * Fork copies an entry for every resident page. 2,048 blocks of 12,000
 * bytes freed one after another leave 1,024 of them in the thread's
 * quarantine: 12 MiB of cleared pages if each stayed resident. At most
 * 1 MiB of them may; the others' pages go back (and read as zero).
 */
Test(pagetables, a_quarantine_pins_at_most_a_mebibyte_of_cleared_slots, .timeout = 60)
{
	SKIP_UNDER_ASAN(SHADOW);
	labyrinth_t *lab = labyrinth_default();
	long before = status_kib("VmRSS");
	for (int i = 0; i < 2048; i++) {
		char *p = labyrinth_malloc(lab, 12000);
		cr_assert_not_null(p);
		memset(p, 0x5a, 12000);
		labyrinth_free(lab, p);
	}
	long after = status_kib("VmRSS");
	cr_log_info("VmRSS %ld kB before, %ld kB after 2,048 x 12,000 bytes", before, after);
	cr_assert_leq(after - before, 4096, "the quarantine pins %ld kB", after - before);
}

/* Bytes of rooms the default labyrinth has open. */
static uint64_t mapped_now(void)
{
	labyrinth_stats_t s;
	labyrinth_get_stats(NULL, &s);
	return s.mapped_bytes;
}

/* Sizes from 1 KiB to 16 KiB, each passed once: four blocks freed, one
 * kept (written end to end), then every freed one out of the thread's
 * quarantine. Each class left a room of cleared, resident slots. */
enum { SIZES = 30 };

static size_t size_of(int i)
{
	return 1000 + 500 * (size_t)i;
}

static void pass_through_sizes(labyrinth_t *lab, char **live)
{
	for (int i = 0; i < SIZES; i++) {
		for (int k = 0; k < 4; k++)
			labyrinth_free(lab, labyrinth_malloc(lab, size_of(i)));
		live[i] = labyrinth_malloc(lab, size_of(i) / 2);
		cr_assert_not_null(live[i]);
		memset(live[i], 'a' + i % 26, size_of(i) / 2);
	}
	for (int i = 0; i < 8192; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 16));
}

static void expect_intact_and_free(labyrinth_t *lab, char **live)
{
	for (int i = 0; i < SIZES; i++) {
		for (size_t b = 0; b < size_of(i) / 2; b++)
			cr_assert_eq(live[i][b], 'a' + i % 26, "block %d changed at %zu", i, b);
		labyrinth_free(lab, live[i]);
	}
}

/*
 * A heap that left those sizes and went on to other work kept their rooms
 * open for the rest of the process (a shell that grew a string). After
 * 4,096 more room placements (large blocks here) they must be given back;
 * the blocks still live stay open and intact.
 */
Test(pagetables, rooms_left_behind_are_given_back_after_4096_placements, .timeout = 60)
{
	SKIP_UNDER_ASAN(SHADOW);
	labyrinth_t *lab = labyrinth_default();
	char *live[SIZES];
	pass_through_sizes(lab, live);
	uint64_t before = mapped_now();
	for (int i = 0; i < 4200; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 20000));
	labyrinth_free(lab, labyrinth_malloc(lab, 16));
	uint64_t after = mapped_now();
	cr_log_info("rooms open: %llu KiB before 4,200 large blocks, %llu KiB after",
		    (unsigned long long)before >> 10, (unsigned long long)after >> 10);
	cr_assert_geq(before - after, 1UL << 20, "rooms open: %llu KiB before, %llu KiB after",
		      (unsigned long long)before >> 10, (unsigned long long)after >> 10);
	expect_intact_and_free(lab, live);
}

/* The same when the other work is a heap that grows (5 MiB of live
 * 100-byte blocks), with few placements: those rooms must not add to it. */
Test(pagetables, rooms_left_behind_are_given_back_as_the_heap_grows, .timeout = 60)
{
	SKIP_UNDER_ASAN(SHADOW);
	enum { N = 45000 };
	labyrinth_t *lab = labyrinth_default();
	char *live[SIZES];
	pass_through_sizes(lab, live);
	uint64_t before = mapped_now();
	static char *keep[N];
	for (int i = 0; i < N; i++) {
		keep[i] = labyrinth_malloc(lab, 100);
		cr_assert_not_null(keep[i]);
	}
	uint64_t after = mapped_now(), grown = (uint64_t)N * 112;
	cr_log_info("rooms open: %llu KiB before %llu KiB of new blocks, %llu KiB after",
		    (unsigned long long)before >> 10, (unsigned long long)grown >> 10,
		    (unsigned long long)after >> 10);
	cr_assert_leq(after + (1UL << 20), before + grown + (grown >> 3),
		      "rooms open: %llu KiB before %llu KiB of new blocks, %llu KiB after",
		      (unsigned long long)before >> 10, (unsigned long long)grown >> 10,
		      (unsigned long long)after >> 10);
	for (int i = 0; i < N; i++)
		labyrinth_free(lab, keep[i]);
	expect_intact_and_free(lab, live);
}

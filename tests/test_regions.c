/*
 * The region quarantine: freed large regions keep their cells for the next
 * 64 large frees, but must never make the heap refuse a request it has room
 * for (a wing of the biggest classes has only a few cells), and trim must
 * not hand their addresses out early.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define GIB (1UL << 30)
#define MIB (1UL << 20)

/*
 * Malloc and free `size` `rounds` times; every round must succeed, and an
 * address may come back only once the wing has no other cell: the oldest
 * held region leaves first, so addresses cycle through the wing's cells.
 */
static void churn_largest(labyrinth_t *lab, size_t size, int rounds)
{
	void *seen[64];
	int distinct = 0;
	for (int i = 0; i < rounds; i++) {
		errno = 0;
		char *p = labyrinth_malloc(lab, size);
		cr_assert_not_null(p, "round %d of malloc(%zu) then free: NULL (errno %d)", i + 1, size,
				   errno);
		p[0] = p[size - 1] = 1;
		int j = i - 1;          /* the last round that had p */
		while (j >= 0 && j > i - 64 && seen[j % 64] != p)
			j--;
		if (j < 0 || j <= i - 64) {
			cr_assert_eq(distinct, i, "round %d: a new address after %d came back", i + 1,
				     distinct);
			distinct++;
		} else {
			cr_assert_eq(j, i - distinct,
				     "round %d took the cell of round %d, not the oldest held (%d)",
				     i + 1, j + 1, i - distinct + 1);
		}
		seen[i % 64] = p;
		labyrinth_free(lab, p);
	}
	cr_log_info("malloc(%zu): %d rounds over %d cells", size, rounds, distinct);
	cr_assert_gt(distinct, 1);
}

/* The report: from the fifth round on, malloc(60 GiB) failed. */
Test(regions, the_default_heap_serves_its_largest_class_forever)
{
	churn_largest(labyrinth_default(), 60 * GIB, 12);
}

/* The same in a private labyrinth's largest class (16 MiB; 5 to 7 cells). */
Test(regions, a_private_heap_serves_its_largest_class_forever)
{
	labyrinth_t *lab = open_private(64 * MIB);
	churn_largest(lab, 16 * MIB, 40);
	labyrinth_close(lab);
}

/* A class below the largest still spills upward first, and the spill does
 * not starve the class above: both go on forever. */
Test(regions, two_full_classes_take_turns)
{
	labyrinth_t *lab = open_private(64 * MIB);
	for (int i = 0; i < 60; i++) {
		char *a = labyrinth_malloc(lab, 13 * MIB);
		char *b = labyrinth_malloc(lab, 16 * MIB);
		cr_assert(a && b, "round %d: %p %p", i + 1, (void *)a, (void *)b);
		labyrinth_free(lab, a);
		labyrinth_free(lab, b);
	}
	labyrinth_close(lab);
}

/* A held region costs no memory: its pages went back to the kernel at free,
 * and its page tables with them (its spans are dark). So trim has nothing
 * of it to give back. (On the code before, trim retired it and said 64 MiB
 * were released; resident memory and page tables did not move.) */
Test(regions, a_held_region_holds_no_memory)
{
	SKIP_UNDER_ASAN("its shadow memory counts in VmPTE and VmRSS");
	labyrinth_t *lab = open_private(0);
	/* The first block of the wing maps its index and page directory. */
	labyrinth_free(lab, labyrinth_malloc(lab, 64 * MIB));
	long rss0 = status_kib("VmRSS"), pte0 = vm_pte_kib();
	char *p = labyrinth_malloc(lab, 64 * MIB);
	cr_assert_not_null(p);
	memset(p, 7, 64 * MIB);
	long rss1 = status_kib("VmRSS");
	cr_assert_geq(rss1 - rss0, 60 * 1024, "touching 64 MiB added %ld KiB", rss1 - rss0);
	labyrinth_free(lab, p);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.quarantined_regions, 2);
	long rss2 = status_kib("VmRSS"), pte2 = vm_pte_kib();
	cr_log_info("RSS %ld, %ld, %ld KiB; page tables %ld, %ld KiB", rss0, rss1, rss2, pte0, pte2);
	cr_assert_leq(rss2 - rss0, 1024, "a held region keeps %ld KiB resident", rss2 - rss0);
	/* 64 MiB kept mapped would keep 128 KiB of page tables; the rest of
	 * the process (the test runner's threads) moves VmPTE by a few pages. */
	cr_assert_leq(pte2 - pte0, 32, "a held region keeps %ld KiB of page tables", pte2 - pte0);
	labyrinth_close(lab);
}

/*
 * trim used to retire every held region: the address of a block freed just
 * before came back at once. With one epoch per placement a retired cell is
 * free again at the wing's next placement, so only the quarantine keeps it.
 * The freed address must not come back within the quarantine's 64 frees.
 */
Test(regions, trim_keeps_freed_addresses_held)
{
	labyrinth_options_t o = { .size = sizeof o, .epoch = 1 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	int early = 0;
	for (int trial = 0; trial < 20; trial++) {
		char *p = labyrinth_malloc(lab, MIB);
		cr_assert_not_null(p);
		labyrinth_free(lab, p);
		labyrinth_trim(lab);
		for (int i = 0; i < 63; i++) {
			char *q = labyrinth_malloc(lab, MIB);
			cr_assert_not_null(q);
			early += q == p;
			labyrinth_free(lab, q);
		}
	}
	cr_assert_eq(early, 0, "a trimmed address came back %d times within 63 allocations", early);
	labyrinth_close(lab);
}

/* Only a full wing takes a held region back: a request the cap refuses
 * must not drain the quarantine one region per call. */
Test(regions, refusals_by_the_cap_do_not_drain_the_quarantine)
{
	labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 64 * MIB, .cap_bytes = 20 * MIB };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	for (int i = 0; i < 10; i++)    /* more rounds than the wing has cells */
		labyrinth_free(lab, labyrinth_malloc(lab, 16 * MIB));
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	uint64_t held = s.quarantined_regions;
	cr_assert_geq(held, 3, "%llu regions held", (unsigned long long)held);
	void *live = labyrinth_malloc(lab, 8 * MIB);
	cr_assert_not_null(live);
	for (int i = 0; i < 100; i++)
		cr_assert_null(labyrinth_malloc(lab, 16 * MIB), "the cap let 24 MiB open");
	labyrinth_get_stats(lab, &s);
	cr_assert_geq(s.quarantined_regions + 1, held, "100 refusals took %llu of %llu regions",
		      (unsigned long long)(held - s.quarantined_regions), (unsigned long long)held);
	labyrinth_free(lab, live);
	labyrinth_close(lab);
}

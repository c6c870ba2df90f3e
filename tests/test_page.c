/*
 * The page API's blocks: alignment, zero, guard pages, orders, and the
 * one-line report of every misuse.
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096


/* ---- plain pages ------------------------------------------------------ */

Test(page, a_page_is_aligned_zero_and_guarded)
{
	labyrinth_t *lab = open_private(0);
	char *p = labyrinth_alloc_page(lab, LAB_GFP_ZERO);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % PG, 0);
	cr_assert(all_zero(p, PG));
	memset(p, 0xab, PG);
	cr_assert(read_faults(p + PG), "the page after a page is readable");
	cr_assert(read_faults(p - 1), "the page before a page is readable");
	labyrinth_free_page(lab, p);
	cr_assert(read_faults(p), "a page freed to the maze is still readable");
	labyrinth_close(lab);
}

Test(page, blocks_of_every_order)
{
	labyrinth_t *lab = open_private(0);
	for (unsigned k = 0; k <= LAB_PAGE_MAX_ORDER; k++) {
		char *p = labyrinth_alloc_pages(lab, k, 0);
		cr_assert_not_null(p, "order %u", k);
		memset(p, 1, (size_t)PG << k);
		cr_assert(read_faults(p + ((size_t)PG << k)), "no guard after order %u", k);
		labyrinth_free_page(lab, p);
	}
	errno = 0;
	cr_assert_null(labyrinth_alloc_pages(lab, LAB_PAGE_MAX_ORDER + 1, 0));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(labyrinth_alloc_page(lab, 0x100));
	cr_assert_eq(errno, EINVAL);
	labyrinth_close(lab);
}

/* ---- misuse is reported ----------------------------------------------- */

static void expect_report(void (*fn)(void *), void *arg, const char *start, const char *part)
{
	struct outcome o = run_in_child(fn, arg);
	cr_assert_eq(o.signal, SIGABRT, "expected SIGABRT, got signal %d exit %d; stderr: %s",
		     o.signal, o.exit_code, o.err);
	cr_assert(strncmp(o.err, start, strlen(start)) == 0, "expected '%s...', got '%s'", start,
		  o.err);
	cr_assert(!part || strstr(o.err, part), "expected '%s' in '%s'", part, o.err);
	cr_assert(one_report(o.err), "more than one report line: %s", o.err);
}

static void double_free_page(void *arg)
{
	void *p = labyrinth_alloc_page(arg, 0);
	labyrinth_free_page(arg, p);
	labyrinth_free_page(arg, p);
}

Test(page_errors, double_free_of_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(double_free_page, lab, "labyrinth: double free of 0x", "(class 4096 B");
	labyrinth_close(lab);
}

static void double_free_reserve_page(void *arg)
{
	void *p = labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
	labyrinth_free_page(arg, p);
	labyrinth_free_page(arg, p);
}

Test(page_errors, double_free_of_a_reserve_page)
{
	labyrinth_t *lab = open_reserved(4);
	expect_report(double_free_reserve_page, lab, "labyrinth: double free of 0x", NULL);
	labyrinth_close(lab);
}

static void *free_foreign(void *arg)
{
	void **a = arg;
	labyrinth_free_page(a[0], a[1]);
	return NULL;
}

static void free_by_another_thread(void *arg)
{
	void *a[2] = { arg, labyrinth_alloc_page(arg, LAB_GFP_EXCLUSIVE) };
	pthread_t th;
	pthread_create(&th, NULL, free_foreign, a);
	pthread_join(th, NULL);
}

Test(page_errors, an_exclusive_page_freed_by_another_thread)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_by_another_thread, lab, "labyrinth: invalid page free of 0x",
		      "(exclusive page of another thread, class 4096 B, version ");
	labyrinth_close(lab);
}

static void free_after_give(void *arg)
{
	void *p = labyrinth_alloc_page(arg, LAB_GFP_EXCLUSIVE);
	if (labyrinth_page_give(arg, p, labyrinth_thread_self() + 1) == LAB_PAGE_OK)
		labyrinth_free_page(arg, p);
}

Test(page_errors, the_giver_frees_a_page_it_gave_away)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_after_give, lab, "labyrinth: invalid page free of 0x",
		      "(exclusive page of another thread");
	labyrinth_close(lab);
}

static void free_page_of_malloc(void *arg)
{
	labyrinth_free_page(arg, labyrinth_malloc(arg, 64));
}

Test(page_errors, free_page_of_a_malloc_pointer)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_page_of_malloc, lab, "labyrinth: invalid page free of 0x", "(not a page");
	labyrinth_close(lab);
}

static void free_inside_page(void *arg)
{
	labyrinth_free_page(arg, (char *)labyrinth_alloc_page(arg, 0) + 64);
}

Test(page_errors, free_page_inside_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_inside_page, lab, "labyrinth: invalid page free of 0x",
		      "(not the start of a page");
	labyrinth_close(lab);
}

static void malloc_free_of_page(void *arg)
{
	labyrinth_free(arg, labyrinth_alloc_page(arg, 0));
}

Test(page_errors, labyrinth_free_of_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(malloc_free_of_page, lab, "labyrinth: invalid free of 0x",
		      "(a page of the page API");
	labyrinth_close(lab);
}

static void stale_free(void *arg)
{
	lab_page_handle_t h = labyrinth_alloc_handle(arg, 0, LAB_GFP_ATOMIC);
	labyrinth_handle_free(arg, h);
	lab_page_handle_t again = labyrinth_alloc_handle(arg, 0, LAB_GFP_ATOMIC);
	(void)again;
	labyrinth_handle_free(arg, h);  /* the same page, a newer version */
}

Test(page_errors, free_of_a_stale_handle)
{
	labyrinth_t *lab = open_reserved(1);
	expect_report(stale_free, lab, "labyrinth: stale page handle of 0x",
		      "(reallocated or given since, class 4096 B, version ");
	labyrinth_close(lab);
}

static void stale_free_freed(void *arg)
{
	lab_page_handle_t h = labyrinth_alloc_handle(arg, 0, 0);
	labyrinth_handle_free(arg, h);
	labyrinth_handle_free(arg, h);
}

Test(page_errors, second_free_of_a_handle)
{
	labyrinth_t *lab = open_private(0);
	expect_report(stale_free_freed, lab, "labyrinth: stale page handle of 0x", "(freed since");
	labyrinth_close(lab);
}

static void nofail_empty(void *arg)
{
	labyrinth_alloc_page(arg, LAB_GFP_ATOMIC | LAB_GFP_NOFAIL);
}

Test(page_errors, nofail_ends_the_process)
{
	labyrinth_t *lab = open_private(0);
	struct outcome o = run_in_child(nofail_empty, lab);
	cr_assert_eq(o.signal, SIGABRT, "signal %d exit %d", o.signal, o.exit_code);
	cr_assert_str_eq(o.err,
		"labyrinth: the labyrinth has no exit: page allocation failed, out of memory\n");
	labyrinth_close(lab);
}

static void nofail_capped(void *arg)
{
	(void)arg;
	labyrinth_options_t o = { .size = sizeof o, .cap_bytes = 8192 };
	labyrinth_t *lab = labyrinth_open(&o);
	for (int i = 0; i < 3; i++)
		labyrinth_alloc_page(lab, LAB_GFP_NOFAIL);
}

Test(page_errors, nofail_at_the_cap_ends_the_process)
{
	struct outcome o = run_in_child(nofail_capped, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d exit %d", o.signal, o.exit_code);
	cr_assert_str_eq(o.err,
		"labyrinth: the labyrinth has no exit: page allocation failed, out of memory\n");
}

static void write_after_free_page(void *arg)
{
	char *p = labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
	labyrinth_free_page(arg, p);
	p[100] = 1;
	labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
}

Test(page_errors, write_after_free_of_a_reserve_page)
{
	labyrinth_t *lab = open_reserved(1);
	expect_report(write_after_free_page, lab, "labyrinth: write after free of 0x", NULL);
	labyrinth_close(lab);
}

static void pool_overflow(void *arg)
{
	char *p = labyrinth_malloc(arg, 100);
	p[100] ^= 0x40;         /* a changed byte, whatever the secret canary was */
	labyrinth_free(arg, p);
}

Test(page_errors, a_pool_allocation_keeps_its_canary)
{
	labyrinth_t *lab = open_pool(8192, 0);
	expect_report(pool_overflow, lab, "labyrinth: heap overflow of 0x", NULL);
	labyrinth_close(lab);
}


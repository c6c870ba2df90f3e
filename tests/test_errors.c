/*
 * Misuse is reported with one line (then its stack) and the process aborts.
 * Each test runs the misuse in a child and checks both the signal and the line.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static void expect_report(void (*fn)(void *), void *arg, const char *line_start)
{
	struct outcome o = run_in_child(fn, arg);
	cr_assert_eq(o.signal, SIGABRT, "expected SIGABRT, got signal %d exit %d; stderr: %s",
		     o.signal, o.exit_code, o.err);
	cr_assert(strncmp(o.err, line_start, strlen(line_start)) == 0,
		  "expected a line starting '%s', got '%s'", line_start, o.err);
	cr_assert(one_report(o.err), "more than one report line: %s", o.err);
}

static void double_free_small(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 64);
	labyrinth_free(NULL, p);
	labyrinth_free(NULL, p);
}

Test(errors, double_free_small)
{
	expect_report(double_free_small, NULL, "labyrinth: double free of 0x");
}

static void double_free_after_others(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 48);
	labyrinth_free(NULL, p);
	void *keep[1000];
	for (int i = 0; i < 1000; i++)
		keep[i] = labyrinth_malloc(NULL, 48);
	for (int i = 0; i < 1000; i += 2)
		labyrinth_free(NULL, keep[i]);
	/* p may have been handed out again: then this free is legal, and the
	 * next one of the same pointer is the double free. */
	labyrinth_free(NULL, p);
	labyrinth_free(NULL, p);
}

Test(errors, double_free_delayed)
{
	expect_report(double_free_after_others, NULL, "labyrinth: double free of 0x");
}

static void double_free_large(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 100000);
	labyrinth_free(NULL, p);
	labyrinth_free(NULL, p);
}

Test(errors, double_free_large)
{
	expect_report(double_free_large, NULL, "labyrinth: double free of 0x");
}

static void free_stack(void *arg)
{
	(void)arg;
	char local[16];
	labyrinth_free(NULL, local);
}

Test(errors, free_of_stack_address)
{
	expect_report(free_stack, NULL, "labyrinth: invalid free of 0x");
}

static int a_global;
static void free_global(void *arg)
{
	(void)arg;
	labyrinth_free(NULL, &a_global);
}

Test(errors, free_of_global)
{
	expect_report(free_global, NULL, "labyrinth: invalid free of 0x");
}

static void free_middle_small(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 100);
	labyrinth_free(NULL, p + 16);
}

Test(errors, free_of_middle_of_small)
{
	expect_report(free_middle_small, NULL, "labyrinth: invalid free of 0x");
}

static void free_unaligned(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 100);
	labyrinth_free(NULL, p + 1);
}

Test(errors, free_of_unaligned_pointer)
{
	expect_report(free_unaligned, NULL, "labyrinth: invalid free of 0x");
}

static void free_middle_large(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 200000);
	labyrinth_free(NULL, p + 8192);
}

Test(errors, free_of_middle_of_large)
{
	expect_report(free_middle_large, NULL, "labyrinth: invalid free of 0x");
}

static void free_never_handed_out(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 4096);
	/* The other slots of a fresh room were never allocated. */
	char *q = labyrinth_malloc(NULL, 4096);
	labyrinth_free(NULL, p + 4096 != q ? p + 4096 : p - 4096);
}

Test(errors, free_of_never_allocated_slot)
{
	expect_report(free_never_handed_out, NULL, "labyrinth: invalid free of 0x");
}

static void free_other_labyrinth(void *arg)
{
	(void)arg;
	labyrinth_options_t o = { .size = sizeof o };
	labyrinth_t *a = labyrinth_open(&o);
	void *p = labyrinth_malloc(a, 32);
	labyrinth_free(NULL, p);
}

Test(errors, free_into_the_wrong_labyrinth)
{
	expect_report(free_other_labyrinth, NULL, "labyrinth: invalid free of 0x");
	struct outcome o = run_in_child(free_other_labyrinth, NULL);
	cr_assert(strstr(o.err, "(of another labyrinth"), "the reason is not named: %s", o.err);
}

/* A default-heap pointer freed into a private labyrinth, and a pointer of
 * nobody's: the reason tells the two apart. */
static void free_default_into_private(void *arg)
{
	labyrinth_options_t o = { .size = sizeof o };
	labyrinth_t *a = labyrinth_open(&o);
	static char global[64];
	labyrinth_free(a, arg ? (void *)global : labyrinth_malloc(NULL, 32));
}

Test(errors, the_reason_says_whose_pointer_it_was)
{
	struct outcome o = run_in_child(free_default_into_private, NULL);
	cr_assert(strstr(o.err, "(of another labyrinth"), "%s", o.err);
	o = run_in_child(free_default_into_private, "global");
	cr_assert(strstr(o.err, "(not in the heap"), "%s", o.err);
}

static void realloc_freed(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 32);
	labyrinth_free(NULL, p);
	labyrinth_realloc(NULL, p, 64);
}

Test(errors, realloc_of_freed_pointer)
{
	expect_report(realloc_freed, NULL, "labyrinth: invalid realloc of 0x");
}

static void realloc_stack(void *arg)
{
	(void)arg;
	char local[16];
	labyrinth_realloc(NULL, local, 64);
}

Test(errors, realloc_of_stack_address)
{
	expect_report(realloc_stack, NULL, "labyrinth: invalid realloc of 0x");
}

static void usable_middle(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 300);
	labyrinth_usable_size(NULL, p + 8);
}

Test(errors, usable_size_of_middle)
{
	expect_report(usable_middle, NULL, "labyrinth: invalid pointer to malloc_usable_size of 0x");
}

static void usable_freed_large(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 300000);
	labyrinth_free(NULL, p);
	labyrinth_usable_size(NULL, p);
}

Test(errors, usable_size_of_freed_large)
{
	expect_report(usable_freed_large, NULL, "labyrinth: invalid pointer to malloc_usable_size of 0x");
}

/* The report names the address that was passed. */
static void double_free_named(void *arg)
{
	char **out = arg;
	labyrinth_free(NULL, *out);
	labyrinth_free(NULL, *out);
}

Test(errors, report_names_address_class_and_version)
{
	char *p = labyrinth_malloc(NULL, 60);     /* 60 bytes and the canary: class 64 */
	char want[96];
	snprintf(want, sizeof want, "labyrinth: double free of %p (class 64 B, version ", (void *)p);
	expect_report(double_free_named, &p, want);
}

/*
 * Built only with ./configure --enable-sanitizers: labyrinth tells ASan about
 * its slots (src/annotate.h), so a use after free or an overflow into a
 * block's canary is reported by ASan at the faulty access, with its stack,
 * instead of at the block's next free or not at all. Without the
 * annotations these accesses touch mapped memory and ASan says nothing.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static volatile char sink;

static void use_after_free(void *arg)
{
	size_t size = (size_t)(uintptr_t)arg;
	char *p = labyrinth_malloc(NULL, size);
	memset(p, 1, size);
	labyrinth_free(NULL, p);
	fprintf(stderr, "freed %p\n", (void *)p);
	sink = p[size / 2];     /* slot in quarantine: mapped, zero, poisoned */
}

static void overflow(void *arg)
{
	size_t size = (size_t)(uintptr_t)arg;
	char *p = labyrinth_malloc(NULL, size);
	fprintf(stderr, "block %p\n", (void *)p);
	sink = p[size];         /* the canary byte after the block */
}

static void expect_asan(void (*fn)(void *), size_t size, const char *kind)
{
	struct outcome o = run_in_child(fn, (void *)(uintptr_t)size);
	cr_assert(strstr(o.err, "ERROR: AddressSanitizer: use-after-poison"),
		  "%s of %zu bytes: ASan said nothing (exit %d, signal %d): %s", kind, size,
		  o.exit_code, o.signal, o.err);
	cr_assert(strstr(o.err, "READ of size 1"), "%s", o.err);
	cr_assert_neq(o.exit_code, 0);
}

Test(asan, catches_a_use_after_free_of_a_labyrinth_slot)
{
	expect_asan(use_after_free, 40, "use after free");
}

Test(asan, catches_a_use_after_free_of_a_slot_that_spans_pages)
{
	/* Freed large regions fault anyway; freed slots stay mapped in
	 * quarantine, which is where ASan adds precision. */
	expect_asan(use_after_free, 3000, "use after free");
}

Test(asan, catches_a_read_of_the_canary_after_a_block)
{
	expect_asan(overflow, 40, "overflow");
	expect_asan(overflow, 30000, "large overflow");
}

Test(asan, clean_use_is_silent)
{
	char *p = labyrinth_malloc(NULL, 40);
	memset(p, 2, 40);
	p = labyrinth_realloc(NULL, p, 47);
	cr_assert_eq(p[39], 2);
	memset(p, 3, 47);
	p = labyrinth_realloc(NULL, p, 40000);
	memset(p, 4, 40000);
	labyrinth_free(NULL, p);
	cr_assert_eq(labyrinth_check(NULL), 0);
}

/*
 * Zero-size blocks through the API: any access faults (read, write, after
 * free), the calls that take a pointer accept them, misuse is reported,
 * and their addresses are unique and not handed out again at once.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every byte a 16-byte slot would have held faults, both ways. */
static void assert_faults(const char *what, char *p)
{
	cr_assert_not_null(p, "%s gave NULL", what);
	static const size_t offsets[] = { 0, 1, 8, 15 };
	for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
		cr_assert(read_faults(p + offsets[i]), "%s: reading byte %zu did not fault", what,
			  offsets[i]);
		cr_assert(write_faults(p + offsets[i]), "%s: writing byte %zu did not fault", what,
			  offsets[i]);
	}
}

static void check_lab(labyrinth_t *lab)
{
	char *m = labyrinth_malloc(lab, 0), *c = labyrinth_calloc(lab, 0, 1);
	char *c2 = labyrinth_calloc(lab, 7, 0), *r = labyrinth_realloc(lab, NULL, 0);
	char *a = labyrinth_aligned_alloc(lab, 64, 0), *pg = labyrinth_aligned_alloc(lab, 4096, 0);
	assert_faults("malloc(0)", m);
	assert_faults("calloc(0, 1)", c);
	assert_faults("calloc(7, 0)", c2);
	assert_faults("realloc(NULL, 0)", r);
	assert_faults("aligned_alloc(64, 0)", a);
	assert_faults("aligned_alloc(4096, 0)", pg);
	cr_assert_eq((uintptr_t)a % 64, 0, "aligned_alloc(64, 0) gave %p", (void *)a);
	cr_assert_eq((uintptr_t)pg % 4096, 0, "aligned_alloc(4096, 0) gave %p", (void *)pg);
	cr_assert_eq(labyrinth_usable_size(lab, m), 0);
	labyrinth_free(lab, c);
	labyrinth_free(lab, c2);
	labyrinth_free(lab, r);
	labyrinth_free(lab, a);
	labyrinth_free(lab, pg);
	assert_faults("malloc(0), freed", m);   /* still live here: freed below */
	labyrinth_free(lab, m);
	assert_faults("a freed zero-size block", m);
}

Test(zero, every_access_faults_default)
{
	check_lab(NULL);
}

Test(zero, every_access_faults_private)
{
	labyrinth_t *lab = open_private(0);
	check_lab(lab);
	labyrinth_close(lab);
}

Test(zero, realloc_moves_into_a_real_block)
{
	char *z = labyrinth_malloc(NULL, 0);
	char *p = labyrinth_realloc(NULL, z, 100);
	cr_assert_not_null(p);
	cr_assert_neq(p, z);
	cr_assert_geq(labyrinth_usable_size(NULL, p), 100);
	memset(p, 'x', 100);
	cr_assert(!write_faults(p) && !read_faults(p + 99));
	labyrinth_free(NULL, p);
	char *big = labyrinth_realloc(NULL, labyrinth_malloc(NULL, 0), 1 << 20);
	cr_assert_not_null(big);
	memset(big, 'y', 1 << 20);
	labyrinth_free(NULL, big);
	/* realloc(p, 0) keeps glibc's meaning: p freed, NULL returned. */
	z = labyrinth_malloc(NULL, 0);
	cr_assert_null(labyrinth_realloc(NULL, z, 0));
}

static int by_address(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

Test(zero, unique_and_not_reused_at_once)
{
	enum { N = 1000 };
	static void *p[N];
	for (int i = 0; i < N; i++)
		p[i] = labyrinth_malloc(NULL, 0);
	qsort(p, N, sizeof p[0], by_address);
	for (int i = 0; i + 1 < N; i++)
		cr_assert_neq(p[i], p[i + 1], "malloc(0) gave %p twice", p[i]);
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, p[i]);
	/* A freed address does not come straight back; and the next address
	 * is not the neighbour of the last one. */
	int same = 0, adjacent = 0;
	char *last = labyrinth_malloc(NULL, 0);
	for (int i = 0; i < N; i++) {
		labyrinth_free(NULL, last);
		char *q = labyrinth_malloc(NULL, 0);
		same += q == last;
		adjacent += q == last + 16 || q == last - 16;
		last = q;
	}
	labyrinth_free(NULL, last);
	cr_assert_eq(same, 0, "a freed zero-size block came back at once %d times", same);
	cr_assert_lt(adjacent, 20, "%d of %d blocks were the last one's neighbour", adjacent, N);
}

/* ---- misuse: one line, then abort ---------------------------------------- */

static void expect_report(void (*fn)(void *), const char *line_start)
{
	struct outcome o = run_in_child(fn, NULL);
	cr_assert_eq(o.signal, SIGABRT, "expected SIGABRT, got signal %d exit %d; stderr: %s",
		     o.signal, o.exit_code, o.err);
	cr_assert(strncmp(o.err, line_start, strlen(line_start)) == 0,
		  "expected a line starting '%s', got '%s'", line_start, o.err);
	cr_assert(one_report(o.err), "more than one report line: %s", o.err);
}

static void double_free(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p);
	labyrinth_free(NULL, p);
}

static void double_free_after_others(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p);
	for (int i = 0; i < 3000; i++)  /* p leaves the quarantine */
		labyrinth_free(NULL, labyrinth_malloc(NULL, 0));
	labyrinth_free(NULL, p);
}

static void free_inside(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p + 8);
}

static void free_neighbour(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p + 16);   /* a slot nobody was given */
}

static void usable_after_free(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p);
	labyrinth_usable_size(NULL, p);
}

static void realloc_after_free(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 0);
	labyrinth_free(NULL, p);
	labyrinth_realloc(NULL, p, 10);
}

Test(zero, double_free_is_reported)
{
	expect_report(double_free, "labyrinth: double free of 0x");
	expect_report(double_free_after_others, "labyrinth: double free of 0x");
}

Test(zero, invalid_pointers_are_reported)
{
	expect_report(free_inside, "labyrinth: invalid free of 0x");
	expect_report(free_neighbour, "labyrinth: invalid free of 0x");
	expect_report(usable_after_free, "labyrinth: invalid pointer to malloc_usable_size of 0x");
	expect_report(realloc_after_free, "labyrinth: invalid realloc of 0x");
}

/* ---- threads and counts -------------------------------------------------- */

static void *churn(void *arg)
{
	void *live[64] = { 0 };
	unsigned long long seed = (uintptr_t)arg + 1;
	for (int i = 0; i < 20000; i++) {
		unsigned k = (unsigned)(test_rand(&seed) % 64);
		labyrinth_free(NULL, live[k]);
		live[k] = labyrinth_malloc(NULL, 0);
	}
	for (int k = 0; k < 64; k++)
		labyrinth_free(NULL, live[k]);
	return NULL;
}

Test(zero, threads_free_each_others_blocks_cleanly)
{
	labyrinth_stats_t before, after;
	labyrinth_get_stats(NULL, &before);
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)i), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	labyrinth_get_stats(NULL, &after);
	cr_assert_eq(after.allocations - before.allocations, 4 * 20000,
		     "zero-size allocations are counted");
	cr_assert_eq(after.frees - before.frees, 4 * 20000);
}

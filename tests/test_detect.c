/*
 * The detection layer: every kind of heap bug the allocator promises to
 * catch, each planted in a child process whose signal and report line are
 * checked. (Configuration is read at a process's first allocation, so a test
 * may set LABYRINTH_* variables before its first call.)
 */
#include "arena.h"
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(void (*fn)(void *), void *arg, int sig, const char *line_start)
{
	struct outcome o = run_in_child(fn, arg);
	cr_assert_eq(o.signal, sig, "expected signal %d, got %d (exit %d); stderr: %s",
		     sig, o.signal, o.exit_code, o.err);
	if (line_start)
		cr_assert(strncmp(o.err, line_start, strlen(line_start)) == 0,
			  "expected '%s...', got '%s'", line_start, o.err);
}

static char *volatile keep;     /* stores the compiler must make */

/* ---- double free ------------------------------------------------------ */

static void double_free_after_thousands(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 100);
	labyrinth_free(NULL, p);
	for (int i = 0; i < 20000; i++) {       /* other classes: p's slot is not reused */
		keep = labyrinth_malloc(NULL, (size_t)(i % 40) + 1);
		labyrinth_free(NULL, keep);
	}
	labyrinth_free(NULL, p);
}

Test(detect, double_free_after_thousands_of_operations)
{
	expect(double_free_after_thousands, NULL, SIGABRT, "labyrinth: double free of 0x");
}

static void double_free_after_quarantine(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 100);
	keep = labyrinth_malloc(NULL, 100);
	labyrinth_free(NULL, p);
	labyrinth_trim(NULL);                   /* p's slot leaves the quarantine */
	labyrinth_free(NULL, p);
}

Test(detect, double_free_after_the_slot_left_quarantine)
{
	expect(double_free_after_quarantine, NULL, SIGABRT, "labyrinth: double free of 0x");
}

static void *free_it(void *p)
{
	labyrinth_free(NULL, p);
	return NULL;
}

static void double_free_across_threads(void *arg)
{
	(void)arg;
	pthread_t t;
	char *p = labyrinth_malloc(NULL, 3000);
	pthread_create(&t, NULL, free_it, p);
	pthread_join(t, NULL);
	labyrinth_free(NULL, p);
}

Test(detect, double_free_from_another_thread)
{
	expect(double_free_across_threads, NULL, SIGABRT, "labyrinth: double free of 0x");
}

/* ---- overflows -------------------------------------------------------- */

static void overflow_small(void *arg)
{
	size_t size = (size_t)(uintptr_t)arg >> 8, bytes = (uintptr_t)arg & 0xff;
	char *p = labyrinth_malloc(NULL, size);
	memset(p + size, 0, bytes);             /* a terminating NUL, or worse */
	labyrinth_free(NULL, p);
}

#define SMALL_CASE(size, bytes) ((void *)(uintptr_t)((size) << 8 | (bytes)))

Test(detect, one_byte_past_a_small_allocation)
{
	expect(overflow_small, SMALL_CASE(24, 1), SIGABRT,
	       "labyrinth: heap overflow of 0x");
	struct outcome o = run_in_child(overflow_small, SMALL_CASE(24, 1));
	cr_assert(strstr(o.err, "(canary changed at +24, class 32 B"), "got: %s", o.err);
}

Test(detect, eight_bytes_past_a_small_allocation)
{
	expect(overflow_small, SMALL_CASE(40, 8), SIGABRT, "labyrinth: heap overflow of 0x");
}

/* A request that fills a class exactly gets the next class: its canary byte. */
Test(detect, one_byte_past_an_exact_fit)
{
	expect(overflow_small, SMALL_CASE(32, 1), SIGABRT, "labyrinth: heap overflow of 0x");
	expect(overflow_small, SMALL_CASE(4096, 1), SIGABRT, "labyrinth: heap overflow of 0x");
}

static void overflow_large_tail(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 20000);
	p[20000] = 0;
	labyrinth_free(NULL, p);
}

Test(detect, one_byte_past_a_large_allocation)
{
	expect(overflow_large_tail, NULL, SIGABRT, "labyrinth: heap overflow of 0x");
}

static void overflow_large_linear(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 20000);
	memset(p, 'A', 20480 + 1);              /* runs off the last page */
}

Test(detect, linear_overflow_past_a_large_allocation_faults_at_once)
{
	expect(overflow_large_linear, NULL, SIGSEGV, NULL);
}

static void underflow_large(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 50000);
	p[-1] = 1;
}

Test(detect, underflow_before_a_large_allocation_faults_at_once)
{
	expect(underflow_large, NULL, SIGSEGV, NULL);
}

/* Fill one room of 1 KiB slots; an underflow of one slot hits its neighbour's canary. */
static void underflow_small(void *arg)
{
	(void)arg;
	labyrinth_options_t o = { .size = sizeof o, .arenas = 1 };
	labyrinth_t *lab = labyrinth_open(&o);
	char *p[16];
	for (int i = 0; i < 16; i++)
		p[i] = labyrinth_malloc(lab, 1000);     /* class 1024: 16 slots a room */
	for (int i = 0; i < 16; i++) {
		for (int j = 0; j < 16; j++) {
			if (p[j] != p[i] + 1024)
				continue;
			p[j][-1] = 0;                   /* one byte before p[j] */
			labyrinth_free(lab, p[i]);
		}
	}
}

Test(detect, underflow_before_a_small_allocation)
{
	expect(underflow_small, NULL, SIGABRT, "labyrinth: heap overflow of 0x");
}

/* ---- use after free --------------------------------------------------- */

static void write_after_free_small(void *arg)
{
	(void)arg;
	labyrinth_options_t o = { .size = sizeof o, .arenas = 1 };
	labyrinth_t *lab = labyrinth_open(&o);
	char *p = labyrinth_malloc(lab, 60);
	keep = labyrinth_malloc(lab, 60);       /* keeps the room open */
	labyrinth_free(lab, p);
	p[8] = 'x';
	labyrinth_trim(lab);                    /* p's slot goes back to its room */
	for (int i = 0; i < 1000; i++)
		labyrinth_malloc(lab, 60);
}

/* A big slot (scanned by the wide path) in the default labyrinth, through
 * the thread cache: trim empties the calling thread's quarantine. */
static void write_after_free_big_default(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 3000);
	keep = labyrinth_malloc(NULL, 3000);
	labyrinth_free(NULL, p);
	p[2900] = 'x';
	labyrinth_trim(NULL);
	for (int i = 0; i < 1000; i++)
		labyrinth_malloc(NULL, 3000);
}

Test(detect, write_after_free_in_a_big_slot_of_the_default_heap)
{
	expect(write_after_free_big_default, NULL, SIGABRT, "labyrinth: write after free of 0x");
	struct outcome o = run_in_child(write_after_free_big_default, NULL);
	cr_assert(strstr(o.err, "(byte changed at +2900, class 3072 B"), "got: %s", o.err);
}

Test(detect, write_after_free_is_caught_on_reuse)
{
	expect(write_after_free_small, NULL, SIGABRT, "labyrinth: write after free of 0x");
	struct outcome o = run_in_child(write_after_free_small, NULL);
	cr_assert(strstr(o.err, "(byte changed at +8, class 64 B"), "got: %s", o.err);
}

static void use_after_free_large(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 100000);
	labyrinth_free(NULL, p);
	p[5] = 1;
}

Test(detect, any_access_to_a_freed_large_region_faults)
{
	expect(use_after_free_large, NULL, SIGSEGV, NULL);
}

Test(detect, freed_memory_is_zeroed)
{
	char *p = labyrinth_malloc(NULL, 200);
	memset(p, 0xee, 200);
	labyrinth_free(NULL, p);
	for (int i = 0; i < 200; i++)
		cr_assert_eq(p[i], 0, "byte %d survived free", i);
}

/* ---- metadata poisoning ------------------------------------------------ */

#define ATTACKER ((uintptr_t)0x4141414141414140ULL)

static void poison(void *arg)
{
	(void)arg;
	setenv("LABYRINTH_ON_ERROR", "log", 1);
	char *p = labyrinth_malloc(NULL, 48);
	char *q = labyrinth_malloc(NULL, 48);
	/* A slot at the start of a page may be its room's first, with the guard
	 * page before it: the poke below would fault. Take another (kept). */
	while (((uintptr_t)q & 4095) < 16)
		q = labyrinth_malloc(NULL, 48);
	labyrinth_free(NULL, p);
	uintptr_t evil = ATTACKER;
	memcpy(p, &evil, sizeof evil);          /* a freed chunk's "next" pointer */
	memcpy(q - 16, &evil, sizeof evil);     /* and the bytes before a chunk */
	memcpy(q - 8, &evil, sizeof evil);
	labyrinth_trim(NULL);
	for (int i = 0; i < 20000; i++) {
		uintptr_t r = (uintptr_t)labyrinth_malloc(NULL, 48);
		if (r >= ATTACKER - 4096 && r <= ATTACKER + 4096)
			_exit(3);
	}
	_exit(0);
}

Test(detect, poisoned_bytes_never_become_an_allocation)
{
	struct outcome o = run_in_child(poison, NULL);
	cr_assert_eq(o.signal, 0, "%s", o.err);
	cr_assert_eq(o.exit_code, 0, "the allocator returned the attacker's address");
	cr_assert(strstr(o.err, "labyrinth: write after free of 0x"), "got: %s", o.err);
}

/* ---- sized free, reporting modes --------------------------------------- */

static void wrong_size(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 24);
	lab_free_sized(lab_default(), p, 32);
}

Test(detect, sized_free_with_the_wrong_size)
{
	expect(wrong_size, NULL, SIGABRT, "labyrinth: invalid sized free of 0x");
	struct outcome o = run_in_child(wrong_size, NULL);
	cr_assert(strstr(o.err, "(size 32 given, 24 allocated, class 32 B"), "got: %s", o.err);
}

static void logged_double_free(void *arg)
{
	(void)arg;
	setenv("LABYRINTH_ON_ERROR", "log", 1);
	char *p = labyrinth_malloc(NULL, 64);
	labyrinth_free(NULL, p);
	labyrinth_free(NULL, p);
	keep = labyrinth_malloc(NULL, 64);      /* and the heap still works */
	labyrinth_free(NULL, keep);
	_exit(7);
}

Test(detect, on_error_log_reports_and_goes_on)
{
	struct outcome o = run_in_child(logged_double_free, NULL);
	cr_assert_eq(o.signal, 0);
	cr_assert_eq(o.exit_code, 7);
	cr_assert(strncmp(o.err, "labyrinth: double free of 0x", 28) == 0, "got: %s", o.err);
	cr_assert(one_report(o.err), "not one report line: %s", o.err);
}

/* ---- quarantine -------------------------------------------------------- */

/* How often does malloc hand back the address just freed? */
static int immediate_reuses(labyrinth_t *lab, int rounds)
{
	int same = 0;
	for (int i = 0; i < rounds; i++) {
		char *p = labyrinth_malloc(lab, 64);
		labyrinth_free(lab, p);
		char *q = labyrinth_malloc(lab, 64);
		same += p == q;
		labyrinth_free(lab, q);
	}
	return same;
}

Test(detect, a_freed_address_is_rarely_reused_at_once)
{
	int same = immediate_reuses(NULL, 100000);
	cr_log_info("immediate reuse: %d of 100000", same);
	cr_assert_lt(same, 100, "%d of 100000 frees were reused at once", same);
}

Test(detect, without_quarantine_reuse_is_only_random)
{
	setenv("LABYRINTH_QUARANTINE", "0", 1);
	int same = immediate_reuses(NULL, 100000);
	cr_log_info("immediate reuse without quarantine: %d of 100000", same);
	/* one random slot of a room's free slots: some reuse, never most */
	cr_assert_lt(same, 50000);
}

static void large_reuse(void *arg)
{
	(void)arg;
	int same = 0;
	for (int i = 0; i < 1000; i++) {
		char *p = labyrinth_malloc(NULL, 100000);
		labyrinth_free(NULL, p);
		char *q = labyrinth_malloc(NULL, 100000);
		same += p == q;
		labyrinth_free(NULL, q);
	}
	_exit(same > 250 ? 250 : same);     /* exit codes wrap at 256 */
}

Test(detect, a_freed_large_address_is_held_back)
{
	struct outcome o = run_in_child(large_reuse, NULL);
	cr_assert_eq(o.exit_code, 0, "%d of 1000 large frees were reused at once", o.exit_code);
}

/* ---- found in review ---------------------------------------------------- */

/* An aligned request records its own size, however it is served. */
Test(detect, aligned_requests_record_their_size)
{
	static const size_t cases[][2] = { { 8192, 100 }, { 64, 16384 }, { 4096, 16384 }, { 1 << 21, 5 } };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *p = labyrinth_aligned_alloc(NULL, cases[i][0], cases[i][1]);
		cr_assert_eq(labyrinth_usable_size(NULL, p), cases[i][1],
			     "aligned_alloc(%zu, %zu)", cases[i][0], cases[i][1]);
		lab_free_sized(lab_default(), p, cases[i][1]);
	}
}

static void overflow_aligned(void *arg)
{
	size_t align = (uintptr_t)arg >> 32, size = (uintptr_t)arg & 0xffffffff;
	char *p = labyrinth_aligned_alloc(NULL, align, size);
	p[size] = 0;
	labyrinth_free(NULL, p);
}

#define ALIGNED_CASE(align, size) ((void *)((uintptr_t)(align) << 32 | (size)))

Test(detect, one_byte_past_an_aligned_allocation)
{
	/* canary in the slack of the last page, or of the slot */
	expect(overflow_aligned, ALIGNED_CASE(8192, 100), SIGABRT, "labyrinth: heap overflow of 0x");
	expect(overflow_aligned, ALIGNED_CASE(64, 16000), SIGABRT, "labyrinth: heap overflow of 0x");
	/* a request filling its pages exactly: the guard page, at once */
	expect(overflow_aligned, ALIGNED_CASE(64, 16384), SIGSEGV, NULL);
}

static long rss_kib(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * 4;
}

static void *churn_big(void *arg)
{
	enum { N = 2000 };
	char **p = arg;
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_malloc(NULL, 16000);
		memset(p[i], 1, 16000);
	}
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, p[(i * 7919) % N]);
	return NULL;
}

/* Slots waiting in quarantine, and the rooms they keep open, pin no pages. */
Test(detect, quarantine_does_not_keep_freed_memory_resident)
{
	static char *p[2000];
	pthread_t t;
	long before = rss_kib();
	pthread_create(&t, NULL, churn_big, p);
	pthread_join(t, NULL);
	long after = rss_kib();
	cr_log_info("RSS %ld KiB before, %ld KiB after 31 MiB allocated and freed", before, after);
	cr_assert_lt(after - before, 8192, "%ld KiB still resident", after - before);
}

/*
 * Quarantines against trim and thread exit: trim gives memory back but
 * never a quarantined address early; the quarantines of exited threads,
 * waiting in the pool of idle caches, pin no memory.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- trim ---------------------------------------------------------------- */

/* 2,000 times: free a 64-byte block, trim, then 32 mallocs of 64 bytes,
 * none of which may be the freed block. A live block keeps the room open,
 * so a slot trim let go would go back to it (on the old code: 233 times in
 * 2,000 with the thread cache). */
static int freed_comes_back_after_trim(labyrinth_t *lab)
{
	int back = 0;
	void *keep = labyrinth_malloc(lab, 64), *p[32];
	for (int t = 0; t < 2000; t++) {
		void *freed = labyrinth_malloc(lab, 64);
		labyrinth_free(lab, freed);
		labyrinth_trim(lab);
		for (int i = 0; i < 32; i++) {
			p[i] = labyrinth_malloc(lab, 64);
			back += p[i] == freed;
		}
		for (int i = 0; i < 32; i++)
			labyrinth_free(lab, p[i]);
	}
	labyrinth_free(lab, keep);
	return back;
}

Test(quarantine, trim_keeps_the_thread_caches_quarantine, .timeout = 60)
{
	int back = freed_comes_back_after_trim(NULL);
	cr_assert_eq(back, 0, "a freed block came back right after trim %d times in 2,000", back);
}

Test(quarantine, trim_keeps_an_arenas_quarantine, .timeout = 60)
{
	labyrinth_t *lab = open_private(0);
	int back = freed_comes_back_after_trim(lab);
	cr_assert_eq(back, 0, "a freed block came back right after trim %d times in 2,000", back);
	labyrinth_close(lab);
}

/* What trim gives back of a quarantine: the whole pages of its slots, which
 * stay quarantined (a double free of one is still caught, see test_detect)
 * and read as zero. */
Test(quarantine, trim_gives_back_the_pages_of_quarantined_slots, .timeout = 60)
{
	enum { N = 64, SIZE = 12000 };
	char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_malloc(NULL, SIZE);
		memset(p[i], 0x5a, SIZE);
	}
	long before = status_kib("VmRSS");
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, p[i]);     /* cleared in place: still resident */
	labyrinth_trim(NULL);
	long after = status_kib("VmRSS");
	cr_assert_lt(after, before - N * 8, "VmRSS %ld kB before the frees, %ld kB after trim",
		     before, after);
}

/*
 * The attack: free X, move the thread's quarantine on with frees of another
 * size until X leaves it, then allocate X's size once, hoping for X. X must
 * not be handed out first: it joins a batch at a random place among others,
 * or goes back to its room. On top of the batch it came back 50 times in 50.
 */
static void *sprayed[20000];

/* One try, in a child of its own (a fresh heap, as an attacker's process
 * would be): exits 1 if the next malloc of X's size was X. */
static void reclaim_after_flush(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++)
		sprayed[i] = labyrinth_malloc(NULL, 24);
	char *x = sprayed[10000];
	labyrinth_free(NULL, x);
	for (int i = 0; i < 5000; i++)
		labyrinth_free(NULL, labyrinth_malloc(NULL, 100));
	_exit(labyrinth_malloc(NULL, 24) == x);
}

Test(quarantine, frees_of_other_sizes_do_not_aim_the_next_malloc, .timeout = 120)
{
	int hits = 0;
	for (int trial = 0; trial < 50; trial++) {
		struct outcome o = run_in_child(reclaim_after_flush, NULL);
		cr_assert_eq(o.signal, 0, "%s", o.err);
		hits += o.exit_code;
	}
	cr_log_info("the freed block was the next malloc of its size %d times in 50", hits);
	cr_assert_leq(hits, 8, "the freed block came back first %d times in 50", hits);
}

/*
 * The same for a class of 1 KiB, whose batches are too small to take a
 * slot out of quarantine: it goes back to its room. With every other room
 * full, a refill used to take that room first and hand its slots out in
 * list order, so X came back at the same count in every run (red team).
 * A refill now picks among the first partial rooms and shuffles the batch.
 */
static void *big_kept[2000];

static void count_until_x_returns(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++)
		big_kept[i] = labyrinth_malloc(NULL, 1000);
	char *x = big_kept[1000];
	labyrinth_free(NULL, x);
	for (int i = 0; i < 5000; i++)
		labyrinth_free(NULL, labyrinth_malloc(NULL, 3000));
	for (int k = 1; k < 250; k++)
		if (labyrinth_malloc(NULL, 1000) == x)
			_exit(k);
	_exit(0);
}

Test(quarantine, a_slot_out_of_quarantine_comes_back_at_no_fixed_count, .timeout = 120)
{
	bool seen[256] = { false };
	int distinct = 0;
	for (int run = 0; run < 20; run++) {
		struct outcome o = run_in_child(count_until_x_returns, NULL);
		cr_assert_eq(o.signal, 0, "%s", o.err);
		if (!seen[o.exit_code & 255])
			distinct++;
		seen[o.exit_code & 255] = true;
	}
	cr_assert_geq(distinct, 3, "X came back at only %d different counts in 20 runs", distinct);
}

/* ---- threads that exited -------------------------------------------------- */

enum { THREADS = 32, ROUNDS = 2048, BIG = 12000 };

static pthread_barrier_t done, go;

/* The audit's program: each thread fills and frees 12,000-byte blocks
 * (together: then waits until the main thread has looked). */
static void *fill_and_free(void *together)
{
	for (int i = 0; i < ROUNDS; i++) {
		char *p = labyrinth_malloc(NULL, BIG);
		memset(p, 1, BIG);
		labyrinth_free(NULL, p);
	}
	if (together) {
		pthread_barrier_wait(&done);
		pthread_barrier_wait(&go);
	}
	return NULL;
}

/* VmRSS growth after the threads were joined; *alive (if together): while
 * all 32 had freed everything and not yet exited. */
static long threads_then_rss_growth(long *alive)
{
	pthread_t t[THREADS];
	long before = status_kib("VmRSS");
	if (alive) {
		pthread_barrier_init(&done, NULL, THREADS + 1);
		pthread_barrier_init(&go, NULL, THREADS + 1);
	}
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, fill_and_free, alive), 0);
	if (alive) {
		pthread_barrier_wait(&done);
		*alive = status_kib("VmRSS") - before;
		pthread_barrier_wait(&go);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	return status_kib("VmRSS") - before;
}

/* The audit's program: 32 threads, joined, nothing live (on an older
 * commit: 2 MB -> 394 MB). */
Test(quarantine, exited_threads_quarantines_stay_small, .timeout = 120)
{
	long grown = threads_then_rss_growth(NULL);
	cr_log_info("32 threads of 2,048 blocks of 12,000 bytes: VmRSS +%ld kB", grown);
	cr_assert_lt(grown, 64 * 1024, "VmRSS grew by %ld kB", grown);
}

/* The same 32 threads, all alive once they are done: each quarantine holds
 * at most 1 MiB resident (QUARANTINE_RESIDENT_MAX), where it held its
 * 1,024 slots, 12 MiB, without that bound: 392 MB. Then they exit together,
 * so 32 caches go idle at once: a cache that goes idle gives back the
 * pages of its quarantined slots (they stay quarantined), so the pool pins
 * nothing, where each idle cache kept its 1 MiB: 35 MB. */
Test(quarantine, live_and_idle_quarantines_pin_little, .timeout = 120)
{
	long alive = 0, grown = threads_then_rss_growth(&alive);
	cr_log_info("32 threads done and alive: VmRSS +%ld kB; exited: +%ld kB", alive, grown);
	cr_assert_lt(alive, 64 * 1024, "VmRSS grew by %ld kB with the threads alive", alive);
	cr_assert_lt(grown, 8 * 1024, "VmRSS grew by %ld kB after they exited", grown);
}

/* A thread whose first call is a free in a pthread key's destructor, after
 * glibc ran its thread_local destructors (the first exit hook): its cache
 * must still come back to the pool. 2,000 such threads. */
static pthread_key_t handed;

static void free_handed(void *p)
{
	labyrinth_free(NULL, p);
}

static void *hold_until_exit(void *p)
{
	pthread_setspecific(handed, p);
	return NULL;
}

Test(quarantine, a_cache_made_in_a_key_destructor_comes_back, .timeout = 120)
{
	SKIP_UNDER_ASAN("its shadow memory counts in VmRSS");
	cr_assert_eq(pthread_key_create(&handed, free_handed), 0);
	long before = 0;
	for (int i = 0; i < 2001; i++) {
		if (i == 1)
			before = status_kib("VmRSS");
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, hold_until_exit, labyrinth_malloc(NULL, 100)), 0);
		pthread_join(t, NULL);
	}
	long grown = status_kib("VmRSS") - before;
	cr_log_info("2,000 threads whose only call is a free at exit: VmRSS +%ld kB", grown);
	cr_assert_lt(grown, 8 * 1024, "VmRSS grew by %ld kB", grown);
}

/* ---- the largest class (16 KiB slots) ------------------------------------ */

static long minor_faults(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_minflt;
}

/* A compiler's shape: now and then a 16 KiB-class block, between runs of
 * small ones, each freed soon after. Rounds until the heap is warm, then the
 * faults of `rounds` more. */
static long faults_of_big_among_small(int rounds)
{
	enum { SMALL = 20 };
	void *s[SMALL];
	long before = 0;
	for (int r = 0; r < 2 * rounds; r++) {
		if (r == rounds)
			before = minor_faults();
		char *big = labyrinth_malloc(NULL, 16000);
		memset(big, 0x5a, 16000);
		for (int i = 0; i < SMALL; i++)
			s[i] = labyrinth_malloc(NULL, 48);
		labyrinth_free(NULL, big);
		for (int i = 0; i < SMALL; i++)
			labyrinth_free(NULL, s[i]);
	}
	return minor_faults() - before;
}

/* A 16 KiB-class slot freed and handed out again is cleared in place within
 * the quarantine's resident budget, like every other class, instead of
 * giving its 4 pages back at each free and faulting them in at each reuse
 * (on the old code: 4 faults a round, 8,000 in 2,000 rounds). */
static void big_slots_reused(void *arg)
{
	(void)arg;
	long faults = faults_of_big_among_small(2000);
	fprintf(stderr, "faults %ld\n", faults);
	_exit(faults < 1000 ? 0 : 3);    /* now 400 to 520: rooms' first touches */
}

Test(quarantine, a_largest_class_slot_is_reused_without_a_fault_per_page, .timeout = 60)
{
	SKIP_UNDER_ASAN("ASan's shadow pages fault too");
	struct outcome o = run_in_child(big_slots_reused, NULL);
	cr_log_info("%s", o.err);
	cr_assert_eq(o.exit_code, 0, "exit %d: %s", o.exit_code, o.err);
}

/* The bound holds for them: 400 freed 16 KiB-class blocks, all written,
 * leave at most QUARANTINE_RESIDENT_MAX (1 MiB) of them in memory. */
Test(quarantine, largest_class_slots_in_quarantine_pin_at_most_a_mebibyte, .timeout = 60)
{
	SKIP_UNDER_ASAN("its shadow memory counts in VmRSS");
	enum { N = 400, SIZE = 16000 };
	static char *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_malloc(NULL, SIZE);
		memset(p[i], 0x5a, SIZE);
	}
	long before = status_kib("VmRSS");
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, p[i]);
	long after = status_kib("VmRSS");
	cr_log_info("VmRSS %ld kB before the frees, %ld kB after", before, after);
	cr_assert_lt(after, before - N * 16 + 1024 + 256,
		     "VmRSS %ld kB before the frees, %ld kB after", before, after);
}

static void *volatile kept;

/* The attack on a slot whose pages now stay: write into it after free and
 * let it be handed out again. The write must be found at reuse, as it was
 * when the page went back to the kernel and the write faulted it in. */
static void write_after_free_largest_class(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 16000);
	kept = labyrinth_malloc(NULL, 16000);   /* keeps the room open */
	labyrinth_free(NULL, p);
	p[9000] = 'x';
	flush_quarantine(NULL);
	labyrinth_trim(NULL);
	for (int i = 0; i < 1000; i++)
		labyrinth_malloc(NULL, 16000);
}

Test(quarantine, a_write_into_a_freed_largest_class_slot_is_caught_on_reuse, .timeout = 60)
{
	struct outcome o = run_in_child(write_after_free_largest_class, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d: %s", o.signal, o.err);
	cr_assert(strstr(o.err, "labyrinth: write after free of 0x"), "got: %s", o.err);
	cr_assert(strstr(o.err, "(byte changed at +9000, class 16384 B"), "got: %s", o.err);
}

/* And a second free of one, kept in memory in the quarantine, is refused. */
static void double_free_largest_class(void *arg)
{
	(void)arg;
	char *p = labyrinth_malloc(NULL, 16000);
	labyrinth_free(NULL, p);
	for (int i = 0; i < 100; i++)
		labyrinth_free(NULL, labyrinth_malloc(NULL, 48));
	labyrinth_free(NULL, p);
}

Test(quarantine, a_second_free_of_a_largest_class_slot_is_refused, .timeout = 60)
{
	struct outcome o = run_in_child(double_free_largest_class, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d: %s", o.signal, o.err);
	cr_assert(strstr(o.err, "labyrinth: double free of 0x"), "got: %s", o.err);
}

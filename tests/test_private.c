/*
 * Private labyrinths' thread caches (src/tcache_private.c): malloc and free
 * take no lock on the common path, and what a cache holds never outlives
 * its labyrinth: a closed labyrinth's cache is never used through a
 * thread's stale entry, its quarantine never releases into another
 * labyrinth, exited threads' caches are reused, and misuse is caught as on
 * the arena path (double free from another thread, a block freed into the
 * wrong labyrinth, a use after free).
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static labyrinth_t *open_one_arena(void)
{
	labyrinth_options_t o = { .size = sizeof o, .arenas = 1 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	return lab;
}

/* The arena path takes the arena's lock at every call: with it held, a
 * thread without a cache would wait for good (the timeout fails the test). */
Test(private_cache, malloc_and_free_take_no_arena_lock, .timeout = 20)
{
	labyrinth_t *lab = open_one_arena();
	void *warm = labyrinth_malloc(lab, 16);        /* fills a batch */
	labyrinth_free(lab, warm);
	pthread_mutex_lock(&lab->arenas[0].lock);
	for (int i = 0; i < 16; i++) {
		char *p = labyrinth_malloc(lab, 16);
		cr_assert_not_null(p);
		memset(p, 'x', 16);
		labyrinth_free(lab, p);
	}
	pthread_mutex_unlock(&lab->arenas[0].lock);
	labyrinth_close(lab);
}

/* Many frees fill the thread's quarantine with slots of the first
 * labyrinth; it closes, and the next one (often at the same address, with
 * the same wings) must never see those entries leave into its rooms. */
static void quarantine_then_close(void *unused)
{
	(void)unused;
	for (int round = 0; round < 8; round++) {
		labyrinth_t *a = open_private(0);
		void *keep[3000];
		for (int i = 0; i < 3000; i++)
			keep[i] = labyrinth_malloc(a, 16 + (size_t)(i % 8) * 16);
		for (int i = 0; i < 3000; i++)
			labyrinth_free(a, keep[i]);
		labyrinth_close(a);
	}
	labyrinth_t *b = open_private(0);
	for (int i = 0; i < 20000; i++) {
		void *p = labyrinth_malloc(b, 16 + (size_t)(i % 8) * 16);
		if (!p)
			_exit(3);
		labyrinth_free(b, p);
	}
	if (labyrinth_check(b) != 0)
		_exit(4);
	labyrinth_close(b);
	_exit(0);
}

Test(private_cache, a_closed_labyrinths_quarantine_never_leaves_into_the_next)
{
	struct outcome o = run_in_child(quarantine_then_close, NULL);
	cr_assert(o.signal == 0 && o.exit_code == 0, "signal %d, exit %d: %s", o.signal,
		  o.exit_code, o.err);
}

/* A thread's entry for a closed labyrinth is stale: the next labyrinth,
 * even at the same address, gets blocks of its own. */
Test(private_cache, a_stale_entry_is_never_used_for_a_new_labyrinth)
{
	for (int round = 0; round < 50; round++) {
		labyrinth_t *a = open_private(0);
		labyrinth_free(a, labyrinth_malloc(a, 48));
		labyrinth_close(a);
		labyrinth_t *b = open_private(0);
		char *p = labyrinth_malloc(b, 48);
		cr_assert_not_null(p);
		cr_assert_eq(labyrinth_usable_size(b, p), 48);
		labyrinth_free(b, p);
		cr_assert_eq(labyrinth_check(b), 0);
		labyrinth_close(b);
	}
}

/* One class only: its rooms settle after the first threads, so what the
 * process maps more is caches. */
static void *pairs(void *arg)
{
	labyrinth_t *lab = arg;
	for (int i = 0; i < 200; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 16));
	return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
}

/* 400 threads one after another: each exited thread's cache waits for the
 * next (a cache is about 12 KiB with its quarantine, carved a few to a
 * guarded chunk): the process's mappings stay where the first few left
 * them. */
static void threads_leave_the_mappings_flat(void *(*fn)(void *))
{
	labyrinth_t *lab = open_private(0);
	for (int i = 0; i < 60; i++)       /* the quarantines fill, whichever path */
		run_thread(fn, lab);
	/* Mappings, not RSS: under ASan its own per-thread state grows it.
	 * With the caches not reused: 628 mappings from 227. */
	long maps = count_maps();
	for (int i = 0; i < 400; i++)
		run_thread(fn, lab);
	cr_assert_leq(count_maps(), maps + 16, "%ld mappings, from %ld", count_maps(), maps);
	cr_assert_eq(labyrinth_check(lab), 0);
	labyrinth_close(lab);
}

Test(private_cache, exited_threads_caches_are_reused, .timeout = 120)
{
	threads_leave_the_mappings_flat(pairs);
}

/* A pthread key's destructor runs after the thread's exit hook: a thread
 * that uses the labyrinth there takes the arena path. Until 2026-12-05 it
 * took a cache that never went idle again (red team: +32 KiB a thread). */
static pthread_key_t late_key;

static void late_use(void *lab)
{
	labyrinth_free(lab, labyrinth_malloc(lab, 32));
}

static void *use_then_exit(void *lab)
{
	labyrinth_free(lab, labyrinth_malloc(lab, 16));
	pthread_setspecific(late_key, lab);
	return NULL;
}

Test(private_cache, a_thread_using_a_labyrinth_from_a_key_destructor_keeps_no_cache, .timeout = 120)
{
	cr_assert_eq(pthread_key_create(&late_key, late_use), 0);
	threads_leave_the_mappings_flat(use_then_exit);
}

/* Exited threads' caches hold batches of free slots, which pin their rooms
 * open; labyrinth_trim gives them back. The blocks of many classes are
 * pushed out of the quarantine by 8,000 frees of one class, so that only
 * the batches hold their rooms. */
static void *hold_batches(void *arg)
{
	labyrinth_t *lab = arg;
	for (size_t size = 32; size <= 2048; size += 16)
		labyrinth_free(lab, labyrinth_malloc(lab, size));
	for (int i = 0; i < 8000; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 16));
	return NULL;
}

Test(private_cache, trim_gives_back_what_exited_threads_held, .timeout = 60)
{
	labyrinth_t *lab = open_private(0);
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hold_batches, lab), 0);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	labyrinth_stats_t before, after;
	labyrinth_get_stats(lab, &before);
	size_t closed = labyrinth_trim(lab);
	labyrinth_get_stats(lab, &after);
	cr_assert_gt(closed, 0, "nothing given back");
	/* What stays open is the rooms of the class-16 slots the quarantines
	 * hold: measured 14-20 of 171-180 rooms, and 80-122 of 115-136 with
	 * the exited threads' caches left out of the trim. */
	cr_assert_lt(after.live_rooms * 4, before.live_rooms, "%zu rooms open, %zu before",
		     (size_t)after.live_rooms, (size_t)before.live_rooms);
	cr_assert_eq(labyrinth_check(lab), 0);
	labyrinth_close(lab);
}

/* One thread, more labyrinths than it keeps caches for: blocks live across
 * the evictions, and each is freed into its own labyrinth. */
Test(private_cache, more_labyrinths_than_a_thread_keeps_caches_of)
{
	enum { LABS = 9, LIVE = 64 };
	labyrinth_t *lab[LABS];
	void *live[LABS][LIVE] = { { 0 } };
	for (int l = 0; l < LABS; l++)
		lab[l] = open_private(0);
	for (int i = 0; i < 20000; i++) {
		int l = (i * 7) % LABS, k = (i / LABS) % LIVE;
		if (live[l][k])
			labyrinth_free(lab[l], live[l][k]);
		live[l][k] = labyrinth_malloc(lab[l], 16 + (size_t)(i % 16) * 8);
		cr_assert_not_null(live[l][k]);
	}
	for (int l = 0; l < LABS; l++) {
		for (int k = 0; k < LIVE; k++)
			labyrinth_free(lab[l], live[l][k]);
		cr_assert_eq(labyrinth_check(lab[l]), 0);
		labyrinth_close(lab[l]);
	}
}

/* ---- misuse is caught as on the arena path -------------------------------- */

struct pair_of {
	labyrinth_t *lab;
	void *p;
};

static void *free_it(void *arg)
{
	struct pair_of *x = arg;
	labyrinth_free(x->lab, x->p);
	return NULL;
}

static void double_free_across_threads(void *unused)
{
	(void)unused;
	labyrinth_t *lab = open_private(0);
	struct pair_of x = { lab, labyrinth_malloc(lab, 24) };
	labyrinth_free(lab, x.p);
	pthread_t t;
	pthread_create(&t, NULL, free_it, &x);
	pthread_join(t, NULL);
}

Test(private_cache, a_double_free_from_another_thread_is_caught)
{
	struct outcome o = run_in_child(double_free_across_threads, NULL);
	cr_assert_neq(o.signal, 0, "the second free went unnoticed");
	cr_assert(strstr(o.err, "double free"), "%s", o.err);
	cr_assert(one_report(o.err), "%s", o.err);
}

static void free_into_another(void *unused)
{
	(void)unused;
	labyrinth_t *a = open_private(0), *b = open_private(0);
	labyrinth_free(b, labyrinth_malloc(b, 32));     /* b's cache, attached */
	labyrinth_free(b, labyrinth_malloc(a, 32));
}

Test(private_cache, a_block_freed_into_another_labyrinth_is_refused)
{
	struct outcome o = run_in_child(free_into_another, NULL);
	cr_assert_neq(o.signal, 0);
	cr_assert(strstr(o.err, "of another labyrinth"), "%s", o.err);
}

static void write_after_free(void *unused)
{
	(void)unused;
	labyrinth_t *lab = open_private(0);
	/* Live neighbours keep the slot's room open: a room that empties
	 * closes, and its pages, the write with them, go back unchecked. */
	static void *live[512];
	for (int i = 0; i < 512; i++)
		live[i] = labyrinth_malloc(lab, 64);
	char *p = live[256];
	labyrinth_free(lab, p);
	p[8] = 'A';                     /* the slot waits in this thread's quarantine */
	for (int i = 0; i < 5000; i++)  /* frees of any size move the quarantine on */
		labyrinth_free(lab, labyrinth_malloc(lab, 16));
	labyrinth_trim(lab);            /* out of the release list, back in its room */
	for (int i = 0; i < 20000; i++) /* kept: every free slot of the class, in the end */
		if (!labyrinth_malloc(lab, 64))
			_exit(3);
}

Test(private_cache, a_write_after_free_is_caught_when_the_slot_comes_back)
{
	struct outcome o = run_in_child(write_after_free, NULL);
	cr_assert_neq(o.signal, 0, "the write after free went unnoticed");
	cr_assert(strstr(o.err, "write after free"), "%s", o.err);
}

/* ---- fork ------------------------------------------------------------------ */

/* A child of a process whose threads hold caches of a private labyrinth
 * hands out no slot its parent hands out next (the batch it inherited goes
 * back to its rooms), and its other threads' caches are salvaged, so the
 * heap stays consistent. */
static void *attach_and_wait(void *arg)
{
	labyrinth_t *lab = arg;
	hold_batches(lab);
	return NULL;
}

/* The 16 addresses a child wrote to the pipe fds, once it exited 0. */
static void childs_addresses(int fds[2], pid_t pid, uintptr_t theirs[16])
{
	close(fds[1]);
	cr_assert_eq(read(fds[0], theirs, 16 * sizeof *theirs), (ssize_t)(16 * sizeof *theirs));
	close(fds[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* A child that uses a fifth labyrinth lets the cache it inherited from the
 * forking thread go idle, and takes it back: its batches are the parent's
 * and its siblings', and must go back to their rooms, not be handed out.
 * Until 2026-12-05 the child handed out the parent's next 16 blocks. */
Test(private_cache, a_child_that_lets_its_inherited_cache_go_hands_out_apart, .timeout = 60)
{
	labyrinth_t *lab[5];
	for (int l = 0; l < 5; l++)
		lab[l] = open_private(0);
	labyrinth_free(lab[0], labyrinth_malloc(lab[0], 48));  /* a batch of 48s */
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	uintptr_t mine[16];
	if (pid == 0) {
		for (int l = 1; l < 5; l++)    /* the fifth lets lab[0]'s cache go */
			labyrinth_free(lab[l], labyrinth_malloc(lab[l], 48));
		for (int i = 0; i < 16; i++)
			mine[i] = (uintptr_t)labyrinth_malloc(lab[0], 48);
		_exit(write(fds[1], mine, sizeof mine) != (ssize_t)sizeof mine);
	}
	for (int i = 0; i < 16; i++)
		mine[i] = (uintptr_t)labyrinth_malloc(lab[0], 48);
	uintptr_t theirs[16];
	childs_addresses(fds, pid, theirs);
	int same = 0;
	for (int i = 0; i < 16; i++)
		for (int k = 0; k < 16; k++)
			same += mine[i] == theirs[k];
	cr_assert_lt(same, 4, "%d of 16 blocks handed out by both parent and child", same);
	for (int l = 0; l < 5; l++)
		labyrinth_close(lab[l]);
}

Test(private_cache, a_forked_child_hands_out_apart_from_its_parent, .timeout = 60)
{
	labyrinth_t *lab = open_private(0);
	run_thread(attach_and_wait, lab);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, attach_and_wait, lab), 0);
	void *warm = labyrinth_malloc(lab, 32);
	labyrinth_free(lab, warm);
	cr_assert_eq(pthread_join(t, NULL), 0);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	uintptr_t mine[16];
	for (int i = 0; i < 16; i++)
		mine[i] = (uintptr_t)labyrinth_malloc(lab, 32);
	if (pid == 0) {
		int bad = labyrinth_check(lab) != 0;
		labyrinth_trim(lab);
		bad |= labyrinth_check(lab) != 0;
		if (write(fds[1], mine, sizeof mine) != (ssize_t)sizeof mine || bad)
			_exit(1);
		_exit(0);
	}
	uintptr_t theirs[16];
	childs_addresses(fds, pid, theirs);
	int same = 0;
	for (int i = 0; i < 16; i++)
		same += mine[i] == theirs[i];
	cr_assert_lt(same, 4, "%d of 16 blocks at the same address in parent and child", same);
	labyrinth_close(lab);
}

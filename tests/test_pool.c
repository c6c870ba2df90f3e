/*
 * A pool's quarantine (LAB_OPEN_PREFAULT): its labyrinth_malloc used to hand
 * the block just freed to the very next call, every time. Now a freed block
 * waits in a random stage and a queue of a quarter of the pool (at most
 * LABYRINTH_QUARANTINE, 1024 by default, and 256), half in each: a pool of
 * 256 pages holds 64, so a freed block waits at least 32 further frees.
 */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#define POOL_PAGES 256
#define QUEUE 32                /* POOL_PAGES / 4, half of it */

/* The experiment: malloc, free, malloc gave the same block 1,000 times in 1,000. */
Test(pool, the_next_malloc_never_gets_the_block_just_freed)
{
	labyrinth_t *lab = open_pool(POOL_PAGES * 4096, 0);
	int same = 0;
	for (int i = 0; i < 1000; i++) {
		void *a = labyrinth_malloc(lab, 100);
		cr_assert_not_null(a);
		labyrinth_free(lab, a);
		void *b = labyrinth_malloc(lab, 100);
		cr_assert_not_null(b);
		same += a == b;
		labyrinth_free(lab, b);
	}
	cr_assert_eq(same, 0, "the block just freed came back %d times in 1000", same);
	labyrinth_close(lab);
}

/*
 * A full pool's reserve is dry: a malloc takes from the quarantine, and must
 * take its longest held block, not the one just freed. Scanning the stage
 * from its first place gave the block just freed 47 times in 200 after two
 * earlier frees (found by the red team).
 */
Test(pool, a_dry_pool_hands_out_its_oldest_held_block)
{
	int same = 0;
	for (int trial = 0; trial < 100; trial++) {
		labyrinth_t *lab = open_pool(POOL_PAGES * 4096, 0);
		void *live[POOL_PAGES + 1];
		int n = 0;
		while (n <= POOL_PAGES && (live[n] = labyrinth_malloc(lab, 100)))
			n++;
		cr_assert_eq(n, POOL_PAGES);
		labyrinth_free(lab, live[0]);
		labyrinth_free(lab, live[1]);
		labyrinth_free(lab, live[n - 1]);
		void *p = labyrinth_malloc(lab, 100);
		cr_assert(p == live[0] || p == live[1], "trial %d: not an older block", trial);
		same += p == live[n - 1];
		labyrinth_close(lab);
	}
	cr_assert_eq(same, 0, "the block just freed came back %d times in 100", same);
}

/* Allocations that keep their blocks never reach it while the pool has others. */
Test(pool, the_next_allocations_do_not_get_it)
{
	labyrinth_t *lab = open_pool(POOL_PAGES * 4096, 0);
	static void *live[POOL_PAGES];
	for (int trial = 0; trial < 50; trial++) {
		void *a = labyrinth_malloc(lab, 100);
		labyrinth_free(lab, a);
		int n = POOL_PAGES * 3 / 4 - 2;
		for (int i = 0; i < n; i++) {
			live[i] = labyrinth_malloc(lab, 100);
			cr_assert_not_null(live[i]);
			cr_assert_neq(live[i], a, "trial %d: allocation %d got the block freed before it",
				      trial, i + 1);
		}
		for (int i = 0; i < n; i++)
			labyrinth_free(lab, live[i]);
	}
	labyrinth_close(lab);
}

/*
 * With one block live at a time (malloc, free, malloc, free...), a freed
 * block comes back only after the queue's length of frees, and when is
 * random: the delays of 1,000 blocks spread out, around the quarantine's
 * length.
 */
Test(pool, a_freed_block_waits_a_random_while)
{
	labyrinth_t *lab = open_pool(POOL_PAGES * 4096, 0);
	enum { TRIALS = 1000, HORIZON = 1000 };
	int shortest = HORIZON, longest = 0, never = 0;
	long sum = 0;
	static int hist[HORIZON + 1];
	for (int t = 0; t < TRIALS; t++) {
		void *a = labyrinth_malloc(lab, 100);
		labyrinth_free(lab, a);
		int k = 1;
		for (; k <= HORIZON; k++) {
			void *b = labyrinth_malloc(lab, 100);
			labyrinth_free(lab, b);
			if (b == a)
				break;
		}
		if (k > HORIZON) {
			never++;
			continue;
		}
		hist[k]++;
		sum += k;
		shortest = k < shortest ? k : shortest;
		longest = k > longest ? k : longest;
	}
	int distinct = 0;
	for (int k = 0; k <= HORIZON; k++)
		distinct += hist[k] != 0;
	double mean = (double)sum / (TRIALS - never);
	cr_log_info("came back after %d to %d allocations, mean %.1f, %d delays, %d not within %d",
		    shortest, longest, mean, distinct, never, HORIZON);
	cr_assert_gt(shortest, QUEUE, "a freed block came back after %d allocations", shortest);
	cr_assert_gt(mean, 1.5 * QUEUE, "mean delay %.1f", mean);
	cr_assert_gt(distinct, 20, "only %d different delays: not random", distinct);
	labyrinth_close(lab);
}

/* The budget is fixed: a pool hands out every one of its pages, the
 * quarantine's too, when the program needs them all. */
Test(pool, a_full_pool_still_hands_out_every_page)
{
	labyrinth_t *lab = open_pool(8 * 4096, 0);
	for (int round = 0; round < 100; round++) {
		void *p[8];
		for (int i = 0; i < 8; i++) {
			p[i] = i % 2 ? labyrinth_malloc(lab, 3000) : labyrinth_alloc_page(lab, 0);
			cr_assert_not_null(p[i], "round %d: block %d of 8", round, i + 1);
			for (int j = 0; j < i; j++)
				cr_assert_neq(p[i], p[j]);
		}
		cr_assert_null(labyrinth_malloc(lab, 10));
		for (int i = 0; i < 8; i++) {
			if (i % 2)
				labyrinth_free(lab, p[i]);
			else
				labyrinth_free_page(lab, p[i]);
		}
	}
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 8, "%llu pages ready", (unsigned long long)s.reserve_pages);
	labyrinth_close(lab);
}

/* A block written while it waits is caught when it is handed out again. */
static void write_while_held(void *arg)
{
	labyrinth_t *lab = arg;
	char *a = labyrinth_malloc(lab, 100);
	labyrinth_free(lab, a);
	a[10] = 'x';
	for (int i = 0; i < 8; i++)
		labyrinth_malloc(lab, 100);
}

Test(pool, a_write_to_a_held_block_is_caught_at_reuse)
{
	labyrinth_t *lab = open_pool(8 * 4096, 0);
	struct outcome o = run_in_child(write_while_held, lab);
	cr_assert_eq(o.signal, SIGABRT, "signal %d, exit %d: %s", o.signal, o.exit_code, o.err);
	cr_assert(strstr(o.err, "write after free"), "%s", o.err);
	labyrinth_close(lab);
}

/* Threads churning one pool: no block is ever handed to two of them (each
 * fills its block with its own byte and finds it unchanged), and every
 * page is back at the end. */
struct churn {
	labyrinth_t *lab;
	unsigned char tag;
	int bad;
};

static void *churn_pool(void *arg)
{
	struct churn *c = arg;
	for (int i = 0; i < 100000; i++) {
		unsigned char *p = labyrinth_malloc(c->lab, 200);
		if (!p)
			continue;       /* every page live for a moment */
		memset(p, c->tag, 200);
		for (int j = 0; j < 200; j += 37)
			c->bad += p[j] != c->tag;
		labyrinth_free(c->lab, p);
	}
	return NULL;
}

Test(pool, threads_never_share_a_block, .timeout = 60)
{
	labyrinth_t *lab = open_pool(16 * 4096, 0);
	pthread_t t[4];
	struct churn c[4];
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churn){ .lab = lab, .tag = (unsigned char)(0x41 + i) };
		cr_assert_eq(pthread_create(&t[i], NULL, churn_pool, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(c[i].bad, 0, "thread %d found another's bytes %d times", i, c[i].bad);
	}
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 16, "%llu pages ready", (unsigned long long)s.reserve_pages);
	labyrinth_close(lab);
}

/* Forked children share the pool's key and counter, but each draws with its
 * own generation's key: the order in which freed blocks come back differs. */
static void churn_and_tell(void *arg)
{
	labyrinth_t *lab = arg;
	uint64_t h = 0;
	for (int i = 0; i < 300; i++) {
		void *p = labyrinth_malloc(lab, 100);
		h = h * 1000003 ^ (uint64_t)(uintptr_t)p;
		labyrinth_free(lab, p);
	}
	fprintf(stderr, "%016llx", (unsigned long long)h);
}

Test(pool, forked_children_reuse_in_different_orders)
{
	labyrinth_t *lab = open_pool(POOL_PAGES * 4096, 0);
	struct outcome a = run_in_child(churn_and_tell, lab);
	struct outcome b = run_in_child(churn_and_tell, lab);
	cr_assert(a.exit_code == 0 && b.exit_code == 0 && a.err[0] && b.err[0]);
	cr_assert_str_neq(a.err, b.err, "two children reused the pool's blocks in one order");
	labyrinth_close(lab);
}

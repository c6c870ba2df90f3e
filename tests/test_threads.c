/* Threads: many allocating at once, frees from other threads, fork. */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RING 1024

/* A bounded handoff queue: objects allocated by one thread, freed by another. */
struct ring {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void *item[RING];
	size_t head, tail;
	int done;
};

struct worker {
	labyrinth_t *lab;
	struct ring *out;       /* where this thread sends objects, or NULL */
	unsigned long long seed;
	int steps;
	long sent;
};

static void ring_put(struct ring *r, void *p)
{
	pthread_mutex_lock(&r->lock);
	while (r->head - r->tail == RING)
		pthread_cond_wait(&r->cond, &r->lock);
	r->item[r->head++ % RING] = p;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void *ring_get(struct ring *r)
{
	pthread_mutex_lock(&r->lock);
	while (r->head == r->tail && !r->done)
		pthread_cond_wait(&r->cond, &r->lock);
	void *p = r->head == r->tail ? NULL : r->item[r->tail++ % RING];
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return p;
}

/* Each object carries its size and a pattern, so corruption shows at free. */
static void *make_object(labyrinth_t *lab, unsigned long long *seed)
{
	size_t size = 16 + test_rand(seed) % (test_rand(seed) % 8 == 0 ? 40000 : 500);
	unsigned char *p = labyrinth_malloc(lab, size);
	cr_assert_not_null(p);
	memcpy(p, &size, sizeof size);
	for (size_t i = sizeof size; i < size; i++)
		p[i] = (unsigned char)(size + i);
	return p;
}

static void check_and_free(labyrinth_t *lab, unsigned char *p)
{
	size_t size;
	memcpy(&size, p, sizeof size);
	for (size_t i = sizeof size; i < size; i++)
		cr_assert_eq(p[i], (unsigned char)(size + i), "object %p corrupted at %zu", (void *)p, i);
	labyrinth_free(lab, p);
}

static void *churn(void *arg)
{
	struct worker *w = arg;
	void *mine[256] = { 0 };
	for (int s = 0; s < w->steps; s++) {
		unsigned i = (unsigned)(test_rand(&w->seed) % 256);
		if (mine[i])
			check_and_free(w->lab, mine[i]);
		mine[i] = make_object(w->lab, &w->seed);
		if (w->out && s % 3 == 0) {
			ring_put(w->out, mine[i]);
			mine[i] = NULL;
			w->sent++;
		}
	}
	for (int i = 0; i < 256; i++)
		if (mine[i])
			check_and_free(w->lab, mine[i]);
	return NULL;
}

static void *consume(void *arg)
{
	struct worker *w = arg;
	void *p;
	while ((p = ring_get(w->out)))
		check_and_free(w->lab, p);
	return NULL;
}

static void run_threads(labyrinth_t *lab, int producers, int steps)
{
	struct ring ring = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	pthread_t t[16], c;
	struct worker w[16], cw = { .lab = lab, .out = &ring };
	for (int i = 0; i < producers; i++) {
		w[i] = (struct worker){ .lab = lab, .out = &ring, .seed = 0x9e3779b97f4a7c15ULL * (unsigned)(i + 1), .steps = steps };
		pthread_create(&t[i], NULL, churn, &w[i]);
	}
	pthread_create(&c, NULL, consume, &cw);
	for (int i = 0; i < producers; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_lock(&ring.lock);
	ring.done = 1;
	pthread_cond_broadcast(&ring.cond);
	pthread_mutex_unlock(&ring.lock);
	pthread_join(c, NULL);
}

Test(threads, many_threads_with_cross_thread_frees, .timeout = 120)
{
	labyrinth_t *lab = open_private(0);
	run_threads(lab, 8, 40000);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.allocations, s.frees, "%llu allocations, %llu frees",
		     (unsigned long long)s.allocations, (unsigned long long)s.frees);
	cr_assert_eq(s.live_bytes, 0);
	cr_assert_gt(s.arenas, 1);
	labyrinth_close(lab);
}

Test(threads, default_labyrinth_under_threads, .timeout = 120)
{
	run_threads(NULL, 4, 30000);
}

struct forker {
	atomic_int stop;
};

static void *busy(void *arg)
{
	struct forker *f = arg;
	unsigned long long seed = 42;
	while (!atomic_load(&f->stop)) {
		void *p = make_object(NULL, &seed);
		check_and_free(NULL, p);
	}
	return NULL;
}

/* fork() while other threads hold allocator locks: the child must not hang. */
Test(threads, fork_while_threads_allocate, .timeout = 60)
{
	struct forker f = { 0 };
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, busy, &f);
	for (int i = 0; i < 50; i++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			unsigned long long seed = 7;
			for (int k = 0; k < 2000; k++)
				check_and_free(NULL, make_object(NULL, &seed));
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
	}
	atomic_store(&f.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
}

/* ---- thread caches (the default labyrinth) ---------------------------- */

static void *alloc_free_exit(void *arg)
{
	unsigned long long seed = (unsigned long long)(uintptr_t)arg;
	void *keep[64];
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 64; i++)
			keep[i] = make_object(NULL, &seed);
		for (int i = 0; i < 64; i++)
			check_and_free(NULL, keep[i]);
	}
	flush_quarantine(NULL);         /* its quarantine would keep rooms open */
	return NULL;
}

/* Threads that come and go leave no slot behind: their batches go back at
 * exit, and the counters of every cache add up. */
Test(threads, exited_threads_leave_the_heap_balanced, .timeout = 120)
{
	labyrinth_stats_t before, after;
	labyrinth_trim(NULL);
	unsigned long long rooms_before = rooms_open_but_flush(NULL);
	labyrinth_get_stats(NULL, &before);
	for (int i = 0; i < 200; i++) {
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, alloc_free_exit, (void *)(uintptr_t)(i + 1)), 0);
		cr_assert_eq(pthread_join(t, NULL), 0);
	}
	labyrinth_trim(NULL);
	labyrinth_get_stats(NULL, &after);
	cr_assert_eq(after.allocations - before.allocations, after.frees - before.frees,
		     "%llu allocations but %llu frees",
		     (unsigned long long)(after.allocations - before.allocations),
		     (unsigned long long)(after.frees - before.frees));
	cr_assert_eq(after.allocations - before.allocations, 200ull * (20 * 64 + 40000));
	cr_assert_eq(after.live_bytes, before.live_bytes);
	cr_assert_leq(rooms_open_but_flush(NULL), rooms_before + 64,
		      "%llu rooms live after the threads exited, %llu before",
		      rooms_open_but_flush(NULL), rooms_before);
}

static void *free_and_exit(void *p)
{
	labyrinth_free(NULL, p);
	return NULL;
}

static void double_free_after_thread_exit(void *arg)
{
	(void)arg;
	void *p = labyrinth_malloc(NULL, 40);
	pthread_t t;
	pthread_create(&t, NULL, free_and_exit, p);
	pthread_join(t, NULL);
	labyrinth_free(NULL, p);        /* still quarantined in the exited thread's cache */
}

Test(threads, a_double_free_is_caught_after_the_freeing_thread_exited)
{
	struct outcome o = run_in_child(double_free_after_thread_exit, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d, stderr: %s", o.signal, o.err);
	cr_assert(strstr(o.err, "labyrinth: double free of 0x"), "got: %s", o.err);
}

/* ---- recycling: slots leaving a thread's quarantine refill its batches -- */

static void *free_all_and_exit(void *arg)
{
	void **p = arg;
	for (int i = 0; p[i]; i++)
		labyrinth_free(NULL, p[i]);
	flush_quarantine(NULL);         /* its quarantine would keep rooms open */
	return NULL;
}

/* A consumer thread frees another thread's blocks: the slots its
 * quarantine pushes out are recycled into its batches although their rooms
 * belong to the producer's arena. Its exit must give them back to that
 * arena's rooms, leaving nothing live. */
Test(threads, recycled_slots_of_another_arena_go_back_at_exit, .timeout = 60)
{
	enum { N = 4000 };
	static void *blocks[N + 1];
	labyrinth_stats_t before, after;
	labyrinth_trim(NULL);
	unsigned long long rooms_before = rooms_open_but_flush(NULL);
	labyrinth_get_stats(NULL, &before);
	for (int i = 0; i < N; i++) {
		blocks[i] = labyrinth_malloc(NULL, 40);
		cr_assert_not_null(blocks[i]);
		memset(blocks[i], 0x5a, 40);
	}
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, free_all_and_exit, blocks), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	labyrinth_trim(NULL);
	labyrinth_get_stats(NULL, &after);
	cr_assert_eq(after.live_bytes, before.live_bytes, "%llu live bytes after, %llu before",
		     (unsigned long long)after.live_bytes, (unsigned long long)before.live_bytes);
	cr_assert_eq(rooms_open_but_flush(NULL), rooms_before,
		     "%llu rooms live after the consumer exited, %llu before",
		     rooms_open_but_flush(NULL), rooms_before);
	/* The recycled slots are handed out again, zeroed and intact. */
	for (int i = 0; i < N; i++) {
		unsigned char *p = labyrinth_malloc(NULL, 40);
		cr_assert_not_null(p);
		for (int j = 0; j < 40; j++)
			cr_assert_eq(p[j], 0, "byte %d of a reused slot is %#x", j, p[j]);
		blocks[i] = p;
	}
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, blocks[i]);
}

/* p is freed, then enough blocks of another class follow it into the
 * quarantine to push it out: it is recycled into the thread's batch, free
 * but not handed out. Freeing it again is still a double free. */
static void double_free_of_a_recycled_slot(void *arg)
{
	(void)arg;
	enum { OTHERS = 4096 };
	static void *other[OTHERS];
	for (int i = 0; i < OTHERS; i++)
		other[i] = labyrinth_malloc(NULL, 200);
	void *p = labyrinth_malloc(NULL, 40);
	labyrinth_free(NULL, p);
	for (int i = 0; i < OTHERS; i++)
		labyrinth_free(NULL, other[i]);
	labyrinth_free(NULL, p);
}

Test(threads, a_double_free_of_a_recycled_slot_is_caught)
{
	struct outcome o = run_in_child(double_free_of_a_recycled_slot, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d, stderr: %s", o.signal, o.err);
	cr_assert(strstr(o.err, "labyrinth: double free of 0x"), "got: %s", o.err);
}

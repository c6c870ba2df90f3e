/*
 * xfree: cross-thread frees.
 *
 * A producer thread allocates objects (16..1024 bytes, mostly small) and
 * hands them through a bounded lock-free ring to a consumer thread, which
 * checks and frees them. Every free therefore happens on a thread other than
 * the one that allocated the block: the pattern of message queues, thread
 * pools and pipelines, and the one where per-thread caches must give memory
 * back to its owner (or leak it to the wrong thread).
 *
 *   xfree [-n OBJECTS] [-q QUEUE] [-S SEED] [-u]
 *
 * QUEUE is the ring capacity (rounded up to a power of two): small values
 * keep few objects in flight, large ones let the producer run ahead.
 *
 * The two threads are pinned to two different CPUs (when the process may use
 * two). Left to the scheduler, they sometimes share one core and take turns
 * filling and draining the ring, which is ten times faster than running truly
 * in parallel; which of the two happens varies from run to run, and medians
 * of such a mix mean nothing. -u leaves them unpinned anyway.
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "xfree";

/*
 * Single-producer single-consumer ring. The two indices sit on their own
 * cache lines, and each side keeps a private copy of the other's index, so
 * the shared lines move between cores only when the cached view runs out.
 */
struct ring {
	void **slot;
	size_t mask;
	alignas(64) _Atomic size_t tail;	/* written by the producer */
	alignas(64) _Atomic size_t head;	/* written by the consumer */
};

/* Spin briefly (the other side is usually on another core), then yield. */
static void backoff(unsigned *spins)
{
	if (++*spins < 256)
		return;
	*spins = 0;
	sched_yield();
}

static void ring_push(struct ring *q, size_t *head_seen, void *p)
{
	size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	unsigned spins = 0;

	while (t - *head_seen > q->mask) {
		*head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
		if (t - *head_seen > q->mask)
			backoff(&spins);
	}
	q->slot[t & q->mask] = p;
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

static void *ring_pop(struct ring *q, size_t *tail_seen)
{
	size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	unsigned spins = 0;

	while (h == *tail_seen) {
		*tail_seen = atomic_load_explicit(&q->tail, memory_order_acquire);
		if (h == *tail_seen)
			backoff(&spins);
	}
	void *p = q->slot[h & q->mask];
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return p;
}

struct shared {
	struct ring q;
	unsigned long objects;
	uint64_t seed;
	int cpu[2];	/* producer's and consumer's CPU, -1: not pinned */
};

/* Pick the first two CPUs we may run on; leave cpu[] at -1 if there is one. */
static void choose_cpus(struct shared *sh)
{
	cpu_set_t set;
	int n = 0;

	sh->cpu[0] = sh->cpu[1] = -1;
	if (sched_getaffinity(0, sizeof(set), &set) != 0 || CPU_COUNT(&set) < 2)
		return;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET((size_t)c, &set))
			sh->cpu[n++] = c;
}

/* Best effort: a failure only costs repeatability, not correctness. */
static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET((size_t)cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Each object carries its size in its first word and a tag in its last byte. */
static unsigned char tag_of(size_t size)
{
	return (unsigned char)(size * 131 + 3);
}

static void *producer(void *arg)
{
	struct shared *sh = arg;
	size_t head_seen = 0;
	struct rng r;

	pin(sh->cpu[0]);
	rng_seed(&r, sh->seed);
	for (unsigned long i = 0; i < sh->objects; i++) {
		size_t size = rng_small_size(&r);
		unsigned char *p = malloc(size);

		if (!p) {
			fprintf(stderr, "%s: malloc(%zu) failed\n", prog, size);
			exit(1);
		}
		memcpy(p, &size, sizeof(size));
		p[size - 1] = tag_of(size);
		ring_push(&sh->q, &head_seen, p);
	}
	ring_push(&sh->q, &head_seen, NULL);	/* end of stream */
	return NULL;
}

static void consumer(struct shared *sh)
{
	size_t tail_seen = 0;
	unsigned char *p;

	pin(sh->cpu[1]);
	while ((p = ring_pop(&sh->q, &tail_seen)) != NULL) {
		size_t size;

		memcpy(&size, p, sizeof(size));
		if (size < 16 || size > 1024 || p[size - 1] != tag_of(size))
			corrupt(prog, "object changed in flight");
		free(p);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [-n OBJECTS] [-q QUEUE] [-S SEED] [-u]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long objects = 1000000, queue = 1024, seed = 1;
	int c, pinned = 1;

	while ((c = getopt(argc, argv, "n:q:S:u")) != -1) {
		switch (c) {
		case 'n': objects = parse_count(prog, 'n', optarg); break;
		case 'q': queue = parse_count(prog, 'q', optarg); break;
		case 'S': seed = parse_count(prog, 'S', optarg); break;
		case 'u': pinned = 0; break;
		default: usage();
		}
	}
	if (optind != argc || queue > (1ul << 24))
		usage();

	size_t cap = 1;
	while (cap < queue)
		cap <<= 1;

	static struct shared sh;
	sh.q.slot = calloc(cap, sizeof(void *));
	if (!sh.q.slot)
		return 1;
	sh.q.mask = cap - 1;
	sh.objects = objects;
	sh.seed = seed;
	sh.cpu[0] = sh.cpu[1] = -1;
	if (pinned)
		choose_cpus(&sh);

	pthread_t tid;
	if (pthread_create(&tid, NULL, producer, &sh)) {
		fprintf(stderr, "%s: pthread_create failed\n", prog);
		return 1;
	}
	consumer(&sh);
	pthread_join(tid, NULL);
	free(sh.q.slot);
	return 0;
}

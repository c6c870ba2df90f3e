/*
 * churn: random small-object churn.
 *
 * Each thread keeps a table of live slots; every step frees a random slot
 * and refills it with a new random size (16..1024 bytes, mostly small). This
 * is the steady state of most long-running programs: a heap that stays the
 * same size while its contents turn over, with frees in no particular order.
 *
 * With -t N, N threads each churn their own table (no sharing, so this
 * measures per-thread scaling, not cross-thread frees: see xfree). The step
 * count is the total over all threads, so on enough cores the wall time
 * should stay flat as N grows.
 *
 * With -P N, N processes each churn with one thread (the same total step
 * count): nothing is shared, so their time is what these cores allow two
 * allocators to do at once. -t N near -P N means the threads do not slow
 * each other down, whatever the machine's own scaling is.
 *
 *   churn [-t THREADS | -P PROCESSES] [-n SLOTS] [-s STEPS] [-S SEED]
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "churn";

struct slot {
	unsigned char *p;
	size_t size;
};

struct job {
	pthread_t tid;
	unsigned long slots;
	unsigned long steps;
	uint64_t seed;
};

/* A byte that depends on the size, so a swapped or overlapped block shows. */
static unsigned char tag_of(size_t size)
{
	return (unsigned char)(size * 31 + 7);
}

/* Allocate and stamp: first 8 bytes and the last byte, so both ends fault in. */
static void fill(struct slot *s, size_t size)
{
	unsigned char t = tag_of(size);

	s->p = malloc(size);
	if (!s->p) {
		fprintf(stderr, "%s: malloc(%zu) failed\n", prog, size);
		exit(1);
	}
	s->size = size;
	memset(s->p, t, 8);
	s->p[size - 1] = t;
	sink_ptr(s->p);
}

static void drain(struct slot *s)
{
	unsigned char t = tag_of(s->size);

	if (s->p[0] != t || s->p[7] != t || s->p[s->size - 1] != t)
		corrupt(prog, "slot contents changed while live");
	free(s->p);
	s->p = NULL;
}

static void *run_job(void *arg)
{
	struct job *j = arg;
	struct rng r;
	struct slot *tab = calloc(j->slots, sizeof(*tab));

	if (!tab) {
		fprintf(stderr, "%s: cannot allocate the slot table\n", prog);
		exit(1);
	}
	rng_seed(&r, j->seed);
	for (unsigned long i = 0; i < j->slots; i++)
		fill(&tab[i], rng_small_size(&r));
	for (unsigned long i = 0; i < j->steps; i++) {
		struct slot *s = &tab[rng_below(&r, j->slots)];

		drain(s);
		fill(s, rng_small_size(&r));
	}
	for (unsigned long i = 0; i < j->slots; i++)
		drain(&tab[i]);
	free(tab);
	return NULL;
}

/* -P: each process churns its share in one thread; fails if any child does. */
static int run_processes(unsigned long procs, unsigned long slots, unsigned long steps,
			 unsigned long seed)
{
	int failed = 0;

	for (unsigned long i = 0; i < procs; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("churn: fork");
			return 1;
		}
		if (pid == 0) {
			struct job j = { .slots = slots, .steps = steps / procs, .seed = seed * 1000 + i };
			run_job(&j);
			_exit(0);
		}
	}
	for (int st; wait(&st) > 0;)
		failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	return failed;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [-t THREADS | -P PROCESSES] [-n SLOTS] [-s STEPS] [-S SEED]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long threads = 1, procs = 1, slots = 20000, steps = 20000000, seed = 1;
	int c;

	while ((c = getopt(argc, argv, "t:P:n:s:S:")) != -1) {
		switch (c) {
		case 't': threads = parse_count(prog, 't', optarg); break;
		case 'P': procs = parse_count(prog, 'P', optarg); break;
		case 'n': slots = parse_count(prog, 'n', optarg); break;
		case 's': steps = parse_count(prog, 's', optarg); break;
		case 'S': seed = parse_count(prog, 'S', optarg); break;
		default: usage();
		}
	}
	if (optind != argc || threads > 1024 || procs > 1024 || (threads > 1 && procs > 1))
		usage();
	if (procs > 1)
		return run_processes(procs, slots, steps, seed);

	struct job *jobs = calloc(threads, sizeof(*jobs));
	if (!jobs)
		return 1;
	for (unsigned long i = 0; i < threads; i++) {
		jobs[i].slots = slots;
		jobs[i].steps = steps / threads;
		jobs[i].seed = seed * 1000 + i;
	}
	/* One thread runs in main, so -t 1 stays a truly single-threaded process. */
	for (unsigned long i = 1; i < threads; i++) {
		if (pthread_create(&jobs[i].tid, NULL, run_job, &jobs[i])) {
			fprintf(stderr, "%s: pthread_create failed\n", prog);
			return 1;
		}
	}
	run_job(&jobs[0]);
	for (unsigned long i = 1; i < threads; i++)
		pthread_join(jobs[i].tid, NULL);
	free(jobs);
	return 0;
}

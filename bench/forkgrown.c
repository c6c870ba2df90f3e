/*
 * forkgrown: fork from a process whose heap has a history.
 *
 * Grows a string the way a shell or an interpreter grows one: each step
 * allocates a block 9 bytes longer, copies the old string into it, appends
 * and frees the old block, 20,000 times (up to about 180 KiB; only two
 * blocks are ever live). Then it forks 20 times; each child exits at once
 * and the parent waits for it. A fork copies the parent's page tables and
 * the child's exit tears its copy down, so fork+wait costs in proportion to
 * the page tables the allocator's history left behind, not to live memory.
 *
 * Reports, on stdout and (for the labbench driver) in the file named by
 * $LABBENCH_METRICS: the median fork+wait latency in ms, and the VmPTE and
 * VmRSS of /proc/self/status (kB) just before the first fork.
 *
 *   forkgrown [-n STEPS] [-f FORKS]
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define STEP 9			/* bytes appended per step */
#define MAX_FORKS 10000

static const char *prog = "forkgrown";

static void usage(void)
{
	fprintf(stderr, "usage: %s [-n STEPS] [-f FORKS]\n", prog);
	exit(2);
}

/* The string after `steps` steps: malloc + copy + free, checked as it goes. */
static char *grow(unsigned long steps)
{
	static const char text[STEP] = "abcdefghi";
	char *s = NULL;
	size_t len = 0;

	for (unsigned long i = 0; i < steps; i++) {
		char *t = malloc(len + STEP + 1);

		if (!t) {
			fprintf(stderr, "%s: malloc(%zu) failed\n", prog, len + STEP + 1);
			exit(1);
		}
		if (s) {
			/* The copy must see what the last step wrote. */
			if (memcmp(s + len - STEP, text, STEP) != 0)
				corrupt(prog, "the grown string");
			memcpy(t, s, len);
		}
		memcpy(t + len, text, STEP);
		len += STEP;
		t[len] = '\0';
		free(s);
		s = t;
		sink_ptr(s);
	}
	return s;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One fork whose child exits at once, and the wait for it: ms. */
static double fork_wait_ms(void)
{
	int status;
	double t0 = now_ms();
	pid_t pid = fork();

	if (pid < 0) {
		perror("forkgrown: fork");
		exit(1);
	}
	if (pid == 0)
		_exit(0);	/* no atexit work: what fork and exit cost alone */
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "%s: child failed\n", prog);
		exit(1);
	}
	return now_ms() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	unsigned long steps = 20000, forks = 20;
	static double ms[MAX_FORKS];
	int c;

	while ((c = getopt(argc, argv, "n:f:")) != -1) {
		switch (c) {
		case 'n': steps = parse_count(prog, 'n', optarg); break;
		case 'f': forks = parse_count(prog, 'f', optarg); break;
		default: usage();
		}
	}
	if (optind != argc || forks > MAX_FORKS)
		usage();

	char *s = grow(steps);
	/* Before the forks: what each child's fork has to copy. */
	long pte = status_kb("VmPTE"), rss = status_kb("VmRSS");

	for (unsigned long i = 0; i < forks; i++)
		ms[i] = fork_wait_ms();
	qsort(ms, forks, sizeof(*ms), cmp_double);
	double med = forks % 2 ? ms[forks / 2] : (ms[forks / 2 - 1] + ms[forks / 2]) / 2;

	printf("fork+wait %.3f ms (median of %lu), VmPTE %ld kB, VmRSS %ld kB, string %zu bytes\n",
	       med, forks, pte, rss, strlen(s));
	bench_metric("fork+wait_ms", med);
	bench_metric("VmPTE_kB", (double)pte);
	bench_metric("VmRSS_kB", (double)rss);
	free(s);
	return 0;
}

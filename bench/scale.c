/*
 * scale: heaps that run into the kernel's map count if an allocator spends
 * a mapping per guarded region (vm.max_map_count, 65530 by default).
 *
 *   scale small [-g GIB]     GIB GiB (default 4) of live 64-byte objects
 *   scale large [-n COUNT]   COUNT (default 200000) live allocations of
 *                            20 KiB to 1 MiB, first and last byte written
 *
 * Everything stays live until the end; then the line
 *   scale: <mode>: <objects> objects, <mappings> mappings of <max>, <secs> s
 * reports the mappings the process held at its peak (/proc/self/maps lines).
 * Exit status 1 if an allocation failed.
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "scale";

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long n = 0;
	int c;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *must_malloc(size_t size, unsigned long i)
{
	void *p = malloc(size);
	if (!p) {
		fprintf(stderr, "%s: malloc(%zu) failed after %lu allocations\n", prog, size, i);
		exit(1);
	}
	return p;
}

static void report(const char *mode, unsigned long n, double t0)
{
	printf("scale: %s: %lu objects, %ld mappings of %ld, %.2f s\n", mode, n,
	       count_lines("/proc/self/maps"), read_long("/proc/sys/vm/max_map_count"),
	       now() - t0);
	fflush(stdout);
}

static void small_objects(unsigned long gib)
{
	unsigned long n = (gib << 30) / 64;
	double t0 = now();
	unsigned char **tab = must_malloc(n * sizeof(*tab), 0);
	for (unsigned long i = 0; i < n; i++) {
		tab[i] = must_malloc(64, i);
		memset(tab[i], (int)(i & 0xff), 64);
	}
	report("small", n, t0);
	for (unsigned long i = 0; i < n; i++) {
		if (tab[i][63] != (unsigned char)(i & 0xff))
			corrupt(prog, "a live object changed");
		free(tab[i]);
	}
	free(tab);
}

static void large_objects(unsigned long n)
{
	struct rng r;
	rng_seed(&r, 42);
	double t0 = now();
	unsigned char **tab = must_malloc(n * sizeof(*tab), 0);
	size_t *size = must_malloc(n * sizeof(*size), 0);
	for (unsigned long i = 0; i < n; i++) {
		size[i] = (20UL << 10) + rng_below(&r, (1UL << 20) - (20UL << 10) + 1);
		tab[i] = must_malloc(size[i], i);
		tab[i][0] = tab[i][size[i] - 1] = (unsigned char)i;
	}
	report("large", n, t0);
	for (unsigned long i = 0; i < n; i++) {
		if (tab[i][0] != (unsigned char)i || tab[i][size[i] - 1] != (unsigned char)i)
			corrupt(prog, "a live object changed");
		free(tab[i]);
	}
	free(tab);
	free(size);
}

int main(int argc, char **argv)
{
	unsigned long gib = 4, count = 200000;
	int c;
	if (argc < 2 || (strcmp(argv[1], "small") && strcmp(argv[1], "large"))) {
		fprintf(stderr, "usage: %s small [-g GIB] | large [-n COUNT]\n", prog);
		return 2;
	}
	optind = 2;
	while ((c = getopt(argc, argv, "g:n:")) != -1) {
		switch (c) {
		case 'g': gib = parse_count(prog, 'g', optarg); break;
		case 'n': count = parse_count(prog, 'n', optarg); break;
		default: return 2;
		}
	}
	if (!strcmp(argv[1], "small"))
		small_objects(gib);
	else
		large_objects(count);
	return 0;
}

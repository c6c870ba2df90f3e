/*
 * footprint: what a heap of many small objects costs in memory.
 *
 * Allocates a million 32-byte objects and 200,000 256-byte ones, writes
 * every byte of each (as a program would), keeps them all live, then frees
 * them. The interesting number is the peak RSS: per-object overhead, size
 * class waste and metadata, with nothing freed in between to hide it.
 *
 *   footprint [-n SMALL] [-m MEDIUM]
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "footprint";

static void usage(void)
{
	fprintf(stderr, "usage: %s [-n SMALL] [-m MEDIUM]\n", prog);
	exit(2);
}

static void fill(unsigned char **tab, unsigned long n, size_t size)
{
	for (unsigned long i = 0; i < n; i++) {
		tab[i] = malloc(size);
		if (!tab[i]) {
			fprintf(stderr, "%s: malloc(%zu) failed\n", prog, size);
			exit(1);
		}
		memset(tab[i], (int)(i & 0xff), size);
	}
}

static void check_and_free(unsigned char **tab, unsigned long n, size_t size)
{
	for (unsigned long i = 0; i < n; i++) {
		if (tab[i][0] != (unsigned char)(i & 0xff) || tab[i][size - 1] != tab[i][0])
			corrupt(prog, "object changed while live");
		free(tab[i]);
	}
}

int main(int argc, char **argv)
{
	unsigned long small = 1000000, medium = 200000;
	int c;

	while ((c = getopt(argc, argv, "n:m:")) != -1) {
		switch (c) {
		case 'n': small = parse_count(prog, 'n', optarg); break;
		case 'm': medium = parse_count(prog, 'm', optarg); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	/* The tables themselves are large allocations, the same for everyone. */
	unsigned char **s = malloc(small * sizeof(*s));
	unsigned char **m = malloc(medium * sizeof(*m));
	if (!s || !m) {
		fprintf(stderr, "%s: table allocation failed\n", prog);
		return 1;
	}
	fill(s, small, 32);
	fill(m, medium, 256);
	check_and_free(s, small, 32);
	check_and_free(m, medium, 256);
	free(s);
	free(m);
	return 0;
}

/*
 * fastpath: malloc(16) then free, in a tight loop.
 *
 * The best case of every allocator: one size, one thread, the block just
 * freed is the next one handed out. What is left is the fixed cost of a
 * call: locks, checks, canaries, randomisation. A hardened allocator pays its
 * price most visibly here, so this row bounds the overhead from above for
 * small-object code.
 *
 *   fastpath [-n ITERATIONS] [-s SIZE]
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "fastpath";

static void usage(void)
{
	fprintf(stderr, "usage: %s [-n ITERATIONS] [-s SIZE]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long iterations = 50000000, size = 16;
	int c;

	while ((c = getopt(argc, argv, "n:s:")) != -1) {
		switch (c) {
		case 'n': iterations = parse_count(prog, 'n', optarg); break;
		case 's': size = parse_count(prog, 's', optarg); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	for (unsigned long i = 0; i < iterations; i++) {
		unsigned char *p = malloc(size);

		if (!p) {
			fprintf(stderr, "%s: malloc(%lu) failed\n", prog, size);
			return 1;
		}
		/*
		 * The volatile store and the sink make the block escape, so
		 * gcc and clang cannot fold the malloc/free pair away.
		 */
		*(volatile unsigned char *)p = (unsigned char)i;
		sink_ptr(p);
		free(p);
	}
	return 0;
}

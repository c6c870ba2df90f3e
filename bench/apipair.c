/*
 * apipair: labyrinth_malloc(16) then labyrinth_free, in a tight loop, through
 * the library API: on a private labyrinth (labyrinth_open) or, with -d, on
 * the default one. The API's counterpart of fastpath.c, for
 * `make bench-instructions`.
 *
 *   apipair [-d] [-n ITERATIONS] [-s SIZE]
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "benchutil.h"
#include "labyrinth.h"

static const char *prog = "apipair";

static void usage(void)
{
	fprintf(stderr, "usage: %s [-d] [-n ITERATIONS] [-s SIZE]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long iterations = 50000000, size = 16;
	int c, use_default = 0;

	while ((c = getopt(argc, argv, "dn:s:")) != -1) {
		switch (c) {
		case 'd': use_default = 1; break;
		case 'n': iterations = parse_count(prog, 'n', optarg); break;
		case 's': size = parse_count(prog, 's', optarg); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	labyrinth_t *lab = use_default ? labyrinth_default() : labyrinth_open(NULL);
	if (!lab) {
		perror("apipair: labyrinth_open");
		return 1;
	}
	for (unsigned long i = 0; i < iterations; i++) {
		unsigned char *p = labyrinth_malloc(lab, size);

		if (!p) {
			fprintf(stderr, "%s: labyrinth_malloc(%lu) failed\n", prog, size);
			return 1;
		}
		*(volatile unsigned char *)p = (unsigned char)i;
		sink_ptr(p);
		labyrinth_free(lab, p);
	}
	if (!use_default)
		labyrinth_close(lab);
	return 0;
}

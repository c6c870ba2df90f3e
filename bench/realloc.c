/*
 * realloc: buffers that grow by realloc, from 1 KiB to several MiB.
 *
 * Several buffers grow in turn, each by a random 25..37% per step, and the
 * program writes the new tail after every step (as a string builder or a
 * read-the-whole-file loop would). When a buffer passes the maximum it is
 * freed and starts again at 1 KiB. Interleaving the buffers stops realloc from
 * always extending in place, so this measures the copy/remap path, how fast
 * fresh pages are handed out, and whether big freed blocks are reused.
 *
 *   realloc [-c CYCLES] [-b BUFFERS] [-m MAX_BYTES] [-S SEED]
 *
 * CYCLES counts full 1 KiB -> MAX growths, over all buffers together.
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "realloc";

#define START_BYTES 1024

struct buf {
	unsigned char *p;
	size_t size;
	unsigned char last;	/* the byte written into the latest tail */
};

/* Check that realloc kept the old contents: the first and last bytes we wrote. */
static void check(const struct buf *b, unsigned char first)
{
	if (b->p[0] != first || b->p[b->size - 1] != b->last)
		corrupt(prog, "realloc lost the old contents");
}

static void grow(struct buf *b, size_t to, unsigned char first)
{
	unsigned char *p = realloc(b->p, to);

	if (!p) {
		fprintf(stderr, "%s: realloc(%zu) failed\n", prog, to);
		exit(1);
	}
	b->p = p;
	check(b, first);
	b->last = (unsigned char)(to >> 10);
	memset(p + b->size, b->last, to - b->size);
	b->size = to;
	sink_ptr(p);
}

/* Start a buffer over at 1 KiB. */
static void restart(struct buf *b, unsigned char first)
{
	free(b->p);
	b->p = malloc(START_BYTES);
	if (!b->p) {
		fprintf(stderr, "%s: malloc failed\n", prog);
		exit(1);
	}
	b->size = START_BYTES;
	b->last = first;
	memset(b->p, first, START_BYTES);
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [-c CYCLES] [-b BUFFERS] [-m MAX_BYTES] [-S SEED]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long cycles = 150, nbufs = 4, max = 8ul << 20, seed = 1;
	int c;

	while ((c = getopt(argc, argv, "c:b:m:S:")) != -1) {
		switch (c) {
		case 'c': cycles = parse_count(prog, 'c', optarg); break;
		case 'b': nbufs = parse_count(prog, 'b', optarg); break;
		case 'm': max = parse_count(prog, 'm', optarg); break;
		case 'S': seed = parse_count(prog, 'S', optarg); break;
		default: usage();
		}
	}
	if (optind != argc || max < 2 * START_BYTES || nbufs > 4096)
		usage();

	struct buf *bufs = calloc(nbufs, sizeof(*bufs));
	struct rng r;

	if (!bufs)
		return 1;
	rng_seed(&r, seed);
	for (unsigned long i = 0; i < nbufs; i++)
		restart(&bufs[i], (unsigned char)(i + 1));

	for (unsigned long done = 0, i = 0; done < cycles; i = (i + 1) % nbufs) {
		struct buf *b = &bufs[i];
		unsigned char first = (unsigned char)(i + 1);
		size_t to = b->size + b->size / 4 + rng_below(&r, b->size / 8 + 1);

		if (to > max) {
			restart(b, first);
			done++;
			continue;
		}
		grow(b, to, first);
	}
	for (unsigned long i = 0; i < nbufs; i++)
		free(bufs[i].p);
	free(bufs);
	return 0;
}

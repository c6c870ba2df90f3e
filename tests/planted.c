/*
 * planted CASE: one heap bug, planted the way a buggy program makes it,
 * then a normal life: the program frees what it holds and returns from
 * main. tests/test_planted.sh runs it under each labyrinth mode and under
 * AddressSanitizer and reads when the first report came from the phase
 * markers written to stderr just before each phase: "planted: bug",
 * "planted: free", "planted: exit". Built with -rdynamic so that the
 * reports' stacks name main.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile char sink;

static void phase(const char *name)
{
	char msg[32];
	int len = snprintf(msg, sizeof msg, "planted: %s\n", name);
	if (write(STDERR_FILENO, msg, (size_t)len) < 0)
		_exit(3);
}

/* Through a volatile pointer, so that the compiler keeps every access. */
static char *volatile block;
static volatile size_t inside = 8;   /* hides the interior free from -Werror */

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: planted CASE\n");
		return 2;
	}
	const char *c = argv[1];
	char *keep = NULL;      /* freed in the free phase */
	/* A program's start-up allocates before its bug does; and a thread's
	 * first allocation is never sampled (LABYRINTH_SAMPLE draws its
	 * first interval there). */
	char *setup = malloc(100);
	if (!setup)
		return 3;
	memset(setup, 's', 100);

	if (!strcmp(c, "overflow-7")) {
		keep = block = malloc(7);
		memset(block, 'a', 7);
		phase("bug");
		block[7] = 'b';
	} else if (!strcmp(c, "uaf-write")) {
		block = malloc(32);
		memset(block, 'a', 32);
		free(block);
		phase("bug");
		block[8] = 'b';
	} else if (!strcmp(c, "uaf-read")) {
		block = malloc(32);
		memset(block, 'a', 32);
		free(block);
		phase("bug");
		sink = block[8];
	} else if (!strcmp(c, "underflow")) {
		keep = block = malloc(32);
		memset(block, 'a', 32);
		phase("bug");
		block[-1] = 'b';
	} else if (!strcmp(c, "double-free")) {
		block = malloc(32);
		free(block);
		phase("bug");
		free(block);
	} else if (!strcmp(c, "interior-free")) {
		keep = block = malloc(32);
		phase("bug");
		free(block + inside);
	} else if (!strcmp(c, "large-overflow")) {
		keep = block = malloc(200000);
		memset(block, 'a', 200000);
		phase("bug");
		block[200000] = 'b';
	} else if (!strcmp(c, "zero-write")) {
		keep = block = malloc(0);
		phase("bug");
		block[0] = 'b';
	} else if (!strcmp(c, "zero-read")) {
		keep = block = malloc(0);
		phase("bug");
		sink = block[0];
	} else {
		fprintf(stderr, "planted: unknown case %s\n", c);
		return 2;
	}
	phase("free");
	free(keep);
	free(setup);
	phase("exit");
	return 0;
}

/*
 * A program using the labyrinth API, run under valgrind by
 * tests/test_valgrind.sh: "clean" must give no error at all (the allocator's
 * own canaries, zeroing and zero checks are invisible to memcheck), "leak"
 * loses one block, "uaf" reads a freed one, "overflow" reads past one,
 * "uninit" branches on bytes malloc never wrote.
 */
#include "labyrinth.h"

#include <stdio.h>
#include <string.h>

static volatile char sink;
static char *volatile kept;

static int clean(void)
{
	labyrinth_t *lab = labyrinth_open(NULL);
	for (int i = 0; i < 2000; i++) {
		char *p = labyrinth_malloc(lab, (size_t)(i % 200) + 1);
		memset(p, i, (size_t)(i % 200) + 1);
		p = labyrinth_realloc(lab, p, (size_t)(i % 5000) + 1);
		char *q = labyrinth_calloc(lab, 3, (size_t)(i % 7000) + 1);
		sink = q[0] + p[0];
		labyrinth_free(lab, p);
		labyrinth_free(lab, q);
	}
	labyrinth_trim(lab);
	labyrinth_close(lab);
	return 0;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "clean";
	if (strcmp(what, "clean") == 0)
		return clean();
	char *p = labyrinth_malloc(NULL, 100);
	memset(p, 1, 100);
	if (strcmp(what, "leak") == 0) {
		kept = labyrinth_malloc(NULL, 77);
		kept = NULL;            /* the only pointer to the 77 bytes is gone */
	} else if (strcmp(what, "uaf") == 0) {
		labyrinth_free(NULL, p);
		sink = p[10];
	} else if (strcmp(what, "overflow") == 0) {
		sink = p[100];
	} else if (strcmp(what, "uninit") == 0) {
		char *u = labyrinth_malloc(NULL, 16);
		if (u[3] == 42)
			puts("never");
	}
	return 0;
}

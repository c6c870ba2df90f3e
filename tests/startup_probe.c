/*
 * startup_probe: a program for tests/test_startup.sh, run under the preload.
 * "none" calls no allocator function at all; "one" makes one allocation of
 * each size given (through a volatile pointer, so the compiler cannot drop
 * the malloc and free pair).
 */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	void *(*volatile alloc)(size_t) = malloc;
	if (argc < 2 || strcmp(argv[1], "one") != 0)
		return 0;
	for (int i = 2; i < argc; i++) {
		char *p = alloc((size_t)atol(argv[i]));
		if (!p)
			return 1;
		p[0] = 1;
		free(p);
	}
	return 0;
}

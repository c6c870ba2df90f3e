/*
 * demo-overflow: a small target with a planted 1-byte heap overflow, for
 * fuzz/README.md. Input starting "LAB" copies a 7-byte name and its NUL
 * into an 8-byte block, writing one byte past its end. glibc's chunk has
 * slack after 8 bytes, so under glibc nothing ever notices; under
 * LABYRINTH_GUARD_ALL=1 the block ends against a guard page and the NUL
 * faults. fuzz/run.sh shows AFL++ finding it with the mode and not without.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	char in[64] = { 0 };
	ssize_t n = read(STDIN_FILENO, in, sizeof in - 1);
	if (n < 3 || memcmp(in, "LAB", 3) != 0)
		return 0;
	char *name = malloc(8);
	strncpy(name, "ariadne", 8);
	name[strlen(name) + 1] = 0;     /* the bug: one past the terminator */
	printf("%s\n", name);
	free(name);
	return 0;
}

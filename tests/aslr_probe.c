/*
 * aslr_probe: where the default labyrinth's maze lands, seen from the
 * libraries, over many processes (tests/test_aslr.sh).
 *
 *   aslr_probe one
 *       run under the preload: allocate 64 bytes, print the maze's base, that
 *       allocation, the maze index's and the guarded region's addresses
 *       (LABYRINTH_SAMPLE set; else 0), the zero region's (made by a
 *       malloc(0)), and the load addresses of the C
 *       library, the preload library, the program and the dynamic loader,
 *       in hex.
 *   aslr_probe runs N LIB [norandom]
 *       run `aslr_probe one` N times with LD_PRELOAD=LIB (with the kernel's
 *       address randomisation off for them if norandom: the attacker's best
 *       case), and print, for each distance an attacker who knows one of
 *       those addresses would need, "NAME BITS" or "NAME >BITS" (no two runs
 *       agreed: BITS is all that N runs can show), the collision entropy over
 *       the runs.
 */
#include "collision.h"
#include "guarded.h"
#include "lab.h"
#include "labyrinth.h"

#include <dlfcn.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { MAZE, FIRST, INDEX, GUARDED, ZERO, LIBC, PRELOAD, PROG, LDSO, FIELDS };

static uintptr_t load_base(const void *addr)
{
	Dl_info info;
	return dladdr(addr, &info) ? (uintptr_t)info.dli_fbase : 0;
}

static int one(void)
{
	labyrinth_t *(*get)(void) = (labyrinth_t * (*)(void)) dlsym(RTLD_DEFAULT, "labyrinth_default");
	void *(*volatile alloc)(size_t) = malloc;
	char *p = alloc(64), *z = alloc(0);
	if (!get || !p || !z) {
		fprintf(stderr, "aslr_probe: not under the preload\n");
		return 1;
	}
	struct labyrinth *lab = (struct labyrinth *)get();
	const struct guarded_span *g = (const struct guarded_span *)lab->guarded;  /* its first field */
	printf("%lx %lx %lx %lx %lx %lx %lx %lx %lx\n", (unsigned long)(uintptr_t)lab->maze.base,
	       (unsigned long)(uintptr_t)p, (unsigned long)(uintptr_t)lab->maze.index,
	       (unsigned long)(g ? (uintptr_t)g->base : 0), (unsigned long)atomic_load(&lab->zero.base),
	       (unsigned long)load_base((void *)fputs),
	       (unsigned long)load_base((void *)get), (unsigned long)load_base((void *)one),
	       (unsigned long)getauxval(AT_BASE));
	return 0;
}

/* "NAME BITS", or "NAME >BITS" when no two runs agreed. */
static void print_bits(const char *name, uint64_t *v, size_t n)
{
	bool bound;
	double bits = collision_bits(v, n, &bound);
	printf("%s %s%.1f\n", name, bound ? ">" : "", bits);
}

static bool run_one(char *self, char *lib, uintptr_t out[FIELDS])
{
	size_t nenv = 0;
	while (environ[nenv])
		nenv++;
	char **env = calloc(nenv + 2, sizeof *env);
	char preload[4096];
	snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
	env[0] = preload;
	for (size_t i = 0, k = 1; i < nenv; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			env[k++] = environ[i];
	int fds[2];
	if (pipe(fds) != 0)
		return false;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	char *argv[] = { self, "one", NULL };
	pid_t pid;
	int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	close(fds[1]);
	if (err) {
		close(fds[0]);
		return false;
	}
	FILE *f = fdopen(fds[0], "r");
	unsigned long v[FIELDS];
	int got = fscanf(f, "%lx %lx %lx %lx %lx %lx %lx %lx %lx", &v[0], &v[1], &v[2], &v[3],
			 &v[4], &v[5], &v[6], &v[7], &v[8]);
	fclose(f);
	int st;
	waitpid(pid, &st, 0);
	for (int i = 0; i < FIELDS; i++)
		out[i] = v[i];
	return got == FIELDS && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int runs(size_t n, char *self, char *lib, bool norandom)
{
	if (norandom && personality(ADDR_NO_RANDOMIZE) == -1) {
		perror("personality");
		return 1;
	}
	uintptr_t (*r)[FIELDS] = calloc(n, sizeof *r);
	uint64_t *v = calloc(n, sizeof *v);
	for (size_t i = 0; i < n; i++) {
		if (!run_one(self, lib, r[i])) {
			fprintf(stderr, "aslr_probe: run %zu failed\n", i);
			return 1;
		}
	}
	static const char *names[FIELDS] = { "maze", "first", "index", "guarded", "zero",
					     "libc", "preload", "program", "loader" };
	for (int f = 0; f < FIELDS; f++) {
		for (size_t i = 0; i < n; i++)
			v[i] = r[i][f];
		print_bits(names[f], v, n);
	}
	/* Each of the allocator's reservations from each library, and the
	 * maze from the other two. */
	for (int a = MAZE; a <= ZERO; a++) {
		for (int b = a + 1; b < FIELDS; b++) {
			if (a == MAZE && b == FIRST)
				continue;
			char name[64];
			snprintf(name, sizeof name, "%s-%s", names[a], names[b]);
			for (size_t i = 0; i < n; i++)
				v[i] = r[i][a] - r[i][b];
			print_bits(name, v, n);
		}
	}
	/* What the kernel adds to the distance from the C library: its place
	 * in a span (the maze's base is a multiple of one). */
	for (size_t i = 0; i < n; i++)
		v[i] = r[i][LIBC] % (2UL << 20);
	print_bits("libc-in-span", v, n);
	free(v);
	free(r);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "one") == 0)
		return one();
	if (argc >= 4 && strcmp(argv[1], "runs") == 0)
		return runs((size_t)atol(argv[2]), argv[0], argv[3],
			    argc >= 5 && strcmp(argv[4], "norandom") == 0);
	fprintf(stderr, "usage: aslr_probe one | runs N LIB [norandom]\n");
	return 2;
}

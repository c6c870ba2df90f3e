/*
 * driver: one main() for every harness. Built with afl-clang-fast it runs
 * the harness in AFL++'s persistent mode (one process, many inputs, the
 * input in shared memory); built with the ordinary compiler it replays the
 * files and directories named on its command line, one input each, which is
 * how `make check` runs every corpus file through every harness.
 *
 * A harness defines fuzz_setup() (once per process) and fuzz_one() (once per
 * input). A broken invariant calls fuzz_fail(), which aborts: a crash is
 * what AFL++ records as a finding.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, "fuzz: invariant broken: ", 24);
	(void)!write(STDERR_FILENO, buf, (size_t)n);
	abort();
}

#ifdef __AFL_FUZZ_TESTCASE_LEN
__AFL_FUZZ_INIT();

int main(void)
{
	fuzz_setup();
	__AFL_INIT();
	unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
	while (__AFL_LOOP(10000))
		fuzz_one(buf, (size_t)__AFL_FUZZ_TESTCASE_LEN);
	return 0;
}
#else

static unsigned long replayed;

static void replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	static unsigned char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz: %s (%zu bytes)\n", path, n);
	fuzz_one(buf, n);
	replayed++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory's files in name order, so a replay is the same every time. */
static void replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		perror(dir);
		exit(2);
	}
	char *names[4096];
	size_t n = 0;
	for (struct dirent *e; (e = readdir(d)) && n < 4096;)
		if (e->d_name[0] != '.')
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, n, sizeof names[0], by_name);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		replay_file(path);
		free(names[i]);
	}
}

int main(int argc, char **argv)
{
	fuzz_setup();
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			replay_dir(argv[i]);
		else
			replay_file(argv[i]);
	}
	printf("replayed %lu inputs\n", replayed);
	return 0;
}
#endif

/*
 * labyrinth check: plant one small heap bug of each kind in a child process
 * running under the preload, and show in a table that each is stopped the
 * way labyrinth(7) says. The children are this same program (`labyrinth
 * __probe NAME`), so the check needs nothing but the library.
 */
#include "cli.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* ---- the planted bugs (run in the child, under the preload) ------------ */

/* The compiler must not see through these: the bugs are the point. */
static void *volatile sink;

static void probe_double_free(void)
{
	char *p = malloc(64);
	sink = p;
	free(p);
	free(sink);
}

static void probe_overflow(void)
{
	char *p = malloc(24);
	sink = p;
	memset(sink, 'A', 32);  /* 8 bytes past the end */
	free(p);
}

/* Write into a freed slot whose room stays open (its neighbours live),
 * then make sure it is handed out again and checked: frees of another size
 * push it out of the quarantine, trim returns it to its room, and blocks of
 * its size kept until then must reach it once the other free slots are
 * used. (Churning its own size could leave it unused for ever: a refill
 * keeps taking the current room, into which the churn's slots go back.) */
static void probe_write_after_free(void)
{
	static char *keep[512];
	for (int i = 0; i < 512; i++)
		keep[i] = malloc(48);
	sink = keep[100];
	free(keep[100]);
	((volatile char *)sink)[8] = 'X';
	for (int i = 0; i < 20000; i++) {
		char *p = malloc(16);
		sink = p;
		free(p);
	}
	malloc_trim(0);
	for (int i = 0; i < 1000000; i++)
		sink = malloc(48);
}

/* One byte past a block of a size malloc pads to nothing: only a guard
 * page right after it (LABYRINTH_GUARD_ALL, LABYRINTH_SAMPLE) stops it. */
static void probe_one_byte_overflow(void)
{
	/* Not the thread's first block: sampling draws its first interval at
	 * the first allocation and leaves that one unguarded, even with N=1. */
	sink = malloc(16);
	free(sink);
	char *p = malloc(32);
	sink = p;
	((volatile char *)sink)[32] = 'A';
}

static void probe_large_overflow(void)
{
	char *p = malloc(40000);        /* 10 pages; the 11th is a guard page */
	sink = p;
	((volatile char *)sink)[40960] = 'A';
}

static void probe_large_use_after_free(void)
{
	char *p = malloc(100000);
	sink = p;
	free(p);
	(void)((volatile char *)sink)[0];
}

static void probe_invalid_free(void)
{
	char *p = malloc(64);
	sink = p + 16;
	free(sink);
}

static void probe_address(void)
{
	sink = malloc(64);
	printf("%p\n", sink);
}

/* With LABYRINTH_SECCOMP=wx: a heap page must not become executable, by
 * any of the three calls that could make it so. */
static const char *try_result(long rc)
{
	return rc == 0 ? "allowed" : strerror(errno);
}

static void probe_wx(void)
{
	void *p = aligned_alloc(4096, 4096);
	const char *mp = try_result(mprotect(p, 4096, PROT_READ | PROT_EXEC));
	const char *pk = try_result(syscall(SYS_pkey_mprotect, p, 4096, PROT_READ | PROT_EXEC, -1));
	void *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("mprotect %s, pkey_mprotect %s, mmap %s\n", mp, pk,
	       q != MAP_FAILED ? "allowed" : strerror(errno));
}

static const struct probe {
	const char *name;
	void (*fn)(void);
} probes[] = {
	{ "double-free", probe_double_free },
	{ "overflow", probe_overflow },
	{ "one-byte-overflow", probe_one_byte_overflow },
	{ "write-after-free", probe_write_after_free },
	{ "large-overflow", probe_large_overflow },
	{ "large-use-after-free", probe_large_use_after_free },
	{ "invalid-free", probe_invalid_free },
	{ "address", probe_address },
	{ "wx", probe_wx },
};

int probe_main(const char *name)
{
	for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
		if (strcmp(name, probes[i].name) == 0) {
			probes[i].fn();
			fflush(stdout);
			return 0;       /* the bug went unnoticed */
		}
	}
	fprintf(stderr, "labyrinth: no probe %s\n", name);
	return 2;
}

/* ---- the table ---------------------------------------------------------- */

struct row {
	const char *protection;
	const char *probe;
	const char *bug;
	int want_signal;        /* how it must end */
	const char *want_report;        /* the start of the report, or NULL */
	const char *var, *value;        /* a setting the row runs with, or NULL */
};

static const struct row rows[] = {
	{ "double-free detection", "double-free", "free the same block twice", SIGABRT,
	  "labyrinth: double free of ", NULL, NULL },
	{ "invalid-free detection", "invalid-free", "free a pointer into a block", SIGABRT,
	  "labyrinth: invalid free of ", NULL, NULL },
	{ "canary", "overflow", "write 8 bytes past a 24-byte block", SIGABRT,
	  "labyrinth: heap overflow of ", NULL, NULL },
	{ "zero on free, reuse check", "write-after-free", "write into a freed block", SIGABRT,
	  "labyrinth: write after free of ", NULL, NULL },
	{ "guard pages", "large-overflow", "write past a 40000-byte block", SIGSEGV, NULL, NULL, NULL },
	{ "freed pages unmapped", "large-use-after-free", "read a freed 100 KB block",
	  SIGSEGV, NULL, NULL, NULL },
	{ "guard every block", "one-byte-overflow", "write 1 byte past a 32-byte block",
	  SIGSEGV, "labyrinth: SIGSEGV: heap overflow", "LABYRINTH_GUARD_ALL", "1" },
	{ "sampling, one in 1", "one-byte-overflow", "write 1 byte past a 32-byte block",
	  SIGSEGV, "labyrinth: SIGSEGV: heap overflow", "LABYRINTH_SAMPLE", "1" },
};

static char self[4096];

/* The table's columns; "what happened" is as wide as its longest entry,
 * "not stopped (exit 255)". */
#define ROW "%-26s %-36s %-22s %s\n"

static int run_probe(const char *probe, struct ending *e)
{
	char *argv[] = { self, "__probe", (char *)probe, NULL };
	return cli_run(argv, true, e);
}

static const char *outcome(const struct ending *e, char *buf, size_t size)
{
	if (WIFSIGNALED(e->status))
		snprintf(buf, size, "stopped: SIG%s", sigabbrev_np(WTERMSIG(e->status)));
	else
		snprintf(buf, size, "not stopped (exit %d)", WEXITSTATUS(e->status));
	return buf;
}

/* Set var to value (unset it: NULL); returns what it was, to be freed. */
static char *swap_var(const char *var, const char *value)
{
	const char *was = getenv(var);
	char *old = was ? strdup(was) : NULL;
	if (value)
		setenv(var, value, 1);
	else
		unsetenv(var);
	return old;
}

static bool check_row(const struct row *r)
{
	static struct ending e;
	char how[64];
	char *was = r->var ? swap_var(r->var, r->value) : NULL;
	int rc = run_probe(r->probe, &e);
	if (r->var)
		free(swap_var(r->var, was));
	free(was);
	if (rc < 0)
		return false;
	bool ok = WIFSIGNALED(e.status) && WTERMSIG(e.status) == r->want_signal &&
		  (!r->want_report || strncmp(e.err, r->want_report, strlen(r->want_report)) == 0);
	printf(ROW, r->protection, r->bug, outcome(&e, how, sizeof how),
	       ok ? "ok" : "FAILED");
	if (!ok && e.err[0])
		printf("    its stderr: %.200s\n", e.err);
	return ok;
}

static bool check_random(void)
{
	char la[64] = "", lb[64] = "";
	FILE *f = popen("\"$LAB_CHECK_SELF\" __probe address", "r");
	FILE *g = popen("\"$LAB_CHECK_SELF\" __probe address", "r");
	if (f && fgets(la, sizeof la, f) && g && fgets(lb, sizeof lb, g))
		la[strcspn(la, "\n")] = lb[strcspn(lb, "\n")] = 0;
	if (f)
		pclose(f);
	if (g)
		pclose(g);
	bool ok = la[0] && lb[0] && strcmp(la, lb) != 0;
	printf(ROW, "random placement", "first malloc(64) of two runs",
	       ok ? "differ" : "same", ok ? "ok" : "FAILED");
	return ok;
}

static bool check_wx(void)
{
	char line[128] = "";
	char *was = swap_var("LABYRINTH_SECCOMP", "wx");
	FILE *f = popen("\"$LAB_CHECK_SELF\" __probe wx", "r");
	if (f && !fgets(line, sizeof line, f))
		line[0] = 0;
	if (f)
		pclose(f);
	free(swap_var("LABYRINTH_SECCOMP", was));
	free(was);
	line[strcspn(line, "\n")] = 0;
	bool ok = strcmp(line, "mprotect Operation not permitted, pkey_mprotect Operation not "
			       "permitted, mmap Operation not permitted") == 0;
	printf(ROW, "seccomp W^X (--seccomp)", "make a heap page executable",
	       ok ? "refused: EPERM" : "allowed", ok ? "ok" : "FAILED");
	if (!ok)
		printf("    it said: %s\n", line);
	return ok;
}

static void describe_machine(const char *lib)
{
	struct utsname u;
	uname(&u);
	long maps = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f) {
		if (fscanf(f, "%ld", &maps) != 1)
			maps = 0;
		fclose(f);
	}
	/* Guard markers cost no mapping; without them rooms cost mappings. */
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool markers = p != MAP_FAILED && madvise(p, 4096, MADV_GUARD_INSTALL) == 0;
	if (p != MAP_FAILED)
		munmap(p, 8192);
	const char *forced = getenv("LABYRINTH_GUARD");
	printf("labyrinth %s check, library %s\n", PACKAGE_VERSION, lib);
	printf("Linux %s, vm.max_map_count %ld, guard pages by %s\n\n", u.release, maps,
	       forced && strcmp(forced, "mprotect") == 0 ? "mprotect (LABYRINTH_GUARD)"
	       : markers ? "guard markers (MADV_GUARD_INSTALL, no mapping each)"
			 : "mprotect (this kernel has no guard markers)");
	printf(ROW, "protection", "planted bug", "what happened", "result");
}

int check_main(const char *lib)
{
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		fprintf(stderr, "labyrinth: cannot find myself in /proc/self/exe\n");
		return 125;
	}
	self[n] = 0;
	setenv("LAB_CHECK_SELF", self, 1);
	describe_machine(lib);
	fflush(stdout);
	cli_set_preload(lib);
	unsigned passed = 0, total = 0;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++, total++)
		passed += check_row(&rows[i]);
	passed += check_random();
	passed += check_wx();
	total += 2;
	printf("\n%u of %u checks passed\n", passed, total);
	return passed == total ? 0 : 1;
}

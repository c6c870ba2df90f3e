#include "helpers.h"
#include "lab.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct outcome run_in_child(void (*fn)(void *), void *arg)
{
	struct outcome o = { 0 };
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], STDERR_FILENO);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	size_t len = 0;
	ssize_t n;
	while ((n = read(fds[0], o.err + len, sizeof o.err - 1 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status))
		o.signal = WTERMSIG(status);
	else
		o.exit_code = WEXITSTATUS(status);
	return o;
}

static void do_read(void *addr)
{
	volatile const char *p = addr;
	(void)*p;
}

static void do_write(void *addr)
{
	volatile char *p = addr;
	*p = 1;
}

bool read_faults(const void *addr)
{
	struct outcome o = run_in_child(do_read, (void *)addr);
	return o.signal == SIGSEGV || o.signal == SIGBUS;
}

bool write_faults(void *addr)
{
	struct outcome o = run_in_child(do_write, addr);
	return o.signal == SIGSEGV || o.signal == SIGBUS;
}

long count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;
	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

long status_kib(const char *field)
{
	char line[128];
	size_t n = strlen(field);
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			kib = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	if (f)
		fclose(f);
	return kib;
}

long vm_pte_kib(void)
{
	return status_kib("VmPTE");
}

labyrinth_t *open_private(size_t wing_bytes)
{
	labyrinth_options_t o = { .size = sizeof o, .wing_bytes = wing_bytes };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab, "labyrinth_open failed");
	return lab;
}

bool testing_mprotect(void)
{
	const char *g = getenv("LABYRINTH_GUARD");
	return g && strcmp(g, "mprotect") == 0;
}

unsigned long long test_rand(unsigned long long *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

labyrinth_t *open_reserved(size_t pages)
{
	labyrinth_options_t o = { .size = sizeof o, .reserve_pages = pages };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	return lab;
}

labyrinth_t *open_pool(size_t cap, unsigned flags)
{
	labyrinth_options_t o = { .size = sizeof o, .cap_bytes = cap,
				  .flags = LAB_OPEN_PREFAULT | flags };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab, "open failed: %s", strerror(errno));
	return lab;
}

bool all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}
#if defined(__SANITIZE_ADDRESS__) && !defined(LAB_TEST_KEEP_POISON)
/*
 * The sanitizer build runs the whole suite under ASan, but most death tests
 * plant a heap bug to see labyrinth's own report or fault. Our annotations
 * would let ASan stop those accesses first, so these tests turn ASan's
 * user poisoning off; tests/test_asan.c keeps it and checks ASan's reports.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allow_user_poisoning=0";
}
#endif

void flush_quarantine(labyrinth_t *lab)
{
	for (int i = 0; i < 40000; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, FLUSH_SIZE));
}

unsigned long long rooms_open_but_flush(labyrinth_t *lab)
{
	struct labyrinth *l = (struct labyrinth *)(lab ? lab : labyrinth_default());
	void *p = labyrinth_malloc(lab, FLUSH_SIZE);
	const struct wing *flush = maze_wing_of(&l->maze, p);
	labyrinth_free(lab, p);
	unsigned long long n = 0;
	for (unsigned i = 0; i < l->maze.nwings; i++)
		if (&l->maze.wings[i] != flush)
			n += l->maze.wings[i].open_rooms;
	return n;
}

bool one_report(const char *err)
{
	const char *nl = strchr(err, '\n');
	if (!nl)
		return false;
	for (const char *l = nl + 1; *l; l = nl + 1) {
		if (strncmp(l, "labyrinth:     #", 16) != 0 &&
		    strncmp(l, "labyrinth: stack:", 17) != 0 &&
		    strncmp(l, "labyrinth: allocated by:", 24) != 0 &&
		    strncmp(l, "labyrinth: freed by:", 20) != 0)
			return false;
		nl = strchr(l, '\n');
		if (!nl)
			return false;
	}
	return true;
}

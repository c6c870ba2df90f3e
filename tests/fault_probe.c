/*
 * Faults for tests/test_faults.sh, run under the preload: each case makes
 * one bad access the way a buggy program would and prints, before it, the
 * block's address ("block 0x..."), so the script can hold the report to it.
 * Built with -rdynamic so that the report can name these functions.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile char sink;
static sigjmp_buf back;

static void say_block(const void *p)
{
	printf("block %p\n", p);
	fflush(stdout);
}

static void own_handler(int sig)
{
	(void)sig;
	static const char msg[] = "own handler\n";
	if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0)
		_exit(3);
	siglongjmp(back, 1);
}

static void own_handler_exit(int sig)
{
	(void)sig;
	static const char msg[] = "own handler on the alternate stack\n";
	if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0)
		_exit(3);
	_exit(0);
}

static unsigned char *alt;
static size_t alt_size;

/* How deep the alternate stack was ever written (it was filled with 0xa5). */
static void alt_used(int sig)
{
	(void)sig;
	size_t i = 0;
	while (i < alt_size && alt[i] == 0xa5)
		i++;
	char msg[64];
	int len = snprintf(msg, sizeof msg, "alt stack used: %zu bytes\n", alt_size - i);
	if (write(STDOUT_FILENO, msg, (size_t)len) < 0)
		_exit(3);
	_exit(0);
}

static void install_own(void (*fn)(int), int flags)
{
	struct sigaction sa = { .sa_handler = fn, .sa_flags = flags };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
}

/* A page that is no part of any heap. */
static char *foreign_page(void)
{
	char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	return p;
}

__attribute__((noinline)) char *alloc_here(size_t n)
{
	char *p = malloc(n);
	say_block(p);
	return p;
}

__attribute__((noinline)) void free_here(char *p)
{
	free(p);
}

__attribute__((noinline)) void write_at(char *p, long i)
{
	p[i] = 1;
}

__attribute__((noinline)) void read_at(char *p, long i)
{
	sink = p[i];
}

__attribute__((noinline)) void double_free_here(char *p)
{
	free_here(p);
	free_here(p);
}

static volatile unsigned depth;

__attribute__((noinline)) static void recurse(void)
{
	volatile char frame[512];
	frame[0] = (char)depth++;
	if (depth)      /* always: the compiler need not know */
		recurse();
	sink = frame[0];
}

static int usage(void)
{
	fprintf(stderr, "usage: fault_probe CASE [N]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *c = argv[1];
	long n = argc > 2 ? atol(argv[2]) : 0;
	if (!strcmp(c, "write") || !strcmp(c, "read")) {
		/* argv[3]: the request; argv[2]: the offset to touch. The
		 * first allocation first: sampling never picks a thread's first. */
		free_here(malloc(1));
		char *p = alloc_here((size_t)atol(argv[3]));
		(c[0] == 'w' ? write_at : read_at)(p, n);
	} else if (!strcmp(c, "after-free")) {
		char *p = alloc_here((size_t)atol(argv[3]));
		free_here(p);
		read_at(p, n);
	} else if (!strcmp(c, "double-free")) {
		double_free_here(alloc_here(24));
	} else if (!strcmp(c, "foreign")) {
		free_here(malloc(16));  /* the default labyrinth is open */
		read_at(foreign_page(), 0);
	} else if (!strcmp(c, "own-guard")) {
		/* The program's own guard page inside a live block (as code that
		 * makes coroutine stacks with malloc does): not a heap error. */
		char *p = alloc_here(20000);
		if (mprotect(p, 4096, PROT_NONE) != 0)
			return 2;
		read_at(p, 100);
	} else if (!strcmp(c, "own-handler")) {
		/* Installed before the first malloc: labyrinth's handler comes
		 * later and must hand this program's faults on to it. */
		install_own(own_handler, 0);
		char *q = alloc_here(20000);
		struct sigaction now;
		sigaction(SIGSEGV, NULL, &now);
		printf("%s\n", now.sa_handler == own_handler ? "own first" : "chained");
		if (!sigsetjmp(back, 1))
			read_at(foreign_page(), 0);
		printf("after foreign fault\n");
		fflush(stdout);
		if (!sigsetjmp(back, 1))
			write_at(q, 20480);
		printf("after heap fault\n");
	} else if (!strcmp(c, "small-altstack")) {
		/* A heap fault while an alternate stack is set that holds the
		 * kernel's signal frame and n bytes more, a guard page below it:
		 * the handler runs on it and must fit. */
		size_t size = ((size_t)sysconf(_SC_MINSIGSTKSZ) + (size_t)n + 4095) & ~4095UL;
		char *m = mmap(NULL, size + 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED || mprotect(m + 4096, size, PROT_READ | PROT_WRITE) != 0)
			return 2;
		stack_t ss = { .ss_sp = m + 4096, .ss_size = size };
		if (sigaltstack(&ss, NULL) != 0)
			return 2;
		write_at(alloc_here(20000), 20480);
	} else if (!strcmp(c, "altstack-use")) {
		/* The program's handler runs after labyrinth's report, on the
		 * same alternate stack, and measures how deep the report went. */
		alt_size = 65536;       /* not malloc: this handler must come first */
		alt = mmap(NULL, alt_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (alt == MAP_FAILED)
			return 2;
		memset(alt, 0xa5, alt_size);
		stack_t ss = { .ss_sp = alt, .ss_size = alt_size };
		if (sigaltstack(&ss, NULL) != 0)
			return 2;
		install_own(alt_used, SA_ONSTACK);
		write_at(alloc_here(20000), 20480);
	} else if (!strcmp(c, "stack-overflow")) {
		stack_t ss = { .ss_size = 16384 };
		ss.ss_sp = malloc(ss.ss_size);
		if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
			return 2;
		if (n)
			install_own(own_handler_exit, SA_ONSTACK);
		free_here(malloc(20000));
		recurse();
	} else {
		return usage();
	}
	printf("no fault\n");
	return 0;
}

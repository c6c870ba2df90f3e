/*
 * Faults for tests/test_faults.sh, run under the preload: each case makes
 * one bad access the way a buggy program would and prints, before it, the
 * block's address ("block 0x..."), so the script can hold the report to it.
 * Built with -rdynamic so that the report can name these functions.
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)        /* linux/signal.h; not in glibc's */
#endif

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

/* A frame-pointer function whose rbp is damaged (set to `rbp`) when it
 * makes the bad store: its CFA rule says the caller's frame is at rbp. */
void bad_rbp_store(char *at, unsigned long rbp);
__asm__(".text\n.globl bad_rbp_store\n.type bad_rbp_store, @function\n"
	"bad_rbp_store:\n.cfi_startproc\npush %rbp\n.cfi_def_cfa_offset 16\n"
	".cfi_offset %rbp, -16\nmov %rsp, %rbp\n.cfi_def_cfa_register %rbp\n"
	"mov %rsi, %rbp\nmovb $1, (%rdi)\nmov %rsp, %rbp\npop %rbp\n"
	".cfi_def_cfa %rsp, 8\nret\n.cfi_endproc\n.size bad_rbp_store, .-bad_rbp_store\n");

/* A page 4 MiB above the stack pointer, within the unwinder's largest
 * frame: PROT_NONE (a guard page, which mincore would call mapped) or
 * unmapped again. */
static unsigned long page_above_stack(int unmapped)
{
	char here;
	unsigned long at = (((unsigned long)&here) & ~4095UL) + (4UL << 20);
	void *p = mmap((void *)at, 4096, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != (void *)at) {
		printf("skip: 0x%lx is taken\n", at);
		exit(0);
	}
	if (unmapped)
		munmap(p, 4096);
	return at + 64;
}

/* A signal with a fault's siginfo, sent by the process to itself. */
static void send_fake(int sig, int code, void *addr)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	si.si_signo = sig;
	si.si_code = code;
	si.si_addr = addr;
	syscall(SYS_rt_sigqueueinfo, getpid(), sig, &si);
}

static void handled_exit(int sig)
{
	(void)sig;
	static const char msg[] = "handled\n";
	if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0)
		_exit(3);
	_exit(0);
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

/* Threads that allocate and free through functions of their own, each
 * keeping its last block: their stack walks share the unwinder's row
 * cache, filling and reading it at once. */
#define THREADS 4
static char *kept[THREADS];
/* The blocks are kept once every thread has done its loop: a block placed
 * later whose run shares a kept one's record slot would take its stacks. */
static pthread_barrier_t loops_done;

#define THREAD_ALLOC(i) \
	__attribute__((noinline)) char *thread_alloc_##i(void) \
	{ \
		char *p = malloc(24); \
		p[0] = 1;      /* after the call: no tail call */ \
		return p; \
	}
THREAD_ALLOC(0) THREAD_ALLOC(1) THREAD_ALLOC(2) THREAD_ALLOC(3)
static char *(*const thread_allocs[THREADS])(void) = {
	thread_alloc_0, thread_alloc_1, thread_alloc_2, thread_alloc_3,
};

void *thread_body(void *arg)
{
	long i = (long)arg;
	for (int k = 0; k < 3000; k++)
		free(thread_allocs[i]());
	pthread_barrier_wait(&loops_done);
	kept[i] = thread_allocs[i]();
	return NULL;
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
	} else if (!strcmp(c, "minsigstksz")) {
		printf("%ld\n", sysconf(_SC_MINSIGSTKSZ));
	} else if (!strcmp(c, "tight-altstack")) {
		/* An alternate stack of exactly n bytes, a guard page right
		 * below it, and a handler of the program's that needs only a
		 * few bytes: whatever labyrinth does first must fit, so the
		 * fault always reaches that handler. argv[3]: SS_AUTODISARM
		 * (the stack is disarmed while a handler runs on it). */
		install_own(handled_exit, SA_ONSTACK);
		size_t pages = ((size_t)n + 4095) / 4096;
		char *m = mmap(NULL, (pages + 1) * 4096, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED || mprotect(m + 4096, pages * 4096, PROT_READ | PROT_WRITE))
			return 2;
		stack_t ss = { .ss_sp = m + 4096, .ss_size = (size_t)n,
			       .ss_flags = argc > 3 ? (int)SS_AUTODISARM : 0 };
		if (sigaltstack(&ss, NULL) != 0)
			return 2;
		write_at(alloc_here(20000), 20480);
	} else if (!strcmp(c, "bad-rbp")) {
		/* A heap overflow made in a frame whose rbp was damaged. */
		char *p = alloc_here(20000);
		bad_rbp_store(p + 20480, page_above_stack(n));
	} else if (!strcmp(c, "fake-fault")) {
		/* A SIGSEGV the program sends itself, dressed as a fault at a
		 * freed block; n: the program has a handler for it. */
		if (n)
			install_own(own_handler, 0);
		char *p = alloc_here(20000);
		free_here(p);
		if (!sigsetjmp(back, 1))
			send_fake(SIGSEGV, SEGV_MAPERR, p + 10);
		printf("after fake fault\n");
	} else if (!strcmp(c, "fake-mce")) {
		/* The kernel's asynchronous machine-check report, at a freed
		 * block: the hardware's business, not a heap error. */
		char *p = alloc_here(20000);
		free_here(p);
		send_fake(SIGBUS, BUS_MCEERR_AO, p + 10);
	} else if (!strcmp(c, "dlopen-name")) {
		/* argv[3]: a module dlopen'ed now, so the loader keeps its link
		 * map in the heap; a heap overflow rewrites it (n = 1: its name,
		 * 2: its dynamic section's address), then a heap fault is made
		 * from a frame in the module. */
		static const char secret[] = "SECRET-0123456789";
		void *h = dlopen(argv[3], RTLD_NOW);
		struct link_map *lm;
		if (!h || dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0)
			return 2;
		void (*call)(void (*)(char *, long), char *, long) =
			(void (*)(void (*)(char *, long), char *, long))dlsym(h, "fault_mod_call");
		if (!call)
			return 2;
		char *p = alloc_here(20000);
		if (n == 1)
			lm->l_name = (char *)secret;
		if (n == 2) {
			ElfW(Dyn) *fake = calloc(4, sizeof *fake);
			fake[0].d_tag = DT_STRTAB;
			fake[0].d_un.d_ptr = 1;
			fake[1].d_tag = DT_SYMTAB;
			fake[1].d_un.d_ptr = 0x10;
			fake[2].d_tag = DT_HASH;
			fake[2].d_un.d_ptr = (ElfW(Addr))"\0\0\0\0\xff\xff\xff\x7f";
			lm->l_ld = fake;
		}
		call(write_at, p, 20480);
	} else if (!strcmp(c, "lost-trace")) {
		/* Guard-all keeps stacks in a table of 8192 slots, one per run's
		 * first page modulo 8192 pages: blocks allocated until one's page
		 * shares the first block's slot take its stacks over. */
		char *p = alloc_here(32);
		uintptr_t span = 8192UL * 4096;
		long i;
		for (i = 0; i < 1000000; i++) {
			char *q = malloc(32);
			bool same = (((uintptr_t)q & ~4095UL) - ((uintptr_t)p & ~4095UL)) % span == 0;
			free(q);
			if (same)
				break;
		}
		if (i == 1000000) {
			printf("skip: no block shared the slot\n");
			return 0;
		}
		double_free_here(p);
	} else if (!strcmp(c, "thread-stacks")) {
		pthread_t t[THREADS];
		pthread_barrier_init(&loops_done, NULL, THREADS);
		for (long i = 0; i < THREADS; i++)
			if (pthread_create(&t[i], NULL, thread_body, (void *)i) != 0)
				return 2;
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
		say_block(kept[n]);
		double_free_here(kept[n]);
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

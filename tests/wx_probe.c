/*
 * A plain program that tests/test_seccomp.sh runs under the preload, with
 * and without LABYRINTH_SECCOMP=wx: each mode is one way an attacker who
 * controls data (and can make a few system calls, say through a return-
 * oriented chain) would get memory to write code into and run. It prints
 * "ran code" when the attack worked, else the step that failed and why.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096

static int fail(const char *step)
{
	printf("%s: %s\n", step, strerror(errno));
	return 0;
}

/* Is the page at p executable, as the kernel sees it now? */
static int executable(const void *p)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int x = 0;
	while (f && fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char perms[5];
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 &&
		    lo <= (unsigned long)p && (unsigned long)p < hi)
			x = perms[2] == 'x';
	}
	if (f)
		fclose(f);
	return x;
}

/* Write a function that returns 42 through w and call it through x (the
 * same memory, or another mapping of it). */
static int run(void *w, void *x)
{
#if defined(__x86_64__)
	static const unsigned char code[] = { 0xb8, 42, 0, 0, 0, 0xc3 }; /* mov $42,%eax; ret */
#elif defined(__aarch64__)
	static const unsigned char code[] = { 0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6 };
#endif
	memcpy(w, code, sizeof code);
	__builtin___clear_cache((char *)x, (char *)x + sizeof code);
	if (!executable(x)) {
		puts("not executable");
		return 0;
	}
	int (*fn)(void) = (int (*)(void))x;
	puts(fn() == 42 ? "ran code" : "ran something else");
	return 0;
}

/* After READ_IMPLIES_EXEC the kernel adds PROT_EXEC to any readable
 * mapping, after a filter saw the arguments. */
static int read_implies_exec(void)
{
	if (personality(PER_LINUX | READ_IMPLIES_EXEC) == -1)
		return fail("personality");
	return 1;
}

static int attack_personality_mmap(void)
{
	if (!read_implies_exec())
		return 0;
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? fail("mmap") : run(p, p);
}

static int attack_personality_heap(void)
{
	void *p = aligned_alloc(PAGE, PAGE);
	if (!p || !read_implies_exec())
		return 0;
	if (mprotect(p, PAGE, PROT_READ | PROT_WRITE) != 0)
		return fail("mprotect");
	return run(p, p);
}

static int attack_dev_zero(void)
{
	int fd = open("/dev/zero", O_RDWR);
	if (fd < 0)
		return fail("open");
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE, fd, 0);
	return p == MAP_FAILED ? fail("mmap") : run(p, p);
}

static int attack_file(const char *path, int flags)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, PAGE) != 0)
		return fail("open");
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, flags, fd, 0);
	return p == MAP_FAILED ? fail("mmap") : run(p, p);
}

static int attack_memfd(void)
{
	int fd = memfd_create("wx", 0);
	if (fd < 0 || ftruncate(fd, PAGE) != 0)
		return fail("memfd_create");
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? fail("mmap") : run(p, p);
}

/* System V shared memory attached twice: written through one attachment,
 * run through the other. */
static int attack_shm(void)
{
	int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
	if (id < 0)
		return fail("shmget");
	void *w = shmat(id, NULL, 0);
	void *x = shmat(id, NULL, SHM_RDONLY | SHM_EXEC);
	shmctl(id, IPC_RMID, NULL);
	if (w == (void *)-1 || x == (void *)-1)
		return fail("shmat");
	return run(w, x);
}

/* Built with -z execstack, the kernel maps the stack writable and
 * executable at execve: no mmap or mprotect a filter could see. */
static int stack_code(void)
{
	char buf[64] __attribute__((aligned(16)));
	return run(buf, buf);
}

/* Queries and other flags must still work under the filter. */
static int personality_other(void)
{
	int was = personality(0xffffffff);
	if (was == -1)
		return fail("query");
	if (personality((unsigned long)was | ADDR_NO_RANDOMIZE) == -1)
		return fail("set");
	if (personality((unsigned long)was) == -1)
		return fail("restore");
	puts("allowed");
	return 0;
}

/* The x32 numbers lead to the same kernel code as the native ones. */
static int x32_getpid(void)
{
#if defined(__x86_64__)
	long r = syscall(0x40000000L | SYS_getpid);
	printf("x32 getpid: %s\n", r == -1 ? strerror(errno) : "allowed");
#else
	puts("no x32");
#endif
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "personality-mmap") == 0)
		return attack_personality_mmap();
	if (strcmp(mode, "personality-heap") == 0)
		return attack_personality_heap();
	if (strcmp(mode, "dev-zero") == 0)
		return attack_dev_zero();
	if (strcmp(mode, "file-shared") == 0 && argc > 2)
		return attack_file(argv[2], MAP_SHARED);
	if (strcmp(mode, "file-private") == 0 && argc > 2)
		return attack_file(argv[2], MAP_PRIVATE);
	if (strcmp(mode, "memfd") == 0)
		return attack_memfd();
	if (strcmp(mode, "shm") == 0)
		return attack_shm();
	if (strcmp(mode, "stack") == 0)
		return stack_code();
	if (strcmp(mode, "personality-other") == 0)
		return personality_other();
	if (strcmp(mode, "x32") == 0)
		return x32_getpid();
	fprintf(stderr, "usage: wx_probe personality-mmap|personality-heap|dev-zero|"
		"file-shared FILE|file-private FILE|memfd|shm|stack|personality-other|x32\n");
	return 2;
}

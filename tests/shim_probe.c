/*
 * A plain program (it does not link labyrinth) that tests/test_preload.sh
 * runs under the preload. "shim" checks the malloc family's contract and
 * prints TAP lines; the other modes print one fact for the script to judge.
 */
#include <dlfcn.h>
#include <signal.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
/* Stores the compiler must keep, so malloc/free pairs are not elided. */
static void *volatile sink;

static void check(int ok, const char *what)
{
	printf("%s - shim: %s\n", ok ? "ok" : "not ok", what);
	failures += !ok;
}

static int aligned(const void *p, size_t a)
{
	return p && (uintptr_t)p % a == 0;
}

/* Proof that malloc reaches labyrinth: its statistics move. */
static void check_active(void)
{
	struct stats { uint64_t allocations; uint64_t rest[63]; } s1, s2; /* room to grow */
	void (*get)(void *, void *) = (void (*)(void *, void *))dlsym(RTLD_DEFAULT, "labyrinth_get_stats");
	check(get != NULL, "labyrinth is loaded");
	if (!get)
		return;
	get(NULL, &s1);
	sink = malloc(100);
	free(sink);
	get(NULL, &s2);
	check(s2.allocations == s1.allocations + 1, "malloc is served by labyrinth");
}

/* Sizes the compiler cannot see, so it does not reject the calls. */
static volatile size_t huge = SIZE_MAX, half = SIZE_MAX / 2;

static void check_errno(void)
{
	errno = 0;
	check(malloc(huge) == NULL && errno == ENOMEM, "malloc(SIZE_MAX) is NULL with ENOMEM");
	errno = 0;
	check(calloc(half, 4) == NULL && errno == ENOMEM, "calloc overflow is NULL with ENOMEM");
	errno = 0;
	check(reallocarray(NULL, half, 4) == NULL && errno == ENOMEM, "reallocarray overflow is ENOMEM");
	void *p = (void *)1;
	check(posix_memalign(&p, 24, 10) == EINVAL && p == (void *)1, "posix_memalign(24) is EINVAL");
	check(posix_memalign(&p, 2, 10) == EINVAL, "posix_memalign(2) is EINVAL");
	errno = 0;
	check(aligned_alloc(3, 10) == NULL && errno == EINVAL, "aligned_alloc(3) is EINVAL");
	char *q = malloc(10);
	strcpy(q, "kept");
	errno = 0;
	void *r = realloc(q, huge);
	check(r == NULL && errno == ENOMEM && strcmp(q, "kept") == 0,
	      "failed realloc keeps the block");
	free(r ? r : q);
}

static void check_alignment(void)
{
	int ok = 1;
	for (size_t a = sizeof(void *); a <= (1 << 20); a *= 2) {
		void *p = NULL;
		ok &= posix_memalign(&p, a, 100) == 0 && aligned(p, a);
		free(p);
		p = aligned_alloc(a, a * 3);
		ok &= aligned(p, a);
		free(p);
		p = memalign(a, 5000);
		ok &= aligned(p, a);
		free(p);
	}
	check(ok, "posix_memalign, aligned_alloc and memalign align up to 1 MiB");
	void *v = valloc(10), *pv = pvalloc(5000);
	check(aligned(v, 4096) && aligned(pv, 4096) && malloc_usable_size(pv) >= 8192,
	      "valloc and pvalloc give whole pages");
	free(v);
	free(pv);
	void *m = memalign(48, 10);     /* glibc rounds a bad alignment up */
	check(aligned(m, 64), "memalign rounds a non-power-of-two alignment up");
	free(m);
}

/* C23's sized free, if this libc declares none: the preload defines it. */
extern void free_sized(void *, size_t) __attribute__((weak));

/* Touching p (a read, or a write) kills a child with SIGSEGV. */
static int access_faults(char *p, int write)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		if (write)
			*(volatile char *)p = 1;
		else
			sink = (void *)(uintptr_t)*(volatile char *)p;
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

static void check_zero_faults(const char *what, char *p)
{
	char line[128];
	snprintf(line, sizeof line, "%s: reading and writing fault", what);
	check(p && access_faults(p, 0) && access_faults(p, 1) && access_faults(p + 15, 1), line);
}

/* Zero-size blocks own no byte: every access faults, the pointer calls
 * accept them, and they are unique. */
static void check_zero(void)
{
	void *pm = NULL;
	char *m = malloc(0), *c = calloc(0, 1), *r = realloc(NULL, 0);
	char *a = aligned_alloc(64, 0), *ma = memalign(32, 0), *v = valloc(0);
	int pm_ok = posix_memalign(&pm, 4096, 0) == 0;
	check_zero_faults("malloc(0)", m);
	check_zero_faults("calloc(0, 1)", c);
	check_zero_faults("realloc(NULL, 0)", r);
	check_zero_faults("aligned_alloc(64, 0)", a);
	check_zero_faults("memalign(32, 0)", ma);
	check_zero_faults("valloc(0)", v);
	check_zero_faults("posix_memalign(4096, 0)", pm_ok ? pm : NULL);
	check(aligned(a, 64) && aligned(ma, 32) && aligned(v, 4096) && aligned(pm, 4096),
	      "zero-size blocks are aligned as asked");
	check(malloc_usable_size(m) == 0, "malloc_usable_size of a zero-size block is 0");
	free(c);
	free(a);
	free(ma);
	free(v);
	free(pm);
	if (free_sized)
		free_sized(r, 0);
	else
		free(r);
	sink = m;               /* read back opaque: the compiler sees no use after free */
	free(m);
	check_zero_faults("a freed zero-size block", (char *)sink);
	char *g = realloc(malloc(0), 100);
	check(g && malloc_usable_size(g) >= 100 && !access_faults(g, 1) && !access_faults(g + 99, 0),
	      "realloc of a zero-size block moves it into a real block");
	free(g);
	int same = 0;
	char *last = malloc(0);
	for (int i = 0; i < 1000; i++) {
		free(last);
		char *q = malloc(0);
		same += q == last;
		last = q;
	}
	free(last);
	check(same == 0, "a freed zero-size block does not come back at once");
}

static int by_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

static void check_misc(void)
{
	uintptr_t z[1000];
	for (int i = 0; i < 1000; i++)
		z[i] = (uintptr_t)malloc(0);
	qsort(z, 1000, sizeof z[0], by_ptr);
	int unique = z[0] != 0;
	for (int i = 1; i < 1000; i++)
		unique &= z[i] != z[i - 1];
	check(unique, "malloc(0) gives 1,000 unique pointers");
	for (int i = 0; i < 1000; i++)
		free((void *)z[i]);
	char *p = malloc(1000);
	check(malloc_usable_size(p) >= 1000 && malloc_usable_size(NULL) == 0, "malloc_usable_size");
	struct mallinfo2 mi = mallinfo2();
	check(mi.uordblks >= 1000 && mi.arena >= mi.uordblks, "mallinfo2 counts live bytes");
	free(p);
	check(mallopt(M_ARENA_MAX, 2) == 1, "mallopt accepts and ignores");
	malloc_trim(0);
	char *c = calloc(100, 100);
	int zero = 1;
	for (int i = 0; i < 10000; i++)
		zero &= c[i] == 0;
	check(zero, "calloc zeroes");
	free(c);
	/* Blocks written all over and freed, then calloc'd again, thousands of
	 * times, at every size of the fast path: each must come back zero. */
	zero = 1;
	for (int round = 0; round < 4000; round++) {
		size_t n = 1 + (size_t)round * 7 % 3839;
		unsigned char *q = calloc(1, n);
		for (size_t i = 0; q && i < n; i++)
			zero &= q[i] == 0;
		if (q)
			memset(q, 0xa5, n);
		free(q);
	}
	check(zero, "calloc zeroes reused slots");
	free(NULL);
}

static void *worker(void *arg)
{
	for (int i = 0; i < 20000; i++)
		free(malloc((size_t)(i % 300) + (size_t)(uintptr_t)arg));
	return NULL;
}

static void check_fork_and_threads(void)
{
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	int ok = 1;
	for (int i = 0; i < 20; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			worker(NULL);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	check(ok, "fork while threads allocate");
}

static long count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;
	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

/* Keep mib MiB of 64-byte objects live, then print the mapping count. */
/* realloc keeps the bytes and the contract: in place within a class,
 * moving between classes, into and out of large blocks. */
static void check_realloc(void)
{
	static const size_t sizes[] = { 20, 24, 100, 10, 3000, 5000, 30, 16, 3839, 3840, 1 };
	unsigned char *p = malloc(20);
	size_t have = 20;
	for (size_t i = 0; i < 20; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	int kept = 1;
	for (size_t k = 1; k < sizeof sizes / sizeof *sizes; k++) {
		size_t size = sizes[k];
		unsigned char *q = realloc(p, size);
		if (!q) {
			check(0, "realloc between small and large sizes");
			return;
		}
		for (size_t i = 0; i < (have < size ? have : size) && i < 20; i++)
			kept &= q[i] == (unsigned char)(i * 7 + 1);
		kept &= malloc_usable_size(q) == size;
		for (size_t i = 0; i < size; i++)
			q[i] = i < 20 ? (unsigned char)(i * 7 + 1) : 0xee;
		p = q;
		have = size;
	}
	check(kept, "realloc keeps the bytes and the usable size, in place and moving");
	unsigned char *r = malloc(20), *same = realloc(r, 24);
	check(same == r, "realloc within a size class stays in place");
	free(same);
	/* The bytes a block gains in place held its canary: they must not
	 * show it (33 and 47 bytes share the 48-byte class). */
	unsigned char *g = malloc(33), *grown = realloc(g, 47);
	int clean = grown == g;
	for (int i = 33; i < 47; i++)
		clean &= grown[i] == 0;
	check(clean, "realloc growing in place shows no canary");
	free(grown);
	free(p);
}

static int grow(long mib)
{
	size_t n = (size_t)mib * (1 << 20) / 64;
	long before = count_maps();
	void **p = malloc(n * sizeof *p);
	if (!p)
		return 1;
	for (size_t i = 0; i < n; i++) {
		p[i] = malloc(64);
		if (!p[i]) {
			printf("allocation %zu failed\n", i);
			return 1;
		}
		*(char *)p[i] = 1;
	}
	printf("%ld %ld\n", before, count_maps());
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "shim";
	if (strcmp(mode, "shim") == 0) {
		check_active();
		check_errno();
		check_alignment();
		check_misc();
		check_zero();
		check_realloc();
		check_fork_and_threads();
		return failures != 0;
	}
	if (strcmp(mode, "first") == 0) {
		printf("%p %p %p\n", malloc(32), malloc(1000), malloc(100000));
		return 0;
	}
	if (strcmp(mode, "grow") == 0)
		return grow(argc > 2 ? atol(argv[2]) : 1024);
	if (strcmp(mode, "double-free") == 0) {
		sink = malloc(64);
		free(sink);
		free(sink);
		return 0;
	}
	if (strcmp(mode, "zero-double-free") == 0) {
		sink = malloc(0);
		free(sink);
		free(sink);
		return 0;
	}
	/* An overflow of one byte past a block realloc then resizes in place
	 * (24 keeps the class of 20) or moves (200): found either way. */
	if (strcmp(mode, "realloc-overflow") == 0 || strcmp(mode, "realloc-overflow-move") == 0) {
		sink = malloc(20);      /* through sink: gcc would see the bug */
		((char *)sink)[20] = 'X';
		sink = realloc(sink, strcmp(mode, "realloc-overflow") == 0 ? 24 : 200);
		return 0;
	}
	if (strcmp(mode, "realloc-freed") == 0) {
		sink = malloc(20);
		free(sink);
		sink = realloc(sink, 24);
		return 0;
	}
	fprintf(stderr, "usage: shim_probe shim|first|grow MIB|double-free|zero-double-free|"
		"realloc-overflow|realloc-overflow-move|realloc-freed\n");
	return 2;
}

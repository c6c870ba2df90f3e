/*
 * os: thin wrappers around the system calls. Nothing here allocates: these run
 * before the allocator exists and inside it, so stdio is off limits.
 */
#include "os.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <sys/platform/x86.h>
#endif

void *os_reserve(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/*
 * Never over a mapping: the kernel refuses a range in use (EEXIST). A kernel
 * older than 4.17 does not know the flag and takes the address as a hint,
 * which it may ignore: such a mapping is given back, and that counts as in
 * use too.
 */
void *os_reserve_at(void *at, size_t bytes, bool rw)
{
	int prot = rw ? PROT_READ | PROT_WRITE : PROT_NONE;
	void *p = mmap(at, bytes, prot,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (p != at) {
		os_unmap(p, bytes);
		errno = EEXIST;
		return NULL;
	}
	return p;
}

void *os_reserve_rw(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void os_unmap(void *p, size_t bytes)
{
	if (bytes && munmap(p, bytes) != 0)
		report_fatal_errno("munmap failed", p);
}

void os_share_anon(void *p)
{
	if (mprotect(p, PAGE_SIZE, PROT_READ | PROT_WRITE) != 0)
		return;
	*(volatile char *)p = 0;
	(void)madvise(p, PAGE_SIZE, MADV_DONTNEED);
	(void)mprotect(p, PAGE_SIZE, PROT_NONE);
}

bool os_protect_rw(void *p, size_t bytes)
{
	return mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
}

bool os_protect_none(void *p, size_t bytes)
{
	return mprotect(p, bytes, PROT_NONE) == 0;
}

bool os_guard_install(void *p, size_t bytes)
{
	int r;
	do
		r = madvise(p, bytes, MADV_GUARD_INSTALL);
	while (r != 0 && errno == EINTR);
	return r == 0;
}

void os_guard_remove(void *p, size_t bytes)
{
	(void)madvise(p, bytes, MADV_GUARD_REMOVE);
}

bool os_lock(void *p, size_t bytes)
{
	return mlock(p, bytes) == 0;
}

bool os_discard(void *p, size_t bytes)
{
	return madvise(p, bytes, MADV_DONTNEED) == 0;
}

bool os_resident(void *p, size_t bytes, unsigned char *vec)
{
	return mincore(p, bytes, vec) == 0;
}

bool os_replace_none(void *p, size_t bytes)
{
	void *r = mmap(p, bytes, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	return r == p;
}

/*
 * One system call, no mapping: the kernel checks the advice before it looks
 * for the range, so on the unmapped page at address 0 a kernel that knows
 * guard markers answers ENOMEM and an older one EINVAL. (A process whose
 * future mappings are all locked refuses markers later: the maze then falls
 * back to mprotect at the first span it lights.)
 */
bool os_kernel_has_guards(void)
{
	return madvise(NULL, PAGE_SIZE, MADV_GUARD_REMOVE) != 0 && errno == ENOMEM;
}

static bool read_urandom(void *buf, size_t len)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);
		if (n <= 0 && errno != EINTR)
			break;
		if (n > 0)
			done += (size_t)n;
	}
	close(fd);
	return done == len;
}

void os_random_bytes(void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = getrandom((char *)buf + done, len - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		done += (size_t)n;
	}
	if (done < len && !read_urandom(buf, len))
		report_fatal_errno("no source of randomness", NULL);
}

unsigned os_cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		return 1;
	int n = CPU_COUNT(&set);
	return n > 0 ? (unsigned)n : 1;
}

long os_read_long_file(const char *path, long fallback)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fallback;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return fallback;
	buf[n] = 0;
	char *end;
	long v = strtol(buf, &end, 10);
	return end == buf ? fallback : v;
}

long os_count_mappings(void)
{
	char buf[4096];
	long lines = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	close(fd);
	return lines;
}

bool os_cpu_avx2(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	/* glibc's loader has read the CPU's features already: asking it costs
	 * nothing, where __builtin_cpu_init() runs cpuid, a trap to the
	 * hypervisor on a VM (about 40 µs of every process's start-up here). */
	return CPU_FEATURE_ACTIVE(AVX2);
#else
	return false;
#endif
}

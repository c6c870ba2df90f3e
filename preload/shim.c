/*
 * The preload shim: glibc's malloc family, served by the default labyrinth.
 * Thin by design: argument checks and errno only. labyrinth never calls
 * glibc's malloc, so there is no dlsym dance and no recursion at start-up.
 */
#include "arena.h"
#include "fastpath.h"
#include "guarded.h"
#include "lab.h"
#include "os.h"
#include "shim.h"
#include "stats.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#define SHIM __attribute__((visibility("default")))

static void *enomem(void)
{
	errno = ENOMEM;
	return NULL;
}

/* The general paths, out of line so that the fast ones save no registers. */
static __attribute__((noinline)) void *malloc_general(size_t size)
{
	/* Sampling: a call that is not the next sample takes the fast path,
	 * and counts as guarded_take would have counted it. */
	struct thread_cache *tc = tcache_fast;
	if (tc && guarded_between_samples(tc->lab)) {
		void *p = fast_malloc_on(tc, size);
		if (p) {
			guarded_countdown--;
			return p;
		}
	}
	struct labyrinth *lab = lab_default();
	void *p = lab ? lab_malloc(lab, size) : NULL;
	return p ? p : enomem();
}

static __attribute__((noinline)) void free_general(void *p)
{
	if (p)
		lab_free(lab_default(), p);
}

SHIM void *malloc(size_t size)
{
	void *p = fast_malloc(size);
	return __builtin_expect(p != NULL, 1) ? p : malloc_general(size);
}

SHIM void free(void *p)
{
	if (!__builtin_expect(fast_free(p), 1))
		free_general(p);
}

SHIM void *calloc(size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return enomem();
	/* A fast-path block is zero: its slot was checked to be at hand-out. */
	void *p = fast_malloc(bytes);
	if (__builtin_expect(p != NULL, 1)) {
		annotate_defined(p, bytes);
		return p;
	}
	struct labyrinth *lab = lab_default();
	p = lab ? lab_calloc(lab, bytes) : NULL;
	return p ? p : enomem();
}

static __attribute__((noinline)) void *realloc_general(void *p, size_t size)
{
	void *n = lab_realloc(lab_default(), p, size);
	return n ? n : enomem();
}

SHIM void *realloc(void *p, size_t size)
{
	if (!p)
		return malloc(size);
	if (size == 0) {        /* glibc's behaviour: free, return NULL */
		free(p);
		return NULL;
	}
	/* Small to small: in place, or a fast malloc, the copy, a fast free
	 * (which checks the old block as any free does). */
	bool stays;
	size_t old = fast_resize(p, size, &stays);
	if (__builtin_expect(old != SIZE_MAX, 1)) {
		if (stays)
			return p;
		void *n = fast_malloc(size);
		if (__builtin_expect(n != NULL, 1)) {
			memcpy(n, p, old < size ? old : size);
			free(p);
			return n;
		}
	}
	return realloc_general(p, size);
}

SHIM void *reallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return enomem();
	return realloc(p, bytes);
}

static void *aligned(size_t align, size_t size)
{
	/* Every slot is 16-aligned: the fast path serves these too. */
	void *p = align <= 16 ? fast_malloc(size) : NULL;
	if (__builtin_expect(p != NULL, 1))
		return p;
	struct labyrinth *lab = lab_default();
	p = lab ? lab_aligned(lab, align, size) : NULL;
	return p ? p : enomem();
}

static int power_of_two(size_t n)
{
	return n && !(n & (n - 1));
}

SHIM int posix_memalign(void **out, size_t align, size_t size)
{
	if (!power_of_two(align) || align % sizeof(void *))
		return EINVAL;
	int saved = errno;
	void *p = aligned(align, size);
	errno = saved;
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

SHIM void *aligned_alloc(size_t align, size_t size)
{
	if (!power_of_two(align)) {
		errno = EINVAL;
		return NULL;
	}
	return aligned(align, size);
}

/* glibc's memalign rounds a bad alignment up to a power of two. */
SHIM void *memalign(size_t align, size_t size)
{
	if (align > (SIZE_MAX >> 1) + 1) {
		errno = EINVAL;
		return NULL;
	}
	size_t a = 1;
	while (a < align)
		a <<= 1;
	return aligned(a, size);
}

SHIM void *valloc(size_t size)
{
	return aligned(PAGE_SIZE, size);
}

SHIM void *pvalloc(size_t size)
{
	size_t rounded;
	if (__builtin_add_overflow(size, PAGE_SIZE - 1, &rounded))
		return enomem();
	rounded &= ~(PAGE_SIZE - 1);
	return aligned(PAGE_SIZE, rounded ? rounded : PAGE_SIZE);
}

SHIM size_t malloc_usable_size(void *p)
{
	return p ? lab_usable(lab_default(), p) : 0;
}

/* C23's sized frees: the size must be the one asked for. */
SHIM void free_sized(void *p, size_t size)
{
	shim_free_sized(p, size);
}

SHIM void free_aligned_sized(void *p, size_t align, size_t size)
{
	(void)align;
	free_sized(p, size);
}

SHIM int malloc_trim(size_t pad)
{
	(void)pad;
	struct labyrinth *lab = lab_default();
	return lab && lab_trim(lab) > 0;
}

/* Accepted and ignored: glibc's knobs do not apply, and 1 means success. */
SHIM int mallopt(int param, int value)
{
	(void)param;
	(void)value;
	return 1;
}

static size_t clamp_int(uint64_t v)
{
	return v > INT32_MAX ? INT32_MAX : v;
}

SHIM struct mallinfo2 mallinfo2(void)
{
	struct mallinfo2 mi = { 0 };
	labyrinth_stats_t s;
	struct labyrinth *lab = lab_default();
	if (!lab)
		return mi;
	stats_collect(lab, &s);
	mi.arena = s.mapped_bytes;
	mi.uordblks = s.live_bytes;
	mi.fordblks = s.mapped_bytes > s.live_bytes ? s.mapped_bytes - s.live_bytes : 0;
	mi.usmblks = s.peak_mapped_bytes;
	mi.keepcost = 0;
	return mi;
}

SHIM struct mallinfo mallinfo(void)
{
	struct mallinfo2 m2 = mallinfo2();
	struct mallinfo mi = { 0 };
	mi.arena = (int)clamp_int(m2.arena);
	mi.uordblks = (int)clamp_int(m2.uordblks);
	mi.fordblks = (int)clamp_int(m2.fordblks);
	mi.usmblks = (int)clamp_int(m2.usmblks);
	return mi;
}

SHIM void malloc_stats(void)
{
	struct labyrinth *lab = lab_default();
	if (lab)
		stats_print(lab, STDERR_FILENO);
}

/*
 * api: the public allocation functions of include/labyrinth.h. Thin: argument
 * checks and errno; the work is done by arena.c.
 */
#include "arena.h"
#include "lab.h"
#include "labyrinth.h"

#include <errno.h>
#include <stdint.h>

#define LAB_API __attribute__((visibility("default")))

static struct labyrinth *resolve(labyrinth_t *lab)
{
	return lab ? lab : lab_default();
}

static void *or_enomem(void *p)
{
	if (!p)
		errno = ENOMEM;
	return p;
}

LAB_API void *labyrinth_malloc(labyrinth_t *lab, size_t size)
{
	struct labyrinth *l = resolve(lab);
	return or_enomem(l ? lab_malloc(l, size) : NULL);
}

LAB_API void *labyrinth_calloc(labyrinth_t *lab, size_t n, size_t size)
{
	size_t bytes;
	struct labyrinth *l = resolve(lab);
	if (__builtin_mul_overflow(n, size, &bytes) || !l)
		return or_enomem(NULL);
	return or_enomem(lab_calloc(l, bytes));
}

LAB_API void *labyrinth_realloc(labyrinth_t *lab, void *p, size_t size)
{
	struct labyrinth *l = resolve(lab);
	if (!l)
		return or_enomem(NULL);
	if (!p)
		return or_enomem(lab_malloc(l, size));
	if (size == 0) {
		lab_free(l, p);
		return NULL;
	}
	/* A pointer that is not live is reported; under LABYRINTH_ON_ERROR=log
	 * the call fails with EINVAL, not ENOMEM: the fuzz harness caught that. */
	int saved = errno;
	errno = 0;
	void *q = lab_realloc(l, p, size);
	if (!q)
		errno = errno == EINVAL ? EINVAL : ENOMEM;
	else
		errno = saved;
	return q;
}

LAB_API void labyrinth_free(labyrinth_t *lab, void *p)
{
	if (!p)
		return;
	struct labyrinth *l = resolve(lab);
	if (l)
		lab_free(l, p);
}

LAB_API void *labyrinth_aligned_alloc(labyrinth_t *lab, size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	struct labyrinth *l = resolve(lab);
	return or_enomem(l ? lab_aligned(l, alignment, size) : NULL);
}

LAB_API size_t labyrinth_usable_size(labyrinth_t *lab, const void *p)
{
	if (!p)
		return 0;
	struct labyrinth *l = resolve(lab);
	return l ? lab_usable(l, p) : 0;
}

LAB_API size_t labyrinth_trim(labyrinth_t *lab)
{
	struct labyrinth *l = resolve(lab);
	return l ? lab_trim(l) : 0;
}

/* shim: what the C entry points (shim.c) and the C++ ones (new.c) share. */
#ifndef LAB_PRELOAD_SHIM_H
#define LAB_PRELOAD_SHIM_H

#include "arena.h"
#include "fastpath.h"
#include "lab.h"

#include <stddef.h>
#include <stdint.h>

/* A sized free (C23 free_sized, C++ sized delete): the size must be the
 * one asked for. SIZE_MAX is what the free paths take for "no size given",
 * so a caller's SIZE_MAX goes to its own check, out of line. */
static inline __attribute__((always_inline)) void shim_free_sized(void *p, size_t size)
{
	if (!p)
		return;
	if (__builtin_expect(size == SIZE_MAX, 0))
		lab_free_sized_max(lab_default(), p);
	else if (!fast_free_sized(p, size))
		lab_free_sized(lab_default(), p, size);
}

#endif

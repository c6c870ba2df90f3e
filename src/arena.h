/* arena: picks the calling thread's arena and sends a call small or large. */
#ifndef LAB_ARENA_H
#define LAB_ARENA_H

#include "lab.h"

#include <stddef.h>

void *lab_malloc(struct labyrinth *lab, size_t size);
void *lab_aligned(struct labyrinth *lab, size_t align, size_t size);
void *lab_realloc(struct labyrinth *lab, void *p, size_t size);
void lab_free(struct labyrinth *lab, void *p);
/* Free p, whose caller says it asked for `size` bytes (C++ sized delete). */
void lab_free_sized(struct labyrinth *lab, void *p, size_t size);
/* A sized free of size SIZE_MAX, the value lab_free_sized() takes for "no
 * size given": no block is that big, so it is reported as a wrong size
 * (then freed, if the report returns). */
void lab_free_sized_max(struct labyrinth *lab, void *p) __attribute__((cold, noinline));
size_t lab_usable(struct labyrinth *lab, const void *p);
/* Zeroed memory; nmemb * size must not overflow (the caller checks). */
void *lab_calloc(struct labyrinth *lab, size_t size);
size_t lab_trim(struct labyrinth *lab);

#endif

/* room: size classes, slots, and the rooms that hold them. */
#ifndef LAB_ROOM_H
#define LAB_ROOM_H

#include "lab.h"
#include "maze.h"

#include <stddef.h>

/* Class index for a request of size bytes (size <= SMALL_MAX). */
unsigned small_class(size_t size);
/* Smallest class >= size whose slots are all aligned to align, or -1. */
int small_class_aligned(size_t size, size_t align);
size_t small_class_size(unsigned cls);
/* The wing specs for the SMALL_CLASSES wings. */
void room_specs(struct wing_spec *out);

void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls);
/* p lies in small wing w: validate, release and report any misuse. */
void small_free(struct labyrinth *lab, struct wing *w, void *p, int error_kind);
/* Validate p as a live slot; returns the class size. */
size_t small_usable(struct labyrinth *lab, struct wing *w, const void *p, int error_kind);
/* Release empty rooms kept as a bin's current room; bytes returned. */
size_t small_trim(struct labyrinth *lab, struct arena *a);

#endif

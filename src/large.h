/* large: allocations above SMALL_MAX, each in a room of its own. */
#ifndef LAB_LARGE_H
#define LAB_LARGE_H

#include "lab.h"
#include "version.h"

#include <stddef.h>

/* The upper part of a cell record in a large wing (read by sweep.c too). */
struct large {
	version_t version;
	uint32_t first_page;    /* where the allocation starts (alignment) */
	uint32_t npages;        /* pages it spans */
	size_t size;            /* bytes requested; the canary follows */
	uint64_t key;           /* canary key, new for every allocation */
};

/* Large classes needed to serve requests up to max_alloc. */
unsigned large_class_count(size_t max_alloc);
/* The wing specs of the large classes. */
void large_specs(struct wing_spec *out, unsigned n);

void *large_alloc(struct labyrinth *lab, size_t size, size_t align);
/* For a block that realloc grows out of its room: room to grow in place. */
void *large_alloc_growing(struct labyrinth *lab, size_t size);
/* expect: the size a sized free passed, or SIZE_MAX. */
void large_free(struct labyrinth *lab, struct wing *w, void *p, int error_kind, size_t expect);
/* Usable bytes; SIZE_MAX if p is not live and LABYRINTH_ON_ERROR=log returned. */
size_t large_usable(struct labyrinth *lab, struct wing *w, const void *p, int error_kind);
/* Resize in place if the room allows. */
enum resize large_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size);

#endif

/* slot: the life of one small allocation, from claim to quarantine to reuse. */
#ifndef LAB_SLOT_H
#define LAB_SLOT_H

#include "lab.h"
#include "maze.h"

#include <stdbool.h>
#include <stddef.h>

/* A slot of class cls for a request of size bytes (size < class size when
 * canaries are on), or NULL when the wing is full. */
void *small_alloc(struct labyrinth *lab, struct arena *a, unsigned cls, size_t size);
/* Free p, a pointer into small wing w; expect is the size a sized free
 * passed, or SIZE_MAX. Misuse is reported as error kind `kind`. */
void small_free(struct labyrinth *lab, struct wing *w, void *p, int kind, size_t expect);
/* Usable bytes at p (the request when canaries are on); SIZE_MAX if p is
 * not a live slot and LABYRINTH_ON_ERROR=log let the report return. */
size_t small_usable(struct labyrinth *lab, struct wing *w, const void *p, int kind);
/* Resize a live slot in place, if size still belongs in its class. */
bool small_resize(struct labyrinth *lab, struct wing *w, void *p, size_t size);
/* Empty the arena's quarantine and close its empty rooms; bytes closed. */
size_t small_trim(struct labyrinth *lab, struct arena *a);

#endif

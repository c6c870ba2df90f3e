/* aslr: the big reservations at addresses of the allocator's own choosing. */
#ifndef LAB_ASLR_H
#define LAB_ASLR_H

#include "random.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Reserve `bytes` (PROT_NONE, or read-write with MAP_NORESERVE if rw) at an
 * address aligned to `align` (a power of two, a page or more), drawn from r
 * uniformly over most of the address space. NULL if none could be had:
 * with errno ENOMEM if the kernel refused the size itself (ulimit -v,
 * strict overcommit), which plain mmap would refuse too; otherwise (no
 * address drawn was free, an emulator that refuses the flag) the caller
 * takes what plain mmap gives.
 */
void *aslr_reserve(struct rng *r, size_t bytes, size_t align, bool rw);
/* aslr_reserve, else (unless the kernel refused the size) where plain mmap
 * puts it, page-aligned only: what every reservation but the maze wants.
 * NULL with ENOMEM when neither could be had. */
void *aslr_reserve_or_plain(struct rng *r, size_t bytes, size_t align, bool rw);

#endif

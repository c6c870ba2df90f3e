/* sweep: the canary check of every live block, and block generations. */
#ifndef LAB_SWEEP_H
#define LAB_SWEEP_H

#include "lab.h"

#include <stddef.h>
#include <stdint.h>

/* Check every live block's canary; report each damaged one (the first
 * aborts unless LABYRINTH_ON_ERROR=log). The number found damaged. */
size_t lab_sweep(struct labyrinth *lab);
/* The generation of the slot, large region or guarded block at p; 0 if
 * none was ever there. */
uint64_t lab_generation(struct labyrinth *lab, const void *p);

#endif

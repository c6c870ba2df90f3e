/*
 * epoch: a span of N room placements. When an epoch ends, the key that
 * chooses where each wing places its rooms is redrawn, and cells emptied
 * during the epoch (retired) are kept taken and closed until it ends, so an
 * address learned in one epoch is neither reused in place nor predicts the
 * placements of the next.
 */
#ifndef LAB_EPOCH_H
#define LAB_EPOCH_H

#include "maze.h"

#include <stdbool.h>

/* Under w's lock: draw w's placement key from the maze's stream, and note
 * the epoch and the reseeds it was drawn in. */
void epoch_key_locked(struct maze *m, struct wing *w);
/* Under w's lock, before a placement: catch the wing up with the maze's
 * epoch (give back its retired cells, redraw its key). */
void epoch_enter_locked(struct maze *m, struct wing *w);
/* Under w's lock: give back w's retired cells now and redraw its key. */
void epoch_release_locked(struct maze *m, struct wing *w);
/* Under w's lock, for a closed cell: keep it taken until the epoch ends.
 * False when epochs are off: the caller frees the cell at once. */
bool epoch_retire_locked(struct maze *m, struct wing *w, uint32_t cell);
/* After a placement: count it, and end the epoch every epoch_len of them. */
void epoch_count_placement(struct maze *m);

static inline uint64_t epoch_now(struct maze *m)
{
	return atomic_load_explicit(&m->epoch, memory_order_relaxed);
}

#endif

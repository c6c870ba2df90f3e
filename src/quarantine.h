/*
 * quarantine: freed slots wait here before they can be handed out again, so
 * a dangling pointer does not at once alias a new object. A slot first lands
 * at a random place of the random stage, pushing the slot that was there into
 * a first-in-first-out queue; the slot that falls off the queue is released.
 * So every slot waits at least the length of the queue, and how much longer
 * is unpredictable.
 */
#ifndef LAB_QUARANTINE_H
#define LAB_QUARANTINE_H

#include "random.h"

#include <stdbool.h>
#include <stdint.h>

struct qentry {
	uint32_t cell;
	uint16_t cls;
	uint16_t slot;
};

struct quarantine {
	struct qentry *stage;   /* random stage; cell CELL_NONE: empty */
	struct qentry *fifo;
	uint32_t nstage, nfifo;
	uint32_t head, count;
};

/* Storage for a quarantine of n slots: n entries. */
void quarantine_init(struct quarantine *q, struct qentry *storage, uint32_t n);
/* Hold in; true if an older entry now leaves (*out) and must be released. */
bool quarantine_push(struct quarantine *q, struct rng *r, struct qentry in, struct qentry *out);
/* Take any entry (to empty the quarantine); false when it is empty. */
bool quarantine_pop(struct quarantine *q, struct qentry *out);

#endif

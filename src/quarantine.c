/* quarantine: a random stage in front of a FIFO; see quarantine.h. */
#include "quarantine.h"
#include "maze.h"

void quarantine_init(struct quarantine *q, struct slot_ref *storage, uint32_t n)
{
	q->nstage = n / 2;
	q->nfifo = n - q->nstage;
	q->stage = storage;
	q->fifo = storage + q->nstage;
	q->head = q->count = 0;
	q->resident = 0;
	/* The stage's storage is zero (fresh pages) or was emptied by pops. */
}

static void fifo_take(struct quarantine *q, struct slot_ref *out)
{
	*out = q->fifo[q->head];
	struct quarantine next = { .head = quarantine_ring_next(q->head, q->nfifo),
				   .count = q->count - 1 };
	atomic_store_explicit(&q->ends, next.ends, memory_order_relaxed);
	quarantine_order();
}

bool quarantine_pop(struct quarantine *q, struct slot_ref *out)
{
	if (q->count) {
		fifo_take(q, out);
		return true;
	}
	for (uint32_t i = 0; i < q->nstage; i++) {
		if (quarantine_stage_slot(q->stage[i], out)) {
			q->stage[i].cell = 0;
			quarantine_order();
			return true;
		}
	}
	return false;
}

uint64_t quarantine_held(struct quarantine *q)
{
	uint64_t n = __atomic_load_n(&q->count, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < q->nstage; i++)
		n += __atomic_load_n(&q->stage[i].cell, __ATOMIC_RELAXED) != 0;
	return n;
}

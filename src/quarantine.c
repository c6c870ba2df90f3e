/* quarantine: a random stage in front of a FIFO; see quarantine.h. */
#include "quarantine.h"
#include "maze.h"

void quarantine_init(struct quarantine *q, struct qentry *storage, uint32_t n)
{
	q->nstage = n / 2;
	q->nfifo = n - q->nstage;
	q->stage = storage;
	q->fifo = storage + q->nstage;
	q->head = q->count = 0;
	for (uint32_t i = 0; i < q->nstage; i++)
		q->stage[i].cell = CELL_NONE;
}

static void fifo_take(struct quarantine *q, struct qentry *out)
{
	*out = q->fifo[q->head];
	q->head = (q->head + 1) % q->nfifo;
	q->count--;
}

static bool fifo_push(struct quarantine *q, struct qentry in, struct qentry *out)
{
	if (q->nfifo == 0) {
		*out = in;
		return true;
	}
	bool full = q->count == q->nfifo;
	if (full)
		fifo_take(q, out);
	q->fifo[(q->head + q->count) % q->nfifo] = in;
	q->count++;
	return full;
}

bool quarantine_push(struct quarantine *q, struct rng *r, struct qentry in, struct qentry *out)
{
	if (q->nstage) {
		uint32_t i = rng_below(r, q->nstage);
		struct qentry old = q->stage[i];
		q->stage[i] = in;
		if (old.cell == CELL_NONE)
			return false;
		in = old;
	}
	return fifo_push(q, in, out);
}

bool quarantine_pop(struct quarantine *q, struct qentry *out)
{
	if (q->count) {
		fifo_take(q, out);
		return true;
	}
	for (uint32_t i = 0; i < q->nstage; i++) {
		if (q->stage[i].cell != CELL_NONE) {
			*out = q->stage[i];
			q->stage[i].cell = CELL_NONE;
			return true;
		}
	}
	return false;
}

/* quarantine: a random stage in front of a FIFO; see quarantine.h. */
#include "quarantine.h"
#include "annotate.h"
#include "canary.h"
#include "maze.h"
#include "os.h"
#include "room.h"

void quarantine_init(struct quarantine *q, struct slot_ref *storage, uint32_t n)
{
	q->nstage = n / 2;
	q->nfifo = n - q->nstage;
	q->stage_mask = q->nstage > 1 && !(q->nstage & (q->nstage - 1)) ? q->nstage - 1 : 0;
	q->stage = storage;
	q->fifo = storage + q->nstage;
	q->head = q->count = 0;
	q->resident = 0;
	/* The stage's storage is zero (fresh pages) or was emptied by a salvage. */
}

/* e kept by keep() (which sees it without the resident bit): counted. */
static bool entry_kept(struct slot_ref e, const struct maze *m,
		       bool (*keep)(void *, struct slot_ref), void *ctx, uint64_t *resident)
{
	struct slot_ref bare = e;
	bare.cell &= ~SLOT_REF_RESIDENT;
	if (!keep(ctx, bare))
		return false;
	if (e.cell & SLOT_REF_RESIDENT)
		*resident += m->wings[e.cls].class_size;
	return true;
}

void quarantine_keep_if(struct quarantine *q, const struct maze *m,
			bool (*keep)(void *, struct slot_ref), void *ctx)
{
	uint64_t resident = 0;
	if (q->nfifo) {
		uint32_t head = q->head < q->nfifo ? q->head : 0;
		uint32_t n = q->count < q->nfifo ? q->count : q->nfifo, kept = 0;
		/* Compacted towards the head: an entry moves to a place already read. */
		for (uint32_t i = 0; i < n; i++) {
			struct slot_ref e = q->fifo[(head + i) % q->nfifo];
			if (entry_kept(e, m, keep, ctx, &resident))
				slot_ref_put(&q->fifo[(head + kept++) % q->nfifo], e);
		}
		q->head = head;
		q->count = kept;
	}
	struct slot_ref e;
	for (uint32_t i = 0; i < q->nstage; i++)
		if (quarantine_stage_slot(q->stage[i], &e) && !entry_kept(e, m, keep, ctx, &resident))
			slot_ref_put(&q->stage[i], slot_ref_make(0, 0, 0));
	q->resident = resident;
}

uint64_t quarantine_held(struct quarantine *q)
{
	uint64_t n = __atomic_load_n(&q->count, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < q->nstage; i++)
		n += __atomic_load_n(&q->stage[i].cell, __ATOMIC_RELAXED) != 0;
	return n;
}

/* Whether a page of [lo, hi) holds a byte that is not zero; pages not in
 * memory (given back at free, not written since) are not read, which
 * would fault each in. resident: the caller knows they all are. */
static bool pages_written(char *lo, char *hi, bool resident)
{
	unsigned char vec[SMALL_MAX / PAGE_SIZE];
	size_t n = (size_t)(hi - lo) / PAGE_SIZE;
	if (resident || n > sizeof vec || !os_resident(lo, (size_t)(hi - lo), vec))
		memset(vec, 1, n < sizeof vec ? n : sizeof vec);
	for (size_t i = 0; i < n; i++)
		if ((i >= sizeof vec || (vec[i] & 1)) &&
		    !bytes_all_zero(lo + i * PAGE_SIZE, PAGE_SIZE))
			return true;
	return false;
}

/*
 * The whole pages of the slot ref names, given back; false if it has none.
 * A write after free into them is reported first: given back, they read as
 * zero at reuse, and the write would go unseen (under ASan or memcheck the
 * tool caught it when it was made).
 */
static bool discard_slot(const struct maze *m, struct slot_ref ref, bool resident)
{
	const struct wing *w = &m->wings[ref.cls];
	uint32_t cell = ref.cell & ~SLOT_REF_RESIDENT;
	char *p = cell_addr(w, cell) + (size_t)ref.slot * w->class_size;
	char *lo = (char *)(((uintptr_t)p + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
	char *hi = (char *)(((uintptr_t)p + w->class_size) & ~(PAGE_SIZE - 1));
	if (hi <= lo)
		return false;
	if (!annotate_free_poisoned() && pages_written(lo, hi, resident)) {
		uint64_t v = version_read(slot_version(room_of(w, cell), ref.slot));
		zero_report(p, zero_damage(p, w->class_size), w->class_size, v_gen(v));
	}
	os_discard(lo, (size_t)(hi - lo));
	return true;
}

/* One entry (plus: 1 in the stage, which stores cells plus one; 0 there
 * is empty): its pages go, and a resident one is counted no more: the
 * entry's bit first, then the count, so a fork between over-counts. */
static void discard_entry(struct quarantine *q, const struct maze *m, struct slot_ref *e,
			  uint32_t plus, bool all)
{
	struct slot_ref ref = *e;
	bool resident = ref.cell & SLOT_REF_RESIDENT;
	if ((!resident && !all) || (plus && ref.cell == 0))
		return;
	ref.cell -= plus;
	if (!discard_slot(m, ref, resident) || !resident)
		return;
	e->cell &= ~SLOT_REF_RESIDENT;          /* one store */
	quarantine_order();
	q->resident -= m->wings[ref.cls].class_size;
}

void quarantine_discard(struct quarantine *q, const struct maze *m, bool all)
{
	if (q->resident == 0 && !all)
		return;
	for (uint32_t i = 0; i < q->count; i++) {
		uint32_t at = q->head + i;
		discard_entry(q, m, &q->fifo[at >= q->nfifo ? at - q->nfifo : at], 0, all);
	}
	for (uint32_t i = 0; i < q->nstage; i++)
		discard_entry(q, m, &q->stage[i], 1, all);
}

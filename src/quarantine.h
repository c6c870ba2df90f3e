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

#include "maze.h"
#include "random.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* One small slot, named without a pointer: its class, cell and index.
 * Built and stored as one 64-bit word (slot_ref_make, slot_ref_put): a
 * fork that catches a thread writing an entry must see all of it or none,
 * and field by field the compiler made three stores of it. */
struct slot_ref {
	uint32_t cell;
	uint16_t cls;
	uint16_t slot;
};

static inline struct slot_ref slot_ref_make(uint32_t cell, unsigned cls, unsigned slot)
{
	struct slot_ref r;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t w = (uint64_t)slot << 48 | (uint64_t)(cls & 0xffff) << 32 | cell;
	memcpy(&r, &w, sizeof r);
#else
	r = (struct slot_ref){ .cell = cell, .cls = (uint16_t)cls, .slot = (uint16_t)slot };
#endif
	return r;
}

/* *at = r, in one store. */
static inline void slot_ref_put(struct slot_ref *at, struct slot_ref r)
{
	uint64_t w;
	memcpy(&w, &r, sizeof w);
	memcpy(at, &w, sizeof w);
}

/*
 * A slot held with its pages still resident (cleared in place) carries this
 * bit in its cell number, which no cell uses. The bytes of such slots are
 * bounded per quarantine: past QUARANTINE_RESIDENT_MAX a freed slot gives
 * its whole pages back to the kernel instead (they read as zero, and are
 * checked as zero on reuse all the same), so a quarantine of 1,024 slots
 * pins at most about a mebibyte however big its slots are.
 */
#define SLOT_REF_RESIDENT 0x80000000u
#define QUARANTINE_RESIDENT_MAX (1UL << 20)

struct quarantine {
	struct slot_ref *stage;   /* random stage, cells stored plus one: 0 is empty */
	struct slot_ref *fifo;
	uint32_t nstage, nfifo;
	uint32_t stage_mask;     /* nstage - 1 if a power of two, else 0 */
	/* One word, so that taking from the FIFO moves both at once: a fork
	 * that catches a thread there must not see one moved without the other. */
	union {
		struct {
			uint32_t head, count;
		};
		_Atomic uint64_t ends;
	};
	uint64_t resident;      /* bytes of the slots held with SLOT_REF_RESIDENT */
};

/*
 * Stores that take an entry out of a list come before those that put it in
 * another, and an entry is written before the count that covers it: a fork
 * can catch a thread between any two, and the child that takes over its
 * cache must at worst lose an entry, never hold one twice. A compiler
 * barrier only: x86 makes stores visible in program order.
 */
static inline void quarantine_order(void)
{
	atomic_signal_fence(memory_order_seq_cst);
}

/* Storage for a quarantine of n slots: n entries. */
void quarantine_init(struct quarantine *q, struct slot_ref *storage, uint32_t n);
/* Ring indices wrap by a mask when n is a power of two (the default's, a
 * constant on the fast path), else by comparison: a division per free
 * costs more than the rest of the push. */
static inline uint32_t quarantine_ring_next(uint32_t i, uint32_t n)
{
	if ((n & (n - 1)) == 0)
		return (i + 1) & (n - 1);
	return i + 1 == n ? 0 : i + 1;
}

static inline __attribute__((always_inline)) bool
quarantine_fifo_push(struct quarantine *q, uint32_t nfifo, struct slot_ref in,
		     struct slot_ref *out)
{
	if (nfifo == 0) {
		*out = in;
		return true;
	}
	if (q->count == nfifo) {        /* full: the oldest leaves, in takes its place */
		uint32_t head = q->head;
		*out = q->fifo[head];
		slot_ref_put(&q->fifo[head], in);
		quarantine_order();
		q->head = quarantine_ring_next(head, nfifo);
		return true;
	}
	uint32_t tail = q->head + q->count;
	slot_ref_put(&q->fifo[tail >= nfifo ? tail - nfifo : tail], in);
	quarantine_order();
	q->count++;
	return false;
}

/* The slot a stage entry holds: the stage stores cells plus one, so that a
 * stage nobody has written yet (zero pages, never touched) reads as empty.
 * False for an empty entry. */
static inline bool quarantine_stage_slot(struct slot_ref stored, struct slot_ref *out)
{
	if (stored.cell == 0)
		return false;
	*out = stored;
	out->cell--;
	return true;
}

/*
 * A quarantine's sizes, as quarantine_init() set them: q's own, read from
 * q, or the default's as constants the compiler folds (the fast path, whose
 * threads all have the default quarantine).
 */
struct quarantine_shape {
	uint32_t nstage, stage_mask, nfifo;
};

#define QUARANTINE_DEFAULT 1024
static const struct quarantine_shape quarantine_default_shape = {
	QUARANTINE_DEFAULT / 2, QUARANTINE_DEFAULT / 2 - 1, QUARANTINE_DEFAULT / 2,
};

static inline struct quarantine_shape quarantine_shape_of(const struct quarantine *q)
{
	return (struct quarantine_shape){ q->nstage, q->stage_mask, q->nfifo };
}

/* Hold in; true if an older entry now leaves (*out) and must be released.
 * u is a random word whose low 16 bits choose the stage place (the caller
 * may use the high 16 for a draw of its own). A stage whose size is a
 * power of two takes a mask, no rejection. */
static inline __attribute__((always_inline)) bool
quarantine_push_shaped(struct quarantine *q, const struct quarantine_shape *sh, struct rng *r,
		       uint32_t u, struct slot_ref in, struct slot_ref *out)
{
	if (sh->nstage) {
		uint32_t i = sh->stage_mask ? u & sh->stage_mask
					    : rng_pick_bits(r, u & 0xffff, sh->nstage);
		struct slot_ref old = q->stage[i];
		slot_ref_put(&q->stage[i], slot_ref_make(in.cell + 1, in.cls, in.slot));
		quarantine_order();
		if (!quarantine_stage_slot(old, &in))
			return false;
	}
	return quarantine_fifo_push(q, sh->nfifo, in, out);
}

static inline bool quarantine_push(struct quarantine *q, struct rng *r, uint32_t u,
				   struct slot_ref in, struct slot_ref *out)
{
	struct quarantine_shape sh = quarantine_shape_of(q);
	return quarantine_push_shaped(q, &sh, r, u, in, out);
}

/* Keep only the entries keep(ctx, ref) accepts (ref without its resident
 * bit), in their order; the resident bytes are counted again from them.
 * For a forked child's dead threads' quarantines (tcache.c). */
void quarantine_keep_if(struct quarantine *q, const struct maze *m,
			bool (*keep)(void *, struct slot_ref), void *ctx);

/* Slots held, read without the owner's lock: a count for the statistics,
 * where a value a moment old is as good as an exact one. */
uint64_t quarantine_held(struct quarantine *q);

/* A slot that left q: its bytes leave q's resident count, its bit goes. */
static inline struct slot_ref quarantine_leave(struct quarantine *q, const struct maze *m,
					       struct slot_ref ref)
{
	if (ref.cell & SLOT_REF_RESIDENT) {
		ref.cell &= ~SLOT_REF_RESIDENT;
		q->resident -= m->wings[ref.cls].class_size;
	}
	return ref;
}
/*
 * Give the whole pages of q's slots back to the kernel, the slots staying
 * where they are: they read as zero and are checked as zero on reuse, so
 * no slot leaves early. Those held resident (every slot, if all: an
 * arena's quarantine, which marks none) that span a whole page; a slot
 * smaller than a page shares its pages and stays as it is.
 */
void quarantine_discard(struct quarantine *q, const struct maze *m, bool all);

#endif

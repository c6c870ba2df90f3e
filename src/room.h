/* room: size classes, and the rooms that hold small allocations' slots. */
#ifndef LAB_ROOM_H
#define LAB_ROOM_H

#include "lab.h"
#include "maze.h"
#include "version.h"

#include <stddef.h>
#include <stdint.h>

/* The upper part of a cell record in a small wing. */
struct room {
	version_t version;      /* owned by an arena while the room is open */
	uint32_t next, prev;    /* the bin's partial list */
	uint16_t nslots, nfree;
	uint8_t in_partial;
	uint8_t pad[3];
	uint64_t key;           /* canary key of its slots, drawn when it opens */
	/* version_t slot_version[nslots], uint16_t req[nslots], uint16_t
	 * free_slot[nslots], then padding to 8 bytes. The versions come first:
	 * every malloc and free finds a slot's word with no arithmetic on the
	 * slot count. */
};

/* Set when the maze opens the wing (room_bytes / class_size). */
static inline uint16_t slots_per_room(const struct wing *w)
{
	return w->room_slots;
}

static inline struct room *room_of(const struct wing *w, uint32_t cell)
{
	return cell_record(w, cell);
}

static inline version_t *slot_versions(struct room *r)
{
	return (version_t *)(r + 1);
}

/* Requested bytes of each slot (the canary starts there). */
static inline uint16_t *slot_req(struct room *r, uint16_t nslots)
{
	return (uint16_t *)(slot_versions(r) + nslots);
}

/* The room's free slots, r->nfree of them (r->nslots must be set). */
static inline uint16_t *free_slots(struct room *r)
{
	return slot_req(r, r->nslots) + r->nslots;
}

/*
 * A slot's version and size, found without the room's header: every open
 * room of a wing has the wing's slot count, so the hot paths need not wait
 * for the header's cache line, and the two loads can miss in parallel. A
 * room never opened has all-zero tables, which read as free slots.
 */
static inline version_t *slot_version(struct room *r, uint16_t slot)
{
	return &slot_versions(r)[slot];
}

static inline uint16_t *slot_size(const struct wing *w, struct room *r, uint16_t slot)
{
	return &slot_req(r, slots_per_room(w))[slot];
}

static inline size_t room_record_bytes(uint16_t nslots)
{
	return sizeof(struct room) + (size_t)nslots * sizeof(version_t) +
	       (((size_t)nslots * 2 * sizeof(uint16_t) + 7) & ~(size_t)7);
}

/* Class index for a request of size bytes (size <= SMALL_MAX): the
 * classes of small_class_size() in room.c. */
static inline unsigned small_class(size_t size)
{
	if (size <= 128)
		return size ? (unsigned)((size + 15) / 16 - 1) : 0;
	size_t s = size - 1;
	unsigned b = 63 - (unsigned)__builtin_clzl(s);
	return 8 + (b - 7) * 8 + (unsigned)((s >> (b - 3)) & 7);
}
/* Smallest class >= size whose slots are all aligned to align, or -1. */
int small_class_aligned(size_t size, size_t align);
size_t small_class_size(unsigned cls);
/* The wing specs for the SMALL_CLASSES wings. */
void room_specs(struct wing_spec *out);

/* Under the arena's lock: the bin's room with a free slot (placing one if
 * need be), or CELL_NONE when the wing is full. */
uint32_t bin_refill(struct labyrinth *lab, struct arena *a, struct wing *w, struct bin *b);
/* Under the arena's lock: the bin's new spare keeps its pages, within the
 * arena's budget, or gives them back; and it leaves that count. */
void spare_keep_or_discard(struct arena *a, struct bin *b, const struct wing *w);
void spare_uncount(struct arena *a, struct bin *b);
void partial_push(struct wing *w, struct bin *b, uint32_t cell);
void partial_unlink(struct wing *w, struct bin *b, uint32_t cell);
/* Release the room's version and close its cell. */
void room_close(struct labyrinth *lab, struct wing *w, uint32_t cell);

#endif

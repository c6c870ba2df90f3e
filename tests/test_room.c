/* Size classes and room geometry (src/room.c, src/large.c). */
#include "helpers.h"
#include "large.h"
#include "maze.h"
#include "os.h"
#include "room.h"
#include "slot.h"
#include "tcache.h"

#include "canary.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

Test(room, every_size_gets_the_smallest_class_that_fits)
{
	for (size_t size = 0; size <= SMALL_MAX; size++) {
		unsigned c = small_class(size);
		cr_assert_lt(c, SMALL_CLASSES, "size %zu", size);
		cr_assert_geq(small_class_size(c), size, "size %zu in class %zu", size, small_class_size(c));
		if (c > 0)
			cr_assert_lt(small_class_size(c - 1), size ? size : 1, "size %zu could use a smaller class", size);
	}
}

Test(room, classes_grow_and_keep_16_byte_alignment)
{
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		cr_assert_eq(small_class_size(c) % 16, 0);
		if (c)
			cr_assert_gt(small_class_size(c), small_class_size(c - 1));
	}
	cr_assert_eq(small_class_size(SMALL_CLASSES - 1), SMALL_MAX);
}

Test(room, internal_waste_is_at_most_a_quarter)
{
	for (size_t size = 129; size <= SMALL_MAX; size++) {
		size_t cs = small_class_size(small_class(size));
		cr_assert_leq((cs - size) * 4, cs, "size %zu wastes %zu of %zu", size, cs - size, cs);
	}
}

Test(room, rooms_hold_at_least_16_slots_and_waste_little)
{
	struct wing_spec s[SMALL_CLASSES];
	room_specs(s);
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		size_t slots = s[c].room_bytes / s[c].class_size;
		cr_assert_geq(slots, 16, "class %zu", s[c].class_size);
		cr_assert_eq(s[c].room_bytes % PAGE_SIZE, 0);
		cr_assert_leq((s[c].room_bytes % s[c].class_size) * 16, s[c].room_bytes,
			      "class %zu wastes %zu of a %zu-byte room", s[c].class_size,
			      s[c].room_bytes % s[c].class_size, s[c].room_bytes);
	}
}

Test(room, aligned_classes_really_align)
{
	for (size_t align = 16; align <= PAGE_SIZE; align *= 2) {
		for (size_t size = 1; size <= SMALL_MAX; size += 37) {
			int c = small_class_aligned(size, align);
			if (c < 0)
				continue;
			cr_assert_eq(small_class_size((unsigned)c) % align, 0);
			cr_assert_geq(small_class_size((unsigned)c), size);
		}
	}
}

Test(room, large_classes_cover_their_range)
{
	unsigned n = large_class_count(1UL << 30);
	struct wing_spec s[200];
	cr_assert_leq(n, 200);
	large_specs(s, n);
	cr_assert_gt(s[0].room_bytes, SMALL_MAX);
	cr_assert_geq(s[n - 1].room_bytes, 1UL << 30);
	for (unsigned k = 1; k < n; k++) {
		cr_assert_gt(s[k].room_bytes, s[k - 1].room_bytes);
		cr_assert_leq((s[k].room_bytes - s[k - 1].room_bytes) * 4, s[k].room_bytes,
			      "a gap of more than a quarter between large classes %u and %u", k - 1, k);
	}
}

/* Canaries are written and checked a word (or 16 or 32 bytes) at a time:
 * no byte outside [from, to) may change, whatever the
 * alignment of the block and of both ends (guarded blocks end mid-word), the
 * bytes are the byte-wise pattern, and damage to any one byte is found. */
Test(room, canary_stays_inside_its_bytes_and_finds_damage)
{
	canary_init();
	unsigned char buf[256];
	for (size_t base = 0; base < 8; base++) {
		for (size_t from = 0; from < 40; from++) {
			for (size_t to = from + 1; to <= 200; to++) {
				memset(buf, 0x00, sizeof buf);
				char *b = (char *)buf + base;
				uint64_t pat = canary_pattern(0x243f6a8885a308d3ULL * (base + 1), b, to);
				canary_write(b, from, to, pat);
				for (size_t i = 0; i < sizeof buf - base; i++)
					if (i < from || i >= to)
						cr_assert_eq(b[i], 0, "byte %zu changed writing [%zu, %zu)", i, from, to);
					else
						cr_assert_neq(b[i], 0, "canary byte %zu is zero", i);
				cr_assert_eq(canary_damage(b, from, to, pat), NO_DAMAGE,
					     "[%zu, %zu) is not the byte-wise pattern", from, to);
				cr_assert(canary_intact(b, from, to, pat));
				for (size_t hit = from; hit < to; hit++) {
					b[hit] ^= 0x40;
					cr_assert(!canary_intact(b, from, to, pat),
						  "damage at %zu of [%zu, %zu) missed", hit, from, to);
					cr_assert_eq(canary_damage(b, from, to, pat), hit);
					b[hit] ^= 0x40;
				}
			}
		}
	}
}

/* The slot versions (slot tails end on a multiple of 16) write the same
 * bytes as the general ones, touch nothing outside [from, to), and find
 * damage to any one byte, at every start of the tail. */
Test(room, slot_canary_is_the_general_canary)
{
	canary_init();
	_Alignas(16) unsigned char buf[320], ref[320];
	for (size_t to = 16; to <= 272; to += 16) {
		for (size_t from = 0; from < to; from++) {
			memset(buf, 0x00, sizeof buf);
			memset(ref, 0x00, sizeof ref);
			char *b = (char *)buf + 16;
			uint64_t pat = canary_pattern(0x13198a2e03707344ULL, b, to + from);
			canary_write_slot(b, from, to, pat);
			canary_write((char *)ref + 16, from, to, pat);
			cr_assert(memcmp(buf, ref, sizeof buf) == 0,
				  "slot canary of [%zu, %zu) differs from the general one", from, to);
			cr_assert(canary_intact_slot(b, from, to, pat));
			for (size_t hit = from; hit < to; hit++) {
				b[hit] ^= 0x02;
				cr_assert(!canary_intact_slot(b, from, to, pat),
					  "damage at %zu of [%zu, %zu) missed", hit, from, to);
				b[hit] ^= 0x02;
			}
		}
	}
}

/* The reuse check of a slot finds a write to any one byte of it, whatever
 * its size (short slots are read by overlapping loads, not a loop), with
 * the AVX2 scan or the inline one of the fast path (leaf). */
Test(room, slot_zero_check_sees_every_byte)
{
	canary_init();
	_Alignas(16) char buf[1024 + 32] = { 0 };
	for (int leaf = 0; leaf < 2; leaf++) {
		for (size_t len = 16; len <= 1024; len += 16) {
			char *p = buf + 16;
			cr_assert(slot_bytes_zero(p, len, leaf), "a zero slot of %zu bytes is not zero", len);
			buf[15] = buf[16 + len] = 1;    /* the neighbours do not count */
			cr_assert(slot_bytes_zero(p, len, leaf), "a neighbour counted in %zu bytes", len);
			buf[15] = buf[16 + len] = 0;
			for (size_t hit = 0; hit < len; hit++) {
				p[hit] = 0x20;
				cr_assert(!slot_bytes_zero(p, len, leaf), "byte %zu of %zu missed", hit, len);
				p[hit] = 0;
			}
		}
	}
}

/* Zeroing at free clears every byte of a slot of any class below a page,
 * by stores or by memset, and not a byte of its neighbours. */
Test(room, slot_clear_clears_the_slot_and_nothing_else)
{
	static _Alignas(16) char buf[4096 + 32];
	for (int leaf = 0; leaf < 2; leaf++) {
		for (size_t len = 16; len < 4096; len += 16) {
			memset(buf, 0x5a, sizeof buf);
			slot_clear(buf + 16, len, leaf);
			for (size_t i = 0; i < len + 32; i++)
				cr_assert_eq(buf[i], i >= 16 && i < 16 + len ? 0 : 0x5a,
					     "byte %zu after clearing %zu bytes (leaf %d)", i, len, leaf);
		}
	}
}

/*
 * A free of the first slot-aligned address past a room's last slot: in the
 * room's unused tail when its pages do not divide into slots, else the
 * guard page. Either is no slot and must be refused, in every class (the
 * lookup bounds the slot index by the room's slot count).
 */
static void free_past_last_slot(void *arg)
{
	unsigned cls = (unsigned)(uintptr_t)arg;
	size_t cs = small_class_size(cls);
	char *p = labyrinth_malloc(NULL, cs - 1);
	struct wing *w = maze_wing_of(&lab_default()->maze, p);
	size_t off = 0;
	if (!w || w->class_size != cs || wing_cell_of(w, p, &off) == CELL_NONE)
		_exit(3);
	char *room = p - off;
	labyrinth_free(NULL, room + (size_t)slots_per_room(w) * cs);
	_exit(4);
}

Test(room, a_free_past_the_last_slot_is_refused)
{
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct outcome o = run_in_child(free_past_last_slot, (void *)(uintptr_t)c);
		cr_assert(o.signal == SIGABRT && strstr(o.err, "labyrinth: invalid free of 0x"),
			  "class %zu: signal %d exit %d: %s", small_class_size(c), o.signal,
			  o.exit_code, o.err);
	}
}

/* ---- a slot's version and size, found without the room's header ------- */

/*
 * malloc_usable_size and realloc find a slot's version and size from the
 * wing's slot count, not the room's header (one cache miss, not two in a
 * row). So they read the tables of any cell the pointer names: a forged
 * pointer to a freed slot, to a slot never handed out, or into a cell of
 * the extent where no room was ever opened (all-zero tables) must be
 * refused, never sized or resized.
 */
enum forged { FREED_SLOT, FREE_SLOT_OF_A_LIVE_ROOM, NEVER_OPENED_CELL };

static char *forge(enum forged kind)
{
	char *p = labyrinth_malloc(NULL, 100);
	struct wing *w = maze_wing_of(&lab_default()->maze, p);
	size_t off;
	uint32_t cell = wing_cell_of(w, p, &off);
	if (!w || cell == CELL_NONE)
		_exit(3);
	if (kind == FREED_SLOT) {
		labyrinth_free(NULL, p);
		return p;
	}
	if (kind == FREE_SLOT_OF_A_LIVE_ROOM) {
		struct room *r = room_of(w, cell);
		for (uint16_t s = 0; s < slots_per_room(w); s++)
			if (v_state(version_read(slot_version(r, s))) == V_FREE)
				return cell_addr(w, cell) + (size_t)s * w->class_size;
		_exit(4);
	}
	uint32_t ext = atomic_load(&w->ext_cells);
	for (uint32_t c = 0; c < ext; c++)
		if (!cell_taken(w, c))
			return cell_addr(w, c);
	_exit(5);
}

static void usable_of_forged(void *arg)
{
	labyrinth_usable_size(NULL, forge((enum forged)(uintptr_t)arg));
	_exit(0);
}

static void realloc_of_forged(void *arg)
{
	/* 60 bytes: 100's class too, so a live block would resize in place. */
	labyrinth_realloc(NULL, forge((enum forged)(uintptr_t)arg), 60);
	_exit(0);
}

Test(room, usable_size_and_realloc_refuse_a_forged_slot)
{
	static const char *const what[] = { "a freed slot", "a free slot of a live room",
					    "a cell never opened" };
	for (uintptr_t k = FREED_SLOT; k <= NEVER_OPENED_CELL; k++) {
		struct outcome o = run_in_child(usable_of_forged, (void *)k);
		cr_expect(o.signal == SIGABRT &&
			  strstr(o.err, "labyrinth: invalid pointer to malloc_usable_size of 0x"),
			  "usable size of %s: signal %d exit %d: %s", what[k], o.signal,
			  o.exit_code, o.err);
		o = run_in_child(realloc_of_forged, (void *)k);
		cr_expect(o.signal == SIGABRT && strstr(o.err, "labyrinth: invalid realloc of 0x"),
			  "realloc of %s: signal %d exit %d: %s", what[k], o.signal,
			  o.exit_code, o.err);
	}
}

/* ---- a bin's spare: its pages kept within a budget ----------------------- */

static long minor_faults(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_minflt;
}

/* A burst of 4,000-byte blocks (the 4 KiB class, 64 KiB rooms), written and
 * freed, then out of the quarantine and back in their rooms (the thread
 * cache's release list given back, as trim's first half does, without
 * closing the rooms emptied): of the two rooms it filled, the one that is
 * not the bin's current room becomes its spare. */
enum { BURST = 32, BURST_SIZE = 4000 };

static void burst(labyrinth_t *lab, char **p)
{
	for (int i = 0; i < BURST; i++) {
		p[i] = labyrinth_malloc(lab, BURST_SIZE);
		memset(p[i], 0x5a, BURST_SIZE);
	}
}

static void burst_free(labyrinth_t *lab, char **p)
{
	for (int i = 0; i < BURST; i++)
		labyrinth_free(lab, p[i]);
	flush_quarantine(lab);
	tcache_trim((struct labyrinth *)lab);
}

static labyrinth_t *one_arena(void)
{
	labyrinth_options_t o = { .size = sizeof o, .arenas = 1 };
	return labyrinth_open(&o);
}

/* A class used in bursts, as a compiler uses its 4 KiB blocks: the spare
 * keeps its cleared pages for the next burst, which takes it back, instead
 * of giving them back to fault them in again (on the old code: 16 faults a
 * round, 800 in 50). */
static void bursts(void *arg)
{
	(void)arg;
	labyrinth_t *lab = one_arena();
	char *p[BURST];
	long before = 0;
	for (int r = 0; r < 60; r++) {
		if (r == 10)
			before = minor_faults();
		burst(lab, p);
		burst_free(lab, p);
	}
	long faults = minor_faults() - before;
	fprintf(stderr, "faults %ld\n", faults);
	_exit(faults < 200 ? 0 : 3);
}

Test(room, a_spare_taken_back_by_the_next_burst_takes_no_fault_per_page, .timeout = 60)
{
	SKIP_UNDER_ASAN("ASan's shadow pages fault too");
	struct outcome o = run_in_child(bursts, NULL);
	cr_log_info("%s", o.err);
	cr_assert_eq(o.exit_code, 0, "exit %d: %s", o.exit_code, o.err);
}

/* The attack: write into a freed block after free, and wait until its room
 * is the bin's spare. The spare keeps its pages, so the write is still
 * there, and is found when the slot is handed out again (on the old code
 * the spare's pages went back to the kernel, which wiped the write: the
 * bug went unseen). */
static void write_into_a_spare(void *arg)
{
	(void)arg;
	labyrinth_t *lab = one_arena();
	char *p[BURST];
	burst(lab, p);
	for (int i = 0; i < BURST; i++)
		labyrinth_free(lab, p[i]);
	p[0][100] = 'x';                /* p[0]: the first room, not the current one */
	flush_quarantine(lab);
	tcache_trim((struct labyrinth *)lab);
	for (int r = 0; r < 4; r++)
		burst(lab, p);
	_exit(0);
}

Test(room, a_write_into_a_slot_of_the_spare_is_caught_on_reuse, .timeout = 60)
{
	struct outcome o = run_in_child(write_into_a_spare, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d exit %d: %s", o.signal, o.exit_code, o.err);
	cr_assert(strstr(o.err, "labyrinth: write after free of 0x"), "got: %s", o.err);
	cr_assert(strstr(o.err, "(byte changed at +100, class 4096 B"), "got: %s", o.err);
}

/* A program that passes through every big class leaves a spare in each:
 * those that keep their pages hold at most 1 MiB in all per arena; the
 * others' pages are back with the kernel. */
Test(room, spares_keep_at_most_a_mebibyte_of_pages_per_arena, .timeout = 60)
{
	labyrinth_t *lab = one_arena();
	struct labyrinth *l = (struct labyrinth *)lab;
	static char *p[64];
	static unsigned char vec[256];        /* a room of 1 MiB at most */
	for (size_t size = 4000; size <= 16000; size += 500) {
		size_t n = 2 * slots_per_room(maze_wing_of(&l->maze, labyrinth_malloc(lab, size)));
		for (size_t i = 0; i < n && i < 64; i++)
			memset(p[i] = labyrinth_malloc(lab, size), 0x5a, size);
		for (size_t i = 0; i < n && i < 64; i++)
			labyrinth_free(lab, p[i]);
	}
	flush_quarantine(lab);
	struct arena *a = &l->arenas[0];
	size_t kept = 0, spares = 0, gave_back = 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct wing *w = &l->maze.wings[c];
		struct bin *b = &a->bins[c];
		if (b->spare == CELL_NONE || w->room_bytes < (64 << 10))
			continue;
		spares++;
		kept += b->spare_kept;
		size_t pages = w->room_bytes / PAGE_SIZE, in = 0;
		cr_assert_leq(pages, sizeof vec);
		cr_assert(os_resident(cell_addr(w, b->spare), w->room_bytes, vec));
		for (size_t i = 0; i < pages; i++)
			in += vec[i] & 1;
		if (!b->spare_kept) {
			gave_back++;
			cr_assert_eq(in, 0, "class %zu: a spare past the budget has %zu pages in",
				     w->class_size, in);
		}
	}
	cr_log_info("%zu spares, %zu KiB kept, %zu gave their pages back", spares, kept >> 10,
		    gave_back);
	cr_assert_eq(kept, a->spares_kept);
	cr_assert_leq(kept, 1 << 20, "%zu KiB of spares kept", kept >> 10);
	cr_assert_gt(gave_back, 0, "%zu spares, none past the budget", spares);
	labyrinth_close(lab);
}

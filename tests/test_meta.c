/*
 * What a process pays in the maze's own metadata: the wing table and the
 * wings' generators are written by every process that loads the allocator
 * (every `ls` and `sh -c` under /etc/ld.so.preload), so their pages are
 * part of each one's start-up. Counted with mincore(), which sees a page of
 * a private anonymous mapping as resident once it has been touched.
 */
#include "helpers.h"
#include "lab.h"
#include "maze.h"
#include "room.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct maze *maze_of(labyrinth_t *lab)
{
	return &((struct labyrinth *)lab)->maze;
}

static size_t pages_resident(const char *p, size_t bytes)
{
	size_t n = bytes / PAGE_SIZE, hits = 0;
	unsigned char *vec = malloc(n);
	cr_assert_not_null(vec);
	cr_assert_eq(mincore((void *)p, bytes, vec), 0, "mincore failed");
	for (size_t i = 0; i < n; i++)
		hits += vec[i] & 1;
	free(vec);
	return hits;
}

static size_t pages_for(size_t bytes)
{
	return (bytes + PAGE_SIZE - 1) / PAGE_SIZE;
}

/* One block in every `step`-th small class and in the first large ones:
 * wings scattered over the class numbers, as a short program's are. */
static unsigned use_scattered_wings(labyrinth_t *lab, unsigned step)
{
	static const size_t large[] = { 20 << 10, 40 << 10, 100 << 10, 1 << 20 };
	unsigned used = 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c += step, used++)
		cr_assert_not_null(labyrinth_malloc(lab, small_class_size(c) - 1));
	for (unsigned i = 0; i < sizeof large / sizeof large[0]; i++, used++)
		cr_assert_not_null(labyrinth_malloc(lab, large[i]));
	return used;
}

/*
 * A process that uses 20 wings writes the wing table (every wing is set up
 * when the maze is reserved) and 20 generators, not the generators' pages
 * of every wing between them: each wing's generator used to sit at the
 * wing's own place in an array of one per wing, so 20 scattered wings wrote
 * a page of generators each (old code: 21 resident pages here, the bound 13).
 */
Test(meta, the_generators_of_the_wings_used_share_pages)
{
	labyrinth_t *lab = open_private(0);
	struct maze *m = maze_of(lab);
	unsigned used = use_scattered_wings(lab, 4);
	const char *rw = (const char *)m->meta + PAGE_SIZE;     /* guard pages either side */
	size_t rw_bytes = m->meta_bytes - 2 * PAGE_SIZE;
	size_t table = (size_t)m->nwings * sizeof(struct wing) +
		       m->bytes / ((size_t)1 << m->slice_shift) * sizeof(uint16_t);
	/* the table, then the generators, each run starting mid-page */
	size_t bound = pages_for(table) + 1 + pages_for((size_t)used * sizeof(struct rng)) + 1;
	size_t resident = pages_resident(rw, rw_bytes);
	cr_log_info("%u wings used: %zu pages of the maze's metadata resident (bound %zu)", used,
		    resident, bound);
	cr_assert_leq(resident, bound, "%u wings wrote %zu pages of wing table and generators",
		      used, resident);
	labyrinth_close(lab);
}

/* Handing generators out in order of use must not give two wings one
 * stream: each used wing has a generator of its own, keyed apart, and a
 * wing never used has none. */
Test(meta, every_wing_used_has_a_generator_of_its_own)
{
	labyrinth_t *lab = open_private(0);
	struct maze *m = maze_of(lab);
	unsigned used = use_scattered_wings(lab, 4), keyed = 0;
	for (unsigned i = 0; i < m->nwings; i++) {
		struct wing *w = &m->wings[i];
		if (!w->max_cells) {
			cr_assert_null(w->rng, "wing %u was never used but has a generator", i);
			continue;
		}
		keyed++;
		cr_assert_not_null(w->rng, "wing %u placed rooms without a generator", i);
		for (unsigned j = 0; j < i; j++) {
			struct wing *v = &m->wings[j];
			if (!v->max_cells)
				continue;
			cr_assert_neq(w->rng, v->rng, "wings %u and %u share a generator", j, i);
			cr_assert_neq(memcmp(w->rng->key, v->rng->key, sizeof w->rng->key), 0,
				      "wings %u and %u have the same key", j, i);
		}
	}
	cr_assert_geq(keyed, used, "%u wings keyed for %u used", keyed, used);
	labyrinth_close(lab);
}

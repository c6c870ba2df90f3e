/* The public allocation API: correctness, alignment, errno, isolation. */
#include "helpers.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct live {
	unsigned char *p;
	size_t size;
	unsigned char tag;
};

static size_t random_size(unsigned long long *seed)
{
	unsigned long long r = test_rand(seed);
	switch (r % 16) {
	case 0: return (size_t)(r >> 8) % 300000;       /* large now and then */
	case 1: case 2: return (size_t)(r >> 8) % 16384;
	default: return (size_t)(r >> 8) % 256;
	}
}

static void check_tag(const struct live *l)
{
	for (size_t i = 0; i < l->size; i++)
		if (l->p[i] != (unsigned char)(l->tag + i))
			cr_assert_fail("allocation %p of %zu bytes corrupted at byte %zu", (void *)l->p, l->size, i);
}

static void fill_tag(struct live *l)
{
	for (size_t i = 0; i < l->size; i++)
		l->p[i] = (unsigned char)(l->tag + i);
}

static int by_address(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct live *)a)->p, y = (uintptr_t)((const struct live *)b)->p;
	return x < y ? -1 : x > y;
}

/* Random malloc/free with every byte checked: overlap would corrupt a neighbour. */
Test(api, random_stress_no_overlap, .timeout = 120)
{
	enum { SLOTS = 2000, STEPS = 60000 };
	labyrinth_t *lab = open_private(0);
	static struct live live[SLOTS];
	unsigned long long seed = 0x1234567;
	for (int step = 0; step < STEPS; step++) {
		struct live *l = &live[test_rand(&seed) % SLOTS];
		if (l->p) {
			check_tag(l);
			labyrinth_free(lab, l->p);
			l->p = NULL;
		}
		l->size = random_size(&seed);
		l->tag = (unsigned char)step;
		l->p = labyrinth_malloc(lab, l->size);
		cr_assert_not_null(l->p);
		cr_assert_geq(labyrinth_usable_size(lab, l->p), l->size);
		fill_tag(l);
	}
	qsort(live, SLOTS, sizeof live[0], by_address);
	for (int i = 0; i + 1 < SLOTS; i++) {
		if (!live[i].p)
			continue;
		check_tag(&live[i]);
		size_t usable = labyrinth_usable_size(lab, live[i].p);
		cr_assert_leq((uintptr_t)live[i].p + usable, (uintptr_t)live[i + 1].p,
			      "live allocations overlap");
	}
	labyrinth_stats_t st;
	labyrinth_get_stats(lab, &st);
	cr_assert_eq(st.allocations - st.frees, (uint64_t)SLOTS);
	labyrinth_close(lab);
}

Test(api, malloc_is_16_byte_aligned)
{
	for (size_t size = 0; size < 70000; size += size < 512 ? 1 : 997) {
		void *p = labyrinth_malloc(NULL, size);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % 16, 0, "malloc(%zu) = %p", size, p);
		memset(p, 0xa5, size);
		labyrinth_free(NULL, p);
	}
}

Test(api, aligned_alloc_every_alignment)
{
	for (size_t align = 1; align <= (1 << 21); align <<= 1) {
		static const size_t sizes[] = { 0, 1, 24, 100, 4096, 5000, 16384, 70000 };
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			void *p = labyrinth_aligned_alloc(NULL, align, sizes[i]);
			cr_assert_not_null(p, "align %zu size %zu", align, sizes[i]);
			cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu: %p", align, sizes[i], p);
			cr_assert_geq(labyrinth_usable_size(NULL, p), sizes[i]);
			memset(p, 1, sizes[i]);
			labyrinth_free(NULL, p);
		}
	}
}

Test(api, aligned_alloc_rejects_bad_alignment)
{
	errno = 0;
	cr_assert_null(labyrinth_aligned_alloc(NULL, 3, 10));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(labyrinth_aligned_alloc(NULL, 0, 10));
	cr_assert_eq(errno, EINVAL);
}

Test(api, realloc_keeps_contents_across_classes)
{
	static const size_t steps[] = { 1, 17, 100, 1000, 16384, 16385, 100000, 1 << 20,
					(1 << 20) + 5000, 5000, 40, 3 << 20, 10 };
	unsigned char *p = NULL;
	size_t have = 0;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		p = labyrinth_realloc(NULL, p, steps[i]);
		cr_assert_not_null(p);
		size_t keep = have < steps[i] ? have : steps[i];
		for (size_t j = 0; j < keep; j++)
			cr_assert_eq(p[j], (unsigned char)(j * 7), "byte %zu lost at step %zu", j, i);
		for (size_t j = 0; j < steps[i]; j++)
			p[j] = (unsigned char)(j * 7);
		have = steps[i];
	}
	labyrinth_free(NULL, p);
}

Test(api, realloc_large_grows_in_place_within_its_class)
{
	char *p = labyrinth_malloc(NULL, 66 * 1024);     /* 17 pages: class of 20 */
	char *q = labyrinth_realloc(NULL, p, 80 * 1024);
	cr_assert_eq(p, q, "a large realloc within its class moved");
	memset(q, 3, 80 * 1024);
	labyrinth_free(NULL, q);
}

/* A buffer grown by 30% steps moves at each doubling, not at each step,
 * and the pages past its end still fault. */
Test(api, realloc_growth_moves_once_per_doubling)
{
	size_t size = 20 * 1024, steps = 0, moves = 0;
	unsigned char *p = labyrinth_malloc(NULL, size);
	cr_assert_not_null(p);
	memset(p, 0x5a, size);
	while (size < (8u << 20)) {
		size_t next = size + size * 3 / 10;
		unsigned char *q = labyrinth_realloc(NULL, p, next);
		cr_assert_not_null(q);
		cr_assert(q[0] == 0x5a && q[size - 1] == 0x5a, "contents lost at %zu bytes", size);
		memset(q + size, 0x5a, next - size);
		moves += q != p;
		steps++;
		p = q;
		size = next;
		cr_assert(write_faults(p + ((size + 4095) & ~(size_t)4095)),
			  "the page after a grown block of %zu bytes did not fault", size);
	}
	cr_assert_gt(steps, 20);
	cr_assert_leq(moves, 10, "%zu moves in %zu growth steps", moves, steps);
	labyrinth_free(NULL, p);
}

/* A large class whose wing is full spills into the wings of bigger classes
 * (the scale test's 200,000 blocks of up to 1 MiB filled the top one). */
Test(api, a_full_large_wing_spills_into_bigger_classes)
{
	labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 64 << 20 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	int n = 0;
	while (n < 200 && labyrinth_malloc(lab, 1 << 20))
		n++;
	cr_assert_eq(n, 200, "only %d blocks of 1 MiB in wings of 64 MiB", n);
	labyrinth_close(lab);
}

Test(api, realloc_null_and_zero)
{
	void *p = labyrinth_realloc(NULL, NULL, 40);
	cr_assert_not_null(p);
	cr_assert_null(labyrinth_realloc(NULL, p, 0));
}

Test(api, usable_size_at_least_requested)
{
	cr_assert_eq(labyrinth_usable_size(NULL, NULL), 0);
	for (size_t size = 0; size < 300000; size = size * 2 + 3) {
		void *p = labyrinth_malloc(NULL, size);
		size_t u = labyrinth_usable_size(NULL, p);
		cr_assert_geq(u, size);
		memset(p, 7, u);        /* all of it is really usable */
		labyrinth_free(NULL, p);
	}
}

Test(api, out_of_memory_sets_enomem)
{
	errno = 0;
	cr_assert_null(labyrinth_malloc(NULL, SIZE_MAX));
	cr_assert_eq(errno, ENOMEM);
	errno = 0;
	cr_assert_null(labyrinth_malloc(NULL, SIZE_MAX / 2));
	cr_assert_eq(errno, ENOMEM);
	errno = 0;
	cr_assert_null(labyrinth_calloc(NULL, SIZE_MAX / 2, 3));
	cr_assert_eq(errno, ENOMEM);
	errno = 0;
	cr_assert_null(labyrinth_aligned_alloc(NULL, 64, SIZE_MAX - 10));
	cr_assert_eq(errno, ENOMEM);
	char *p = labyrinth_malloc(NULL, 32);
	strcpy(p, "intact");
	errno = 0;
	cr_assert_null(labyrinth_realloc(NULL, p, SIZE_MAX));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_str_eq(p, "intact");
	labyrinth_free(NULL, p);
}

static int by_pointer(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

Test(api, malloc_zero_gives_unique_pointers)
{
	enum { N = 3000 };
	static void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_malloc(NULL, 0);
		cr_assert_not_null(p[i]);
	}
	qsort(p, N, sizeof p[0], by_pointer);
	for (int i = 0; i + 1 < N; i++)
		cr_assert_neq(p[i], p[i + 1], "malloc(0) returned %p twice", p[i]);
	for (int i = 0; i < N; i++)
		labyrinth_free(NULL, p[i]);
}

Test(api, calloc_zeroes_reused_memory)
{
	for (int round = 0; round < 200; round++) {
		size_t size = (size_t)(round % 20) * 48 + 1;
		unsigned char *p = labyrinth_malloc(NULL, size);
		memset(p, 0xff, size);
		labyrinth_free(NULL, p);
		unsigned char *q = labyrinth_calloc(NULL, 1, size);
		for (size_t i = 0; i < size; i++)
			cr_assert_eq(q[i], 0, "calloc byte %zu not zero", i);
		labyrinth_free(NULL, q);
	}
	unsigned char *big = labyrinth_calloc(NULL, 3, 100000);
	for (size_t i = 0; i < 300000; i += 4096)
		cr_assert_eq(big[i], 0);
	labyrinth_free(NULL, big);
}

Test(api, private_labyrinths_do_not_share_pages)
{
	labyrinth_t *a = open_private(0), *b = open_private(0);
	char *pa = labyrinth_malloc(a, 100), *pb = labyrinth_malloc(b, 100);
	cr_assert_not_null(pa);
	cr_assert_not_null(pb);
	labyrinth_stats_t sa, sb;
	labyrinth_get_stats(a, &sa);
	labyrinth_get_stats(b, &sb);
	cr_assert_eq(sa.allocations, 1);
	cr_assert_eq(sb.allocations, 1);
	uintptr_t da = (uintptr_t)pa > (uintptr_t)pb ? (uintptr_t)pa - (uintptr_t)pb
						   : (uintptr_t)pb - (uintptr_t)pa;
	cr_assert_geq(da, sa.maze_bytes > sb.maze_bytes ? sb.maze_bytes : sa.maze_bytes,
		      "two labyrinths' rooms are closer than a maze apart");
	labyrinth_free(a, pa);
	labyrinth_free(b, pb);
	labyrinth_close(a);
	labyrinth_close(b);
}

Test(api, close_unmaps_everything)
{
	labyrinth_t *lab = open_private(0);
	char *p = labyrinth_malloc(lab, 64);
	*p = 1;
	labyrinth_close(lab);
	cr_assert(read_faults(p), "memory of a closed labyrinth is still readable");
}

Test(api, stats_balance_and_trim)
{
	labyrinth_t *lab = open_private(0);
	void *p[500];
	for (int i = 0; i < 500; i++)
		p[i] = labyrinth_malloc(lab, (size_t)(i % 7) * 100 + 1);
	for (int i = 0; i < 500; i++)
		labyrinth_free(lab, p[i]);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.allocations, 500);
	cr_assert_eq(s.frees, 500);
	cr_assert_eq(s.live_bytes, 0);
	cr_assert_gt(s.peak_live_bytes, 0);
	/* Trim keeps the quarantined slots, and their rooms; once they left
	 * it, it closes every room but those of what the quarantine holds. */
	labyrinth_trim(lab);
	cr_assert_gt(rooms_open_but_flush(lab), 0, "trim released quarantined slots");
	flush_quarantine(lab);
	labyrinth_trim(lab);
	cr_assert_eq(rooms_open_but_flush(lab), 0, "trim left %llu rooms",
		     rooms_open_but_flush(lab));
	labyrinth_close(lab);
}

/* Each refusal of labyrinth_open() says which option, its value and what
 * is accepted, in one line, and sets an errno of its kind. */
struct bad_open {
	labyrinth_options_t o;
	int err;
	const char *says;
};

static void open_bad(void *arg)
{
	struct bad_open *b = arg;
	errno = 0;
	if (labyrinth_open(&b->o) || errno != b->err)
		_exit(1);
	_exit(0);
}

Test(api, open_rejects_bad_options_each_with_its_reason)
{
	const size_t sz = sizeof(labyrinth_options_t);
	struct bad_open bad[] = {
		{ { .size = 4 }, EINVAL, ".size = 4: set it to sizeof(labyrinth_options_t)" },
		{ { .size = sz, .flags = 0x40 }, EINVAL, ".flags = 64: only LAB_OPEN_PREFAULT" },
		{ { .size = sz, .guard = 7 }, EINVAL, ".guard = 7: LAB_GUARD_DEFAULT" },
		{ { .size = sz, .arenas = 1000 }, ERANGE, ".arenas = 1000: at most 64" },
		{ { .size = sz, .flags = LAB_OPEN_MLOCK }, EINVAL,
		  "LAB_OPEN_MLOCK without LAB_OPEN_PREFAULT" },
		{ { .size = sz, .flags = LAB_OPEN_PREFAULT }, EINVAL,
		  "LAB_OPEN_PREFAULT without .cap_bytes, which it needs" },
		{ { .size = sz, .flags = LAB_OPEN_PREFAULT, .cap_bytes = 1000 }, ERANGE,
		  ".cap_bytes = 1000: LAB_OPEN_PREFAULT needs a cap of at least a page" },
		{ { .size = sz, .flags = LAB_OPEN_PREFAULT, .cap_bytes = 8192, .reserve_pages = 3 },
		  ERANGE, ".reserve_pages = 3: more pages than .cap_bytes holds" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct outcome out = run_in_child(open_bad, &bad[i]);
		cr_expect(out.signal == 0 && out.exit_code == 0, "case %zu: not refused with errno %d", i,
			  bad[i].err);
		cr_expect(strstr(out.err, bad[i].says), "case %zu: '%s' not in: %s", i, bad[i].says,
			  out.err);
		cr_expect(strchr(out.err, '\n') == out.err + strlen(out.err) - 1,
			  "case %zu: not one line: %s", i, out.err);
	}
}

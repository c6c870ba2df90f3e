/*
 * ops harness: the input is a program of allocator operations, run against
 * two private labyrinths by the main thread and two worker threads; after
 * every step the harness checks what the allocator promises:
 *
 *   - live blocks never overlap, and every byte written reads back intact;
 *   - usable size >= requested, calloc gives zeros, alignment is honoured;
 *   - stats balance: allocations - frees == the blocks the harness holds;
 *   - a block's generation only grows, at an address, across its lives;
 *   - misuse (double free, interior or foreign pointer, stale realloc or
 *     usable size) is reported exactly once and changes nothing.
 *
 * LABYRINTH_ON_ERROR=log makes reports return, so misuse can be planted
 * and the program goes on; fuzz_setup() sets it before the first call.
 *
 * Encoding: one opcode byte, then its operands. Low 4 bits: the operation.
 * Bit 4: which labyrinth. Bits 5-6: which thread runs it (0 and 3: main).
 * Missing operand bytes read as zero, so every input is a valid program.
 */
#include "fuzz.h"
#include "labyrinth.h"
#include "lab.h"
#include "arena.h"
#include "report.h"
#include "sweep.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 64                /* blocks the program can name */
#define GRAVES 64               /* freed pointers it remembers */
#define MAX_STEPS 2000
#define SEEN 4096               /* addresses whose generation is remembered */

enum op {
	OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_ALIGNED, OP_USABLE, OP_WRITE,
	OP_CHECK, OP_DOUBLE_FREE, OP_INTERIOR_FREE, OP_FOREIGN_FREE, OP_STALE_USABLE,
	OP_TRIM, OP_STALE_REALLOC, OP_SIZED_FREE,
	/* The last opcode of four bits, kept for the next operation (widen the
	 * opcode when more are needed); until then a second canary sweep. */
	OP_SPARE,
};

struct block {
	char *p;
	size_t size;            /* requested */
	uint8_t fill;           /* every byte of [p, p+size) is fill ^ (i & 0xff) */
	uint8_t lab;
};

struct input {
	const uint8_t *data;
	size_t len, at;
};

static labyrinth_t *heaps[2];
static struct block blocks[SLOTS];
static struct block graves[GRAVES];
static unsigned grave_next;
static uint64_t live_count[2];
static struct { uintptr_t addr; uint64_t gen; } seen[SEEN];

/* ---- reading the program ---------------------------------------------- */

static uint8_t byte(struct input *in)
{
	return in->at < in->len ? in->data[in->at++] : 0;
}

static uint16_t word(struct input *in)
{
	uint16_t lo = byte(in);
	return (uint16_t)(lo | byte(in) << 8);
}

/* Sizes that sit on the allocator's boundaries, then small, mid and large. */
static size_t size_operand(struct input *in)
{
	static const size_t edges[] = {
		0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 127, 128, 129, 4095, 4096, 4097,
		8191, 12288, 16382, 16383, 16384, 16385, 20480, 20481, 65536, 1 << 20,
		(1 << 20) + 1, 3 << 20, 4095 * 16, 160, 640, 2560,
	};
	uint8_t b = byte(in);
	switch (b >> 6) {
	case 0: return b & 63;
	case 1: return word(in) % 17000;
	case 2: return (size_t)word(in) * 16 + (b & 15);
	default: return edges[b % (sizeof edges / sizeof edges[0])];
	}
}

/* ---- the harness's own picture of the heap ------------------------------ */

static void fill(struct block *b)
{
	for (size_t i = 0; i < b->size; i++)
		b->p[i] = (char)(b->fill ^ (i & 0xff));
}

static void verify(const struct block *b, const char *when)
{
	for (size_t i = 0; i < b->size; i++)
		if ((uint8_t)b->p[i] != (uint8_t)(b->fill ^ (i & 0xff)))
			fuzz_fail("%s: byte %zu of %p (%zu bytes) changed", when, i, (void *)b->p,
				  b->size);
}

static void no_overlap(const char *p, size_t usable)
{
	size_t span = usable ? usable : 1;
	for (unsigned i = 0; i < SLOTS; i++) {
		const struct block *o = &blocks[i];
		size_t ospan = o->size ? o->size : 1;
		if (o->p && p < o->p + ospan && o->p < p + span)
			fuzz_fail("new block %p+%zu overlaps live %p+%zu", (void *)p, span,
				  (void *)o->p, ospan);
	}
}

/* The generation at p must be above every earlier one seen there. */
static void generation_grew(unsigned lab, const void *p)
{
	uint64_t gen = lab_generation(heaps[lab], p);
	uintptr_t a = (uintptr_t)p;
	unsigned h = (unsigned)((a >> 4) * 0x9e3779b97f4a7c15ULL >> 52) % SEEN;
	for (unsigned k = 0; k < SEEN; k++, h = (h + 1) % SEEN) {
		if (seen[h].addr == a) {
			if (gen <= seen[h].gen)
				fuzz_fail("generation at %p went from %llu to %llu", p,
					  (unsigned long long)seen[h].gen, (unsigned long long)gen);
			seen[h].gen = gen;
			return;
		}
		if (!seen[h].addr) {
			seen[h].addr = a;
			seen[h].gen = gen;
			return;
		}
	}
}

/* A new block (or one realloc moved) joins the picture; a block resized in
 * place keeps its generation, so `moved` says whether it must grow. */
static void adopt_block(unsigned slot, unsigned lab, char *p, size_t size, uint8_t seed,
			bool moved)
{
	size_t usable = labyrinth_usable_size(heaps[lab], p);
	if (usable < size)
		fuzz_fail("usable size %zu < requested %zu", usable, size);
	no_overlap(p, size);
	if (moved)
		generation_grew(lab, p);
	blocks[slot] = (struct block){ .p = p, .size = size, .fill = seed, .lab = (uint8_t)lab };
	fill(&blocks[slot]);
	live_count[lab]++;
}

static void adopt(unsigned slot, unsigned lab, char *p, size_t size, uint8_t seed)
{
	adopt_block(slot, lab, p, size, seed, true);
}

static void bury(struct block *b)
{
	graves[grave_next++ % GRAVES] = *b;
	live_count[b->lab]--;
	b->p = NULL;
}

/* A remembered freed pointer that no live block covers now, or NULL. */
static struct block *stale(uint8_t k)
{
	struct block *g = &graves[k % GRAVES];
	if (!g->p)
		return NULL;
	for (unsigned i = 0; i < SLOTS; i++) {
		const struct block *o = &blocks[i];
		if (o->p && g->p >= o->p && g->p <= o->p + (o->size ? o->size : 1))
			return NULL;    /* the address came back: no longer stale */
	}
	return g;
}

static void expect_reports(uint64_t before, uint64_t n, const char *what)
{
	uint64_t got = report_count() - before;
	if (got != n)
		fuzz_fail("%s: %llu reports, expected %llu", what, (unsigned long long)got,
			  (unsigned long long)n);
}


/* What the C standard promises for a request of this size (see guarded.c). */
static size_t min_align(size_t size)
{
	size_t a = 1;
	while (a < size && a < 16)
		a <<= 1;
	return a;
}

/* ---- the operations ------------------------------------------------------ */

struct job {
	enum op op;
	unsigned lab, slot;
	uint8_t k, seed;
	size_t size, n, align;
};

static void free_block(struct block *b)
{
	verify(b, "before free");
	labyrinth_free(heaps[b->lab], b->p);
	generation_grew(b->lab, b->p);
	bury(b);
}

static void do_malloc(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	if (b->p)
		free_block(b);
	char *p = labyrinth_malloc(heaps[j->lab], j->size);
	if (!p)
		fuzz_fail("malloc(%zu) gave NULL", j->size);
	if ((uintptr_t)p % min_align(j->size))
		fuzz_fail("malloc(%zu) gave %p, not aligned", j->size, (void *)p);
	adopt(j->slot, j->lab, p, j->size, j->seed);
}

static void do_calloc(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	if (b->p)
		free_block(b);
	size_t n = j->n == 255 ? SIZE_MAX / 2 : j->n;   /* 255: n * size overflows */
	errno = 0;
	char *p = labyrinth_calloc(heaps[j->lab], n, j->size);
	if (n == SIZE_MAX / 2 && j->size > 2) {
		if (p || errno != ENOMEM)
			fuzz_fail("calloc overflow gave %p, errno %d", (void *)p, errno);
		return;
	}
	size_t total = n * j->size;
	if (!p)
		fuzz_fail("calloc(%zu, %zu) gave NULL", n, j->size);
	for (size_t i = 0; i < total; i++)
		if (p[i])
			fuzz_fail("calloc byte %zu of %zu is %d", i, total, p[i]);
	adopt(j->slot, j->lab, p, total, j->seed);
}

static void do_realloc(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	if (!b->p) {
		char *p = labyrinth_realloc(heaps[j->lab], NULL, j->size);
		if (!p)
			fuzz_fail("realloc(NULL, %zu) gave NULL", j->size);
		adopt(j->slot, j->lab, p, j->size, j->seed);
		return;
	}
	verify(b, "before realloc");
	struct block old = *b;
	char *p = labyrinth_realloc(heaps[b->lab], b->p, j->size);
	if (j->size == 0) {
		if (p)
			fuzz_fail("realloc(p, 0) gave %p", (void *)p);
		bury(b);
		return;
	}
	if (!p)
		fuzz_fail("realloc(%zu -> %zu) gave NULL", old.size, j->size);
	b->size = old.size < j->size ? old.size : j->size;
	b->p = p;
	verify(b, "after realloc");
	b->p = NULL;
	live_count[old.lab]--;
	if (p != old.p)
		graves[grave_next++ % GRAVES] = old;
	adopt_block(j->slot, old.lab, p, j->size, j->seed, p != old.p);
}

static void do_aligned(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	if (b->p)
		free_block(b);
	errno = 0;
	char *p = labyrinth_aligned_alloc(heaps[j->lab], j->align, j->size);
	if (j->align & (j->align - 1)) {
		if (p || errno != EINVAL)
			fuzz_fail("aligned_alloc(%zu) gave %p, errno %d", j->align, (void *)p, errno);
		return;
	}
	if (!p || (uintptr_t)p % j->align)
		fuzz_fail("aligned_alloc(%zu, %zu) gave %p", j->align, j->size, (void *)p);
	adopt(j->slot, j->lab, p, j->size, j->seed);
}

/* Misuse of the allocator, each reported exactly once and changing nothing. */
static void do_misuse(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	struct block *g = stale(j->k);
	uint64_t before = report_count();
	switch (j->op) {
	case OP_DOUBLE_FREE:
		if (!g)
			return;
		labyrinth_free(heaps[g->lab], g->p);
		return expect_reports(before, 1, "double free");
	case OP_INTERIOR_FREE:
		if (!b->p || b->size < 2)
			return;
		labyrinth_free(heaps[b->lab], b->p + 1 + j->n % (b->size - 1));
		return expect_reports(before, 1, "interior free");
	case OP_FOREIGN_FREE:
		labyrinth_free(heaps[j->lab], b->p && b->lab != j->lab ? b->p : (char *)&blocks[1]);
		return expect_reports(before, 1, "foreign free");
	case OP_STALE_USABLE:
		if (!g)
			return;
		if (labyrinth_usable_size(heaps[g->lab], g->p) != 0)
			fuzz_fail("usable size of a freed pointer was not 0");
		return expect_reports(before, 1, "stale usable size");
	case OP_STALE_REALLOC:
		if (!g)
			return;
		errno = 0;
		if (labyrinth_realloc(heaps[g->lab], g->p, j->size ? j->size : 1) || errno != EINVAL)
			fuzz_fail("realloc of a freed pointer did not fail with EINVAL");
		return expect_reports(before, 1, "stale realloc");
	default:
		return;
	}
}

static void do_sized_free(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	if (!b->p)
		return;
	verify(b, "before sized free");
	bool right = j->seed & 1;
	uint64_t before = report_count();
	lab_free_sized(heaps[b->lab], b->p, right ? b->size : b->size + 1);
	expect_reports(before, right ? 0 : 1, "sized free");
	generation_grew(b->lab, b->p);
	bury(b);
}

static void do_check(const struct job *j)
{
	for (unsigned i = 0; i < SLOTS; i++)
		if (blocks[i].p)
			verify(&blocks[i], "check");
	uint64_t before = report_count();
	if (labyrinth_check(heaps[j->lab]) != 0)
		fuzz_fail("the canary sweep found damage the program did not do");
	expect_reports(before, 0, "sweep");
}

static void run_job(const struct job *j)
{
	struct block *b = &blocks[j->slot];
	switch (j->op) {
	case OP_MALLOC: return do_malloc(j);
	case OP_CALLOC: return do_calloc(j);
	case OP_REALLOC: return do_realloc(j);
	case OP_FREE:
		if (b->p)
			free_block(b);
		return;
	case OP_ALIGNED: return do_aligned(j);
	case OP_USABLE:
		if (b->p && labyrinth_usable_size(heaps[b->lab], b->p) < b->size)
			fuzz_fail("usable size shrank below the request");
		return;
	case OP_WRITE:
		if (b->p) {
			verify(b, "before write");
			b->fill = j->seed;
			fill(b);
		}
		return;
	case OP_TRIM:
		labyrinth_trim(heaps[j->lab]);
		return;
	case OP_SIZED_FREE: return do_sized_free(j);
	case OP_CHECK:
	case OP_SPARE: return do_check(j);
	default: return do_misuse(j);
	}
}

static struct job decode(struct input *in)
{
	uint8_t code = byte(in);
	struct job j = { .op = (enum op)(code & 15), .lab = (code >> 4) & 1 };
	j.slot = byte(in) % SLOTS;
	switch (j.op) {
	case OP_MALLOC: case OP_REALLOC:
		j.size = size_operand(in);
		j.seed = byte(in);
		break;
	case OP_CALLOC:
		j.n = byte(in);
		j.size = j.n == 255 ? 3 + (size_t)(byte(in) % 61) : size_operand(in) / (j.n ? j.n : 1);
		j.seed = byte(in);
		break;
	case OP_ALIGNED: {
		uint8_t e = byte(in);
		j.align = e & 0x80 ? (size_t)(e & 0x7f) * 8 + 24 : (size_t)1 << (e % 16);
		j.size = size_operand(in);
		j.seed = byte(in);
		break;
	}
	case OP_INTERIOR_FREE: j.n = word(in); break;
	case OP_STALE_REALLOC: j.k = byte(in); j.size = size_operand(in); break;
	default: j.k = byte(in); j.seed = j.k; break;
	}
	return j;
}

/* ---- threads: a job handed to a worker, the main thread waiting ----------- */

struct worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct job *job;  /* set by main, cleared by the worker when done */
};

static struct worker workers[2];

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->job)
			pthread_cond_wait(&w->cond, &w->lock);
		run_job(w->job);
		w->job = NULL;
		pthread_cond_broadcast(&w->cond);
	}
	return NULL;
}

/* Steps run one at a time whichever thread runs them: a program means one
 * thing, so a finding replays; the threads are there for their arenas. */
static void start_workers(void)
{
	static bool started;
	if (started)
		return;
	for (unsigned i = 0; i < 2; i++) {
		pthread_mutex_init(&workers[i].lock, NULL);
		pthread_cond_init(&workers[i].cond, NULL);
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			fuzz_fail("cannot start a worker thread");
	}
	started = true;
}

static void run_on(unsigned t, const struct job *j)
{
	if (t == 0 || t == 3)
		return run_job(j);
	/* Started at first use, not in fuzz_setup(): AFL++'s fork server forks
	 * after setup, and threads do not survive a fork. */
	start_workers();
	struct worker *w = &workers[t - 1];
	pthread_mutex_lock(&w->lock);
	w->job = j;
	pthread_cond_broadcast(&w->cond);
	while (w->job)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* ---- per input ------------------------------------------------------------ */

static void stats_balance(void)
{
	for (unsigned l = 0; l < 2; l++) {
		labyrinth_stats_t s;
		labyrinth_get_stats(heaps[l], &s);
		if (s.allocations - s.frees != live_count[l])
			fuzz_fail("labyrinth %u: %llu allocations - %llu frees, but %llu live", l,
				  (unsigned long long)s.allocations, (unsigned long long)s.frees,
				  (unsigned long long)live_count[l]);
		uint64_t bytes = 0;
		for (unsigned i = 0; i < SLOTS; i++)
			if (blocks[i].p && blocks[i].lab == l)
				bytes += blocks[i].size;
		if (s.live_bytes < bytes)
			fuzz_fail("labyrinth %u: live bytes %llu < %llu requested", l,
				  (unsigned long long)s.live_bytes, (unsigned long long)bytes);
	}
}

void fuzz_setup(void)
{
	/* Reports return instead of aborting, so misuse can be planted. Small
	 * quarantines, so that addresses come back within one program. */
	setenv("LABYRINTH_ON_ERROR", "log", 1);
	setenv("LABYRINTH_QUARANTINE", "8", 0);
	setenv("LABYRINTH_LARGE_QUARANTINE", "4", 0);
}

void fuzz_one(const uint8_t *data, size_t len)
{
	labyrinth_options_t o = { .size = sizeof o, .wing_bytes = 64UL << 20 };
	for (unsigned l = 0; l < 2; l++)
		if (!(heaps[l] = labyrinth_open(&o)))
			fuzz_fail("labyrinth_open failed");
	memset(blocks, 0, sizeof blocks);
	memset(graves, 0, sizeof graves);
	memset(seen, 0, sizeof seen);
	live_count[0] = live_count[1] = 0;
	grave_next = 0;
	struct input in = { .data = data, .len = len };
	for (unsigned step = 0; step < MAX_STEPS && in.at < in.len; step++) {
		uint8_t t = (uint8_t)(in.at < in.len ? in.data[in.at] >> 5 & 3 : 0);
		struct job j = decode(&in);
		run_on(t, &j);
		stats_balance();
	}
	for (unsigned i = 0; i < SLOTS; i++)
		if (blocks[i].p)
			verify(&blocks[i], "at the end");
	for (unsigned l = 0; l < 2; l++)
		labyrinth_close(heaps[l]);
}

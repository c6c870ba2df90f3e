/*
 * tcache: per-thread batches and quarantines for the default labyrinth; see
 * tcache.h. Caches live in their own mappings, outside the maze and behind
 * guard pages, like all metadata; they are never unmapped: a thread that
 * exits leaves its cache (with its quarantine still full) to the next new
 * thread, so the quarantine's delay survives thread churn.
 */
#include "tcache.h"
#include "generation.h"
#include "os.h"
#include "report.h"
#include "room.h"
#include "slot.h"

#include <pthread.h>
#include <string.h>

/* A batch holds about this many bytes of slots: many small ones, few big. */
#define BATCH_BYTES 8192

__thread struct thread_cache *tcache_self __attribute__((tls_model("initial-exec")));
static __thread bool tcache_gone __attribute__((tls_model("initial-exec")));

static pthread_key_t exit_key;
static bool exit_key_ok;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_cache *idle;               /* caches of exited threads */
static struct thread_cache *_Atomic all;        /* every cache: push only */
static char *chunk_next, *chunk_end;            /* unused caches of the last chunk */

static size_t cache_bytes(const struct labyrinth *lab)
{
	size_t n = sizeof(struct thread_cache) + lab->prot.quarantine * sizeof(struct slot_ref);
	return (n + 63) & ~(size_t)63;
}

/* Under pool_lock: room for one new cache, carved from a guarded chunk. */
static struct thread_cache *cache_carve(struct labyrinth *lab)
{
	size_t bytes = cache_bytes(lab);
	if (chunk_next && chunk_next + bytes <= chunk_end) {
		struct thread_cache *tc = (struct thread_cache *)chunk_next;
		chunk_next += bytes;
		return tc;
	}
	size_t inner = bytes < (64UL << 10) ? (64UL << 10) / bytes * bytes : bytes;
	inner = (inner + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	char *mem = os_reserve(inner + 2 * PAGE_SIZE);
	if (!mem)
		return NULL;
	if (!os_protect_rw(mem + PAGE_SIZE, inner)) {
		os_unmap(mem, inner + 2 * PAGE_SIZE);
		return NULL;
	}
	chunk_next = mem + PAGE_SIZE + bytes;
	chunk_end = mem + PAGE_SIZE + inner;
	return (struct thread_cache *)(mem + PAGE_SIZE);
}

static uint16_t batch_cap(struct labyrinth *lab, unsigned cls)
{
	size_t n = BATCH_BYTES / lab->maze.wings[cls].class_size;
	return (uint16_t)(n < 2 ? 2 : n > BATCH_MAX ? BATCH_MAX : n);
}

/* A forked child's inherited batch goes back to its rooms, and the batch
 * may hold slots again; the bytes of rooms closed. */
static size_t batch_return_inherited(struct labyrinth *lab, struct batch *b, unsigned cls)
{
	size_t closed = slot_put_back_all(lab, b->ref, &b->inherited);
	b->cap = batch_cap(lab, cls);
	return closed;
}

/* A cache a thread starts with, new or left by an exited thread, draws its
 * own generator: it never goes on with another thread's stream. */
static void cache_rekey(struct thread_cache *tc, struct arena *a)
{
	pthread_mutex_lock(&a->lock);
	rng_derive(&tc->rng, &a->rng);
	pthread_mutex_unlock(&a->lock);
	tc->gen = generation_now();
}

/* An empty cache: no batch, no quarantine, nothing to release. */
static void cache_clear(struct labyrinth *lab, struct thread_cache *tc)
{
	quarantine_init(&tc->quarantine, (struct slot_ref *)(tc + 1), lab->prot.quarantine);
	tc->nrelease = 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		tc->batch[c].n = tc->batch[c].inherited = 0;
		tc->batch[c].cap = batch_cap(lab, c);
	}
	tc->orphan = false;
}

static void cache_init(struct labyrinth *lab, struct thread_cache *tc)
{
	tc->lab = lab;
	cache_clear(lab, tc);
	struct thread_cache *head = atomic_load(&all);
	do
		atomic_store_explicit(&tc->next, head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak(&all, &head, tc));
}

static uint32_t at_most(uint32_t n, uint32_t max)
{
	return n < max ? n : max;
}

/*
 * A cache whose thread did not survive a fork: its lists may disagree
 * with the maze index (see slot_salvage_all), so every slot they name goes
 * back only where the index agrees, and the cache starts over empty.
 */
static size_t cache_salvage(struct labyrinth *lab, struct thread_cache *tc)
{
	struct quarantine *q = &tc->quarantine;
	size_t closed = 0;
	for (uint32_t i = 0; i < at_most(q->count, q->nfifo); i++) {
		struct slot_ref ref = quarantine_leave(q, &lab->maze, q->fifo[(q->head + i) % q->nfifo]);
		closed += slot_salvage_all(lab, &ref, 1, true);
	}
	struct slot_ref ref;
	for (uint32_t i = 0; i < q->nstage; i++) {
		if (!quarantine_stage_slot(q->stage[i], &ref))
			continue;
		ref = quarantine_leave(q, &lab->maze, ref);
		closed += slot_salvage_all(lab, &ref, 1, true);
		q->stage[i].cell = 0;   /* cache_clear leaves the stage as it is */
	}
	closed += slot_salvage_all(lab, tc->release, at_most(tc->nrelease, RELEASE_MAX), true);
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct batch *b = &tc->batch[c];
		closed += slot_salvage_all(lab, b->ref, at_most(b->n + b->inherited, BATCH_MAX),
					   false);
	}
	cache_clear(lab, tc);
	return closed;
}

struct thread_cache *tcache_attach(struct labyrinth *lab, struct arena *a)
{
	if (!lab->is_default || tcache_gone || tcache_self || !exit_key_ok)
		return NULL;
	pthread_mutex_lock(&pool_lock);
	struct thread_cache *tc = idle;
	if (tc)
		idle = tc->next_idle;
	else if ((tc = cache_carve(lab)) != NULL)
		tc->lab = NULL;
	pthread_mutex_unlock(&pool_lock);
	if (!tc)
		return NULL;
	if (!tc->lab)
		cache_init(lab, tc);
	else if (tc->orphan)
		cache_salvage(lab, tc);
	cache_rekey(tc, a);
	tc->arena = a;
	tcache_self = tc;
	/* Without the exit hook the cache would be lost with the thread. */
	if (pthread_setspecific(exit_key, tc) != 0) {
		tcache_self = NULL;
		tcache_gone = true;
		return NULL;
	}
	return tc;
}

bool tcache_batch_fill(struct labyrinth *lab, struct thread_cache *tc, unsigned cls)
{
	struct batch *b = &tc->batch[cls];
	struct arena *a = tc->arena;
	if (b->inherited)
		batch_return_inherited(lab, b, cls);
	pthread_mutex_lock(&a->lock);
	rng_renew_if_stale(&a->rng);    /* a raw clone's child: not its parent's picks */
	b->n = (uint16_t)slot_take(lab, a, cls, b->ref, b->cap);
	pthread_mutex_unlock(&a->lock);
	return b->n != 0;
}

size_t tcache_release_flush(struct labyrinth *lab, struct thread_cache *tc)
{
	return slot_release_all(lab, tc->release, &tc->nrelease);
}

static size_t release_one(struct labyrinth *lab, struct thread_cache *tc, struct slot_ref ref)
{
	size_t closed = tc->nrelease == RELEASE_MAX ? tcache_release_flush(lab, tc) : 0;
	tc->release[tc->nrelease] = ref;
	tcache_order();
	tc->nrelease++;
	return closed;
}

/* Give the batches' slots back to their rooms: taken from tc->arena, or
 * recycled from the quarantine, so of any arena. */
static size_t batches_put_back(struct labyrinth *lab, struct thread_cache *tc)
{
	size_t closed = 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct batch *b = &tc->batch[c];
		closed += slot_put_back_all(lab, b->ref, &b->n);
		if (b->inherited)
			closed += batch_return_inherited(lab, b, c);
	}
	return closed;
}

/* Everything the cache holds goes back to the rooms, the quarantine too. */
static size_t cache_empty(struct labyrinth *lab, struct thread_cache *tc)
{
	struct slot_ref ref;
	size_t closed = tcache_release_flush(lab, tc);
	while (quarantine_pop(&tc->quarantine, &ref))
		closed += release_one(lab, tc, quarantine_leave(&tc->quarantine, &lab->maze, ref));
	return closed + tcache_release_flush(lab, tc) + batches_put_back(lab, tc);
}

/* Thread exit: the batches go back now; the quarantine waits in the pool. */
static void tcache_exit(void *arg)
{
	struct thread_cache *tc = arg;
	tcache_release_flush(tc->lab, tc);
	batches_put_back(tc->lab, tc);
	tcache_self = NULL;
	tcache_gone = true;
	pthread_mutex_lock(&pool_lock);
	tc->next_idle = idle;
	idle = tc;
	pthread_mutex_unlock(&pool_lock);
}

size_t tcache_trim(struct labyrinth *lab)
{
	if (!lab->is_default)
		return 0;
	size_t closed = 0;
	if (tcache_self && tcache_self->lab == lab)
		closed += cache_empty(lab, tcache_self);
	pthread_mutex_lock(&pool_lock);
	struct thread_cache *list = idle;
	idle = NULL;
	pthread_mutex_unlock(&pool_lock);
	/* Exited threads' caches are no thread's now; empty them unlocked. */
	struct thread_cache *last = NULL;
	for (struct thread_cache *tc = list; tc; tc = tc->next_idle) {
		closed += tc->orphan ? cache_salvage(lab, tc) : cache_empty(lab, tc);
		last = tc;
	}
	if (last) {
		pthread_mutex_lock(&pool_lock);
		last->next_idle = idle;
		idle = list;
		pthread_mutex_unlock(&pool_lock);
	}
	return closed;
}

void tcache_counts(struct labyrinth *lab, uint64_t *allocs, uint64_t *frees, uint64_t *live,
		   uint64_t *quarantined)
{
	for (struct thread_cache *tc = atomic_load(&all); tc;
	     tc = atomic_load_explicit(&tc->next, memory_order_relaxed)) {
		if (tc->lab != lab)
			continue;
		*allocs += atomic_load_explicit(&tc->allocs, memory_order_relaxed);
		*frees += atomic_load_explicit(&tc->frees, memory_order_relaxed);
		*live += atomic_load_explicit(&tc->live_bytes, memory_order_relaxed);
		if (quarantined)
			*quarantined += quarantine_held(&tc->quarantine);
	}
}

void tcache_fork_lock(void)
{
	pthread_mutex_lock(&pool_lock);
}

void tcache_fork_unlock(void)
{
	pthread_mutex_unlock(&pool_lock);
}

/*
 * The first malloc of the forking thread's cache in a child (or in a raw
 * clone's child: the generation changed either way). Done here rather than
 * in the fork handler, so that a child that only execs copies none of the
 * cache's pages: a new generator, and the batches are marked inherited,
 * since the parent and every sibling would hand out the same slots in the
 * same order; each goes back to its rooms at its class's next refill, so a
 * child writes the records of the classes it uses, not of every class its
 * parent had a batch of (300 bash subshells: 22 fewer page faults each).
 * Until then its frees draw quarantine places from the generator's
 * buffered words, as the parent's would.
 */
void tcache_forked(struct labyrinth *lab, struct thread_cache *tc)
{
	(void)lab;
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		struct batch *b = &tc->batch[c];
		if (b->n) {
			b->inherited = b->n;
			b->n = b->cap = 0;
		}
	}
	cache_rekey(tc, tc->arena);
}

/*
 * Only the forking thread lives on in the child. Every other cache,
 * whether its thread had exited or not, is idle now, and an orphan: the
 * next thread to adopt it, or labyrinth_trim, salvages its slots first.
 */
void tcache_fork_child(void)
{
	struct thread_cache *self = tcache_self;
	idle = NULL;
	for (struct thread_cache *tc = atomic_load(&all); tc;
	     tc = atomic_load_explicit(&tc->next, memory_order_relaxed)) {
		if (tc == self)
			continue;
		tc->orphan = true;
		tc->next_idle = idle;
		idle = tc;
	}
}

/* Made at load time, not inside malloc. */
__attribute__((constructor)) static void tcache_register_exit(void)
{
	exit_key_ok = pthread_key_create(&exit_key, tcache_exit) == 0;
}

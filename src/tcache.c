/*
 * tcache: per-thread batches and quarantines for the default labyrinth; see
 * tcache.h. Caches live in their own mappings, outside the maze and behind
 * guard pages, like all metadata; they are never unmapped: a thread that
 * exits leaves its cache (with its quarantine still full, its resident
 * pages given back) to the next new thread, so the quarantine's delay
 * survives thread churn. A thread finds its cache through tcache_self
 * (static TLS) only: no pointer to a cache is ever kept where the heap's
 * own memory is, so no overwrite of a heap block can name a cache.
 */
#include "tcache.h"
#include "generation.h"
#include "os.h"
#include "report.h"
#include "room.h"
#include "slot.h"

#include <pthread.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A batch holds about this many bytes of slots: many small ones, few big. */
#define BATCH_BYTES 8192

__thread struct thread_cache *tcache_self __attribute__((tls_model("initial-exec")));
__thread struct thread_cache *tcache_fast __attribute__((tls_model("initial-exec")));
__thread struct thread_cache *tcache_fast_malloc __attribute__((tls_model("initial-exec")));
static __thread bool tcache_gone __attribute__((tls_model("initial-exec")));
static __thread bool tcache_hooked __attribute__((tls_model("initial-exec")));

bool tcache_exiting(void)
{
	return tcache_gone;
}

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_cache *idle;               /* caches of exited threads */
static struct thread_cache *blank;              /* caches closed labyrinths left */
static struct thread_cache *_Atomic all;        /* every cache: push only */
static char *chunk_next, *chunk_end;            /* unused caches of the last chunk */

/* Every cache ever made: the list is pushed to only, and read unlocked. */
#define EACH_CACHE(tc) \
	for (struct thread_cache *tc = atomic_load(&all); tc; \
	     tc = atomic_load_explicit(&tc->next, memory_order_relaxed))

static size_t cache_bytes(const struct labyrinth *lab)
{
	size_t n = sizeof(struct thread_cache) + lab->prot.quarantine * sizeof(struct slot_ref);
	return (n + 63) & ~(size_t)63;
}

/* Under pool_lock: room for one new cache, carved from a guarded chunk. */
static char *cache_carve(size_t bytes)
{
	if (chunk_next && chunk_next + bytes <= chunk_end) {
		char *at = chunk_next;
		chunk_next += bytes;
		return at;
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
	return mem + PAGE_SIZE;
}

/*
 * Under pool_lock: a cache of no labyrinth (tc->lab NULL, counters zero)
 * with room for lab's quarantine: one a closed labyrinth left, or a new
 * one, linked into the list of all caches; NULL when out of memory.
 */
struct thread_cache *tcache_pool_blank(struct labyrinth *lab)
{
	uint32_t need = lab->prot.quarantine;
	for (struct thread_cache **pp = &blank; *pp; pp = &(*pp)->next_idle) {
		struct thread_cache *tc = *pp;
		if (tc->capacity >= need) {
			*pp = tc->next_idle;
			return tc;
		}
	}
	struct thread_cache *tc = (struct thread_cache *)cache_carve(cache_bytes(lab));
	if (!tc)
		return NULL;
	tc->lab = NULL;
	tc->capacity = need;
	struct thread_cache *head = atomic_load(&all);
	do
		atomic_store_explicit(&tc->next, head, memory_order_relaxed);
	while (!atomic_compare_exchange_weak(&all, &head, tc));
	return tc;
}

/*
 * Under pool_lock: a cache for lab, taken from *idle_of (exited threads')
 * or blank (*fresh), named lab and in use; NULL when out of memory. A
 * blank one is made whole before it names lab, so that a fork catching
 * this thread here leaves the child an orphan it can salvage; taking an
 * orphan salvages every orphan of lab first.
 */
struct thread_cache *tcache_pool_take(struct labyrinth *lab, struct thread_cache **idle_of,
				      bool *fresh)
{
	struct thread_cache *tc = *idle_of;
	*fresh = !tc;
	if (*fresh)
		tc = tcache_pool_blank(lab);
	else
		*idle_of = tc->next_idle;
	if (!tc)
		return NULL;
	if (*fresh)
		tcache_clear(lab, tc);
	tc->lab = lab;
	tc->in_use = true;
	if (tc->orphan)
		tcache_salvage_orphans(lab);
	return tc;
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
void tcache_rekey(struct thread_cache *tc, struct arena *a)
{
	pthread_mutex_lock(&a->lock);
	rng_derive(&tc->rng, &a->rng);
	pthread_mutex_unlock(&a->lock);
	const struct gen_page *g = generation_page();
	tc->gen = atomic_load_explicit(&g->gen, memory_order_relaxed);
	tc->owned = owner_word(a->id, g);
}

/* No batch, nothing to release. */
static void batches_clear(struct labyrinth *lab, struct thread_cache *tc)
{
	tc->nrelease = 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c++) {
		tc->batch[c].n = tc->batch[c].inherited = 0;
		tc->batch[c].cap = batch_cap(lab, c);
	}
}

/* An empty cache: no batch, no quarantine, nothing to release. */
void tcache_clear(struct labyrinth *lab, struct thread_cache *tc)
{
	quarantine_init(&tc->quarantine, (struct slot_ref *)(tc + 1), lab->prot.quarantine);
	batches_clear(lab, tc);
	tc->orphan = false;
}

static uint32_t at_most(uint32_t n, uint32_t max)
{
	return n < max ? n : max;
}

static bool keep_marked(void *lab, struct slot_ref ref)
{
	return slot_salvage_mark(lab, ref);
}

static bool unmark(void *lab, struct slot_ref ref)
{
	slot_salvage_unmark(lab, ref);
	return true;
}

#define EACH_ORPHAN_OF(lab, tc) EACH_CACHE(tc) if (tc->lab == (lab) && tc->orphan)

/*
 * Every orphan of lab at once, under the pool's lock: a fork copied each
 * while its thread ran, page by page, so a slot may show in two of its
 * lists, or in two orphans'. Their quarantines are kept, each entry only
 * if the index says quarantined and no entry before it named the slot
 * (the salvage mark, slot.h); then their batches and release lists go
 * back where the index agrees, as before (a marked slot is neither free
 * nor quarantined, so none of those moves it); then the marks go. So a
 * block a thread freed before the fork waits out its quarantine in the
 * child too, in the thread that adopts the cache.
 */
size_t tcache_salvage_orphans(struct labyrinth *lab)
{
	size_t closed = 0;
	EACH_ORPHAN_OF(lab, tc)
		quarantine_keep_if(&tc->quarantine, &lab->maze, keep_marked, lab);
	EACH_ORPHAN_OF(lab, tc) {
		closed += slot_salvage_all(lab, tc->release, at_most(tc->nrelease, RELEASE_MAX), true);
		for (unsigned c = 0; c < SMALL_CLASSES; c++) {
			struct batch *b = &tc->batch[c];
			closed += slot_salvage_all(lab, b->ref, at_most(b->n + b->inherited, BATCH_MAX),
						   false);
		}
		batches_clear(lab, tc);
	}
	EACH_ORPHAN_OF(lab, tc) {
		quarantine_keep_if(&tc->quarantine, &lab->maze, unmark, lab);
		tc->orphan = false;
	}
	return closed;
}

/*
 * The exit hook. A pthread key would do, but glibc keeps the values of keys
 * past the first 32 in blocks it callocs, that is in this heap: an overflow
 * into one could hand the key's destructor a cache of the attacker's
 * making, and a thread whose first malloc came from inside glibc's own
 * pthread_setspecific lost our value to the block glibc then stored (the
 * cache never came back: 2,000 such threads, 196 MB). glibc's
 * __cxa_thread_atexit_impl (what C++ thread_local uses) keeps its list's
 * head in static TLS and links its node (calloc'd, so a malloc from here:
 * tcache_self is set first) after that calloc returns, so a registration
 * made inside another is never lost; the function pointer in the node is
 * mangled with glibc's pointer guard, and the hook ignores its argument.
 * It takes the loader's lock: called with no lock of ours held.
 */
extern int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle __attribute__((visibility("hidden")));
static void tcache_exit(void *unused);

/*
 * A second hook, for a thread whose first call comes after glibc ran those
 * (from a pthread key's destructor, say a free): glibc runs key
 * destructors after them, and again for keys set while they run. Its
 * value is a marker, never read, and the hook runs once (tcache_gone).
 * Only a key among the first 32, whose value glibc keeps in the thread's
 * descriptor: a later key's block would be calloc'd here, and lost (with
 * its memory) when this comes from inside glibc's own setspecific.
 */
#define KEYS_IN_DESCRIPTOR 32
static pthread_key_t exit_key;
static bool exit_key_ok;

static void tcache_exit_key(void *marker)
{
	tcache_exit(marker);
}

/* Made at load time, not inside malloc. */
__attribute__((constructor)) static void tcache_make_key(void)
{
	if (pthread_key_create(&exit_key, tcache_exit_key) != 0)
		return;
	exit_key_ok = exit_key < KEYS_IN_DESCRIPTOR;
	if (!exit_key_ok)
		pthread_key_delete(exit_key);
}

/* A cache from the pool that no fork touched was emptied at its thread's
 * exit; anything else in it is no slot of ours to hand out. */
static void cache_check_idle(struct thread_cache *tc)
{
	bool held = tc->nrelease != 0;
	for (unsigned c = 0; c < SMALL_CLASSES; c++)
		held |= tc->batch[c].n != 0 || tc->batch[c].inherited != 0;
	if (held)
		report_fatal("heap corruption: an idle thread cache held slots");
}

/* Whether lab runs with the settings fastpath.h is written for: the
 * default protections, and no pool to serve. */
static bool fast_path_fits(struct labyrinth *lab, struct thread_cache *tc)
{
	const struct protections *p = &lab->prot;
	const struct quarantine *q = &tc->quarantine;
	/* The fast path's constants: the default quarantine, and the class of
	 * its largest request, below a page. */
	struct quarantine_shape sh = quarantine_shape_of(q);
	return !lab->pool && p->canary && p->zero && p->uaf_check &&
	       !memcmp(&sh, &quarantine_default_shape, sizeof sh) &&
	       small_class_size(small_class(FAST_REQUEST_MAX + 1)) == FAST_CLASS_MAX;
}

struct thread_cache *tcache_attach(struct labyrinth *lab, struct arena *a)
{
	if (!lab->is_default || tcache_gone || tcache_self)
		return NULL;
	pthread_mutex_lock(&pool_lock);
	bool fresh;
	struct thread_cache *tc = tcache_pool_take(lab, &idle, &fresh);
	pthread_mutex_unlock(&pool_lock);
	if (!tc)
		return NULL;
	if (!fresh)
		cache_check_idle(tc);
	tcache_rekey(tc, a);
	tc->arena = a;
	tcache_self = tc;
	tcache_fast = fast_path_fits(lab, tc) ? tc : NULL;
	tcache_fast_malloc = lab->guarded ? NULL : tcache_fast;
	tcache_hook_exit();
	return tc;
}

/*
 * The exit hook, once per thread. The only thread of the process is the
 * main one (or a fork's only survivor), whose end is the process's: no
 * hook, so that exit() costs a short-lived process (every shell) nothing.
 */
void tcache_hook_exit(void)
{
	if (tcache_hooked || __libc_single_threaded)
		return;
	tcache_hooked = true;
	__cxa_thread_atexit_impl(tcache_exit, NULL, &__dso_handle);
	if (exit_key_ok)
		pthread_setspecific(exit_key, (void *)1);
}

bool tcache_batch_fill(struct labyrinth *lab, struct thread_cache *tc, unsigned cls)
{
	struct batch *b = &tc->batch[cls];
	struct arena *a = tc->arena;
	if (b->inherited)
		batch_return_inherited(lab, b, cls);
	pthread_mutex_lock(&a->lock);
	rng_renew_if_stale(&a->rng);    /* a raw clone's child: not its parent's picks */
	uint16_t n = (uint16_t)slot_take(lab, a, cls, b->ref, b->cap);
	pthread_mutex_unlock(&a->lock);
	/* slot_take picks at random within a room, but takes rooms in list
	 * order: a room whose one free slot is a block just out of quarantine
	 * would give it at a count an attacker can work out. Shuffled, it is
	 * anywhere in the batch. Written before the count, as always. */
	for (uint16_t i = n; i > 1; i--) {
		uint32_t j = rng_pick(&tc->rng, i);
		struct slot_ref t = b->ref[i - 1];
		slot_ref_put(&b->ref[i - 1], b->ref[j]);
		slot_ref_put(&b->ref[j], t);
	}
	tcache_order();
	b->n = n;
	return n != 0;
}

void tcache_free_damaged(struct thread_cache *tc, struct wing *w, char *p, uint64_t seen,
			 size_t expect)
{
	/* The fast path found this slot a moment ago: found again. */
	uint32_t cell = 0;
	uint16_t slot = 0;
	struct room *r = slot_find(w, p, &cell, &slot);
	struct slot_ref ref = slot_retire_damaged(tc->lab, w, r, p, cell, slot, expect, seen,
						  &tc->quarantine);
	tcache_free(tc->lab, tc, ref);
}

size_t tcache_release_flush(struct labyrinth *lab, struct thread_cache *tc)
{
	return slot_release_all(lab, tc->release, &tc->nrelease);
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

/*
 * What a cache gives back without shortening its quarantine: the release
 * list and the batches go back to their rooms (free slots, never handed
 * out since they were last quarantined), and the whole pages of the
 * slots its quarantine holds resident go back to the kernel (they stay
 * quarantined: they read as zero and are checked as zero on reuse).
 */
size_t tcache_give_back(struct labyrinth *lab, struct thread_cache *tc)
{
	size_t closed = tcache_release_flush(lab, tc) + batches_put_back(lab, tc);
	quarantine_discard(&tc->quarantine, &lab->maze, false);
	return closed;
}

/* True in the process's first thread (or a fork's survivor): see attach. */
static bool thread_is_leader(void)
{
	return syscall(SYS_gettid) == getpid();
}

/*
 * Thread exit: the cache gives back what it can and waits in the pool,
 * quarantine kept, for the next new thread. unused is what glibc stored in
 * its node, in the heap: never read. The process's leader has a hook only
 * if it first allocated after other threads started; its hook runs at
 * exit(), where giving back is wasted work (and a forked child would copy
 * the pages it writes), so it keeps its cache.
 */
static void tcache_exit(void *unused)
{
	(void)unused;
	if (tcache_gone || thread_is_leader())
		return;
	tcache_gone = true;
	tcache_private_exit();
	struct thread_cache *tc = tcache_self;
	if (!tc)
		return;
	tcache_give_back(tc->lab, tc);
	tcache_self = tcache_fast = tcache_fast_malloc = NULL;
	pthread_mutex_lock(&pool_lock);
	tc->in_use = false;
	tc->next_idle = idle;
	idle = tc;
	pthread_mutex_unlock(&pool_lock);
}

/*
 * The calling thread's cache and the idle ones give back what they can
 * without handing out a quarantined slot early: their quarantines keep
 * every slot (trim must not undo the delay an attacker waits out).
 * Orphans are salvaged: a fork left their lists unverified.
 */
size_t tcache_trim(struct labyrinth *lab)
{
	size_t closed = 0;
	struct thread_cache *mine = lab->is_default ? tcache_self : tcache_private_find(lab);
	if (mine && mine->lab == lab)
		closed += tcache_give_back(lab, mine);
	struct thread_cache **idle_of = lab->is_default ? &idle : &lab->idle_caches;
	pthread_mutex_lock(&pool_lock);
	closed += tcache_salvage_orphans(lab);
	struct thread_cache *list = *idle_of;
	*idle_of = NULL;
	pthread_mutex_unlock(&pool_lock);
	/* Exited threads' caches are no thread's now; trimmed unlocked. */
	struct thread_cache *last = NULL;
	for (struct thread_cache *tc = list; tc; tc = tc->next_idle) {
		closed += tcache_give_back(lab, tc);
		last = tc;
	}
	if (last) {
		pthread_mutex_lock(&pool_lock);
		last->next_idle = *idle_of;
		*idle_of = list;
		pthread_mutex_unlock(&pool_lock);
	}
	return closed;
}

void tcache_counts(struct labyrinth *lab, uint64_t *allocs, uint64_t *frees, uint64_t *live,
		   uint64_t *quarantined)
{
	EACH_CACHE(tc) {
		if (tc->lab != lab)
			continue;
		for (unsigned c = 0; c < SMALL_CLASSES; c++) {
			uint64_t in = atomic_load_explicit(&tc->batch[c].allocs, memory_order_relaxed);
			uint64_t out = atomic_load_explicit(&tc->batch[c].frees, memory_order_relaxed);
			*allocs += in;
			*frees += out;
			/* A thread frees what others allocated: its own part of
			 * a class may be negative; the sum wraps back. */
			*live += (in - out) * lab->maze.wings[c].class_size;
		}
		if (quarantined)
			*quarantined += quarantine_held(&tc->quarantine);
	}
}

/*
 * A private labyrinth closes: its caches, in threads or idle, become
 * blank, for any labyrinth's next thread: empty, stage and counters too,
 * since their slots go with the maze.
 * A thread that still names one (tcache_private.c) finds its serial
 * changed and lets it go.
 */
void tcache_close(struct labyrinth *lab)
{
	pthread_mutex_lock(&pool_lock);
	EACH_CACHE(tc) {
		if (tc->lab != lab)
			continue;
		tcache_clear(lab, tc);  /* empty even if a fork catches it re-adopted */
		memset(tc + 1, 0, tc->capacity * sizeof(struct slot_ref));
		tc->lab = NULL;
		tc->lab_serial = 0;
		tc->in_use = false;
		for (unsigned c = 0; c < SMALL_CLASSES; c++) {
			atomic_store_explicit(&tc->batch[c].allocs, 0, memory_order_relaxed);
			atomic_store_explicit(&tc->batch[c].frees, 0, memory_order_relaxed);
		}
		tc->next_idle = blank;
		blank = tc;
	}
	lab->idle_caches = NULL;
	pthread_mutex_unlock(&pool_lock);
}

void tcache_pool_lock(void)
{
	pthread_mutex_lock(&pool_lock);
}

void tcache_pool_unlock(void)
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
	tcache_rekey(tc, tc->arena);
}

/*
 * Only the forking thread lives on in the child. Every other cache,
 * whether its thread had exited or not, is idle now (in its private
 * labyrinth's list, if it is of one), and an orphan: the next thread to
 * adopt it, or labyrinth_trim, salvages its slots first.
 */
bool tcache_fork_child(void)
{
	struct thread_cache *self = tcache_self;
	bool others = false;
	idle = NULL;
	EACH_CACHE(tc)
		if (tc->lab && !tc->lab->is_default)
			tc->lab->idle_caches = NULL;
	EACH_CACHE(tc) {
		if (tc == self || !tc->lab || tcache_private_mine(tc))
			continue;
		struct thread_cache **idle_of = tc->lab->is_default ? &idle : &tc->lab->idle_caches;
		others |= tc->in_use;
		tc->in_use = false;
		tc->orphan = true;
		tc->next_idle = *idle_of;
		*idle_of = tc;
	}
	return others;
}

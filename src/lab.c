/*
 * lab: creating and destroying labyrinths, the process-wide default one, and
 * keeping every lock consistent across fork().
 */
#include "lab.h"
#include "canary.h"
#include "config.h"
#include "fault.h"
#include "generation.h"
#include "guarded.h"
#include "large.h"
#include "os.h"
#include "page.h"
#include "report.h"
#include "room.h"
#include "stats.h"
#include "tcache.h"
#include "labyrinth.h"

#include <errno.h>
#include <string.h>
#include <sys/single_threaded.h>

#define DEFAULT_WING_BYTES (32UL << 30)         /* process heap: 32 GiB per class */
#define DEFAULT_MAX_ALLOC (64UL << 30)
#define PRIVATE_WING_BYTES (1UL << 30)
#define MIN_WING_BYTES (2UL << 20)
#define MAX_SPECS (SMALL_CLASSES + 160 + PAGE_ORDERS)

static struct labyrinth *open_labs;          /* every open labyrinth */
static pthread_mutex_t open_labs_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t pow2_at_least(size_t n)
{
	size_t p = MIN_WING_BYTES;
	while (p < n && p < (1UL << 46))
		p <<= 1;
	return p;
}

static unsigned pick_arenas(unsigned asked)
{
	if (!asked)
		asked = config_get()->arenas;
	if (!asked) {
		asked = os_cpu_count() * 2;
		if (asked > 16)
			asked = 16;
	}
	return asked > MAX_ARENAS ? MAX_ARENAS : asked;
}

static enum guard_mode pick_guard(enum lab_guard_mode asked)
{
	if (asked == LAB_GUARD_DEFAULT)
		asked = config_get()->guard == CFG_GUARD_MPROTECT ? LAB_GUARD_MPROTECT
								  : LAB_GUARD_MARKERS;
	if (asked == LAB_GUARD_MARKERS && os_kernel_has_guards())
		return GUARD_MARKERS;
	return GUARD_MPROTECT;
}

/*
 * Reserve the maze, halving it while the address space says no (ulimit -v).
 * One getrandom keys the maze's stream, whatever the attempts: the maze
 * draws its place from it (aslr.c), then its wings their keys.
 */
static bool reserve_maze(struct labyrinth *lab, size_t wing_bytes, size_t max_alloc,
			 enum guard_mode mode)
{
	struct wing_spec specs[MAX_SPECS];
	room_specs(specs);
	struct rng seed;
	rng_seed(&seed);
	bool ok = false;
	for (; !ok && wing_bytes >= MIN_WING_BYTES; wing_bytes /= 2, max_alloc /= 2) {
		unsigned nlarge = large_class_count(max_alloc);
		if (SMALL_CLASSES + nlarge + PAGE_ORDERS > MAX_SPECS)
			continue;
		large_specs(specs + SMALL_CLASSES, nlarge);
		page_specs(specs + SMALL_CLASSES + nlarge);     /* the page wings come last */
		ok = maze_reserve(&lab->maze, specs, SMALL_CLASSES + nlarge + PAGE_ORDERS,
				  wing_bytes, mode, &seed);
		if (ok) {
			lab->nlarge = nlarge;
			lab->page_wing0 = SMALL_CLASSES + nlarge;
			lab->max_alloc = max_alloc;
		}
	}
	memset(&seed, 0, sizeof seed);
	return ok;
}

/* The arenas' generators and the key stream; each is keyed anew in a child.
 * Drawn from the maze's stream, which getrandom just keyed: a second
 * getrandom at start-up would add nothing but a system call. */
static void arenas_init(struct labyrinth *lab)
{
	struct rng seed;
	rng_derive(&seed, &lab->maze.epoch_rng);
	pthread_mutex_init(&lab->key_lock, NULL);
	rng_derive(&lab->key_rng, &seed);
	for (unsigned i = 0; i < lab->narenas; i++) {
		struct arena *a = &lab->arenas[i];
		pthread_mutex_init(&a->lock, NULL);
		rng_derive(&a->rng, &seed);
		a->id = i + 1;
		for (unsigned c = 0; c < SMALL_CLASSES; c++)
			a->bins[c].current = a->bins[c].partial = a->bins[c].spare = CELL_NONE;
	}
	memset(&seed, 0, sizeof seed);
}

static struct protections pick_protections(void)
{
	const struct config *c = config_get();
	return (struct protections){
		.canary = c->canary,
		.zero = c->zero,
		.uaf_check = c->zero && c->uaf_check,   /* the check needs zeroed slots */
		.quarantine = c->quarantine,
		.large_quarantine = c->large_quarantine,
	};
}

/* The quarantines' storage follows the arenas in the labyrinth's own mapping. */
static void quarantines_init(struct labyrinth *lab, char *storage)
{
	struct slot_ref *slots = (struct slot_ref *)storage;
	for (unsigned i = 0; i < lab->narenas; i++)
		quarantine_init(&lab->arenas[i].quarantine, slots + (size_t)i * lab->prot.quarantine,
				lab->prot.quarantine);
	struct region_quarantine *q = &lab->regions;
	pthread_mutex_init(&q->lock, NULL);
	q->ring = (uint64_t *)(slots + (size_t)lab->narenas * lab->prot.quarantine);
	q->size = lab->prot.large_quarantine;
}

/* An option of o, if the caller's struct is new enough to have it. */
#define OPT(o, field) ((o) && (o)->size >= offsetof(labyrinth_options_t, field) + \
		       sizeof((o)->field) ? (o)->field : 0)

/*
 * The page API's part of opening: epochs, the cap, the reserve. A
 * prefaulted labyrinth fills its reserve with the whole cap now, and its cap
 * then shrinks to what it holds: it never places another room.
 */
static bool pages_init(struct labyrinth *lab, const labyrinth_options_t *o)
{
	unsigned epoch = OPT(o, epoch);
	lab->maze.epoch_len = epoch ? epoch : config_get()->epoch;
	lab->maze.cap_bytes = OPT(o, cap_bytes);
	size_t pages = OPT(o, reserve_pages);
	if (OPT(o, flags) & LAB_OPEN_PREFAULT) {
		lab->pool = true;
		lab->mlock = OPT(o, flags) & LAB_OPEN_MLOCK;
		if (!pages)
			pages = lab->maze.cap_bytes / PAGE_SIZE;
	}
	if (!page_open_reserve(lab, pages, OPT(o, reserve_low)) && lab->pool)
		return false;
	if (lab->pool)
		lab->maze.cap_bytes = atomic_load(&lab->maze.mapped_bytes);
	return true;
}

/* Labyrinths opened so far: each one's serial, never reused, names it to
 * the thread caches (tcache_private.c). */
static _Atomic uint64_t lab_serials;

static struct labyrinth *lab_create(const labyrinth_options_t *o, bool is_default)
{
	unsigned narenas = pick_arenas(o ? o->arenas : 0);
	struct protections prot = pick_protections();
	size_t head = (sizeof(struct labyrinth) + 63) / 64 * 64 + narenas * sizeof(struct arena);
	size_t self = head + (size_t)narenas * prot.quarantine * sizeof(struct slot_ref) +
		      (size_t)prot.large_quarantine * sizeof(uint64_t);
	size_t map = (self + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE + 2 * PAGE_SIZE;
	char *mem = os_reserve(map);
	if (!mem || !os_protect_rw(mem + PAGE_SIZE, map - 2 * PAGE_SIZE)) {
		if (mem)
			os_unmap(mem, map);
		return NULL;
	}
	struct labyrinth *lab = (struct labyrinth *)(mem + PAGE_SIZE);
	lab->self_bytes = map;
	lab->prot = prot;
	lab->is_default = is_default;
	lab->serial = atomic_fetch_add_explicit(&lab_serials, 1, memory_order_relaxed) + 1;
	lab->narenas = narenas;
	lab->arenas = (struct arena *)((char *)lab + (sizeof(struct labyrinth) + 63) / 64 * 64);

	size_t wing_bytes = is_default ? DEFAULT_WING_BYTES : PRIVATE_WING_BYTES;
	if (o && o->wing_bytes)
		wing_bytes = o->wing_bytes;
	wing_bytes = pow2_at_least(wing_bytes);
	size_t max_alloc = is_default ? DEFAULT_MAX_ALLOC : wing_bytes / 4;
	if (o && o->max_alloc)
		max_alloc = o->max_alloc;
	if (!reserve_maze(lab, wing_bytes, max_alloc, pick_guard(o ? o->guard : LAB_GUARD_DEFAULT))) {
		os_unmap(mem, map);
		return NULL;
	}
	arenas_init(lab);
	quarantines_init(lab, (char *)lab + head);
	zero_init(&lab->zero, &lab->key_rng);
	lab->guarded = guarded_open((enum guard_mode)atomic_load(&lab->maze.guard_mode));
	canary_init();
	if (!pages_init(lab, o)) {
		maze_release(&lab->maze);
		os_unmap(mem, map);
		return NULL;
	}
	pthread_mutex_lock(&open_labs_lock);
	lab->next = open_labs;
	open_labs = lab;
	pthread_mutex_unlock(&open_labs_lock);
	return lab;
}

static void lab_destroy(struct labyrinth *lab)
{
	pthread_mutex_lock(&open_labs_lock);
	for (struct labyrinth **pp = &open_labs; *pp; pp = &(*pp)->next) {
		if (*pp == lab) {
			*pp = lab->next;
			break;
		}
	}
	pthread_mutex_unlock(&open_labs_lock);
	tcache_close(lab);
	guarded_close(lab->guarded);
	zero_close(&lab->zero);
	maze_release(&lab->maze);
	os_unmap((char *)lab - PAGE_SIZE, lab->self_bytes);
}

/* Cold, for a report: does another open labyrinth hold p? Never waits:
 * a report may come from a fork child or a thread that holds the list. */
bool lab_other_holds(const struct labyrinth *lab, const void *p)
{
	if (pthread_mutex_trylock(&open_labs_lock) != 0)
		return false;
	bool held = false;
	for (struct labyrinth *o = open_labs; o && !held; o = o->next)
		held = o != lab && (maze_wing_of(&o->maze, p) || guarded_has(o, p) ||
				    zero_has(&o->zero, p));
	pthread_mutex_unlock(&open_labs_lock);
	return held;
}

/* ---- the default labyrinth -------------------------------------------- */

struct labyrinth *_Atomic lab_default_ptr;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_create(void)
{
	if (config_get()->stats)
		stats_hold_stderr();
	atomic_store_explicit(&lab_default_ptr, lab_create(NULL, true), memory_order_release);
	fault_install();
}

struct labyrinth *lab_default_create(void)
{
	pthread_once(&default_once, default_create);
	return atomic_load_explicit(&lab_default_ptr, memory_order_acquire);
}

struct labyrinth *lab_default_if_open(void)
{
	return atomic_load_explicit(&lab_default_ptr, memory_order_acquire);
}

/* ---- statistics helpers ----------------------------------------------- */

uint64_t lab_live_bytes(struct labyrinth *lab)
{
	uint64_t allocs, frees, live;
	guarded_counts(lab, &allocs, &frees, &live);
	live += atomic_load_explicit(&lab->large_live_bytes, memory_order_relaxed) +
		atomic_load_explicit(&lab->page_live_bytes, memory_order_relaxed);
	for (unsigned i = 0; i < lab->narenas; i++)
		live += atomic_load_explicit(&lab->arenas[i].live_bytes, memory_order_relaxed);
	tcache_counts(lab, &allocs, &frees, &live, NULL);
	/* Caches are read one after another while their threads go on: a sum
	 * caught between a free and its allocation's count may dip below 0. */
	return (int64_t)live < 0 ? 0 : live;
}

/* Sampled when rooms open: exact enough for a peak, free on the fast path. */
void lab_note_peak(struct labyrinth *lab)
{
	uint64_t now = lab_live_bytes(lab);
	uint64_t peak = atomic_load_explicit(&lab->peak_live, memory_order_relaxed);
	while (now > peak && !atomic_compare_exchange_weak_explicit(
			&lab->peak_live, &peak, now, memory_order_relaxed, memory_order_relaxed))
		;
}

uint64_t lab_key_new(struct labyrinth *lab)
{
	pthread_mutex_lock(&lab->key_lock);
	rng_renew_if_stale(&lab->key_rng);      /* a raw clone's child: not its parent's keys */
	uint64_t key = rng_u64(&lab->key_rng);
	pthread_mutex_unlock(&lab->key_lock);
	return key;
}

/* ---- fork ------------------------------------------------------------- */

/*
 * A process that never started a second thread (glibc's
 * __libc_single_threaded: most processes a shell or make runs) has no
 * other thread that could hold a lock at the fork, so the handlers take
 * none. Taking them wrote every page that holds an arena's or a wing's
 * lock, and the parent and the child then each copied those pages at
 * their next write: 23 page faults a subshell for bash (perf stat, 300
 * subshells). Set by the forking thread, read by it in the same fork.
 */
static bool fork_locked;
uint64_t lab_half_made_tags[HALF_MADE_WORDS];
_Atomic unsigned lab_resizing_now;
_Static_assert(HALF_MADE_WORDS * 64 == GEN_TAGS, "a bit for each generation tag");
/* The forking generation's tag, read in the parent: a child's generation
 * page starts wiped. */
static uint32_t fork_parent_tag;

static void fork_prepare(void)
{
	fork_parent_tag = atomic_load_explicit(&gen_page->tag_bits, memory_order_relaxed) >>
			  GEN_TAG_SHIFT;
	fork_locked = !__libc_single_threaded;
	if (!fork_locked)
		return;
	tcache_pool_lock();             /* first: salvage takes arena locks under it */
	pthread_mutex_lock(&open_labs_lock);
	for (struct labyrinth *lab = open_labs; lab; lab = lab->next) {
		for (unsigned i = 0; i < lab->narenas; i++)
			pthread_mutex_lock(&lab->arenas[i].lock);
		maze_lock_all(&lab->maze);
		pthread_mutex_lock(&lab->regions.lock);         /* a leaf: held alone */
		guarded_lock(lab->guarded);                     /* a leaf too */
		zero_lock(&lab->zero);                          /* a leaf too */
		pthread_mutex_lock(&lab->key_lock);             /* and this one */
	}
}

static void fork_release(void)
{
	if (!fork_locked)
		return;
	for (struct labyrinth *lab = open_labs; lab; lab = lab->next) {
		pthread_mutex_unlock(&lab->key_lock);
		zero_unlock(&lab->zero);
		guarded_unlock(lab->guarded);
		pthread_mutex_unlock(&lab->regions.lock);
		maze_unlock_all(&lab->maze);
		for (unsigned i = 0; i < lab->narenas; i++)
			pthread_mutex_unlock(&lab->arenas[i].lock);
	}
	pthread_mutex_unlock(&open_labs_lock);
	tcache_pool_unlock();
}

/* Every lock of lab is held (or no other thread exists): new keys for
 * every generator of it. */
static void lab_reseed(struct labyrinth *lab, struct rng *seed)
{
	for (unsigned i = 0; i < lab->narenas; i++)
		rng_derive(&lab->arenas[i].rng, seed);
	rng_derive(&lab->key_rng, seed);
	guarded_fork_child(lab->guarded, seed);
	zero_fork_child(&lab->zero, seed);
	maze_reseed(&lab->maze, seed);  /* wings redraw their keys at their next placement */
}

/*
 * The child shares every secret of its parent until it draws its own:
 * here, with every lock still held, so nothing can use an old key after
 * the fork. Async-signal-safe (a multithreaded parent's child may only
 * call such functions): getrandom, then ChaCha derivations, no allocation.
 * The forking thread's cache renews itself at its first malloc instead
 * (tcache_forked), so a child that only execs copies none of its pages.
 * Measured: 13 to 15 us more per fork than the unlocking alone (25 us),
 * mostly the two pages it writes (the generation's, the key table), which
 * the kernel must copy or clear for the child, and one getrandom per
 * labyrinth.
 */
static void fork_child(void)
{
	int saved = errno;
	if (open_labs) {
		struct rng seed;
		generation_fork_child(&seed);
		for (struct labyrinth *lab = open_labs; lab; lab = lab->next)
			lab_reseed(lab, &seed);
		bool others = tcache_fork_child();
		if (others || atomic_load_explicit(&lab_resizing_now, memory_order_acquire))
			lab_half_made_tags[fork_parent_tag / 64] |= 1ULL << (fork_parent_tag % 64);
		memset(&seed, 0, sizeof seed);
	}
	fork_release();
	errno = saved;
}

/* Registered at load time, not inside malloc: pthread_atfork may allocate. */
__attribute__((constructor)) static void lab_register_fork(void)
{
	pthread_atfork(fork_prepare, fork_release, fork_child);
}

/* ---- the public face of this file -------------------------------------- */

#define LAB_API __attribute__((visibility("default")))

/* One warning line that says what was refused and what is accepted; the
 * errno to fail with. */
static int refuse(int err, const char *what, const uint64_t *value, const char *accepted)
{
	char tmp[DEC_DIGITS_MAX];
	report_warning(what, value ? dec_digits(tmp, *value) : "", accepted);
	return err;
}

/* Options labyrinth_open() cannot take: EINVAL for a field it does not
 * know or a combination it cannot serve, ERANGE for a number out of range;
 * 0 when they are good. */
static int open_refusal(const labyrinth_options_t *o)
{
	if (!o)
		return 0;
	uint64_t v = o->size, flags = OPT(o, flags);
	if (v < offsetof(labyrinth_options_t, guard) + sizeof(o->guard))
		return refuse(EINVAL, "labyrinth_open: .size = ", &v,
			      ": set it to sizeof(labyrinth_options_t) (EINVAL)");
	if (flags & ~(uint64_t)(LAB_OPEN_PREFAULT | LAB_OPEN_MLOCK))
		return refuse(EINVAL, "labyrinth_open: .flags = ", &flags,
			      ": only LAB_OPEN_PREFAULT and LAB_OPEN_MLOCK are known (EINVAL)");
	if ((v = (unsigned)o->guard) > LAB_GUARD_MPROTECT)
		return refuse(EINVAL, "labyrinth_open: .guard = ", &v,
			      ": LAB_GUARD_DEFAULT, LAB_GUARD_MARKERS or LAB_GUARD_MPROTECT (EINVAL)");
	if ((v = o->arenas) > MAX_ARENAS)
		return refuse(ERANGE, "labyrinth_open: .arenas = ", &v, ": at most 64 (ERANGE)");
	_Static_assert(MAX_ARENAS == 64, "the line above says 64");
	bool prefault = flags & LAB_OPEN_PREFAULT;
	if (flags & LAB_OPEN_MLOCK && !prefault)
		return refuse(EINVAL, "labyrinth_open: LAB_OPEN_MLOCK without LAB_OPEN_PREFAULT, "
			      "which it needs", NULL, " (EINVAL)");
	if (prefault && !OPT(o, cap_bytes))
		return refuse(EINVAL, "labyrinth_open: LAB_OPEN_PREFAULT without .cap_bytes, "
			      "which it needs", NULL, " (EINVAL)");
	if (prefault && (v = OPT(o, cap_bytes)) < PAGE_SIZE)
		return refuse(ERANGE, "labyrinth_open: .cap_bytes = ", &v,
			      ": LAB_OPEN_PREFAULT needs a cap of at least a page, 4096 (ERANGE)");
	if (prefault && (v = OPT(o, reserve_pages)) > OPT(o, cap_bytes) / PAGE_SIZE)
		return refuse(ERANGE, "labyrinth_open: .reserve_pages = ", &v,
			      ": more pages than .cap_bytes holds (ERANGE)");
	return 0;
}

LAB_API labyrinth_t *labyrinth_open(const labyrinth_options_t *opts)
{
	int refused = open_refusal(opts);
	if (refused) {
		errno = refused;
		return NULL;
	}
	struct labyrinth *lab = lab_create(opts, false);
	if (!lab)
		errno = ENOMEM;
	return lab;
}

LAB_API void labyrinth_close(labyrinth_t *lab)
{
	if (lab && !lab->is_default)
		lab_destroy(lab);
}

LAB_API labyrinth_t *labyrinth_default(void)
{
	return lab_default();
}

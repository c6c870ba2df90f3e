/*
 * The page API: GFP flags, the reserve and its atomic path (proved under a
 * seccomp filter and from a signal handler), exclusive ownership and give,
 * versioned handles, prefaulted pools, and every misuse's report.
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096

static bool all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static labyrinth_t *open_reserved(size_t pages)
{
	labyrinth_options_t o = { .size = sizeof o, .reserve_pages = pages };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	return lab;
}

/* ---- plain pages ------------------------------------------------------ */

Test(page, a_page_is_aligned_zero_and_guarded)
{
	labyrinth_t *lab = open_private(0);
	char *p = labyrinth_alloc_page(lab, LAB_GFP_ZERO);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % PG, 0);
	cr_assert(all_zero(p, PG));
	memset(p, 0xab, PG);
	cr_assert(read_faults(p + PG), "the page after a page is readable");
	cr_assert(read_faults(p - 1), "the page before a page is readable");
	labyrinth_free_page(lab, p);
	cr_assert(read_faults(p), "a page freed to the maze is still readable");
	labyrinth_close(lab);
}

Test(page, blocks_of_every_order)
{
	labyrinth_t *lab = open_private(0);
	for (unsigned k = 0; k <= LAB_PAGE_MAX_ORDER; k++) {
		char *p = labyrinth_alloc_pages(lab, k, 0);
		cr_assert_not_null(p, "order %u", k);
		memset(p, 1, (size_t)PG << k);
		cr_assert(read_faults(p + ((size_t)PG << k)), "no guard after order %u", k);
		labyrinth_free_page(lab, p);
	}
	errno = 0;
	cr_assert_null(labyrinth_alloc_pages(lab, LAB_PAGE_MAX_ORDER + 1, 0));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(labyrinth_alloc_page(lab, 0x100));
	cr_assert_eq(errno, EINVAL);
	labyrinth_close(lab);
}

/* ---- the reserve ------------------------------------------------------ */

Test(page, atomic_serves_only_from_the_reserve)
{
	enum { N = 64 };
	labyrinth_t *lab = open_private(0);
	errno = 0;
	cr_assert_null(labyrinth_alloc_page(lab, LAB_GFP_ATOMIC), "atomic without a reserve");
	cr_assert_eq(errno, ENOMEM);
	cr_assert_eq(labyrinth_reserve(lab, N), N);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, N);
	cr_assert_eq(s.reserve_empty, 1);
	void *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = labyrinth_alloc_page_atomic_exclusive(lab);
		cr_assert_not_null(p[i], "reserve page %d", i);
		cr_assert(all_zero(p[i], PG));
		memset(p[i], i + 1, PG);
	}
	cr_assert_null(labyrinth_alloc_page(lab, LAB_GFP_ATOMIC));
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 0);
	cr_assert_eq(s.reserve_empty, 2);
	for (int i = 0; i < N; i++)
		labyrinth_free_page(lab, p[i]);
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, N, "pages from the reserve go back to it");
	cr_assert_eq(s.page_allocations, s.page_frees);
	void *q = labyrinth_alloc_page(lab, LAB_GFP_ATOMIC);
	cr_assert(all_zero(q, PG), "a page came back from the reserve unscrubbed");
	labyrinth_free_page(lab, q);
	labyrinth_close(lab);
}

Test(page, below_the_low_water_mark_ordinary_allocation_refills)
{
	labyrinth_t *lab = open_private(0);
	cr_assert_eq(labyrinth_reserve(lab, 32), 32);
	labyrinth_reserve_low(lab, 8);
	void *p[30];
	for (int i = 0; i < 30; i++)
		p[i] = labyrinth_alloc_page(lab, LAB_GFP_ATOMIC);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 2);
	void *q = labyrinth_alloc_page(lab, 0);         /* ordinary: refills first */
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 32, "refilled to %lu", (unsigned long)s.reserve_pages);
	for (int i = 0; i < 30; i++)
		labyrinth_free_page(lab, p[i]);
	labyrinth_free_page(lab, q);
	labyrinth_close(lab);
}

Test(page, reserve_of_higher_orders)
{
	labyrinth_t *lab = open_private(0);
	cr_assert_eq(labyrinth_reserve_order(lab, 2, 4), 4);
	void *p = labyrinth_alloc_pages(lab, 2, LAB_GFP_ATOMIC);
	cr_assert_not_null(p);
	memset(p, 7, 4 * PG);
	labyrinth_free_page(lab, p);
	cr_assert_null(labyrinth_alloc_pages(lab, 1, LAB_GFP_ATOMIC));
	labyrinth_close(lab);
}

/* ---- the atomic path under seccomp --------------------------------- */

/* Kill the process on any call that maps, unmaps, protects, waits or sleeps. */
static void forbid_blocking_and_memory_calls(void)
{
	static const int calls[] = {
		SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect),
		SCMP_SYS(pkey_mprotect), SCMP_SYS(madvise), SCMP_SYS(process_madvise),
		SCMP_SYS(brk), SCMP_SYS(futex), SCMP_SYS(mlock), SCMP_SYS(mlock2),
		SCMP_SYS(munlock), SCMP_SYS(mlockall), SCMP_SYS(msync), SCMP_SYS(nanosleep),
		SCMP_SYS(clock_nanosleep), SCMP_SYS(sched_yield), SCMP_SYS(poll),
		SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6), SCMP_SYS(epoll_wait),
		SCMP_SYS(epoll_pwait), SCMP_SYS(pause), SCMP_SYS(rt_sigsuspend),
		SCMP_SYS(wait4), SCMP_SYS(waitid), SCMP_SYS(read), SCMP_SYS(getrandom),
		SCMP_SYS(shmat), SCMP_SYS(shmdt), SCMP_SYS(remap_file_pages),
		SCMP_SYS(userfaultfd), SCMP_SYS(membarrier), SCMP_SYS(io_uring_enter),
	};
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		_exit(90);
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, calls[i], 0) != 0)
			_exit(91);
	if (seccomp_load(ctx) != 0)
		_exit(92);
	/* Not released: freeing could trim the heap, which the filter forbids. */
}

static void churn_atomic(void *arg)
{
	labyrinth_t *lab = arg;
	void *held[16];
	forbid_blocking_and_memory_calls();
	for (int round = 0; round < 5000; round++) {
		for (int i = 0; i < 16; i++) {
			held[i] = labyrinth_alloc_page(lab, LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE |
						       LAB_GFP_ZERO);
			if (!held[i])
				_exit(10);
			((char *)held[i])[round % PG] = 1;
		}
		for (int i = 0; i < 16; i++)
			labyrinth_free_page(lab, held[i]);
	}
	_exit(0);
}

Test(page, atomic_path_makes_no_forbidden_system_call)
{
	labyrinth_t *lab = open_private(0);
	cr_assert_eq(labyrinth_reserve(lab, 64), 64);
	struct outcome o = run_in_child(churn_atomic, lab);
	cr_assert_eq(o.signal, 0, "killed by signal %d (SIGSYS is %d): %s", o.signal, SIGSYS, o.err);
	cr_assert_eq(o.exit_code, 0, "exit %d: %s", o.exit_code, o.err);
	labyrinth_close(lab);
}

static void atomic_on_empty(void *arg)
{
	labyrinth_t *lab = arg;
	forbid_blocking_and_memory_calls();
	for (int i = 0; i < 1000; i++)
		if (labyrinth_alloc_page(lab, LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE))
			_exit(10);
	_exit(0);
}

Test(page, atomic_path_on_an_empty_reserve_gets_null)
{
	labyrinth_t *lab = open_private(0);
	struct outcome o = run_in_child(atomic_on_empty, lab);
	cr_assert_eq(o.signal, 0, "killed by signal %d: %s", o.signal, o.err);
	cr_assert_eq(o.exit_code, 0);
	labyrinth_close(lab);
}

static void ordinary_under_filter(void *arg)
{
	forbid_blocking_and_memory_calls();
	labyrinth_alloc_page(arg, 0);   /* places a room: must be killed */
	_exit(0);
}

/* The control: the filter does kill what it should. */
Test(page, the_filter_kills_an_ordinary_allocation)
{
	labyrinth_t *lab = open_private(0);
	struct outcome o = run_in_child(ordinary_under_filter, lab);
	cr_assert_eq(o.signal, SIGSYS, "signal %d, exit %d", o.signal, o.exit_code);
	labyrinth_close(lab);
}

/* ---- a prefaulted pool -------------------------------------------- */

static labyrinth_t *open_pool(size_t cap, unsigned flags)
{
	labyrinth_options_t o = { .size = sizeof o, .cap_bytes = cap,
				  .flags = LAB_OPEN_PREFAULT | flags };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab, "open failed: %s", strerror(errno));
	return lab;
}

static void pool_churn(void *arg)
{
	labyrinth_t *lab = arg;
	forbid_blocking_and_memory_calls();
	for (int round = 0; round < 3000; round++) {
		char *m[4], *p[4];
		for (int i = 0; i < 4; i++) {
			m[i] = labyrinth_malloc(lab, 100 + (size_t)i * 900);
			p[i] = labyrinth_alloc_page(lab, LAB_GFP_EXCLUSIVE);
			if (!m[i] || !p[i])
				_exit(10 + i);
			memset(m[i], 'x', 100 + (size_t)i * 900);
			p[i][0] = 1;
		}
		if (labyrinth_malloc(lab, 16) || labyrinth_alloc_page(lab, 0))
			_exit(20);      /* the pool holds 8 pages: all taken */
		for (int i = 0; i < 4; i++)
			labyrinth_free_page(lab, p[i]);
		m[0] = labyrinth_realloc(lab, m[0], 50);        /* moves: a free page */
		if (!m[0] || m[0][49] != 'x')
			_exit(21);
		for (int i = 0; i < 4; i++)
			labyrinth_free(lab, m[i]);
	}
	_exit(0);
}

Test(page, a_prefaulted_pool_never_makes_a_system_call)
{
	labyrinth_t *lab = open_pool(32 << 10, LAB_OPEN_MLOCK);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.reserve_pages, 8);
	cr_assert_eq(s.mapped_bytes, 32 << 10);
	struct outcome o = run_in_child(pool_churn, lab);
	cr_assert_eq(o.signal, 0, "killed by signal %d: %s", o.signal, o.err);
	cr_assert_eq(o.exit_code, 0, "exit %d: %s", o.exit_code, o.err);
	labyrinth_close(lab);
}

Test(page, a_pool_never_grows)
{
	labyrinth_t *lab = open_pool(16 << 10, 0);
	cr_assert_eq(labyrinth_reserve(lab, 100), 4);
	void *big = labyrinth_malloc(lab, 5000);        /* two pages: no such block */
	cr_assert_null(big);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.mapped_bytes, 16 << 10);
	char *p = labyrinth_malloc(lab, 4000);
	cr_assert_not_null(p);
	cr_assert_eq(labyrinth_usable_size(lab, p), 4000);
	labyrinth_free(lab, p);
	labyrinth_close(lab);
}

Test(page, bad_open_options)
{
	labyrinth_options_t o = { .size = sizeof o, .flags = LAB_OPEN_PREFAULT };
	cr_assert_null(labyrinth_open(&o), "prefault without a cap");
	cr_assert_eq(errno, EINVAL);
	o = (labyrinth_options_t){ .size = sizeof o, .flags = LAB_OPEN_MLOCK };
	cr_assert_null(labyrinth_open(&o), "mlock without prefault");
	o = (labyrinth_options_t){ .size = sizeof o, .cap_bytes = 8192, .reserve_pages = 3,
				   .flags = LAB_OPEN_PREFAULT };
	cr_assert_null(labyrinth_open(&o), "a reserve beyond the cap");
}

Test(page, a_capped_labyrinth_stops_at_its_cap)
{
	labyrinth_options_t o = { .size = sizeof o, .cap_bytes = 1 << 20 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	int n = 0;
	void *p[400];
	while (n < 400 && (p[n] = labyrinth_alloc_page(lab, 0)))
		n++;
	cr_assert_eq(n, 256, "%d pages in a 1 MiB cap", n);
	cr_assert_null(labyrinth_malloc(lab, 100000));
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_leq(s.mapped_bytes, 1 << 20);
	for (int i = 0; i < n; i++)
		labyrinth_free_page(lab, p[i]);
	cr_assert_not_null(labyrinth_malloc(lab, 100));
	labyrinth_close(lab);
}

/* ---- handles ---------------------------------------------------------- */

Test(page, handles_go_stale_when_the_page_changes_hands)
{
	labyrinth_t *lab = open_reserved(4);
	lab_page_handle_t h = labyrinth_alloc_handle(lab, 0, LAB_GFP_ATOMIC);
	cr_assert_not_null(h.page);
	cr_assert_eq(labyrinth_handle_page(lab, h), h.page);
	lab_page_handle_t same = labyrinth_handle_of(lab, h.page);
	cr_assert_eq(same.version, h.version);
	labyrinth_handle_free(lab, h);
	errno = 0;
	cr_assert_null(labyrinth_handle_page(lab, h), "a freed page's handle resolved");
	cr_assert_eq(errno, ESTALE);
	/* The reserve is a stack: the same page comes straight back. */
	lab_page_handle_t again = labyrinth_alloc_handle(lab, 0, LAB_GFP_ATOMIC);
	cr_assert_eq(again.page, h.page);
	cr_assert_neq(again.version, h.version, "a version repeated");
	cr_assert_null(labyrinth_handle_page(lab, h), "a reallocated page's old handle resolved");
	cr_assert_eq(labyrinth_handle_give(lab, &h, 7), LAB_PAGE_STALE);
	labyrinth_handle_free(lab, again);
	labyrinth_close(lab);
}

/* ---- exclusive pages and give --------------------------------------- */

struct taker {
	labyrinth_t *lab;
	lab_thread_t tag;
	void *page;
	atomic_int stage;
};

static void *take_and_free(void *arg)
{
	struct taker *t = arg;
	t->tag = labyrinth_thread_self();
	atomic_store(&t->stage, 1);
	while (atomic_load(&t->stage) != 2)
		;
	memset(t->page, 3, PG);         /* ours now */
	labyrinth_free_page(t->lab, t->page);
	return NULL;
}

Test(page, give_hands_an_exclusive_page_to_another_thread)
{
	labyrinth_t *lab = open_private(0);
	struct taker t = { .lab = lab };
	pthread_t th;
	pthread_create(&th, NULL, take_and_free, &t);
	while (atomic_load(&t.stage) != 1)
		;
	cr_assert_neq(t.tag, labyrinth_thread_self());
	t.page = labyrinth_alloc_page(lab, LAB_GFP_EXCLUSIVE);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_OK);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_NOT_OWNER, "double give");
	atomic_store(&t.stage, 2);
	pthread_join(th, NULL);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_NOT_ALLOCATED);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.page_frees, 1);
	labyrinth_close(lab);
}

Test(page, give_errors_have_codes)
{
	labyrinth_t *lab = open_private(0);
	void *shared = labyrinth_alloc_page(lab, 0);
	cr_assert_eq(labyrinth_page_give(lab, shared, 5), LAB_PAGE_NOT_EXCLUSIVE);
	void *mine = labyrinth_alloc_page(lab, LAB_GFP_EXCLUSIVE);
	cr_assert_eq(labyrinth_page_give(lab, mine, 0), LAB_PAGE_INVALID, "to no thread");
	cr_assert_eq(labyrinth_page_give(lab, (char *)mine + 8, 5), LAB_PAGE_INVALID);
	int local;
	cr_assert_eq(labyrinth_page_give(lab, &local, 5), LAB_PAGE_INVALID);
	lab_page_handle_t h = labyrinth_handle_of(lab, mine);
	cr_assert_eq(labyrinth_handle_give(lab, &h, labyrinth_thread_self()), LAB_PAGE_OK);
	cr_assert_eq(labyrinth_handle_page(lab, h), mine, "the new handle resolves");
	cr_assert_str_eq(labyrinth_page_strerror(LAB_PAGE_NOT_OWNER),
			 "the calling thread does not own the page");
	labyrinth_free_page(lab, shared);
	labyrinth_handle_free(lab, h);
	labyrinth_close(lab);
}

/* ---- from a signal handler ------------------------------------------ */

static labyrinth_t *sig_lab;
static atomic_long sig_served, sig_bad;

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	char *p = labyrinth_alloc_page(sig_lab, LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE);
	if (p) {
		for (int i = 0; i < PG; i += 512)
			if (p[i])
				atomic_fetch_add(&sig_bad, 1);
		memset(p, 0x5a, PG);
		labyrinth_free_page(sig_lab, p);
		atomic_fetch_add(&sig_served, 1);
	}
	errno = saved;
}

static atomic_int kicking;

static void *kicker(void *arg)
{
	pthread_t target = *(pthread_t *)arg;
	while (atomic_load(&kicking)) {
		pthread_kill(target, SIGUSR1);
		usleep(20);
	}
	return NULL;
}

Test(page, atomic_allocation_in_a_signal_handler_during_malloc, .timeout = 60)
{
	sig_lab = open_reserved(32);
	signal(SIGUSR1, on_signal);
	pthread_t self = pthread_self(), th;
	atomic_store(&kicking, 1);
	pthread_create(&th, NULL, kicker, &self);
	unsigned long long seed = 42;
	void *keep[64] = { 0 };
	for (int i = 0; i < 300000 || atomic_load(&sig_served) < 1000; i++) {
		int k = (int)(test_rand(&seed) % 64);
		labyrinth_free(sig_lab, keep[k]);       /* same labyrinth, its locks */
		keep[k] = labyrinth_malloc(sig_lab, 1 + test_rand(&seed) % 3000);
		cr_assert_not_null(keep[k]);
	}
	atomic_store(&kicking, 0);
	pthread_join(th, NULL);
	signal(SIGUSR1, SIG_DFL);
	for (int k = 0; k < 64; k++)
		labyrinth_free(sig_lab, keep[k]);
	cr_log_info("%ld pages served in signal handlers", atomic_load(&sig_served));
	cr_assert_eq(atomic_load(&sig_bad), 0, "a page came unscrubbed");
	labyrinth_stats_t s;
	labyrinth_get_stats(sig_lab, &s);
	cr_assert_eq(s.allocations, s.frees);
	cr_assert_eq(s.reserve_pages, 32);
	labyrinth_close(sig_lab);
}

/* ---- producers give, consumers free --------------------------------- */

#define PRODUCERS 2
#define CONSUMERS 2
#define PER_PRODUCER 20000
#define MAILBOX 64

struct mailbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	lab_page_handle_t item[MAILBOX];
	size_t head, tail;
	lab_thread_t owner;
	atomic_int ready;
};

static struct mailbox boxes[CONSUMERS];
static labyrinth_t *stress_lab;
static atomic_uchar *owned;     /* per cell of the order-0 page wing */
static atomic_long double_owned, stale, handed;
struct pv {
	uintptr_t page;
	uint64_t version;
};
static struct pv *versions[PRODUCERS];

static atomic_uchar *owned_flag(void *p)
{
	struct wing *w = &stress_lab->maze.wings[stress_lab->page_wing0];
	return &owned[((char *)p - w->base) / w->cell_bytes];
}

static void *producer(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_PRODUCER; i++) {
		lab_gfp_t f = LAB_GFP_EXCLUSIVE | (i % 2 ? LAB_GFP_ATOMIC : 0);
		lab_page_handle_t h = labyrinth_alloc_handle(stress_lab, 0, f);
		if (!h.page)
			h = labyrinth_alloc_handle(stress_lab, 0, LAB_GFP_EXCLUSIVE);
		if (atomic_exchange(owned_flag(h.page), 1))
			atomic_fetch_add(&double_owned, 1);
		struct mailbox *b = &boxes[i % CONSUMERS];
		if (labyrinth_handle_give(stress_lab, &h, b->owner) != LAB_PAGE_OK)
			atomic_fetch_add(&stale, 1);
		versions[id][i] = (struct pv){ (uintptr_t)h.page, h.version };
		pthread_mutex_lock(&b->lock);
		while (b->head - b->tail == MAILBOX)
			pthread_cond_wait(&b->cond, &b->lock);
		b->item[b->head++ % MAILBOX] = h;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct mailbox *b = arg;
	b->owner = labyrinth_thread_self();
	atomic_store(&b->ready, 1);
	for (long n = 0; n < (long)PRODUCERS * PER_PRODUCER / CONSUMERS; n++) {
		pthread_mutex_lock(&b->lock);
		while (b->head == b->tail)
			pthread_cond_wait(&b->cond, &b->lock);
		lab_page_handle_t h = b->item[b->tail++ % MAILBOX];
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		if (labyrinth_handle_page(stress_lab, h) != h.page)
			atomic_fetch_add(&stale, 1);
		atomic_store(owned_flag(h.page), 0);
		labyrinth_handle_free(stress_lab, h);
		atomic_fetch_add(&handed, 1);
	}
	return NULL;
}

static int cmp_pv(const void *a, const void *b)
{
	const struct pv *x = a, *y = b;
	if (x->page != y->page)
		return x->page < y->page ? -1 : 1;
	return x->version < y->version ? -1 : x->version > y->version;
}

Test(page, producers_give_consumers_free, .timeout = 120)
{
	stress_lab = open_reserved(128);
	struct wing *w = &stress_lab->maze.wings[stress_lab->page_wing0];
	owned = calloc(w->bytes / w->cell_bytes, 1);
	pthread_t p[PRODUCERS], c[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++) {
		pthread_mutex_init(&boxes[i].lock, NULL);
		pthread_cond_init(&boxes[i].cond, NULL);
		pthread_create(&c[i], NULL, consumer, &boxes[i]);
		while (!atomic_load(&boxes[i].ready))
			;
	}
	for (long i = 0; i < PRODUCERS; i++) {
		versions[i] = calloc(PER_PRODUCER, sizeof(struct pv));
		pthread_create(&p[i], NULL, producer, (void *)i);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(p[i], NULL);
	for (int i = 0; i < CONSUMERS; i++)
		pthread_join(c[i], NULL);
	cr_assert_eq(atomic_load(&double_owned), 0, "a page was owned twice");
	cr_assert_eq(atomic_load(&stale), 0, "a give or a handle failed");
	cr_assert_eq(atomic_load(&handed), PRODUCERS * PER_PRODUCER);
	/* A page's generation only grows: no (page, version) is handed out twice. */
	static struct pv all[PRODUCERS * PER_PRODUCER];
	for (int i = 0; i < PRODUCERS; i++)
		memcpy(all + (size_t)i * PER_PRODUCER, versions[i], PER_PRODUCER * sizeof(struct pv));
	qsort(all, PRODUCERS * PER_PRODUCER, sizeof all[0], cmp_pv);
	size_t pages = 1;
	for (size_t i = 1; i < PRODUCERS * PER_PRODUCER; i++) {
		cr_assert(all[i].page != all[i - 1].page || all[i].version != all[i - 1].version,
			  "version %#lx of page %#lx handed out twice", (unsigned long)all[i].version,
			  (unsigned long)all[i].page);
		pages += all[i].page != all[i - 1].page;
	}
	cr_log_info("%zu distinct pages, %d handovers", pages, PRODUCERS * PER_PRODUCER);
	for (int i = 0; i < PRODUCERS; i++)
		free(versions[i]);
	labyrinth_stats_t s;
	labyrinth_get_stats(stress_lab, &s);
	cr_assert_eq(s.page_allocations, PRODUCERS * PER_PRODUCER);
	cr_assert_eq(s.page_frees, s.page_allocations);
	cr_assert_eq(s.allocations, s.frees);
	cr_assert_eq(s.live_bytes, 0);
	cr_assert_geq(s.reserve_pages, 128, "the reserve lost pages: %lu",
		      (unsigned long)s.reserve_pages);
	free(owned);
	labyrinth_close(stress_lab);
}

/* ---- misuse is reported ----------------------------------------------- */

static void expect_report(void (*fn)(void *), void *arg, const char *start, const char *part)
{
	struct outcome o = run_in_child(fn, arg);
	cr_assert_eq(o.signal, SIGABRT, "expected SIGABRT, got signal %d exit %d; stderr: %s",
		     o.signal, o.exit_code, o.err);
	cr_assert(strncmp(o.err, start, strlen(start)) == 0, "expected '%s...', got '%s'", start,
		  o.err);
	cr_assert(!part || strstr(o.err, part), "expected '%s' in '%s'", part, o.err);
	cr_assert(strchr(o.err, '\n') == o.err + strlen(o.err) - 1, "more than one line: %s", o.err);
}

static void double_free_page(void *arg)
{
	void *p = labyrinth_alloc_page(arg, 0);
	labyrinth_free_page(arg, p);
	labyrinth_free_page(arg, p);
}

Test(page_errors, double_free_of_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(double_free_page, lab, "labyrinth: double free of 0x", "(class 4096 B");
	labyrinth_close(lab);
}

static void double_free_reserve_page(void *arg)
{
	void *p = labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
	labyrinth_free_page(arg, p);
	labyrinth_free_page(arg, p);
}

Test(page_errors, double_free_of_a_reserve_page)
{
	labyrinth_t *lab = open_reserved(4);
	expect_report(double_free_reserve_page, lab, "labyrinth: double free of 0x", NULL);
	labyrinth_close(lab);
}

static void *free_foreign(void *arg)
{
	void **a = arg;
	labyrinth_free_page(a[0], a[1]);
	return NULL;
}

static void free_by_another_thread(void *arg)
{
	void *a[2] = { arg, labyrinth_alloc_page(arg, LAB_GFP_EXCLUSIVE) };
	pthread_t th;
	pthread_create(&th, NULL, free_foreign, a);
	pthread_join(th, NULL);
}

Test(page_errors, an_exclusive_page_freed_by_another_thread)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_by_another_thread, lab, "labyrinth: invalid page free of 0x",
		      "(exclusive page of another thread, class 4096 B, version ");
	labyrinth_close(lab);
}

static void free_after_give(void *arg)
{
	void *p = labyrinth_alloc_page(arg, LAB_GFP_EXCLUSIVE);
	if (labyrinth_page_give(arg, p, labyrinth_thread_self() + 1) == LAB_PAGE_OK)
		labyrinth_free_page(arg, p);
}

Test(page_errors, the_giver_frees_a_page_it_gave_away)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_after_give, lab, "labyrinth: invalid page free of 0x",
		      "(exclusive page of another thread");
	labyrinth_close(lab);
}

static void free_page_of_malloc(void *arg)
{
	labyrinth_free_page(arg, labyrinth_malloc(arg, 64));
}

Test(page_errors, free_page_of_a_malloc_pointer)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_page_of_malloc, lab, "labyrinth: invalid page free of 0x", "(not a page");
	labyrinth_close(lab);
}

static void free_inside_page(void *arg)
{
	labyrinth_free_page(arg, (char *)labyrinth_alloc_page(arg, 0) + 64);
}

Test(page_errors, free_page_inside_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(free_inside_page, lab, "labyrinth: invalid page free of 0x",
		      "(not the start of a page");
	labyrinth_close(lab);
}

static void malloc_free_of_page(void *arg)
{
	labyrinth_free(arg, labyrinth_alloc_page(arg, 0));
}

Test(page_errors, labyrinth_free_of_a_page)
{
	labyrinth_t *lab = open_private(0);
	expect_report(malloc_free_of_page, lab, "labyrinth: invalid free of 0x",
		      "(a page of the page API");
	labyrinth_close(lab);
}

static void stale_free(void *arg)
{
	lab_page_handle_t h = labyrinth_alloc_handle(arg, 0, LAB_GFP_ATOMIC);
	labyrinth_handle_free(arg, h);
	lab_page_handle_t again = labyrinth_alloc_handle(arg, 0, LAB_GFP_ATOMIC);
	(void)again;
	labyrinth_handle_free(arg, h);  /* the same page, a newer version */
}

Test(page_errors, free_of_a_stale_handle)
{
	labyrinth_t *lab = open_reserved(1);
	expect_report(stale_free, lab, "labyrinth: stale page handle of 0x",
		      "(reallocated or given since, class 4096 B, version ");
	labyrinth_close(lab);
}

static void stale_free_freed(void *arg)
{
	lab_page_handle_t h = labyrinth_alloc_handle(arg, 0, 0);
	labyrinth_handle_free(arg, h);
	labyrinth_handle_free(arg, h);
}

Test(page_errors, second_free_of_a_handle)
{
	labyrinth_t *lab = open_private(0);
	expect_report(stale_free_freed, lab, "labyrinth: stale page handle of 0x", "(freed since");
	labyrinth_close(lab);
}

static void nofail_empty(void *arg)
{
	labyrinth_alloc_page(arg, LAB_GFP_ATOMIC | LAB_GFP_NOFAIL);
}

Test(page_errors, nofail_ends_the_process)
{
	labyrinth_t *lab = open_private(0);
	struct outcome o = run_in_child(nofail_empty, lab);
	cr_assert_eq(o.signal, SIGABRT, "signal %d exit %d", o.signal, o.exit_code);
	cr_assert_str_eq(o.err,
		"labyrinth: the labyrinth has no exit: page allocation failed, out of memory\n");
	labyrinth_close(lab);
}

static void nofail_capped(void *arg)
{
	(void)arg;
	labyrinth_options_t o = { .size = sizeof o, .cap_bytes = 8192 };
	labyrinth_t *lab = labyrinth_open(&o);
	for (int i = 0; i < 3; i++)
		labyrinth_alloc_page(lab, LAB_GFP_NOFAIL);
}

Test(page_errors, nofail_at_the_cap_ends_the_process)
{
	struct outcome o = run_in_child(nofail_capped, NULL);
	cr_assert_eq(o.signal, SIGABRT, "signal %d exit %d", o.signal, o.exit_code);
	cr_assert_str_eq(o.err,
		"labyrinth: the labyrinth has no exit: page allocation failed, out of memory\n");
}

static void write_after_free_page(void *arg)
{
	char *p = labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
	labyrinth_free_page(arg, p);
	p[100] = 1;
	labyrinth_alloc_page(arg, LAB_GFP_ATOMIC);
}

Test(page_errors, write_after_free_of_a_reserve_page)
{
	labyrinth_t *lab = open_reserved(1);
	expect_report(write_after_free_page, lab, "labyrinth: write after free of 0x", NULL);
	labyrinth_close(lab);
}

static void pool_overflow(void *arg)
{
	char *p = labyrinth_malloc(arg, 100);
	p[100] = 1;
	labyrinth_free(arg, p);
}

Test(page_errors, a_pool_allocation_keeps_its_canary)
{
	labyrinth_t *lab = open_pool(8192, 0);
	expect_report(pool_overflow, lab, "labyrinth: heap overflow of 0x", NULL);
	labyrinth_close(lab);
}

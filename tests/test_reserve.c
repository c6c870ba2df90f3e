/*
 * The reserve and the atomic path: proved under a seccomp filter that kills
 * on any memory, futex or sleeping system call, and from a signal handler
 * that interrupts labyrinth_malloc; capped and prefaulted labyrinths.
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


/* ---- the reserve ------------------------------------------------------ */

Test(reserve, atomic_serves_only_from_the_reserve)
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

Test(reserve, below_the_low_water_mark_ordinary_allocation_refills)
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

Test(reserve, reserve_of_higher_orders)
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

/*
 * ABA: a pop reads the head (page A, below it B) and is preempted; others
 * pop A, pop B and push A back. The head names A again, but its tag moved,
 * so the stale pop's swap (which would install B, a page in use) fails.
 */
Test(reserve, a_stale_pop_fails_its_swap)
{
	labyrinth_t *lab = open_reserved(2);
	struct wing *w = &lab->maze.wings[lab->page_wing0];
	struct reserve *r = &lab->reserves[0];
	uint64_t seen = atomic_load(&r->head);
	uint32_t a = (uint32_t)seen - 1;
	uint32_t below = atomic_load(&page_rec_of(w, a)->next);
	cr_assert_eq(reserve_pop(w, r), a);
	uint32_t b = reserve_pop(w, r);
	cr_assert_eq(b + 1, below);
	reserve_push(w, r, a);
	cr_assert_eq((uint32_t)atomic_load(&r->head), a + 1, "the head names A again");
	uint64_t stale_next = ((seen & ~0xffffffffULL) + (1ULL << 32)) | below;
	cr_assert_not(atomic_compare_exchange_strong(&r->head, &seen, stale_next),
		      "a stale pop would have handed out page B twice");
	reserve_push(w, r, b);
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

Test(reserve, atomic_path_makes_no_forbidden_system_call)
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

Test(reserve, atomic_path_on_an_empty_reserve_gets_null)
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
Test(reserve, the_filter_kills_an_ordinary_allocation)
{
	labyrinth_t *lab = open_private(0);
	struct outcome o = run_in_child(ordinary_under_filter, lab);
	cr_assert_eq(o.signal, SIGSYS, "signal %d, exit %d", o.signal, o.exit_code);
	labyrinth_close(lab);
}

/* ---- a prefaulted pool -------------------------------------------- */

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

Test(reserve, a_prefaulted_pool_never_makes_a_system_call)
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

Test(reserve, a_pool_never_grows)
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

Test(reserve, bad_open_options)
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

Test(reserve, a_capped_labyrinth_stops_at_its_cap)
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

/* ---- from a signal handler ------------------------------------------ */

static labyrinth_t *sig_lab;
static atomic_long sig_served, sig_bad, sig_inside;
static volatile sig_atomic_t in_malloc;      /* the main loop is inside the labyrinth */

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
		if (in_malloc)
			atomic_fetch_add(&sig_inside, 1);
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

Test(reserve, atomic_allocation_in_a_signal_handler_during_malloc, .timeout = 60)
{
	sig_lab = open_reserved(32);
	signal(SIGUSR1, on_signal);
	pthread_t self = pthread_self(), th;
	atomic_store(&kicking, 1);
	pthread_create(&th, NULL, kicker, &self);
	unsigned long long seed = 42;
	void *keep[64] = { 0 };
	for (int i = 0; i < 300000 || atomic_load(&sig_inside) < 100; i++) {
		int k = (int)(test_rand(&seed) % 64);
		size_t size = 1 + test_rand(&seed) % 3000;
		in_malloc = 1;
		labyrinth_free(sig_lab, keep[k]);       /* same labyrinth, its locks */
		keep[k] = labyrinth_malloc(sig_lab, size);
		in_malloc = 0;
		cr_assert_not_null(keep[k]);
	}
	atomic_store(&kicking, 0);
	pthread_join(th, NULL);
	signal(SIGUSR1, SIG_DFL);
	for (int k = 0; k < 64; k++)
		labyrinth_free(sig_lab, keep[k]);
	cr_log_info("%ld pages served in signal handlers, %ld inside malloc or free",
		    atomic_load(&sig_served), atomic_load(&sig_inside));
	cr_assert_eq(atomic_load(&sig_bad), 0, "a page came unscrubbed");
	labyrinth_stats_t s;
	labyrinth_get_stats(sig_lab, &s);
	cr_assert_eq(s.allocations, s.frees);
	cr_assert_eq(s.reserve_pages, 32);
	labyrinth_close(sig_lab);
}


/*
 * Fork: a child shares no secret with its parent or its siblings (placement,
 * canaries), one leaked canary predicts no other room's, and fork works in
 * every shape (threads, vfork, posix_spawn, a raw clone).
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SMALL 24                /* class 32: the canary is the word at +24 */
#define LARGE (65536 + 96)      /* the canary starts at an 8-aligned offset */
#define ALLOCS 8

/* Reads and writes of the canary, which ASan (sanitizer build) would stop. */
__attribute__((no_sanitize("address"))) static uint64_t peek(const void *at)
{
	const volatile unsigned char *p = at;
	uint64_t w = 0;
	for (int i = 0; i < 8; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

__attribute__((no_sanitize("address"))) static void poke(void *at, uint64_t w)
{
	volatile unsigned char *p = at;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(w >> (8 * i));
}

static void write_all(int fd, const void *buf, size_t n)
{
	cr_assert_eq(write(fd, buf, n), (ssize_t)n);
}

static void read_all(int fd, void *buf, size_t n)
{
	size_t got = 0;
	ssize_t r;
	while (got < n && (r = read(fd, (char *)buf + got, n - got)) > 0)
		got += (size_t)r;
	cr_assert_eq(got, n, "a child sent %zu of %zu bytes", got, n);
}

static void wait_ok(pid_t pid)
{
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* Some history before the fork: a thread cache with batches, a quarantine. */
static void warm_up(void)
{
	void *keep[16];
	for (int i = 0; i < 16; i++)
		keep[i] = labyrinth_malloc(NULL, SMALL);
	for (int i = 0; i < 16; i += 2)
		labyrinth_free(NULL, keep[i]);
}

/* ---- what children make after the fork ---------------------------------- */

struct made {
	uintptr_t addr[ALLOCS];
	uint64_t canary[ALLOCS];
	uint64_t large_canary;
};

static void make_some(struct made *m)
{
	for (int i = 0; i < ALLOCS; i++) {
		char *p = labyrinth_malloc(NULL, SMALL);
		m->addr[i] = (uintptr_t)p;
		m->canary[i] = peek(p + SMALL);
	}
	char *l = labyrinth_malloc(NULL, LARGE);
	m->large_canary = peek(l + LARGE);
}

static void expect_apart(const struct made *a, const struct made *b, const char *who)
{
	cr_assert(memcmp(a->addr, b->addr, sizeof a->addr) != 0,
		  "%s placed %d allocations at the same addresses", who, ALLOCS);
	for (int i = 0; i < ALLOCS; i++)
		cr_assert_neq(a->canary[i], b->canary[i], "%s: allocation %d has the same canary",
			      who, i);
	cr_assert_neq(a->large_canary, b->large_canary, "%s: the large block's canary", who);
}

Test(fork, children_place_and_key_apart_from_each_other_and_the_parent)
{
	warm_up();
	struct made m[4];
	int fds[3][2];
	pid_t pid[3];
	for (int c = 0; c < 3; c++) {
		cr_assert_eq(pipe(fds[c]), 0);
		pid[c] = fork();
		cr_assert_geq(pid[c], 0);
		if (pid[c] == 0) {
			struct made mine;
			make_some(&mine);
			write_all(fds[c][1], &mine, sizeof mine);
			_exit(0);
		}
		close(fds[c][1]);
	}
	make_some(&m[3]);
	for (int c = 0; c < 3; c++) {
		read_all(fds[c][0], &m[c], sizeof m[c]);
		close(fds[c][0]);
		wait_ok(pid[c]);
	}
	expect_apart(&m[0], &m[1], "children 1 and 2");
	expect_apart(&m[0], &m[2], "children 1 and 3");
	expect_apart(&m[1], &m[2], "children 2 and 3");
	for (int c = 0; c < 3; c++)
		expect_apart(&m[c], &m[3], "a child and its parent");
}

/* ---- a pre-forking server: what one child leaks, the next must not accept */

struct leak {
	uintptr_t addr;
	uint64_t canary;
};

static void request_overflow(void *arg)
{
	const struct leak *learned = arg;
	char *req = labyrinth_malloc(NULL, SMALL);
	memset(req, 'A', SMALL);
	poke(req + SMALL, learned->canary);     /* overflow, "keeping" the canary */
	labyrinth_free(NULL, req);
}

Test(fork, a_canary_learned_from_one_child_is_caught_in_the_next)
{
	warm_up();
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char *req = labyrinth_malloc(NULL, SMALL);
		struct leak l = { (uintptr_t)req, peek(req + SMALL) };
		write_all(fds[1], &l, sizeof l);
		labyrinth_free(NULL, req);
		_exit(0);
	}
	close(fds[1]);
	struct leak learned;
	read_all(fds[0], &learned, sizeof learned);
	close(fds[0]);
	wait_ok(pid);
	struct outcome o = run_in_child(request_overflow, &learned);
	cr_assert_eq(o.signal, SIGABRT, "the overflow went unnoticed (signal %d, exit %d): %s",
		     o.signal, o.exit_code, o.err);
	cr_assert(strncmp(o.err, "labyrinth: heap overflow of 0x", 30) == 0, "got: %s", o.err);
}

/* ---- one canary and its address say nothing of another room's ----------- */

/* The canary mix before per-room keys: secret ^ address through
 * xorshift-multiply-xorshift, every step invertible. */
static uint64_t old_pattern(uint64_t secret, uintptr_t addr)
{
	uint64_t x = secret ^ addr;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x | 0x0101010101010101ULL;
}

static uint64_t mul_inverse(uint64_t a)
{
	uint64_t x = a;                 /* Newton: 5 steps give 64 bits for odd a */
	for (int i = 0; i < 5; i++)
		x *= 2 - a * x;
	return x;
}

/* The 256 secrets the old mix allows for one canary and its address. */
static uint64_t old_secret(uint64_t canary, uintptr_t addr, unsigned low_bits)
{
	uint64_t x = canary & ~0x0101010101010101ULL;
	for (int b = 0; b < 8; b++)
		x |= (uint64_t)((low_bits >> b) & 1) << (8 * b);
	x ^= (x >> 29) ^ (x >> 58);
	x *= mul_inverse(0xbf58476d1ce4e5b9ULL);
	x ^= (x >> 31) ^ (x >> 62);
	return x ^ addr;
}

Test(fork, one_leaked_canary_does_not_predict_another_rooms)
{
	char *a = labyrinth_malloc(NULL, SMALL);        /* class 32 */
	char *b = labyrinth_malloc(NULL, 40);           /* class 48: another room */
	uint64_t ca = peek(a + SMALL), cb = peek(b + 40);
	for (unsigned m = 0; m < 256; m++) {
		uint64_t secret = old_secret(ca, (uintptr_t)a, m);
		cr_assert_neq(old_pattern(secret, (uintptr_t)b), cb,
			      "the canary of %p predicts the canary of %p", (void *)a, (void *)b);
	}
	/* The same slot's next allocation is keyed anew too. */
	labyrinth_free(NULL, a);
	labyrinth_trim(NULL);
	char *again = NULL;
	for (int i = 0; i < 4096 && again != a; i++) {
		again = labyrinth_malloc(NULL, SMALL);
		if (again != a)
			labyrinth_free(NULL, again);
	}
	if (again == a)
		cr_assert_neq(peek(a + SMALL), ca, "a slot's next allocation has its old canary");
	labyrinth_free(NULL, b);
}

/* ---- fork from a process whose threads allocate -------------------------- */

#define THREADS 4
#define TABLE 64

static _Atomic(void *) table[THREADS][TABLE];
static atomic_int stop;

static atomic_int started;
/* The churning threads' labyrinth (NULL: the default one); with
 * churn_large, their blocks are large (beyond the small classes), and one
 * in two is grown or shrunk in place by realloc. */
static labyrinth_t *churn_lab;
static atomic_bool churn_large;

static void *churn_one(unsigned long long *seed, void *old)
{
	if (!atomic_load(&churn_large)) {
		labyrinth_free(churn_lab, old);
		return labyrinth_malloc(churn_lab, 16 + test_rand(seed) % 500);
	}
	size_t size = 20000 + test_rand(seed) % 60000;
	if (old && test_rand(seed) % 2)
		return labyrinth_realloc(churn_lab, old, size);
	labyrinth_free(churn_lab, old);
	return labyrinth_malloc(churn_lab, size);
}

static void *churn(void *arg)
{
	unsigned long long seed = (uintptr_t)arg + 1;
	_Atomic(void *) *mine = table[(uintptr_t)arg];
	atomic_fetch_add(&started, 1);
	while (!atomic_load(&stop)) {
		unsigned i = (unsigned)(test_rand(&seed) % TABLE);
		void *old = atomic_exchange(&mine[i], NULL);
		atomic_store(&mine[i], churn_one(&seed, old));
	}
	return NULL;
}

/*
 * n churning threads, each started before this returns. A thread starting
 * allocates in its C library and, under ASan, in ASan's allocator; a fork
 * that catches it there leaves that allocator's lock held: the sanitizer
 * build's threaded fork test hung, in the child or in the parent, in 3 of
 * 5 runs on a loaded machine while its first fork raced its threads' start.
 */
static void start_churning(pthread_t *th, unsigned n)
{
	atomic_store(&stop, 0);
	atomic_store(&started, 0);
	for (uintptr_t t = 0; t < n; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, churn, (void *)t), 0);
	while (atomic_load(&started) < (int)n)
		usleep(1000);
	usleep(10000);          /* and past their first allocations */
}

/* The rooms that hold the dead threads' objects, as the child sees them. */
static uint64_t rooms_in_use(void)
{
	struct labyrinth *lab = lab_default_if_open();
	uint64_t seen[THREADS * TABLE];
	unsigned n = 0;
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < TABLE; i++) {
			void *p = atomic_load(&table[t][i]);
			struct wing *w = p ? maze_wing_of(&lab->maze, p) : NULL;
			size_t off;
			uint32_t cell = w ? wing_cell_of(w, p, &off) : CELL_NONE;
			if (cell == CELL_NONE)
				continue;
			uint64_t room = (uint64_t)w->index << 32 | cell;
			unsigned k = 0;
			while (k < n && seen[k] != room)
				k++;
			if (k == n)
				seen[n++] = room;
		}
	return n;
}

static pthread_barrier_t adopted;

/* A thread of the child: adopts one of the caches the fork left behind
 * (all of them adopted at once, one each) and pushes its quarantine out. */
static void *adopt_and_flush(void *arg)
{
	labyrinth_free(NULL, labyrinth_malloc(NULL, 16));
	pthread_barrier_wait(&adopted);
	flush_quarantine(NULL);
	pthread_barrier_wait(&adopted);
	return arg;
}

/*
 * In the child only this thread lives. Its threads' objects stay (what the
 * child inherited is its own to free); new threads adopt their caches
 * (salvaging them) and push their own quarantines out. Then whatever the
 * caches held must have come
 * back: no slot waits in a quarantine but FLUSH_SIZE blocks (trim keeps
 * them), and no room stays open but those holding objects. A thread
 * caught between malloc and its table, or table and free, pins at most
 * two more; so do the spare rooms trim keeps (none) and the child's own.
 */
static int child_after_fork(unsigned long long rooms_before)
{
	void *mine[64];
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 64; i++)
			mine[i] = labyrinth_malloc(NULL, 16 + (size_t)(round * 64 + i) % 700);
		for (int i = 0; i < 64; i++)
			labyrinth_free(NULL, mine[i]);
	}
	pthread_t th[THREADS];
	pthread_barrier_init(&adopted, NULL, THREADS);
	for (int t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, adopt_and_flush, NULL);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	flush_quarantine(NULL);
	labyrinth_trim(NULL);
	labyrinth_stats_t s;
	labyrinth_get_stats(NULL, &s);
	if (s.quarantined_slots > (THREADS + 1) * 1024)  /* FLUSH_SIZE blocks only */
		return 2;
	if (rooms_open_but_flush(NULL) > rooms_before + rooms_in_use() + 2 * THREADS)
		return 3;
	return 0;
}

/*
 * Fork n children that each exit with child(arg); how many did not exit 0,
 * and the first such one's status in *first. No assertion is made while
 * the children are forked: each is a message to Criterion's runner, whose
 * library threads allocate, and a fork that catches one of them inside
 * ASan's allocator leaves its lock held in the child for good (the
 * sanitizer build's children hung in pthread_join, about one run in two).
 */
static int forked_children_failing(int n, int (*child)(void *), void *arg, int *first)
{
	int failing = 0;
	*first = 0;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(child(arg));
		int status = -1;
		if (pid < 0 || waitpid(pid, &status, 0) != pid ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			if (!failing++)
				*first = status;
		}
	}
	return failing;
}

static int after_fork(void *rooms_before)
{
	return child_after_fork(*(unsigned long long *)rooms_before);
}

Test(fork, from_threads_that_allocate_without_deadlock_or_leak, .timeout = 120)
{
	labyrinth_trim(NULL);
	unsigned long long rooms_before = rooms_open_but_flush(NULL);
	pthread_t th[THREADS];
	start_churning(th, THREADS);
	int first, failing = forked_children_failing(200, after_fork, &rooms_before, &first);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(failing, 0, "%d of 200 children failed, the first with status %#x "
		     "(2: quarantine kept, 3: rooms kept open)", failing, first);
}

static int sweep_child(void *unused)
{
	(void)unused;
	return labyrinth_check(churn_lab) != 0;
}

/* The child of a threaded parent holds the blocks its dead threads were
 * handing out or freeing, half made for good: its sweep (labyrinth_check,
 * and the exit check under LABYRINTH_SAMPLE) must not take them for
 * damage. Until 2026-12-05 about 25 of 40 such children reported one. */
Test(fork, a_childs_sweep_takes_no_half_made_block_for_damage, .timeout = 120)
{
	pthread_t th[THREADS];
	start_churning(th, THREADS);
	int first, reported = forked_children_failing(40, sweep_child, NULL, &first);
	/* A block the child makes is checked as ever: its overflow is found. */
	pid_t pid = fork();
	if (pid == 0) {
		char *p = labyrinth_malloc(NULL, 24);
		poke(p + 24, 0x4141414141414141ULL);
		_exit(labyrinth_check(NULL) == 0 ? 0 : 3);
	}
	int status = -1;
	waitpid(pid, &status, 0);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(reported, 0, "%d of 40 children's sweeps reported damage", reported);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		  "a child's own overflow went unreported: status %#x", status);
}

/* The same with large blocks, made, resized in place and freed by the
 * threads the fork leaves behind. */
Test(fork, a_childs_sweep_takes_no_half_made_large_block_for_damage, .timeout = 120)
{
	pthread_t th[THREADS];
	atomic_store(&churn_large, true);
	start_churning(th, THREADS);
	int first, reported = forked_children_failing(100, sweep_child, NULL, &first);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&churn_large, false);
	cr_assert_eq(reported, 0, "%d of 100 children's sweeps reported damage (the first: status %#x)",
		     reported, first);
}

/* And with a pool's labyrinth_malloc blocks, each a page of its own. */
Test(fork, a_childs_sweep_takes_no_half_made_pool_block_for_damage, .timeout = 120)
{
	pthread_t th[THREADS];
	churn_lab = open_pool(16 << 20, 0);
	start_churning(th, THREADS);
	int first, reported = forked_children_failing(100, sweep_child, NULL, &first);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < TABLE; i++)
			labyrinth_free(churn_lab, atomic_exchange(&table[t][i], NULL));
	labyrinth_close(churn_lab);
	churn_lab = NULL;
	cr_assert_eq(reported, 0, "%d of 100 children's sweeps reported damage (the first: status %#x)",
		     reported, first);
}

/* A grandchild forked from such a child by its one thread checks the
 * child's blocks as any process does: only the blocks of the generation
 * that forked while threads ran are passed over. (Red team: the flag was
 * the whole family's, and a worker's overflow went unreported in every
 * request child it forked.) */
static int grandchild_checks_childs_block(void)
{
	char *p = labyrinth_malloc(NULL, 40);
	poke(p + 40, 0x4141414141414141ULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(labyrinth_check(NULL) == 0 ? 0 : 3);
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return 4;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT ? 0 : 5;
}

Test(fork, a_grandchild_still_checks_the_blocks_of_its_single_threaded_parent, .timeout = 60)
{
	pthread_t th[THREADS];
	start_churning(th, THREADS);
	pid_t pid = fork();
	if (pid == 0)
		_exit(grandchild_checks_childs_block());
	int status = -1;
	waitpid(pid, &status, 0);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	cr_assert(WIFEXITED(status), "child status %#x", status);
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "the grandchild's sweep missed an overflow of its parent's block (%d)",
		     WEXITSTATUS(status));
}

/* Whether the resizing threads have thread caches (a malloc first) or do
 * nothing but resize, on the general path. */
static bool resizers_have_caches = true;

/* Resizes the blocks of its row of the table in place, over and over:
 * 193 to 207 bytes all take the 208-byte class. */
static void *resize_in_place(void *arg)
{
	unsigned long long seed = (uintptr_t)arg + 1;
	_Atomic(void *) *mine = table[(uintptr_t)arg];
	if (resizers_have_caches)
		labyrinth_free(NULL, labyrinth_malloc(NULL, 16));      /* a thread cache */
	atomic_fetch_add(&started, 1);
	while (!atomic_load(&stop)) {
		unsigned i = (unsigned)(test_rand(&seed) % TABLE);
		void *p = atomic_load(&mine[i]);
		atomic_store(&mine[i], labyrinth_realloc(NULL, p, 193 + test_rand(&seed) % 15));
	}
	return NULL;
}

/* A process whose threads resize in place blocks its parent made, and
 * forks: its children's sweeps must not take a block caught midway for
 * damage (its owner tag names the parent's generation, whose blocks the
 * sweep checks). How many of 100 children reported damage. */
static int resizing_process(void)
{
	pthread_t th[THREADS];
	atomic_store(&stop, 0);        /* no Criterion assertion in a forked process */
	atomic_store(&started, 0);
	for (uintptr_t t = 0; t < THREADS; t++)
		if (pthread_create(&th[t], NULL, resize_in_place, (void *)t) != 0)
			return 101;
	while (atomic_load(&started) < THREADS)
		usleep(1000);
	usleep(10000);          /* past their first allocations, as start_churning() */
	int first, reported = forked_children_failing(100, sweep_child, NULL, &first);
	atomic_store(&stop, 1);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	return reported;
}

static void resized_at_the_fork(void)
{
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < TABLE; i++)
			atomic_store(&table[t][i], labyrinth_malloc(NULL, 200));
	pid_t pid = fork();
	if (pid == 0)
		_exit(resizing_process());
	int status = -1;
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status), "the resizing process died: status %#x", status);
	cr_assert_eq(WEXITSTATUS(status), 0, "%d of its 100 children's sweeps reported damage",
		     WEXITSTATUS(status));
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < TABLE; i++)
			labyrinth_free(NULL, atomic_exchange(&table[t][i], NULL));
}

Test(fork, a_block_of_an_older_generation_resized_at_the_fork_is_no_damage, .timeout = 120)
{
	resized_at_the_fork();
}

/* The same by threads that only resize, and so have no thread cache for
 * the fork to find (red team: 13 to 41 of 200 grandchildren reported). */
Test(fork, a_block_resized_at_the_fork_by_a_thread_with_no_cache_is_no_damage, .timeout = 120)
{
	resizers_have_caches = false;
	resized_at_the_fork();
}

/* ---- a dead thread's quarantine, in a child ------------------------------- */

#define HELD_SIZE 400           /* a class little else in the test uses */
#define HELD 64

static uintptr_t held[HELD];
static int freed_pipe[2], go_pipe[2];

/* Frees HELD blocks into this thread's quarantine, then waits, alive, for
 * the fork: in the child it is a dead thread whose cache is an orphan. */
static void *free_and_wait(void *arg)
{
	(void)arg;
	/* Every other block stays live, so that the freed ones' rooms stay
	 * open: a slot released early is free in a room refills draw from. */
	void *p[2 * HELD];
	for (int i = 0; i < 2 * HELD; i++)
		p[i] = labyrinth_malloc(NULL, HELD_SIZE);
	for (int i = 0; i < HELD; i++) {
		held[i] = (uintptr_t)p[2 * i];
		labyrinth_free(NULL, p[2 * i]);
	}
	char c = 'f';
	if (write(freed_pipe[1], &c, 1) != 1 || read(go_pipe[0], &c, 1) != 1)
		abort();
	return NULL;
}

/* Blocks of the held class, kept: how many are blocks the dead thread had
 * freed. The first thread the child starts adopts the dead thread's cache;
 * each takes its batches from the next arena, so together they draw from
 * the dead thread's arena too. */
static void *held_handed_out(void *hits)
{
	for (int i = 0; i < 1000; i++) {
		uintptr_t p = (uintptr_t)labyrinth_malloc(NULL, HELD_SIZE);
		for (int k = 0; k < HELD; k++)
			*(int *)hits += p == held[k];
	}
	return NULL;
}

static int child_with_a_dead_thread(void)
{
	int hits = 0;
	for (int i = 0; i < 2 * MAX_ARENAS; i++) {
		pthread_t t;
		pthread_create(&t, NULL, held_handed_out, &hits);
		pthread_join(t, NULL);
		if (i == 0)
			labyrinth_trim(NULL);   /* salvages orphans too, and must keep them */
	}
	return hits > 100 ? 100 : hits;
}

/* Until 2026-12-05 a child that started a thread released the quarantines
 * of threads the fork left behind: their freed blocks came back within a
 * few dozen allocations of their size. */
Test(fork, a_dead_threads_quarantine_still_holds_its_blocks_in_the_child, .timeout = 60)
{
	cr_assert_eq(pipe(freed_pipe), 0);
	cr_assert_eq(pipe(go_pipe), 0);
	pthread_t holder;
	cr_assert_eq(pthread_create(&holder, NULL, free_and_wait, NULL), 0);
	char c;
	ssize_t got = read(freed_pipe[0], &c, 1);
	pid_t pid = fork();     /* no assertion just before: see forked_children_failing() */
	if (pid == 0)
		_exit(child_with_a_dead_thread());
	int status = -1;
	waitpid(pid, &status, 0);
	cr_assert_eq(got, 1);
	cr_assert_eq(write(go_pipe[1], "g", 1), 1);
	cr_assert_eq(pthread_join(holder, NULL), 0);
	cr_assert(WIFEXITED(status), "child status %#x", status);
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "%d blocks the dead thread freed were handed out again in the child",
		     WEXITSTATUS(status));
}

/* ---- vfork, posix_spawn, and a clone that runs no fork handler ----------- */

Test(fork, vfork_and_posix_spawn_run_no_allocator_code, .timeout = 60)
{
	pthread_t th[2];
	start_churning(th, 2);
	char *argv[] = { "true", NULL };
	for (int i = 0; i < 50; i++) {
		pid_t pid;
		cr_assert_eq(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ), 0);
		wait_ok(pid);
		pid = vfork();
		if (pid == 0) {
			execve("/bin/true", argv, environ);
			_exit(127);
		}
		cr_assert_geq(pid, 0);
		wait_ok(pid);
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
}

/*
 * A raw clone runs no atfork handler, but the page that holds the process
 * generation comes to the child as zeros (MADV_WIPEONFORK): its first
 * allocation renews the generation, its thread cache gives back its batches
 * and its arena draws a new generator, so two such children and their
 * parent place and key their allocations apart too.
 */
Test(fork, raw_clone_children_place_and_key_apart)
{
	warm_up();
	struct made m[3];
	int fds[2][2];
	long pid[2];
	for (int c = 0; c < 2; c++) {
		cr_assert_eq(pipe(fds[c]), 0);
		pid[c] = syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
		cr_assert_geq(pid[c], 0);
		if (pid[c] == 0) {
			struct made mine;
			make_some(&mine);
			if (write(fds[c][1], &mine, sizeof mine) != sizeof mine)
				_exit(1);
			_exit(0);
		}
		close(fds[c][1]);
	}
	make_some(&m[2]);
	for (int c = 0; c < 2; c++) {
		read_all(fds[c][0], &m[c], sizeof m[c]);
		close(fds[c][0]);
		wait_ok((pid_t)pid[c]);
	}
	expect_apart(&m[0], &m[1], "raw clone children 1 and 2");
	expect_apart(&m[0], &m[2], "raw clone child 1 and its parent");
	expect_apart(&m[1], &m[2], "raw clone child 2 and its parent");
}

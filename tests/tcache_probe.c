/*
 * The thread cache seen from a plain program run under the preload, linked
 * with tests/libkeys (40 pthread keys made before labyrinth's constructor).
 * tests/test_tcache.sh runs each mode and judges the line it prints.
 *
 *   attack     an attacker overwrites every value glibc keeps for a thread
 *              in its key blocks (heap blocks, for keys past 31) with a fake
 *              thread cache, then arms the fake with an address of their
 *              choosing, while threads come and go
 *   keys       2,000 threads set a key past 31 before their first malloc
 *   trim       2,000 times: free a 64-byte block, malloc_trim(0), 32 mallocs
 *   forkresize a child's threads resize its parent's blocks in place while
 *              it forks children that check every block at exit
 *
 * The attack needs the cache's layout and the maze's, as an attacker who
 * has the binary would: it includes the allocator's headers.
 */
#include "tcache.h"
#include "room.h"

#include <dlfcn.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern pthread_key_t libkeys[];
extern int libkeys_made;

static void *volatile sink;

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, arg) != 0) {
		perror("pthread_create");
		exit(2);
	}
	return t;
}

static void run(void *(*fn)(void *), void *arg)
{
	pthread_join(start(fn, arg), NULL);
}

/* ---- attack ------------------------------------------------------------- */

static struct thread_cache *fake;       /* the attacker's bytes */
static int overwritten, last_key = -1;

/* Every value glibc holds for this thread, whoever set it, becomes the
 * fake: what an overflow into glibc's key blocks would do. */
static void *overwrite_keys(void *arg)
{
	(void)arg;
	sink = malloc(64);
	free(sink);
	for (int k = 0; k < PTHREAD_KEYS_MAX; k++) {
		if (pthread_getspecific((pthread_key_t)k) != NULL) {
			pthread_setspecific((pthread_key_t)k, fake);
			overwritten++;
			last_key = k;
		}
	}
	return NULL;
}

static void *churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 8; i++) {
		sink = malloc(16 + (size_t)i * 8);
		free(sink);
	}
	return NULL;
}

static void *leak_one(void *arg)
{
	*(void **)arg = malloc(64);     /* stays live: its room stays open */
	return NULL;
}

static void *victim(void *arg)
{
	*(void **)arg = malloc(64);
	return NULL;
}

static int attack(void)
{
	struct labyrinth *(*get)(void) = (struct labyrinth * (*)(void))dlsym(RTLD_DEFAULT,
									       "labyrinth_default");
	if (!get) {
		puts("labyrinth is not loaded");
		return 2;
	}
	struct labyrinth *lab = get();
	size_t bytes = sizeof(struct thread_cache) + 65536;
	fake = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fake == MAP_FAILED)
		return 2;
	fake->lab = lab;                /* nothing held, room for batches */
	for (unsigned c = 0; c < SMALL_CLASSES; c++)
		fake->batch[c].cap = BATCH_MAX;
	run(overwrite_keys, NULL);
	for (int i = 0; i < 50; i++)
		run(churn, NULL);
	/* The address to hand out: a never-used slot beside a live block of
	 * another thread's arena (the victim's arena never holds it). */
	void *y;
	run(leak_one, &y);
	struct wing *w = maze_wing_of(&lab->maze, y);
	size_t off;
	uint32_t cell = wing_cell_of(w, y, &off);
	struct room *r = room_of(w, cell);
	char *target = NULL;
	for (uint16_t s = 0; s < slots_per_room(w) && !target; s++)
		if (atomic_load(slot_version(r, s)) == 0) {
			target = cell_addr(w, cell) + (size_t)s * w->class_size;
			struct batch *b = &fake->batch[wing_index(lab, w)];
			b->ref[0] = (struct slot_ref){ .cell = cell,
						       .cls = (uint16_t)wing_index(lab, w),
						       .slot = s };
			b->n = 1;
		}
	struct thread_cache *armed = malloc(bytes);
	memcpy(armed, fake, bytes);
	void *got;
	run(victim, &got);
	int adopted = memcmp(armed, fake, bytes) != 0;
	printf("libkeys=%d overwritten=%d key=%d adopted=%d chosen=%d\n", libkeys_made,
	       overwritten, last_key, adopted, target && got == target);
	return 0;
}

/* ---- keys: a key set before the first malloc ----------------------------- */

static pthread_key_t own;

static void *set_then_malloc(void *arg)
{
	(void)arg;
	pthread_setspecific(own, (void *)1);    /* glibc callocs its block here */
	for (int i = 0; i < 4; i++)
		sink = malloc(100);
	free(sink);
	return NULL;
}

static int keys(void)
{
	if (pthread_key_create(&own, NULL) != 0)
		return 2;
	run(set_then_malloc, NULL);     /* the pools and stacks of one thread */
	long before = rss_kib();
	for (int i = 0; i < 2000; i++)
		run(set_then_malloc, NULL);
	printf("key=%u before=%ld after=%ld\n", (unsigned)own, before, rss_kib());
	return 0;
}

/* ---- trim: quarantined addresses stay quarantined ------------------------ */

static int trim(void)
{
	int back = 0;
	void *p[32];
	sink = malloc(64);      /* live: the room stays open, the slot goes back to it */
	for (int t = 0; t < 2000; t++) {
		void *freed = malloc(64);
		free(freed);
		malloc_trim(0);
		for (int i = 0; i < 32; i++) {
			p[i] = malloc(64);
			back += p[i] == freed;
		}
		for (int i = 0; i < 32; i++)
			free(p[i]);
	}
	printf("returned=%d\n", back);
	return 0;
}

/*
 * forkresize: blocks this process makes are resized in place (realloc
 * within their class, the fast path) by 4 threads of a child, which forks
 * 100 children of its own that exit at once: with LABYRINTH_EXIT_CHECK=1
 * each checks every live block's canary at exit, and a block caught
 * midway must not be taken for damage. Prints how many died by a signal.
 */
#define RESIZERS 4
#define RESIZED 64
static void *resized[RESIZERS][RESIZED];
static atomic_int resizing_stop, resizing_started;

static void *resize_forever(void *arg)
{
	void **mine = resized[(uintptr_t)arg];
	unsigned long long x = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
	sink = malloc(16);      /* a thread that uses the heap has a cache */
	free(sink);
	atomic_fetch_add(&resizing_started, 1);
	while (!atomic_load(&resizing_stop)) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		unsigned i = (unsigned)(x >> 33) % RESIZED;
		mine[i] = realloc(mine[i], 193 + (size_t)(x >> 20) % 15);      /* one class */
	}
	return NULL;
}

static int resizing_child(void)
{
	pthread_t th[RESIZERS];
	for (uintptr_t t = 0; t < RESIZERS; t++)
		pthread_create(&th[t], NULL, resize_forever, (void *)t);
	while (atomic_load(&resizing_started) < RESIZERS)
		usleep(1000);
	int died = 0;
	for (int i = 0; i < 100; i++) {
		pid_t pid = fork();
		if (pid == 0)
			exit(0);        /* not _exit: the exit check runs */
		int status;
		if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
			died++;
	}
	atomic_store(&resizing_stop, 1);
	for (int t = 0; t < RESIZERS; t++)
		pthread_join(th[t], NULL);
	return died;
}

static int forkresize(void)
{
	for (int t = 0; t < RESIZERS; t++)
		for (int i = 0; i < RESIZED; i++)
			resized[t][i] = malloc(200);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(resizing_child());
	int status = -1;
	waitpid(pid, &status, 0);
	if (WIFEXITED(status))
		printf("died=%d\n", WEXITSTATUS(status));
	else
		printf("resizer status=%#x\n", status);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "attack") == 0)
		return attack();
	if (strcmp(mode, "keys") == 0)
		return keys();
	if (strcmp(mode, "trim") == 0)
		return trim();
	if (strcmp(mode, "forkresize") == 0)
		return forkresize();
	fprintf(stderr, "usage: tcache_probe attack|keys|trim|forkresize\n");
	return 2;
}

/*
 * generation: the process generation and each generation's canary key; see
 * generation.h. The page that holds the current generation is the only
 * state the kernel wipes at fork; the keys and the last generation number
 * live in ordinary memory, so a child still knows its ancestors' keys and
 * the blocks it inherited still verify.
 */
#include "generation.h"
#include "os.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

/* Until the page is mapped (and for good if it cannot be): never wiped. */
static struct gen_page fallback;
struct gen_page *gen_page = &fallback;
uint64_t gen_keys[GEN_TAGS];

/* Ordinary memory: a child inherits them, where it reads its page as 0. */
static uint32_t last_gen;
static _Atomic int renewing;
static pthread_once_t page_once = PTHREAD_ONCE_INIT;

/*
 * The mapping is made here rather than in os.c because it is the one page
 * whose contents must not survive a fork; madvise may fail on kernels
 * before 4.14, and then only a raw clone goes unnoticed (atfork children
 * are renewed by lab.c's handler either way).
 */
static void page_map(void)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	(void)madvise(p, PAGE_SIZE, MADV_WIPEONFORK);
	gen_page = p;
}

static unsigned tag_of(uint32_t gen)
{
	return gen < GEN_TAGS ? gen : GEN_TAGS - 1;
}

/*
 * The next generation, with `key` as its canary key. Past GEN_TAGS - 1
 * generations a child keeps its parent's key: the key of every tag is
 * needed by the blocks that carry it.
 */
static uint32_t renew(uint64_t key)
{
	uint32_t gen = last_gen + 1;
	if (gen < GEN_TAGS)
		gen_keys[gen] = key;
	last_gen = gen;
	gen_page->key = gen_keys[tag_of(gen)];
	atomic_store_explicit(&gen_page->tag_bits, tag_of(gen) << GEN_TAG_SHIFT,
			      memory_order_release);
	atomic_store_explicit(&gen_page->gen, gen, memory_order_release);
	return gen;
}

/* The first use in a process, or a child that no fork handler saw. */
uint32_t generation_slow(void)
{
	pthread_once(&page_once, page_map);
	for (;;) {
		uint32_t gen = atomic_load_explicit(&gen_page->gen, memory_order_acquire);
		if (gen)
			return gen;
		int idle = 0;
		if (atomic_compare_exchange_strong(&renewing, &idle, 1)) {
			uint64_t key;
			os_random_bytes(&key, sizeof key);
			if (!atomic_load_explicit(&gen_page->gen, memory_order_acquire))
				renew(key);
			key = 0;
			atomic_store(&renewing, 0);
		} else {
			sched_yield();
		}
	}
}

void generation_fork_child(struct rng *seed)
{
	uint32_t buf[10];
	os_random_bytes(buf, sizeof buf);
	atomic_store_explicit(&renewing, 0, memory_order_relaxed);      /* no other thread lives */
	uint64_t key;
	memcpy(&key, buf + 8, sizeof key);
	rng_seed_from(seed, buf, renew(key));
	memset(buf, 0, sizeof buf);
	key = 0;
}

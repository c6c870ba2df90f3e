/*
 * pagebench: the page API's atomic path against mmap/munmap of one page and
 * glibc's malloc(4096)/free. Prints the median and 99th percentile latency
 * of allocation and of free (ns, each call timed on its own, the timer's own
 * cost shown apart), then atomic alloc+free throughput with 1, 2 and 4
 * threads sharing one labyrinth's reserve.
 *
 *   bench/pagebench [samples] [seconds per throughput run]
 */
#include "labyrinth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t quantile(uint64_t *v, size_t n, double q)
{
	qsort(v, n, sizeof *v, cmp_u64);
	return v[(size_t)(q * (double)(n - 1))];
}

struct way {
	const char *name;
	void *(*alloc)(void);
	void (*free)(void *);
};

static labyrinth_t *lab;

static void *lab_atomic(void) { return labyrinth_alloc_page_atomic_exclusive(lab); }
static void lab_free(void *p) { labyrinth_free_page(lab, p); }
static void *lab_ordinary(void) { return labyrinth_alloc_page(lab, 0); }

/* A usable page costs its first touch too: the reserve's pages are faulted. */
static void *os_map(void)
{
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*p = 1;
	return p;
}
static void os_unmap(void *p) { munmap(p, 4096); }
static void *libc_alloc(void)
{
	char *p = malloc(4096);
	if (p)
		*p = 1;
	return p;
}
static void libc_free(void *p) { free(p); }

static void latency(const struct way *w, size_t n, uint64_t *a, uint64_t *f, uint64_t timer)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		void *p = w->alloc();
		uint64_t t1 = now_ns();
		if (!p) {
			fprintf(stderr, "pagebench: %s failed\n", w->name);
			exit(1);
		}
		((volatile char *)p)[64] = 2;
		uint64_t t2 = now_ns();
		w->free(p);
		uint64_t t3 = now_ns();
		a[i] = t1 - t0;
		f[i] = t3 - t2;
	}
	uint64_t am = quantile(a, n, 0.5), a99 = quantile(a, n, 0.99);
	uint64_t fm = quantile(f, n, 0.5), f99 = quantile(f, n, 0.99);
	printf("| %-28s | %6lu | %7lu | %6lu | %7lu |\n", w->name,
	       (unsigned long)(am > timer ? am - timer : 0), (unsigned long)(a99 - timer),
	       (unsigned long)(fm > timer ? fm - timer : 0), (unsigned long)(f99 - timer));
}

static uint64_t timer_cost(uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		v[i] = now_ns() - t0;
	}
	return quantile(v, n, 0.5);
}

/* ---- throughput ---------------------------------------------------------- */

static double seconds = 1.0;
static volatile int go;

static void *spin(void *arg)
{
	uint64_t *ops = arg, n = 0;
	while (!go)
		;
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
	while (now_ns() < end) {
		for (int i = 0; i < 256; i++) {
			void *p = labyrinth_alloc_page_atomic_exclusive(lab);
			if (!p) {
				fprintf(stderr, "pagebench: reserve ran dry\n");
				exit(1);
			}
			((volatile char *)p)[0] = 1;
			labyrinth_free_page(lab, p);
		}
		n += 256;
	}
	*ops = n;
	return NULL;
}

static void throughput(int threads)
{
	pthread_t th[8];
	uint64_t ops[8] = { 0 }, total = 0;
	go = 0;
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, spin, &ops[i]);
	go = 1;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		total += ops[i];
	}
	printf("| %d | %.2f |\n", threads, (double)total / seconds / 1e6);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	if (argc > 2)
		seconds = strtod(argv[2], NULL);
	labyrinth_options_t o = { .size = sizeof o, .reserve_pages = 64 };
	lab = labyrinth_open(&o);
	uint64_t *a = malloc(n * sizeof *a), *f = malloc(n * sizeof *f);
	if (!lab || !a || !f)
		return 1;
	static const struct way ways[] = {
		{ "labyrinth LAB_GFP_ATOMIC", lab_atomic, lab_free },
		{ "labyrinth ordinary page", lab_ordinary, lab_free },
		{ "mmap+touch / munmap", os_map, os_unmap },
		{ "glibc malloc(4096) / free", libc_alloc, libc_free },
	};
	uint64_t timer = timer_cost(a, n);
	printf("%zu samples each; timer cost %lu ns, subtracted\n\n", n, (unsigned long)timer);
	printf("| way | alloc median | alloc p99 | free median | free p99 |\n");
	printf("| --- | ---: | ---: | ---: | ---: |\n");
	for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++)
		latency(&ways[i], i == 1 ? n / 10 : n, a, f, timer);
	printf("\natomic alloc+free pairs, one shared reserve, %.1f s each\n\n", seconds);
	printf("| threads | million pairs/s |\n| ---: | ---: |\n");
	for (int t = 1; t <= 4; t *= 2)
		throughput(t);
	labyrinth_close(lab);
	free(a);
	free(f);
	return 0;
}

/*
 * work.c: a small allocation-heavy C program for tests/programs.sh.
 *
 * programs.sh compiles it with gcc twice (once with the labyrinth preload on
 * gcc itself) and runs the results, with and without the preload; every run
 * must print the same lines. The output depends only on this code: no
 * addresses, times or thread interleavings leak into it.
 */
#define _GNU_SOURCE /* asprintf, open_memstream, pvalloc, reallocarray */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(rng_state >> 33);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	while (n--) {
		h ^= *c++;
		h *= 1099511628211ULL;
	}
	return h;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

static void *xrealloc(void *old, size_t n)
{
	void *p = realloc(old, n);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1. Many small strings, sorted. */
static void strings(void)
{
	enum { N = 150000 };
	char **v = xmalloc(N * sizeof *v);
	uint64_t h = 14695981039346656037ULL;
	for (int i = 0; i < N; i++) {
		size_t len = 1 + rnd() % 40;
		v[i] = xmalloc(len + 1);
		for (size_t j = 0; j < len; j++)
			v[i][j] = (char)('a' + rnd() % 26);
		v[i][len] = '\0';
	}
	qsort(v, N, sizeof *v, cmp_str);
	for (int i = 0; i < N; i++) {
		h = fnv(h, v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
	printf("strings: sorted %d, hash %016llx\n", N, (unsigned long long)h);
}

/* 2. A chained hash table with insert/delete churn. */
struct node {
	struct node *next;
	uint32_t key;
	uint32_t len;
	char val[];
};

static void table(void)
{
	enum { BUCKETS = 4096, OPS = 400000 };
	struct node **t = calloc(BUCKETS, sizeof *t);
	unsigned long live = 0, inserted = 0, removed = 0;
	if (!t)
		exit(2);
	for (int op = 0; op < OPS; op++) {
		uint32_t key = rnd() % 60000;
		struct node **pp = &t[key % BUCKETS];
		while (*pp && (*pp)->key != key)
			pp = &(*pp)->next;
		if (*pp) {
			struct node *dead = *pp;
			*pp = dead->next;
			free(dead);
			live--;
			removed++;
		} else {
			uint32_t len = 1 + rnd() % 200;
			struct node *n = xmalloc(sizeof *n + len);
			n->next = NULL;
			n->key = key;
			n->len = len;
			memset(n->val, (int)(key & 0x7f), len);
			*pp = n;
			live++;
			inserted++;
		}
	}
	uint64_t h = 14695981039346656037ULL, bytes = 0;
	for (int b = 0; b < BUCKETS; b++) {
		struct node *n = t[b];
		while (n) {
			struct node *next = n->next;
			h = fnv(h, &n->key, sizeof n->key);
			h = fnv(h, n->val, n->len);
			bytes += n->len;
			free(n);
			n = next;
		}
	}
	free(t);
	printf("table: inserted %lu removed %lu live %lu bytes %llu hash %016llx\n",
	       inserted, removed, live, (unsigned long long)bytes,
	       (unsigned long long)h);
}

/* 3. Arrays grown by realloc, in several sizes at once. */
static void growth(void)
{
	enum { K = 64 };
	uint32_t *a[K] = { 0 };
	size_t n[K] = { 0 }, cap[K] = { 0 };
	uint64_t sum = 0;
	for (int i = 0; i < 300000; i++) {
		int k = (int)(rnd() % K);
		if (n[k] == cap[k]) {
			cap[k] = cap[k] ? cap[k] + cap[k] / 2 + 1 : 4;
			a[k] = xrealloc(a[k], cap[k] * sizeof *a[k]);
		}
		a[k][n[k]++] = (uint32_t)i;
		if (rnd() % 5000 == 0) { /* shrink now and then */
			n[k] /= 3;
			cap[k] = n[k] + 1;
			a[k] = xrealloc(a[k], cap[k] * sizeof *a[k]);
		}
	}
	for (int k = 0; k < K; k++) {
		for (size_t j = 0; j < n[k]; j++)
			sum += a[k][j] * (uint64_t)(k + 1);
		free(a[k]);
	}
	printf("growth: sum %llu\n", (unsigned long long)sum);
}

/*
 * 4. Threads: producers allocate messages, the main thread frees them
 * (cross-thread frees). The result is order-independent.
 */
struct msg {
	struct msg *next;
	size_t len;
	unsigned char data[];
};

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static struct msg *queue;
static int producers_left;

static void *producer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t s = 0x12345678u + id;
	for (int i = 0; i < 50000; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		size_t len = (size_t)(s >> 33) % 700 + 1;
		if (i % 1000 == 999)
			len = 40000 + (size_t)(s >> 40) % 100000; /* some big ones */
		struct msg *m = xmalloc(sizeof *m + len);
		m->len = len;
		for (size_t j = 0; j < len; j++)
			m->data[j] = (unsigned char)(j * 7 + id);
		/* and some private churn in this thread */
		char *tmp = xmalloc(1 + i % 300);
		tmp[0] = (char)i;
		free(tmp);
		pthread_mutex_lock(&qlock);
		m->next = queue;
		queue = m;
		pthread_cond_signal(&qcond);
		pthread_mutex_unlock(&qlock);
	}
	pthread_mutex_lock(&qlock);
	producers_left--;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
	return NULL;
}

static void threads(void)
{
	enum { P = 3 };
	pthread_t tid[P];
	unsigned long count = 0;
	uint64_t total = 0, sum = 0;
	producers_left = P;
	for (unsigned i = 0; i < P; i++)
		if (pthread_create(&tid[i], NULL, producer, (void *)(uintptr_t)i) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(2);
		}
	for (;;) {
		pthread_mutex_lock(&qlock);
		while (!queue && producers_left > 0)
			pthread_cond_wait(&qcond, &qlock);
		struct msg *m = queue;
		queue = NULL;
		int done = producers_left == 0;
		pthread_mutex_unlock(&qlock);
		while (m) {
			struct msg *next = m->next;
			count++;
			total += m->len;
			for (size_t j = 0; j < m->len; j += 61)
				sum += m->data[j];
			free(m);
			m = next;
		}
		if (done && !m) {
			pthread_mutex_lock(&qlock);
			int empty = queue == NULL;
			pthread_mutex_unlock(&qlock);
			if (empty)
				break;
		}
	}
	for (unsigned i = 0; i < P; i++)
		pthread_join(tid[i], NULL);
	printf("threads: messages %lu bytes %llu sum %llu\n", count,
	       (unsigned long long)total, (unsigned long long)sum);
}

/*
 * 5. The rest of the malloc family, and libc functions that allocate
 * inside libc (strdup, asprintf, open_memstream, getline): their memory is
 * freed here with free(). Prints only what every correct allocator gives.
 */
static int bad;

/* Keep the optimizer from eliding allocations, stores and sizes below. */
static void *volatile sink;
static void *(*volatile memset_v)(void *, int, size_t) = memset;
static volatile size_t zero_size = 0, huge_size = SIZE_MAX - 4096, half_max = SIZE_MAX / 2;

static void expect(int ok, const char *what)
{
	if (!ok) {
		printf("FAILED: %s\n", what);
		bad++;
	}
}

static void family(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned long n = 0;

	for (size_t align = sizeof(void *); align <= 65536; align *= 2) {
		for (size_t size = 1; size < 70000; size = size * 3 + 7) {
			void *p = NULL;
			expect(posix_memalign(&p, align, size) == 0 && p, "posix_memalign");
			expect(((uintptr_t)p & (align - 1)) == 0, "posix_memalign alignment");
			expect(malloc_usable_size(p) >= size, "usable size >= requested");
			memset_v(p, 0x5a, size);
			free(p);
			n++;
		}
	}
	{
		void *p = (void *)1;
		expect(posix_memalign(&p, 24, 10) == EINVAL, "posix_memalign(24) is EINVAL");
	}
	void *a = aligned_alloc(64, 640);
	void *m = memalign(4096, 100);
	void *v = valloc(5000);
	void *pv = pvalloc(5000);
	expect(a && ((uintptr_t)a & 63) == 0, "aligned_alloc(64)");
	expect(m && ((uintptr_t)m & 4095) == 0, "memalign(4096)");
	expect(v && ((uintptr_t)v & (page - 1)) == 0, "valloc");
	expect(pv && ((uintptr_t)pv & (page - 1)) == 0 &&
		       malloc_usable_size(pv) >= 2 * page, "pvalloc rounds up to pages");
	memset_v(a, 1, 640);
	memset_v(m, 2, 100);
	memset_v(v, 3, 5000);
	memset_v(pv, 4, 2 * page);
	free(a);
	free(m);
	free(v);
	free(pv);

	/* calloc zeroes, also memory that was just used and freed. */
	for (int round = 0; round < 200; round++) {
		size_t size = 1 + (size_t)round * 997;
		unsigned char *d = xmalloc(size);
		memset_v(d, 0xff, size);
		free(d);
		unsigned char *z = calloc(1, size);
		expect(z != NULL, "calloc");
		for (size_t j = 0; z && j < size; j++)
			if (z[j]) {
				expect(0, "calloc memory is zero");
				break;
			}
		free(z);
	}
	errno = 0;
	expect((sink = calloc(half_max, 4)) == NULL && errno == ENOMEM, "calloc overflow is ENOMEM");
	errno = 0;
	expect((sink = malloc(huge_size)) == NULL && errno == ENOMEM, "huge malloc is ENOMEM");
	errno = 0;
	expect((sink = reallocarray(NULL, half_max, 4)) == NULL && errno == ENOMEM,
	       "reallocarray overflow is ENOMEM");

	/* realloc keeps contents while growing and shrinking. */
	unsigned char *r = NULL;
	size_t rsize = 0;
	for (int step = 0; step < 60; step++) {
		size_t nsize = step < 40 ? 1 + (size_t)step * step * 97 : rsize / 2 + 1;
		r = xrealloc(r, nsize);
		for (size_t j = rsize; j < nsize; j++)
			r[j] = (unsigned char)(j * 13);
		rsize = nsize;
		for (size_t j = 0; j < rsize; j += 37)
			if (r[j] != (unsigned char)(j * 13)) {
				expect(0, "realloc keeps contents");
				break;
			}
	}
	free(r);

	/* malloc(0) gives distinct pointers that free() takes. */
	void *z1 = malloc(zero_size);
	sink = z1;
	void *z2 = malloc(zero_size);
	sink = z2;
	expect(z1 && z2 && z1 != z2, "malloc(0) gives distinct pointers");
	free(z1);
	free(z2);
	sink = NULL;
	free(sink); /* free(NULL) */

	/* Memory allocated inside libc, freed here. */
	char *dup = strdup("the thread of Ariadne");
	char *fmt = NULL;
	expect(asprintf(&fmt, "%s / %d / %.3f", dup, 42, 2.5) > 0, "asprintf");
	char *buf = NULL;
	size_t blen = 0;
	FILE *ms = open_memstream(&buf, &blen);
	expect(ms != NULL, "open_memstream");
	for (int i = 0; ms && i < 20000; i++)
		fprintf(ms, "%d,", i);
	if (ms)
		fclose(ms);
	FILE *f = fmemopen(buf, blen, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t got = f ? getdelim(&line, &cap, ',', f) : -1;
	if (f)
		fclose(f);
	printf("family: %lu aligned blocks, %s, %zu bytes streamed, first %.*s\n", n, fmt,
	       blen, got > 0 ? (int)got : 0, line ? line : "");
	free(line);
	free(buf);
	free(fmt);
	free(dup);
}

int main(void)
{
	strings();
	table();
	growth();
	threads();
	family();
	if (bad) {
		printf("%d checks failed\n", bad);
		return 1;
	}
	printf("done\n");
	return 0;
}

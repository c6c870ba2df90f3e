/*
 * Helpers shared by the bench workload programs: a fixed-seed PRNG, option
 * parsing and a sink the compiler cannot see through.
 *
 * The workloads call plain malloc/free only, so that LD_PRELOAD decides which
 * allocator they measure. Everything here is header-only and static, to keep
 * each workload a single translation unit.
 */
#ifndef LABYRINTH_BENCHUTIL_H
#define LABYRINTH_BENCHUTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * xorshift64*: fast, good enough for picking sizes and slots, and above all
 * repeatable: the same seed gives the same allocation sequence under every
 * allocator, so the two columns of the table run identical work.
 */
struct rng {
	uint64_t s;
};

static inline void rng_seed(struct rng *r, uint64_t seed)
{
	/* xorshift must not start at zero; mix so that small seeds differ. */
	r->s = (seed + 1) * 0x9E3779B97F4A7C15ull;
	if (r->s == 0)
		r->s = 1;
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n), n > 0; the modulo bias is irrelevant at these n. */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

/*
 * A size in [16, 1024], skewed small like real programs: the power-of-two
 * band is chosen with halving probability (16..31 half the time, 32..63 a
 * quarter, ...), then a uniform size inside the band.
 */
static inline size_t rng_small_size(struct rng *r)
{
	uint64_t x = rng_next(r);
	unsigned band = 0;

	while (band < 5 && (x & 1)) {
		band++;
		x >>= 1;
	}
	/* Bands 16..31 up to 512..1023; the last one also takes 1024. */
	size_t lo = (size_t)16 << band;
	return lo + (size_t)((x >> 8) % (lo + (band == 5)));
}

/* Parse a positive count for option -c, or exit with a message. */
static inline unsigned long parse_count(const char *prog, char opt, const char *s)
{
	char *end;

	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end != '\0' || v == 0 || s[0] == '-') {
		fprintf(stderr, "%s: -%c wants a positive number, not '%s'\n",
			prog, opt, s);
		exit(2);
	}
	return v;
}

/*
 * Stores here escape every pointer we allocate, so the compiler cannot
 * prove a malloc/free pair dead and delete it.
 */
static void *volatile bench_sink;

static inline void sink_ptr(void *p)
{
	bench_sink = p;
}

/* Report a corrupted object and die with a status the driver shows. */
static inline void corrupt(const char *prog, const char *what)
{
	fprintf(stderr, "%s: corruption detected: %s\n", prog, what);
	abort();
}

/*
 * A field of /proc/self/status in kB ("VmPTE", "VmRSS"), or -1 if the
 * kernel does not show it.
 */
static inline long status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t len = strlen(field);
	long kb = -1;

	if (!f)
		return -1;
	while (kb < 0 && fgets(line, sizeof(line), f))
		if (strncmp(line, field, len) == 0 && line[len] == ':')
			kb = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return kb;
}

/*
 * One figure for the labbench driver: a "NAME VALUE" line appended to the
 * file named by $LABBENCH_METRICS (nothing if it is unset). The driver
 * shows it under the workload's row, per allocator, median over the runs.
 */
static inline void bench_metric(const char *name, double value)
{
	const char *path = getenv("LABBENCH_METRICS");
	FILE *f;

	if (!path || !*path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%s %.6g\n", name, value);
	fclose(f);
}

#endif

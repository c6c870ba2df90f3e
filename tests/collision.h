/*
 * Collision entropy (Renyi order 2) of measured values, for the entropy
 * tests and the aslr probe: -log2 P(two samples agree), estimated from the
 * pairs that collide among n samples.
 */
#ifndef LAB_TEST_COLLISION_H
#define LAB_TEST_COLLISION_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static inline int collision_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts v. With no collision, *bound is set and the result is the most that
 * n samples can show. */
static inline double collision_bits(uint64_t *v, size_t n, bool *bound)
{
	qsort(v, n, sizeof *v, collision_cmp_u64);
	double pairs = 0;
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && v[j] == v[i]; j++)
			;
		pairs += (double)(j - i) * (double)(j - i - 1) / 2;
	}
	double all = (double)n * (double)(n - 1) / 2;
	*bound = pairs == 0;
	return log2(all / (pairs ? pairs : 1));
}

#endif

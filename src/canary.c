/*
 * canary: the CPU probe for the wide zero check, and the reports. The keyed
 * pattern itself is inline in canary.h; its keys live with the blocks'
 * records (room.c, large.c, guarded.c, page.c) and generation.c.
 */
#include "canary.h"
#include "os.h"
#include "report.h"

#include <pthread.h>
#include <string.h>

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

bool canary_cpu_avx2;

static void cpu_probe(void)
{
	canary_cpu_avx2 = os_cpu_avx2();
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Slots of 512 bytes and more are scanned 128 bytes a step. len is a
 * multiple of 16; only reached when the CPU has AVX2. */
__attribute__((target("avx2"))) bool bytes_all_zero_wide(const char *p, size_t len)
{
	__m256i acc = _mm256_setzero_si256();
	size_t i = 0;
	for (; i + 128 <= len; i += 128) {
		__m256i a = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(p + i)),
					    _mm256_loadu_si256((const __m256i *)(p + i + 32)));
		__m256i b = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(p + i + 64)),
					    _mm256_loadu_si256((const __m256i *)(p + i + 96)));
		acc = _mm256_or_si256(acc, _mm256_or_si256(a, b));
	}
	for (; i + 32 <= len; i += 32)
		acc = _mm256_or_si256(acc, _mm256_loadu_si256((const __m256i *)(p + i)));
	bool zero = _mm256_testz_si256(acc, acc);
	for (; i < len; i += 8)
		zero &= word_at(p + i) == 0;
	return zero;
}
#else
bool bytes_all_zero_wide(const char *p, size_t len)
{
	uint64_t acc = 0;
	for (size_t i = 0; i < len; i += 8)
		acc |= word_at(p + i);
	return acc == 0;
}
#endif

void canary_init(void)
{
	pthread_once(&cpu_once, cpu_probe);
}

static void report_damage(enum heap_error kind, const char *base, const char *next,
			  const char *why, size_t offset, size_t class_size, uint64_t gen)
{
	struct error_site site = {
		.addr = base, .next = next, .why = why, .offset = offset, .has_offset = 1,
		.class_size = class_size, .version = gen, .has_version = gen != 0,
	};
	report_heap_error(kind, &site);
}

void canary_report(const char *base, size_t bad, size_t class_size, uint64_t gen)
{
	canary_report_near(base, NULL, bad, class_size, gen);
}

void canary_report_near(const char *base, const char *next, size_t bad, size_t class_size,
			uint64_t gen)
{
	report_damage(ERR_OVERFLOW, base, next, "canary changed", bad, class_size, gen);
}

void zero_report(char *p, size_t bad, size_t len, uint64_t gen)
{
	zero_report_near(p, NULL, bad, len, gen);
}

void zero_report_near(char *p, const char *next, size_t bad, size_t len, uint64_t gen)
{
	report_damage(ERR_WRITE_AFTER_FREE, p, next, "byte changed", bad, len, gen);
	memset(p, 0, len);      /* LABYRINTH_ON_ERROR=log: hand it out clean */
}

void free_slot_report(const char *p, const char *next, size_t bad, size_t len, uint64_t gen)
{
	report_damage(ERR_FREE_SLOT_WRITE, p, next, "byte changed", bad, len, gen);
}

/*
 * canary: a keyed pattern, periodic in 8 bytes and aligned to the block's
 * start, so it is written and checked a word at a time. No byte of it is zero:
 * the most common overflow is a string's terminating NUL one byte too far.
 */
#include "canary.h"
#include "os.h"
#include "report.h"

#include <pthread.h>
#include <string.h>

static uint64_t secret;
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void secret_seed(void)
{
	os_random_bytes(&secret, sizeof secret);
}

void canary_init(void)
{
	pthread_once(&secret_once, secret_seed);
}

/* The block's 8-byte pattern: 7 secret bits per byte, the low bit always set. */
static uint64_t pattern(const char *base)
{
	uint64_t x = secret ^ (uint64_t)(uintptr_t)base;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x | 0x0101010101010101ULL;
}

static unsigned char byte_at(uint64_t pat, size_t offset)
{
	return (unsigned char)(pat >> (8 * (offset & 7)));
}

void canary_write(char *base, size_t from, size_t to)
{
	uint64_t pat = pattern(base);
	size_t i = from;
	for (; i < to && (i & 7); i++)
		base[i] = (char)byte_at(pat, i);
	for (; i + 8 <= to; i += 8)
		memcpy(base + i, &pat, 8);
	for (; i < to; i++)
		base[i] = (char)byte_at(pat, i);
}

size_t canary_damage(const char *base, size_t from, size_t to)
{
	uint64_t pat = pattern(base);
	size_t i = from;
	for (; i < to && (i & 7); i++)
		if ((unsigned char)base[i] != byte_at(pat, i))
			return i;
	for (; i + 8 <= to; i += 8) {
		uint64_t w;
		memcpy(&w, base + i, 8);
		if (w != pat)
			break;
	}
	for (; i < to; i++)
		if ((unsigned char)base[i] != byte_at(pat, i))
			return i;
	return NO_DAMAGE;
}

size_t zero_damage(const char *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w)
			break;
	}
	for (; i < len; i++)
		if (p[i])
			return i;
	return NO_DAMAGE;
}

static void report_damage(enum heap_error kind, const char *base, const char *why,
			  size_t offset, size_t class_size, uint64_t gen)
{
	struct error_site site = {
		.addr = base, .why = why, .offset = offset, .has_offset = 1,
		.class_size = class_size, .version = gen, .has_version = 1,
	};
	report_heap_error(kind, &site);
}

void canary_check(const char *base, size_t from, size_t to, size_t class_size, uint64_t gen)
{
	size_t bad = canary_damage(base, from, to);
	if (bad != NO_DAMAGE)
		report_damage(ERR_OVERFLOW, base, "canary changed", bad, class_size, gen);
}

void zero_check(char *p, size_t len, uint64_t gen)
{
	size_t bad = zero_damage(p, len);
	if (bad == NO_DAMAGE)
		return;
	report_damage(ERR_WRITE_AFTER_FREE, p, "byte changed", bad, len, gen);
	memset(p, 0, len);      /* LABYRINTH_ON_ERROR=log: hand it out clean */
}

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

uint64_t canary_secret;
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void secret_seed(void)
{
	os_random_bytes(&canary_secret, sizeof canary_secret);
}

void canary_init(void)
{
	pthread_once(&secret_once, secret_seed);
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

void canary_report(const char *base, size_t bad, size_t class_size, uint64_t gen)
{
	report_damage(ERR_OVERFLOW, base, "canary changed", bad, class_size, gen);
}

void zero_report(char *p, size_t bad, size_t len, uint64_t gen)
{
	report_damage(ERR_WRITE_AFTER_FREE, p, "byte changed", bad, len, gen);
	memset(p, 0, len);      /* LABYRINTH_ON_ERROR=log: hand it out clean */
}

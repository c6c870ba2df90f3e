/* fuzz: what every harness defines, and how it reports a broken invariant. */
#ifndef LAB_FUZZ_H
#define LAB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Once per process, before the first input (AFL++ forks after it). */
void fuzz_setup(void);
/* One input. Returns normally unless an invariant breaks. */
void fuzz_one(const uint8_t *data, size_t len);

/* Print "fuzz: invariant broken: ..." and abort(). */
__attribute__((noreturn, format(printf, 1, 2)))
void fuzz_fail(const char *fmt, ...);

#endif

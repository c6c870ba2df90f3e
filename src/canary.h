/*
 * canary: the bytes between the end of an allocation and the end of its slot
 * (or its last page) hold a pattern keyed by a per-process secret and the
 * block's address; free checks them, so an overflow of even one byte is
 * caught at the latest when the block is freed.
 */
#ifndef LAB_CANARY_H
#define LAB_CANARY_H

#include <stddef.h>
#include <stdint.h>

#define NO_DAMAGE SIZE_MAX

/* Draw the process's canary secret (once; before the first canary). */
void canary_init(void);

/* Fill bytes [from, to) of the block at base with its canary. */
void canary_write(char *base, size_t from, size_t to);
/* Offset of the first byte of [from, to) that is not the canary, or NO_DAMAGE. */
size_t canary_damage(const char *base, size_t from, size_t to);
/* Offset of the first non-zero byte of [0, len), or NO_DAMAGE. */
size_t zero_damage(const char *p, size_t len);

/* Check bytes [from, to) of the block at base; report a heap overflow if
 * the canary was changed. class_size and gen go into the report. */
void canary_check(const char *base, size_t from, size_t to, size_t class_size, uint64_t gen);
/* Check a slot about to be reused is all zero; report a write after free
 * (and zero it, if the report returns) otherwise. */
void zero_check(char *p, size_t len, uint64_t gen);

#endif

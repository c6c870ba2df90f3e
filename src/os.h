/* os: the system calls labyrinth makes, in one place. */
#ifndef LAB_OS_H
#define LAB_OS_H

#include <stdbool.h>
#include <stddef.h>

#define PAGE_SIZE 4096UL
#define PAGE_SHIFT 12

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

void *os_reserve(size_t bytes);                 /* PROT_NONE, NULL on failure */
/* Read-write, MAP_NORESERVE: NULL where the kernel counts it (strict overcommit). */
void *os_reserve_rw(size_t bytes);
/* The same at exactly `at`, never replacing a mapping: NULL with errno
 * EEXIST if the range is in use, another errno if the size is refused. */
void *os_reserve_at(void *at, size_t bytes, bool rw);
void os_unmap(void *p, size_t bytes);
/* Give the PROT_NONE mapping holding page p an anon_vma (touch p, then undo). */
void os_share_anon(void *p);
bool os_protect_rw(void *p, size_t bytes);
bool os_protect_none(void *p, size_t bytes);
bool os_guard_install(void *p, size_t bytes);   /* also drops the pages' contents */
void os_guard_remove(void *p, size_t bytes);
bool os_lock(void *p, size_t bytes);            /* mlock */
bool os_discard(void *p, size_t bytes);         /* give pages back, contents lost */
/* Which pages of [p, p + bytes) are in memory: vec[i] & 1 (mincore). */
bool os_resident(void *p, size_t bytes, unsigned char *vec);
/* Replace with fresh PROT_NONE pages: frees them, and lets the kernel merge
 * the range with its PROT_NONE neighbours again. */
bool os_replace_none(void *p, size_t bytes);
bool os_kernel_has_guards(void);
void os_random_bytes(void *buf, size_t len);    /* getrandom; fatal if impossible */
unsigned os_cpu_count(void);
long os_read_long_file(const char *path, long fallback);
long os_count_mappings(void);                   /* lines of /proc/self/maps, -1 if unknown */
bool os_cpu_avx2(void);                         /* the CPU and the kernel run AVX2 */

#endif

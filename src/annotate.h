/*
 * annotate: tell AddressSanitizer and Valgrind's memcheck which bytes of the
 * heap a program may touch, so that a program using the labyrinth API under
 * either tool gets precise reports (use after free, overflow into the canary)
 * for labyrinth memory, which to them is otherwise one big mmap.
 *
 * Every macro compiles to nothing unless the library is built with
 * -fsanitize=address (./configure --enable-sanitizers) or with valgrind's
 * headers present (HAVE_VALGRIND_MEMCHECK_H, found by configure).
 *
 * The protocol, at each place a block changes hands:
 *   annotate_open(p, n)        the allocator itself is about to read or write
 *                              [p, p+n) (zero check, canaries, zeroing)
 *   annotate_alloc(p, s, n)    [p, p+s) is handed out; [p+s, p+n) is canary
 *   annotate_resize(p, o, s, n) a block of o bytes now has s, in place
 *   annotate_free(p, n)        every byte of [p, p+n) is off limits again
 *   annotate_defined(p, s)     calloc: the bytes are known zeros
 *   annotate_noaccess(p, n)    [p, p+n) is off limits (no block there)
 */
#ifndef LAB_ANNOTATE_H
#define LAB_ANNOTATE_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LAB_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LAB_ASAN 1
#endif

#ifdef LAB_ASAN
#include <sanitizer/asan_interface.h>
#define asan_open(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define asan_close(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#else
#define asan_open(p, n) ((void)(p), (void)(n))
#define asan_close(p, n) ((void)(p), (void)(n))
#endif

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#include <stdbool.h>
/* Set at load time when the process runs under valgrind: otherwise the
 * client requests, a few instructions each on every malloc and free, are
 * skipped by one predictable branch. */
extern bool annotate_valgrind;
#define vg_if(x) do { if (__builtin_expect(annotate_valgrind, 0)) { x; } } while (0)
#define vg_malloclike(p, s) vg_if(VALGRIND_MALLOCLIKE_BLOCK((p), (s), 0, 0))
#define vg_freelike(p) vg_if(VALGRIND_FREELIKE_BLOCK((p), 0))
#define vg_resize(p, o, s) vg_if(VALGRIND_RESIZEINPLACE_BLOCK((p), (o), (s), 0))
#define vg_defined(p, n) vg_if(VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define vg_noaccess(p, n) vg_if(VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#else
#define vg_malloclike(p, s) ((void)(p), (void)(s))
#define vg_freelike(p) ((void)(p))
#define vg_resize(p, o, s) ((void)(p), (void)(o), (void)(s))
#define vg_defined(p, n) ((void)(p), (void)(n))
#define vg_noaccess(p, n) ((void)(p), (void)(n))
#endif

#define annotate_open(p, n) do { asan_open(p, n); vg_defined(p, n); } while (0)
#define annotate_noaccess(p, n) do { asan_close(p, n); vg_noaccess(p, n); } while (0)
#define annotate_alloc(p, s, n) do {                                    \
		asan_close((char *)(p) + (s), (n) - (s));               \
		vg_malloclike(p, s);                                    \
		vg_noaccess((char *)(p) + (s), (n) - (s));              \
	} while (0)
#define annotate_resize(p, o, s, n) do {                                \
		asan_close((char *)(p) + (s), (n) - (s));               \
		vg_resize(p, o, s);                                     \
		vg_noaccess((char *)(p) + (s), (n) - (s));              \
	} while (0)
#define annotate_free(p, n) do { vg_freelike(p); annotate_noaccess(p, n); } while (0)
#define annotate_defined(p, s) vg_defined(p, s)

/* Whether freed slots are poisoned (ASan, or memcheck running): the tool
 * catches a write into one when it is made, and the allocator must not
 * read one to look for such a write (the read would be reported). */
static inline bool annotate_free_poisoned(void)
{
#if defined(LAB_ASAN)
	return true;
#elif defined(HAVE_VALGRIND_MEMCHECK_H)
	return annotate_valgrind;
#else
	return false;
#endif
}

#endif

/*
 * C++ operator new and delete, every variant (Itanium ABI names), so that
 * the size a sized delete passes is checked against the size new recorded.
 * All of them or none: a preloaded library's symbols come before the
 * program's own, and a program with its own operator new must never be left
 * with only our delete.
 *
 * Written in C, built with -fexceptions so std::bad_alloc can unwind
 * through it; libstdc++'s functions are weak references, so C programs do
 * not load libstdc++.
 */
#include "arena.h"
#include "fastpath.h"
#include "lab.h"
#include "report.h"
#include "shim.h"

#include <stdbool.h>
#include <stddef.h>

#define SHIM __attribute__((visibility("default")))

typedef void (*new_handler_t)(void);
extern new_handler_t _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

static void *try_alloc(size_t size, size_t align)
{
	if (align & (align - 1))
		return NULL;
	void *p = align <= 16 ? fast_malloc(size) : NULL;
	if (__builtin_expect(p != NULL, 1))
		return p;
	struct labyrinth *lab = lab_default();
	if (!lab)
		return NULL;
	return align > 16 ? lab_aligned(lab, align, size) : lab_malloc(lab, size);
}

/* Retry through the program's new-handler, then throw std::bad_alloc. */
static void *cxx_new(size_t size, size_t align)
{
	for (;;) {
		void *p = try_alloc(size, align);
		if (p)
			return p;
		new_handler_t handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
		if (handler) {
			handler();
			continue;
		}
		if (_ZSt17__throw_bad_allocv)
			_ZSt17__throw_bad_allocv();
		report_fatal("operator new: out of memory, and no std::bad_alloc to throw");
	}
}

/* nothrow: NULL on failure. (The new-handler is not called: it may throw,
 * and an exception cannot leave a noexcept operator.) */
static void *cxx_new_nothrow(size_t size, size_t align)
{
	return try_alloc(size, align);
}

static void cxx_delete(void *p)
{
	if (p && !fast_free(p))
		lab_free(lab_default(), p);
}

static void cxx_delete_sized(void *p, size_t size)
{
	shim_free_sized(p, size);
}

SHIM void *_Znwm(size_t n) { return cxx_new(n, 0); }
SHIM void *_Znam(size_t n) { return cxx_new(n, 0); }
SHIM void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return cxx_new_nothrow(n, 0); }
SHIM void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { (void)nt; return cxx_new_nothrow(n, 0); }
SHIM void *_ZnwmSt11align_val_t(size_t n, size_t a) { return cxx_new(n, a); }
SHIM void *_ZnamSt11align_val_t(size_t n, size_t a) { return cxx_new(n, a); }
SHIM void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *nt)
{
	(void)nt;
	return cxx_new_nothrow(n, a);
}
SHIM void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *nt)
{
	(void)nt;
	return cxx_new_nothrow(n, a);
}

SHIM void _ZdlPv(void *p) { cxx_delete(p); }
SHIM void _ZdaPv(void *p) { cxx_delete(p); }
SHIM void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; cxx_delete(p); }
SHIM void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt; cxx_delete(p); }
SHIM void _ZdlPvm(void *p, size_t n) { cxx_delete_sized(p, n); }
SHIM void _ZdaPvm(void *p, size_t n) { cxx_delete_sized(p, n); }
SHIM void _ZdlPvSt11align_val_t(void *p, size_t a) { (void)a; cxx_delete(p); }
SHIM void _ZdaPvSt11align_val_t(void *p, size_t a) { (void)a; cxx_delete(p); }
SHIM void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *nt)
{
	(void)a;
	(void)nt;
	cxx_delete(p);
}
SHIM void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *nt)
{
	(void)a;
	(void)nt;
	cxx_delete(p);
}
SHIM void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a) { (void)a; cxx_delete_sized(p, n); }
SHIM void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a) { (void)a; cxx_delete_sized(p, n); }

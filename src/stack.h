/*
 * stack: the calling thread's stack, taken without allocating and without
 * a lock, so that a signal handler and a report made inside malloc can both
 * take it (a system call per stack page it reads beyond its first, so that
 * a damaged frame cannot make it fault).
 */
#ifndef LAB_STACK_H
#define LAB_STACK_H

#include "report.h"

#include <stdbool.h>
#include <stdint.h>

#define STACK_FRAMES 16

/* Return addresses, innermost first (pc[0] is the faulting instruction when
 * taken from a signal's context). */
struct stack {
	uint32_t n;
	uintptr_t pc[STACK_FRAMES];
};

/* The module holding pc: its .eh_frame_hdr, link map and mapping, as
 * _dl_find_object gives them (false: none, or no _dl_find_object). */
struct link_map;
struct stack_object {
	const uint8_t *eh_frame_hdr;
	const struct link_map *lm;
	uintptr_t start, end;   /* [start, end): the module's mapping */
};
bool stack_object_of(uintptr_t pc, struct stack_object *o);

/* The caller's stack, leaving out the innermost `skip` frames of its own;
 * when labyrinth is a library of its own, its frames too, up to the
 * program's call into it. */
void stack_here(struct stack *s, unsigned skip);
/* The stack of an interrupted context (a signal handler's ucontext_t). */
void stack_of_context(struct stack *s, const void *ucontext);

/*
 * One line per frame: "labyrinth: <title> #i function+0xN (module+0xM)", the
 * module's path and the offset in it (what addr2line -e module wants), the
 * function when the module's dynamic symbol table names it. write is given
 * each line (report.c's writer, so the lines follow the report's).
 */
void stack_print(const struct stack *s, const char *title, void (*write)(struct line *));

/* fault.c: p lies in the default labyrinth's heap, where a heap overflow may
 * have rewritten it (the loader's data for a dlopen'ed module lives there). */
bool fault_heap_holds(const void *p);

#endif

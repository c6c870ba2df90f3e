/*
 * fault: what a SIGSEGV or SIGBUS inside labyrinth's memory means, said in
 * one report before the process dies of it as it would have anyway.
 */
#ifndef LAB_FAULT_H
#define LAB_FAULT_H

#include "lab.h"
#include "report.h"
#include "stack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A block near a faulting address, as the index records say it was. */
struct heap_block {
	uintptr_t start;        /* 0: none found */
	size_t size;            /* bytes requested */
	size_t span;            /* bytes from start that were its room or run */
	size_t class_size;      /* 0 if the block has no class */
	uint64_t gen;           /* its version's generation */
	bool live;
};

/* The blocks around an address: the nearest starting at or below it, the
 * nearest starting above it; or the allocator metadata it lies in; or, in
 * the zero region, the zero-size block whose slot holds it. */
struct fault_scene {
	struct heap_block below, above;
	const char *metadata;   /* which metadata, or NULL */
	bool zero;              /* in the zero region; below: its slot's block */
};

/*
 * Install the SIGSEGV and SIGBUS handler, once, when the default labyrinth
 * opens (two rt_sigaction calls); not in a set-uid or set-gid program, whose
 * invoker must not learn the heap's layout from its crashes.
 */
void fault_install(void);

/*
 * report.c, after a heap error's line: the reporting thread's stack and,
 * for a guarded block, where it was allocated and freed. On stderr only:
 * LABYRINTH_REPORT_FD carries the report's line, the one the labyrinth
 * command names when the program dies.
 */
void fault_report_stacks(const void *addr);

/* Whether a guarded block's stack is known. */
enum trace_state {
	TRACE_KEPT,             /* here it is */
	TRACE_LOST,             /* its slot was taken over by a later block's */
	TRACE_PENDING,          /* its free is under way in another thread */
};

/* guarded.c: the scene around a in lab's guarded region (false: not in it);
 * the allocation (or free) stack of the block at start of generation gen. */
bool guarded_scene(const struct labyrinth *lab, const void *a, struct fault_scene *sc);
enum trace_state guarded_stack(const struct labyrinth *lab, uintptr_t start, uint64_t gen,
			       bool freed, struct stack *out);

#endif

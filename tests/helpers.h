/* Shared test helpers: run code in a child and see how it ended. */
#ifndef LAB_TEST_HELPERS_H
#define LAB_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "labyrinth.h"

struct outcome {
	int signal;             /* terminating signal, or 0 */
	int exit_code;          /* if it exited */
	char err[4096];         /* what it wrote to stderr */
};

/* Run fn(arg) in a forked child; its stderr is captured. */
struct outcome run_in_child(void (*fn)(void *), void *arg);

/* True if err is one report line, then only the lines of its stacks
 * ("labyrinth: stack:", "labyrinth: allocated by:", frames "labyrinth:     #"). */
bool one_report(const char *err);

/* True if reading the byte at addr faults (probed in a child). */
bool read_faults(const void *addr);
/* True if writing the byte at addr faults (probed in a child). */
bool write_faults(void *addr);

/* Lines of /proc/self/maps. */
long count_maps(void);
/* A field of /proc/self/status in KiB ("VmRSS", "VmPTE"), or -1. */
long status_kib(const char *field);
/* The process's page tables (VmPTE) in KiB, or -1. */
long vm_pte_kib(void);

/* A private labyrinth with the defaults; the guard mode follows LABYRINTH_GUARD. */
labyrinth_t *open_private(size_t wing_bytes);

/* The guard mode the tests run in, from LABYRINTH_GUARD. */
bool testing_mprotect(void);

/* A private labyrinth whose single-page reserve holds `pages`. */
labyrinth_t *open_reserved(size_t pages);
/* A prefaulted private labyrinth of cap bytes (flags: more LAB_OPEN_*). */
labyrinth_t *open_pool(size_t cap, unsigned flags);
/* True if all n bytes at p are zero. */
bool all_zero(const char *p, size_t n);

/*
 * Trim keeps quarantined slots where they are. To have every slot the
 * calling thread freed so far leave its quarantine (a private labyrinth's:
 * the thread's arena's), free 40,000 blocks of FLUSH_SIZE bytes after them:
 * a slot waits in the random stage until a free lands on its place (1 in
 * 512), then 512 frees in the FIFO, so it is still there with odds e^-77.
 * The quarantine then holds blocks of FLUSH_SIZE's class only.
 */
#define FLUSH_SIZE 8
void flush_quarantine(labyrinth_t *lab);
/* Rooms open in every wing of lab but FLUSH_SIZE's (NULL: the default). */
unsigned long long rooms_open_but_flush(labyrinth_t *lab);

/* xorshift64*, so a failing run can be repeated from its seed. */
unsigned long long test_rand(unsigned long long *state);

/* Tests whose bounds are for the real build: ASan's shadow memory has page
 * tables and resident pages of its own, and the sweep leaves free slots to
 * ASan, which catches a write into one when it happens. */
#ifdef __SANITIZE_ADDRESS__
#define SKIP_UNDER_ASAN(why) cr_skip_test("under ASan: %s", why)
#else
#define SKIP_UNDER_ASAN(why) ((void)0)
#endif

#endif

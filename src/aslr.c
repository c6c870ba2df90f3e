/*
 * aslr: where the maze, its index and the guarded region go.
 *
 * Left to the kernel, a reservation goes just below the libraries, at a
 * distance from them that hardly varies (the maze: 218 distances from the C
 * library in 300 runs, about 9 bits), so one leaked library address gave the
 * heap; with the kernel's randomisation off it gave it exactly. So each of
 * them is placed at an address drawn from the labyrinth's own stream (keyed
 * by the one getrandom it makes at start-up: no system call more), uniformly
 * over the address space less its first and last 32nd: the bottom is left to
 * programs that want low addresses (MAP_32BIT, compressed pointers), the top
 * to the stack, the libraries and the kernel's own placements. A window after
 * the program is left too: its break grows there.
 *
 * A draw that lands on a mapping fails (MAP_FIXED_NOREPLACE) and is drawn
 * again, a few times; then mmap decides, as before.
 */
#include "aslr.h"
#include "os.h"

#include <errno.h>
#include <stdint.h>
#include <sys/auxv.h>

#define MAX_CALLS 8     /* mmap calls per reservation before mmap decides */
#define MAX_DRAWS 32    /* draws, those that the program's window rejects included */

struct space {
	uintptr_t lo, hi;               /* where reservations may go */
	uintptr_t prog_lo, prog_hi;     /* the program and its break: not there */
};

/*
 * The user address space ends above the initial stack (AT_RANDOM's bytes
 * are on it), at a power of two: 2^47 on x86-64, 2^39 to 2^48 on arm64.
 * Read from the auxiliary vector: no system call.
 */
static void address_space(struct space *s)
{
	uintptr_t stack = (uintptr_t)getauxval(AT_RANDOM);
	unsigned bits = stack ? 64 - (unsigned)__builtin_clzl(stack) : 47;
	uintptr_t top = (uintptr_t)1 << bits;
	s->lo = top / 32;
	s->hi = top - top / 32;
	s->prog_lo = (uintptr_t)getauxval(AT_PHDR) & ~(PAGE_SIZE - 1);
	s->prog_hi = s->prog_lo + top / 128;
}

void *aslr_reserve(struct rng *r, size_t bytes, size_t align, bool rw)
{
	struct space s;
	address_space(&s);
	uintptr_t lo = (s.lo + align - 1) & ~(uintptr_t)(align - 1);
	errno = EEXIST;
	if (bytes > s.hi || lo > s.hi - bytes)
		return NULL;
	uint64_t places = (s.hi - bytes - lo) / align + 1;
	unsigned calls = 0;
	for (unsigned draws = 0; draws < MAX_DRAWS && calls < MAX_CALLS; draws++) {
		uintptr_t at = lo + (uintptr_t)rng_below64(r, places) * align;
		if (at < s.prog_hi && at + bytes > s.prog_lo)
			continue;
		calls++;
		void *p = os_reserve_at((void *)at, bytes, rw);
		if (p)
			return p;
		if (errno != EEXIST)
			return NULL;
	}
	errno = EEXIST;
	return NULL;
}

void *aslr_reserve_or_plain(struct rng *r, size_t bytes, size_t align, bool rw)
{
	void *p = aslr_reserve(r, bytes, align, rw);
	if (!p && errno != ENOMEM)
		p = rw ? os_reserve_rw(bytes) : os_reserve(bytes);
	return p;
}

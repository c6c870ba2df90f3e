/*
 * fault: the fault explainer. A guard page that stops an overflow, or a
 * closed room that stops a use after free, shows up as a bare SIGSEGV; this
 * handler says what it was: the kind, read or write, the address, the block
 * it hit or the nearest live one and how far from it, then the stack. Then
 * the process dies of the signal as it would have without it.
 *
 * Everything here runs in a signal handler, possibly on a small alternate
 * stack, in a thread that may hold any of the allocator's locks: it takes no
 * lock, allocates nothing, and reads the maze index the way the index
 * allows without one (records below a wing's extent are mapped; a record
 * being rewritten reads as one version or the next, and a report from a
 * moment's old state is still right about the fault).
 *
 * Chaining: the handler is installed when the default labyrinth opens. A
 * fault it does not explain goes to the handler that was there before (or
 * the default action); one it explains is reported, the previous
 * disposition is put back, and the handler returns, so the access faults
 * again and meets what it would have met without labyrinth. A program that
 * installs its own handler later simply replaces this one.
 */
#include "fault.h"
#include "guarded.h"
#include "large.h"
#include "reserve.h"
#include "room.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction previous[2];    /* SIGSEGV, SIGBUS */

/* Stack lines: stderr, and the labyrinth command's report pipe, which
 * symbolizes them once the process has died (non-blocking: a full pipe
 * drops lines rather than stop a dying process). */
static void line_to_stderr(struct line *l)
{
	line_write_reports(l);
}

/* ---- the blocks around an address ------------------------------------- */

static void consider(struct fault_scene *sc, uintptr_t a, const struct heap_block *b)
{
	if (!b->gen)
		return;         /* never allocated */
	if (b->start <= a) {
		if (!sc->below.start || b->start > sc->below.start)
			sc->below = *b;
	} else if (!sc->above.start || b->start < sc->above.start) {
		sc->above = *b;
	}
}

static void version_into(struct heap_block *b, const version_t *v)
{
	uint64_t x = version_read((version_t *)v);
	b->gen = v_gen(x);
	b->live = v_state(x) == V_OWNED;
}

/* Slot `slot` of a small room (past its last: the last). */
static void small_block(const struct wing *w, uint32_t cell, size_t slot, struct heap_block *b)
{
	struct room *r = room_of(w, cell);
	uint16_t n = slots_per_room(w);
	if (n == 0)
		return;
	if (slot >= n)
		slot = n - 1u;
	b->start = (uintptr_t)cell_addr(w, cell) + (size_t)slot * w->class_size;
	b->size = *slot_size(w, r, (uint16_t)slot);
	b->span = w->class_size;
	b->class_size = w->class_size;
	version_into(b, slot_version(r, (uint16_t)slot));
}

static void large_block(const struct wing *w, uint32_t cell, struct heap_block *b)
{
	const struct large *r = cell_record(w, cell);
	b->start = (uintptr_t)cell_addr(w, cell) + (size_t)r->first_page * PAGE_SIZE;
	b->size = r->size;
	b->span = (size_t)r->npages * PAGE_SIZE;
	b->class_size = w->class_size;
	version_into(b, &r->version);
}

static void page_block(const struct wing *w, uint32_t cell, struct heap_block *b)
{
	const struct page_rec *r = page_rec_of(w, cell);
	b->start = (uintptr_t)cell_addr(w, cell);
	b->size = b->span = w->room_bytes;
	version_into(b, &r->version);
}

/* The block of cell `cell` nearest to offset `off` in it (small rooms: the
 * slot there; past the slots, the last; SIZE_MAX, the first). */
static void cell_block(const struct labyrinth *lab, const struct wing *w, uint32_t cell,
		       size_t off, struct heap_block *b)
{
	*b = (struct heap_block){ 0 };
	if (wing_is_page(lab, w))
		page_block(w, cell, b);
	else if (!wing_is_small(lab, w))
		large_block(w, cell, b);
	else
		small_block(w, cell, off == SIZE_MAX ? 0 : off / w->class_size, b);
}

static bool maze_scene(const struct labyrinth *lab, uintptr_t a, struct fault_scene *sc)
{
	const struct maze *m = &lab->maze;
	if (a - (uintptr_t)m->index < m->index_bytes) {
		sc->metadata = "the maze index";
		return true;
	}
	if (a - ((uintptr_t)lab - PAGE_SIZE) < lab->self_bytes) {
		sc->metadata = "the labyrinth's arenas";
		return true;
	}
	if (a - (uintptr_t)m->reserved >= m->reserved_bytes)
		return false;
	const struct wing *w = maze_wing_of(m, (const void *)a);
	size_t off;
	uint32_t cell = w ? wing_cell_of(w, (const void *)a, &off) : CELL_NONE;
	uint32_t ext = w ? atomic_load_explicit(&((struct wing *)w)->ext_cells,
						 memory_order_acquire) : 0;
	struct heap_block b;
	if (cell == CELL_NONE) {
		/* Outside the wing's extent, never allocated; but a stray from
		 * the block of its first cell (below it) or its last (past
		 * it) is that block's underflow or overflow. */
		if (ext) {
			bool below = a < (uintptr_t)cell_addr(w, 0);
			cell_block(lab, w, below ? 0 : ext - 1, below ? SIZE_MAX : SIZE_MAX - 1, &b);
			consider(sc, a, &b);
		}
		return true;
	}
	cell_block(lab, w, cell, off < w->room_bytes ? off : SIZE_MAX - 1, &b);
	consider(sc, a, &b);
	if (cell > 0) {
		cell_block(lab, w, cell - 1, SIZE_MAX - 1, &b);
		consider(sc, a, &b);
	}
	if (cell + 1 < ext) {
		cell_block(lab, w, cell + 1, SIZE_MAX, &b);
		consider(sc, a, &b);
	}
	return true;
}

/* A zero-size block's slot: never accessible, so any access through a
 * malloc(0) pointer, at it or a few bytes on, faults here. */
static bool zero_scene(const struct labyrinth *lab, uintptr_t a, struct fault_scene *sc)
{
	if (!zero_has(&lab->zero, (const void *)a))
		return false;
	uintptr_t start;
	uint64_t v = zero_slot_version(&lab->zero, (const void *)a, &start);
	sc->zero = true;
	if (v_gen(v))
		sc->below = (struct heap_block){ .start = start, .gen = v_gen(v),
						 .live = v_state(v) == V_OWNED };
	return true;
}

/* ---- the report --------------------------------------------------------- */

static const char *const kind_words[] = {
	"heap overflow", "heap underflow", "use after free",
	"access to never-allocated heap", "access to allocator metadata",
	"access to a zero-size block (malloc(0))", "",
};
enum { K_OVERFLOW, K_UNDERFLOW, K_AFTER_FREE, K_NEVER, K_METADATA, K_ZERO, K_PROGRAMS };

/* An overflow or underflow stops at the first guard page past the block:
 * a fault farther than this from every live block is a wild access. */
#define NEAR_BYTES (64UL << 10)

/* Which block the fault is about (*b), how the address relates to it
 * (*rel: K_OVERFLOW, K_UNDERFLOW or K_AFTER_FREE), and the kind.
 * K_PROGRAMS: inside a live block's bytes, so the program made the page
 * fault itself (a guard page of its own, say): its business, not ours. */
static int verdict(const struct fault_scene *sc, uintptr_t a, const struct heap_block **b,
		   int *rel)
{
	const struct heap_block *lo = &sc->below, *hi = &sc->above;
	*b = NULL;
	if (sc->metadata)
		return K_METADATA;
	if (sc->zero) {
		*b = lo->start ? lo : NULL;
		return *rel = K_ZERO;
	}
	if (lo->start && !lo->live && a - lo->start < lo->span + PAGE_SIZE) {
		*b = lo;
		return *rel = K_AFTER_FREE;
	}
	if (lo->start && lo->live && a - lo->start < lo->size)
		return K_PROGRAMS;
	uintptr_t over = lo->start && lo->live && a >= lo->start + lo->size
			 ? a - (lo->start + lo->size) : UINTPTR_MAX;
	uintptr_t under = hi->start && hi->live ? hi->start - a : UINTPTR_MAX;
	if (over == UINTPTR_MAX && under == UINTPTR_MAX)
		return K_NEVER;
	*b = over <= under ? lo : hi;
	*rel = over <= under ? K_OVERFLOW : K_UNDERFLOW;
	return (over <= under ? over : under) < NEAR_BYTES ? *rel : K_NEVER;
}

static void bytes_words(struct line *l, uint64_t n, const char *rest)
{
	line_dec(l, n);
	line_str(l, n == 1 ? " byte" : " bytes");
	line_str(l, rest);
}

static void block_words(struct line *l, int kind, int rel, uintptr_t a,
			const struct heap_block *b)
{
	line_str(l, kind == K_NEVER ? " (the nearest live block: " : " (");
	if (rel == K_OVERFLOW)
		bytes_words(l, a - (b->start + b->size), " past the end of a ");
	else if (rel == K_UNDERFLOW)
		bytes_words(l, b->start - a, " before a ");
	else if (a < b->start + b->size)
		bytes_words(l, a - b->start, " into a freed ");
	else
		bytes_words(l, a - (b->start + b->size), " past the end of a freed ");
	line_dec(l, b->size);
	line_str(l, "-byte block at ");
	line_hex(l, b->start);
	if (b->class_size) {
		line_str(l, ", class ");
		line_dec(l, b->class_size);
		line_str(l, " B");
	}
	line_str(l, ")");
}

/* A zero-size block owns no byte: the words say which block, and whether
 * it was still allocated. */
static void zero_words(struct line *l, uintptr_t a, const struct heap_block *b)
{
	if (!b) {
		line_str(l, " (never allocated)");
		return;
	}
	line_str(l, " (");
	if (a != b->start)
		bytes_words(l, a - b->start, " past ");
	line_str(l, b->live ? "a live" : "a freed");
	if (a != b->start) {
		line_str(l, " zero-size block at ");
		line_hex(l, b->start);
	} else {
		line_str(l, " block of 0 bytes");
	}
	line_str(l, ")");
}

__attribute__((noinline)) static void fault_line(int sig, uintptr_t a, uint64_t err,
						 const struct fault_scene *sc,
		       int kind, int rel, const struct heap_block *b)
{
	struct line l = { .len = 0 };
	line_str(&l, sig == SIGBUS ? "labyrinth: SIGBUS: " : "labyrinth: SIGSEGV: ");
	line_str(&l, kind_words[kind]);
	line_str(&l, err & 0x10 ? ", execute at " : err & 2 ? ", write at " : ", read at ");
	line_hex(&l, a);
	if (kind == K_ZERO)
		zero_words(&l, a, b);
	else if (b)
		block_words(&l, kind, rel, a, b);
	else if (sc->metadata) {
		line_str(&l, " (");
		line_str(&l, sc->metadata);
		line_str(&l, ")");
	}
	line_str(&l, "\n");
	line_write_reports(&l);
}

/* A frame of its own, so that its line is not on the stack during a walk. */
__attribute__((noinline)) static void title_line(const char *title, const char *why,
						 void (*write)(struct line *))
{
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: ");
	line_str(&l, title);
	line_str(&l, why);
	write(&l);
}

/* One of a guarded block's stacks, or plainly why it is not shown. above:
 * the stack the report printed before it, or NULL. */
static void block_stack(const struct labyrinth *lab, const struct heap_block *b, bool freed,
			struct stack *s, const struct stack *above, void (*write)(struct line *))
{
	const char *title = freed ? "freed by" : "allocated by";
	const char *why = NULL;
	switch (guarded_stack(lab, b->start, b->gen, freed, s)) {
	case TRACE_KEPT:
		if (above && above->n == s->n && s->n &&
		    !memcmp(above->pc, s->pc, s->n * sizeof s->pc[0]))
			why = ": the same frames as the stack above\n";
		break;
	case TRACE_LOST:
		why = ": not kept (a later block's record took its place)\n";
		break;
	case TRACE_PENDING:
		why = ": not known yet (another thread was freeing it at that moment)\n";
		break;
	}
	if (why)
		title_line(title, why, write);
	else
		stack_print(s, title, write);
}

/* Where a guarded block was allocated and, if it was, freed. */
static void block_stacks(const struct labyrinth *lab, const struct heap_block *b,
			 struct stack *s, const struct stack *above,
			 void (*write)(struct line *))
{
	block_stack(lab, b, false, s, above, write);
	if (!b->live)
		block_stack(lab, b, true, s, above, write);
}

/* The fault's stack and a guarded block's stacks: a frame apart from the
 * report line's, so that the line alone needs less of a small stack. */
__attribute__((noinline)) static void context_stacks(const struct labyrinth *lab,
						     const ucontext_t *uc,
						     const struct heap_block *b)
{
	struct stack s;
	stack_of_context(&s, uc);
	stack_print(&s, "stack", line_to_stderr);
	if (b && guarded_has(lab, (const void *)b->start))
		block_stacks(lab, b, &s, NULL, line_to_stderr);
}

/* The report, if a lies in the default labyrinth's memory; the stack too
 * if walk (there is room for it). */
__attribute__((noinline)) static bool explain(int sig, const siginfo_t *si,
					      const ucontext_t *uc, bool walk)
{
	const struct labyrinth *lab = lab_default_if_open();
	uintptr_t a = (uintptr_t)si->si_addr;
	struct fault_scene sc = { 0 };
	if (!lab || !(zero_scene(lab, a, &sc) || guarded_scene(lab, si->si_addr, &sc) ||
		      maze_scene(lab, a, &sc)))
		return false;
	const struct heap_block *b;
	int rel = K_NEVER;
	int kind = verdict(&sc, a, &b, &rel);
	if (kind == K_PROGRAMS)
		return false;
	fault_line(sig, a, (uint64_t)uc->uc_mcontext.gregs[REG_ERR], &sc, kind, rel, b);
	if (!walk) {
		/* Not a struct line: its buffer is what there is no room for. */
		static const char why[] =
			"labyrinth: stack not shown: the signal stack is too small\n";
		ssize_t w = write(STDERR_FILENO, why, sizeof why - 1);
		(void)w;
		return true;
	}
	context_stacks(lab, uc, b);
	return true;
}

bool fault_heap_holds(const void *p)
{
	const struct labyrinth *lab = lab_default_if_open();
	if (!lab)
		return false;
	const struct maze *m = &lab->maze;
	return (uintptr_t)p - (uintptr_t)m->reserved < m->reserved_bytes ||
	       guarded_has(lab, p);
}

/* ---- the handler ------------------------------------------------------- */

/*
 * A fault the kernel made, not a signal sent with a fault's si_code (a
 * process may rt_sigqueueinfo itself any siginfo it likes, and the kernel
 * delivers it as given). The kernel fills the context's trap number and
 * fault address from the fault it is delivering: a page fault (trap 14) at
 * si_addr. A sent signal gets the thread's last fault's values instead, so
 * only a thread that already took a fault at that very address could be
 * fooled. SIGBUS: only an access outside a mapping's object (BUS_ADRERR);
 * a machine check (BUS_MCEERR_AO, AR) is the hardware's, not the heap's.
 */
static bool real_fault(int sig, const siginfo_t *si, const ucontext_t *uc)
{
	if (sig == SIGSEGV ? si->si_code != SEGV_MAPERR && si->si_code != SEGV_ACCERR
			   : si->si_code != BUS_ADRERR)
		return false;
	return uc->uc_mcontext.gregs[REG_TRAPNO] == 14 &&
	       (uintptr_t)uc->uc_mcontext.gregs[REG_CR2] == (uintptr_t)si->si_addr;
}

/* What the signal would have met without us. real: a fault, which happens
 * again when the handler returns; else a sent signal, raised again. */
static void chain(int sig, siginfo_t *si, void *uc, struct sigaction *old, bool real)
{
	bool dfl = !(old->sa_flags & SA_SIGINFO) && old->sa_handler == SIG_DFL;
	bool ign = !(old->sa_flags & SA_SIGINFO) && old->sa_handler == SIG_IGN;
	if (!dfl && !ign) {
		void (*fn)(int, siginfo_t *, void *) = old->sa_sigaction;
		void (*plain)(int) = old->sa_handler;
		bool info = old->sa_flags & SA_SIGINFO;
		if (old->sa_flags & SA_RESETHAND) {
			old->sa_handler = SIG_DFL;
			old->sa_flags &= ~(SA_SIGINFO | SA_RESETHAND);
		}
		if (info)
			fn(sig, si, uc);
		else
			plain(sig);
		return;
	}
	if (ign && !real)
		return;         /* sent and ignored */
	/* Fault: the access runs again and meets the default action. Sent: it
	 * is raised again, pending until this handler returns. */
	sigaction(sig, old, NULL);
	if (!real)
		raise(sig);
}

/*
 * Bytes of stack the report needs below on_fault's frame, on a program's
 * alternate stack that may be small (sigaltstack takes 2 KiB, less than the
 * kernel's own frame on some machines). Measured with tests/fault_probe
 * tight-altstack (gcc -O2): 1.2 KiB for the line, 1.4 KiB with the stacks;
 * a third more and half more. Short of them the stack is left out, or the
 * whole report, and the fault goes on as if unexplained.
 */
#define NEED_LINE 1536
#define NEED_WALK 2048

/* Bytes left below here on the alternate stack we run on (SIZE_MAX: not
 * on one, so on a thread's stack, with room to spare). The context keeps
 * the alternate stack as it was at delivery: sigaltstack would say none
 * while the handler runs if the program set SS_AUTODISARM. */
static size_t stack_left(const ucontext_t *uc)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	uintptr_t base = (uintptr_t)uc->uc_stack.ss_sp;
	if (uc->uc_stack.ss_flags & SS_DISABLE || sp - base > uc->uc_stack.ss_size)
		return SIZE_MAX;
	return sp - base;
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	struct sigaction *old = &previous[sig == SIGBUS];
	bool real = real_fault(sig, si, uc);
	size_t left = real ? stack_left(uc) : 0;
	if (real && left >= NEED_LINE && explain(sig, si, uc, left >= NEED_WALK))
		sigaction(sig, old, NULL);
	else
		chain(sig, si, uc, old, real);
	errno = saved;
}

void fault_install(void)
{
	static atomic_flag done = ATOMIC_FLAG_INIT;
	if (atomic_flag_test_and_set(&done) || getauxval(AT_SECURE))
		return;
	/* SA_ONSTACK: a program's alternate stack (for its own stack overflows)
	 * is used if it has one; the handler needs well under 4 KiB of it. */
	struct sigaction sa = { .sa_sigaction = on_fault,
				.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &previous[0]);
	sigaction(SIGBUS, &sa, &previous[1]);
}

/* ---- stacks in heap error reports -------------------------------------- */

__attribute__((noinline)) void fault_report_stacks(const void *addr)
{
	void (*write)(struct line *) = line_to_stderr;
	struct stack here, s;
	stack_here(&here, 2);   /* this function and report_heap_error */
	stack_print(&here, "stack", write);
	const struct labyrinth *lab = lab_default_if_open();
	struct fault_scene sc = { 0 };
	if (lab && guarded_scene(lab, addr, &sc) && sc.below.start)
		block_stacks(lab, &sc.below, &s, &here, write);
}

/*
 * stack: an unwinder of our own, over the .eh_frame tables every x86-64
 * module carries (the ABI requires them; gcc and clang emit them by
 * default), so that programs built without frame pointers still unwind.
 *
 * Why not a library: libunwind would be loaded into every process that runs
 * on the allocator, and glibc's backtrace() dlopens libgcc_s at its first
 * call, which allocates (inside malloc, or in a signal handler) unless it is
 * warmed at start-up, a dlopen for every shell. This walk needs neither: a
 * module's unwind table is found with _dl_find_object (glibc 2.35), which
 * takes no lock and is async-signal-safe, and the tables are only read. It
 * follows the rules of the call frame that compilers emit for ordinary code
 * (the CFA from rsp or rbp plus an offset, saved registers at offsets from
 * it); a frame whose rule is a DWARF expression (PLT stubs, the signal
 * trampoline, stack-realigning prologues) ends the walk there.
 *
 * A corrupt stack must not send the walk into unmapped memory: each frame's
 * CFA must lie above the last one, within MAX_FRAME, the slots read must
 * lie between the two, and on a page found readable (struct window). The
 * outermost frames (_start, a thread's start) mark the return address
 * undefined, which ends the walk.
 */
#include "stack.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#define DW_RBP 6
#define DW_RSP 7
#define DW_RA 16
#define STATE_DEPTH 4
#define MAX_FRAME (8UL << 20)   /* one frame's locals, at most */
#define PAGE_BYTES 4096UL       /* the smallest page: a readable one is read */

enum rule { R_SAME, R_UNDEF, R_OFFSET, R_VAL_OFFSET, R_OTHER };

/* The rules of the two registers a walk needs: rbp (a CFA may be based on
 * it) and the return address; the others are never read. Kept small: the
 * walk may run on a signal's alternate stack. */
enum { ROW_BP, ROW_RA, ROW_REGS };

struct row {
	bool cfa_ok;
	uint8_t cfa_reg;
	uint8_t how[ROW_REGS];
	int64_t cfa_off;
	int64_t off[ROW_REGS];
};

static int row_reg(uint64_t reg)
{
	return reg == DW_RBP ? ROW_BP : reg == DW_RA ? ROW_RA : -1;
}

struct cie {
	const uint8_t *insns, *end;
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	bool aug_z;
};

struct regs {
	uintptr_t pc, sp, bp;
};

/* ---- reading the tables ------------------------------------------------ */

/* A LEB128 number; signed: its last byte's sign bit extends it. */
static uint64_t leb(const uint8_t **pp, bool sign)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b;
	do {
		b = *p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (sign && shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	*pp = p;
	return v;
}

static uint64_t uleb(const uint8_t **pp)
{
	return leb(pp, false);
}

static int64_t sleb(const uint8_t **pp)
{
	return (int64_t)leb(pp, true);
}

#define LOAD(type, p) ({ type v_; memcpy(&v_, (p), sizeof v_); v_; })

/* A pointer in DW_EH_PE encoding `enc`; *ok cleared on one we do not know. */
static uintptr_t read_enc(const uint8_t **pp, uint8_t enc, uintptr_t datarel, bool *ok)
{
	const uint8_t *p = *pp;
	uintptr_t base = 0, v;
	if (enc == 0xff)
		return 0;
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: base = (uintptr_t)p; break;
	case 0x30: base = datarel; break;
	default: *ok = false; return 0;
	}
	switch (enc & 0x0f) {
	case 0x00: case 0x04: v = LOAD(uint64_t, p); p += 8; break;
	case 0x01: v = uleb(&p); break;
	case 0x02: v = LOAD(uint16_t, p); p += 2; break;
	case 0x03: v = LOAD(uint32_t, p); p += 4; break;
	case 0x09: v = (uintptr_t)sleb(&p); break;
	case 0x0a: v = (uintptr_t)(intptr_t)LOAD(int16_t, p); p += 2; break;
	case 0x0b: v = (uintptr_t)(intptr_t)LOAD(int32_t, p); p += 4; break;
	case 0x0c: v = LOAD(uint64_t, p); p += 8; break;
	default: *ok = false; return 0;
	}
	*pp = p;
	v += base;
	if ((enc & 0x80) && v)
		v = LOAD(uintptr_t, (const void *)v);
	return v;
}

/* The FDE that may cover pc: a binary search of .eh_frame_hdr's table. */
static const uint8_t *fde_search(const uint8_t *hdr, uintptr_t pc)
{
	bool ok = true;
	if (hdr[0] != 1 || hdr[3] != 0x3b)     /* version 1; datarel sdata4 pairs */
		return NULL;
	const uint8_t *p = hdr + 4;
	(void)read_enc(&p, hdr[1], (uintptr_t)hdr, &ok);
	size_t count = read_enc(&p, hdr[2], (uintptr_t)hdr, &ok);
	if (!ok || count == 0)
		return NULL;
	size_t lo = 0, hi = count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)hdr + (intptr_t)LOAD(int32_t, p + 8 * mid) <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)hdr + (intptr_t)LOAD(int32_t, p + 8 * lo) > pc)
		return NULL;
	return hdr + LOAD(int32_t, p + 8 * lo + 4);
}

static bool cie_parse(const uint8_t *c, struct cie *out)
{
	uint32_t len = LOAD(uint32_t, c);
	if (len == 0 || len == 0xffffffff || LOAD(uint32_t, c + 4) != 0)
		return false;
	const uint8_t *p = c + 8;
	uint8_t version = *p++;
	const char *aug = (const char *)p;
	p += strlen(aug) + 1;
	if (aug[0] == 'e' && aug[1] == 'h')
		p += sizeof(uintptr_t);
	out->code_align = uleb(&p);
	out->data_align = sleb(&p);
	if (version == 1)
		p++;
	else
		(void)uleb(&p);
	out->fde_enc = 0;
	out->aug_z = aug[0] == 'z';
	if (out->aug_z) {
		uint64_t n = uleb(&p);
		const uint8_t *after = p + n;
		bool ok = true;
		for (const char *a = aug + 1; *a && ok; a++) {
			if (*a == 'R')
				out->fde_enc = *p++;
			else if (*a == 'P') {
				uint8_t e = *p++;
				(void)read_enc(&p, e & 0x7f, 0, &ok);   /* skipped, never read */
			} else if (*a == 'L')
				p++;
			else if (*a != 'S')
				break;
		}
		p = after;
	}
	out->insns = p;
	out->end = c + 4 + len;
	return true;
}

bool stack_object_of(uintptr_t pc, struct stack_object *o)
{
#ifdef HAVE__DL_FIND_OBJECT
	struct dl_find_object dfo;
	if (_dl_find_object((void *)pc, &dfo) != 0)
		return false;
	o->eh_frame_hdr = dfo.dlfo_eh_frame;
	o->lm = dfo.dlfo_link_map;
	o->start = (uintptr_t)dfo.dlfo_map_start;
	o->end = (uintptr_t)dfo.dlfo_map_end;
	return true;
#else
	/* Before glibc 2.35 the only ways in take the loader's lock. */
	(void)pc;
	(void)o;
	return false;
#endif
}

/* ---- running the call frame program ------------------------------------ */

struct cfa_run {
	const struct cie *cie;
	uintptr_t loc, pc;
	struct row *row;
	const struct row *initial;
	struct row saved[STATE_DEPTH];
	unsigned depth;
};

static void set_rule(struct row *row, uint64_t reg, enum rule how, int64_t off)
{
	int i = row_reg(reg);
	if (i >= 0) {
		row->how[i] = (uint8_t)how;
		row->off[i] = off;
	}
}

/* One instruction; false ends the program (pc reached, or one we refuse). */
static bool cfa_step(struct cfa_run *r, const uint8_t **pp, bool *ok)
{
	const uint8_t *p = *pp;
	struct row *row = r->row;
	int64_t da = r->cie->data_align;
	uint64_t reg, adv = 0;
	uint8_t op = *p++;
	switch (op >> 6) {
	case 1: adv = op & 0x3f; goto advance;
	case 2: reg = op & 0x3f; set_rule(row, reg, R_OFFSET, (int64_t)uleb(&p) * da); goto done;
	case 3: reg = op & 0x3f; goto restore;
	}
	switch (op) {
	case 0x00: break;
	case 0x01: r->loc = read_enc(&p, r->cie->fde_enc, 0, ok); if (r->loc > r->pc) return false; break;
	case 0x02: adv = *p++; goto advance;
	case 0x03: adv = LOAD(uint16_t, p); p += 2; goto advance;
	case 0x04: adv = LOAD(uint32_t, p); p += 4; goto advance;
	case 0x05: reg = uleb(&p); set_rule(row, reg, R_OFFSET, (int64_t)uleb(&p) * da); break;
	case 0x06: reg = uleb(&p); goto restore;
	case 0x07: set_rule(row, uleb(&p), R_UNDEF, 0); break;
	case 0x08: set_rule(row, uleb(&p), R_SAME, 0); break;
	case 0x09: reg = uleb(&p); (void)uleb(&p); set_rule(row, reg, R_OTHER, 0); break;
	case 0x0a:
		if (r->depth == STATE_DEPTH)
			return *ok = false;
		r->saved[r->depth++] = *row;
		break;
	case 0x0b: {
		if (r->depth == 0)
			return *ok = false;
		/* The CFA rule is not part of the remembered state's registers,
		 * but gcc and the DWARF standard both restore it: do the same. */
		*row = r->saved[--r->depth];
		break;
	}
	case 0x0c: row->cfa_reg = (uint8_t)uleb(&p); row->cfa_off = (int64_t)uleb(&p); row->cfa_ok = true; break;
	case 0x0d: row->cfa_reg = (uint8_t)uleb(&p); break;
	case 0x0e: row->cfa_off = (int64_t)uleb(&p); break;
	case 0x0f: p += uleb(&p); row->cfa_ok = false; break;
	case 0x10: case 0x16: reg = uleb(&p); p += uleb(&p); set_rule(row, reg, R_OTHER, 0); break;
	case 0x11: reg = uleb(&p); set_rule(row, reg, R_OFFSET, sleb(&p) * da); break;
	case 0x12: row->cfa_reg = (uint8_t)uleb(&p); row->cfa_off = sleb(&p) * da; row->cfa_ok = true; break;
	case 0x13: row->cfa_off = sleb(&p) * da; break;
	case 0x14: reg = uleb(&p); set_rule(row, reg, R_VAL_OFFSET, (int64_t)uleb(&p) * da); break;
	case 0x15: reg = uleb(&p); set_rule(row, reg, R_VAL_OFFSET, sleb(&p) * da); break;
	case 0x2e: (void)uleb(&p); break;
	case 0x2f: reg = uleb(&p); set_rule(row, reg, R_OFFSET, -(int64_t)uleb(&p) * da); break;
	default: return *ok = false;
	}
	goto done;
advance:
	r->loc += adv * r->cie->code_align;
	if (r->loc > r->pc)
		return false;
	goto done;
restore: {
	int i = row_reg(reg);
	if (i >= 0) {
		row->how[i] = r->initial->how[i];
		row->off[i] = r->initial->off[i];
	}
}
done:
	*pp = p;
	return true;
}

static bool cfa_program(struct cfa_run *r, const uint8_t *p, const uint8_t *end)
{
	bool ok = true;
	while (p < end && ok && cfa_step(r, &p, &ok))
		;
	return ok;
}

/*
 * Rows found before, by pc. Running a function's call-frame program up to
 * pc is most of a walk's time, and long for large functions (an
 * interpreter's loop: thousands of instructions), while the pcs a program
 * allocates from recur; so a sampled block's two walks mostly hit here.
 * Each slot is a sequence lock of atomic words, so that any thread or
 * signal handler may read or fill it without a lock: an odd count is a
 * slot being written (a miss), a count that changed under the read is a
 * miss, and a writer that finds the slot taken leaves it. The key is the
 * pc and its module's table: a module unloaded and another loaded at the
 * same place could make a stale row hit, and the walk that follows it
 * still reads only what it has checked.
 */
#define ROW_CACHE_BITS 9
#define ROW_WORDS ((sizeof(struct row) + 7) / 8)

struct row_slot {
	_Atomic uint64_t seq;
	_Atomic uintptr_t pc, hdr;
	_Atomic uint64_t word[ROW_WORDS];
};

static struct row_slot row_cache[1u << ROW_CACHE_BITS];

static struct row_slot *row_slot_of(uintptr_t pc)
{
	return &row_cache[(pc * 0x9e3779b97f4a7c15ULL) >> (64 - ROW_CACHE_BITS)];
}

static bool row_cached(uintptr_t pc, const uint8_t *hdr, struct row *row)
{
	struct row_slot *s = row_slot_of(pc);
	uint64_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
	if (q & 1 || atomic_load_explicit(&s->pc, memory_order_relaxed) != pc ||
	    atomic_load_explicit(&s->hdr, memory_order_relaxed) != (uintptr_t)hdr)
		return false;
	uint64_t w[ROW_WORDS];
	for (size_t i = 0; i < ROW_WORDS; i++)
		w[i] = atomic_load_explicit(&s->word[i], memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&s->seq, memory_order_relaxed) != q)
		return false;
	memcpy(row, w, sizeof *row);
	return true;
}

static void row_keep(uintptr_t pc, const uint8_t *hdr, const struct row *row)
{
	struct row_slot *s = row_slot_of(pc);
	uint64_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	if (q & 1 || !atomic_compare_exchange_strong_explicit(&s->seq, &q, q + 1,
							      memory_order_relaxed,
							      memory_order_relaxed))
		return;
	atomic_thread_fence(memory_order_release);
	uint64_t w[ROW_WORDS] = { 0 };
	memcpy(w, row, sizeof *row);
	atomic_store_explicit(&s->pc, pc, memory_order_relaxed);
	atomic_store_explicit(&s->hdr, (uintptr_t)hdr, memory_order_relaxed);
	for (size_t i = 0; i < ROW_WORDS; i++)
		atomic_store_explicit(&s->word[i], w[i], memory_order_relaxed);
	atomic_store_explicit(&s->seq, q + 2, memory_order_release);
}

static bool row_run(const struct stack_object *o, uintptr_t pc, struct row *row);

/* The unwind row that holds at pc (an instruction of the frame's function). */
static bool row_at(uintptr_t pc, struct row *row)
{
	struct stack_object o;
	if (!stack_object_of(pc, &o) || !o.eh_frame_hdr)
		return false;
	if (row_cached(pc, o.eh_frame_hdr, row))
		return true;
	if (!row_run(&o, pc, row))
		return false;
	row_keep(pc, o.eh_frame_hdr, row);
	return true;
}

/* The row at pc, from the call-frame program of pc's module o. */
static bool row_run(const struct stack_object *o, uintptr_t pc, struct row *row)
{
	const uint8_t *f = fde_search(o->eh_frame_hdr, pc);
	if (!f || LOAD(uint32_t, f) == 0 || LOAD(uint32_t, f) == 0xffffffff)
		return false;
	struct cie cie;
	if (!cie_parse(f + 4 - LOAD(int32_t, f + 4), &cie))
		return false;
	const uint8_t *p = f + 8, *end = f + 4 + LOAD(uint32_t, f);
	bool ok = true;
	uintptr_t start = read_enc(&p, cie.fde_enc, 0, &ok);
	uintptr_t range = read_enc(&p, cie.fde_enc & 0x0f, 0, &ok);
	if (!ok || pc < start || pc - start >= range)
		return false;
	if (cie.aug_z)
		p += uleb(&p);
	memset(row, 0, sizeof *row);
	struct row initial;
	struct cfa_run run = { .cie = &cie, .loc = start, .pc = UINTPTR_MAX, .row = row,
			       .initial = row };
	if (!cfa_program(&run, cie.insns, cie.end))
		return false;
	initial = *row;
	run.initial = &initial;
	run.loc = start;
	run.pc = pc;
	return cfa_program(&run, p, end) && row->cfa_ok;
}

/*
 * Stack pages known readable, for one walk. A damaged frame (rbp or a saved
 * slot rewritten) can put the CFA anywhere within MAX_FRAME, unmapped or a
 * guard page, and a fault in the walk would be one inside a signal handler
 * or malloc. So each page is tried once with process_vm_readv on ourselves,
 * which fails with EFAULT instead of faulting; the window of pages found
 * readable grows as the walk climbs (a walk's frames are contiguous, most
 * walks one or two system calls). A filter that refuses the call ends the
 * walk, never reads blind.
 */
struct window {
	pid_t pid;
	uintptr_t lo, hi;       /* [lo, hi): pages found readable */
};

static bool pages_readable(struct window *w, uintptr_t first, uintptr_t last)
{
	char got[2];
	struct iovec local = { got, 2 };
	struct iovec remote[2] = { { (void *)first, 1 }, { (void *)last, 1 } };
	unsigned n = first == last ? 1 : 2;
	local.iov_len = n;
	if (!w->pid)
		w->pid = getpid();
	return process_vm_readv(w->pid, &local, 1, remote, n, 0) == (ssize_t)n;
}

static bool stack_load(struct window *w, uintptr_t at, uintptr_t *out)
{
	if (at < w->lo || at + 8 > w->hi) {
		uintptr_t first = at & ~(PAGE_BYTES - 1), last = (at + 7) & ~(PAGE_BYTES - 1);
		if (at + 8 < at || !pages_readable(w, first, last))
			return false;
		if (w->lo == w->hi || last + PAGE_BYTES < w->lo || first > w->hi) {
			w->lo = first;
			w->hi = last + PAGE_BYTES;
		} else {
			w->lo = first < w->lo ? first : w->lo;
			w->hi = last + PAGE_BYTES > w->hi ? last + PAGE_BYTES : w->hi;
		}
	}
	*out = LOAD(uintptr_t, (const void *)at);
	return true;
}

/* A saved register's slot: between the frame's sp and its CFA, readable. */
static bool slot_read(struct window *w, uintptr_t at, uintptr_t sp, uintptr_t cfa,
		      uintptr_t *out)
{
	if (at < sp || at + 8 > cfa + 64 || at % 8)
		return false;
	return stack_load(w, at, out);
}

/* From the frame at r to its caller's; false at the end or on doubt.
 * lookup: r->pc itself for the interrupted instruction, else pc - 1 (inside
 * the call, not the instruction after it). */
static bool step(struct window *w, struct regs *r, uintptr_t lookup)
{
	struct row row;
	if (!row_at(lookup, &row))
		return false;
	uintptr_t base;
	if (row.cfa_reg == DW_RSP)
		base = r->sp;
	else if (row.cfa_reg == DW_RBP)
		base = r->bp;
	else
		return false;
	uintptr_t cfa = base + (uintptr_t)row.cfa_off;
	if (cfa <= r->sp || cfa - r->sp > MAX_FRAME || cfa % 8)
		return false;
	uintptr_t ra, bp = r->bp;
	if (row.how[ROW_RA] != R_OFFSET ||
	    !slot_read(w, cfa + (uintptr_t)row.off[ROW_RA], r->sp, cfa, &ra))
		return false;   /* undefined: the outermost frame */
	if (row.how[ROW_BP] == R_OFFSET &&
	    !slot_read(w, cfa + (uintptr_t)row.off[ROW_BP], r->sp, cfa, &bp))
		return false;
	if (row.how[ROW_BP] == R_VAL_OFFSET)
		bp = cfa + (uintptr_t)row.off[ROW_BP];
	r->sp = cfa;
	r->bp = bp;
	r->pc = ra;
	return ra > 4096;
}

/*
 * The module labyrinth's code lies in, [lo, hi), when it is a library of
 * its own (the preload, liblabyrinth.so): the frames of a report taken
 * inside it are the allocator's, not the program's, and the user wants to
 * see first the call that reached it. Linked into the program itself, its
 * frames cannot be told from the program's by module: none is skipped.
 * Found at the first walk (_dl_find_object is async-signal-safe); two
 * threads that race to find it store the same values.
 */
static _Atomic uintptr_t self_lo, self_hi;
static _Atomic bool self_found;

static bool in_self(uintptr_t pc)
{
	if (!atomic_load_explicit(&self_found, memory_order_acquire)) {
		struct stack_object o, main_program;
		bool apart = stack_object_of((uintptr_t)&in_self, &o) &&
			     stack_object_of((uintptr_t)getauxval(AT_PHDR), &main_program) &&
			     o.lm != main_program.lm;
		atomic_store_explicit(&self_lo, apart ? o.start : 0, memory_order_relaxed);
		atomic_store_explicit(&self_hi, apart ? o.end : 0, memory_order_relaxed);
		atomic_store_explicit(&self_found, true, memory_order_release);
	}
	return pc - atomic_load_explicit(&self_lo, memory_order_relaxed) <
	       atomic_load_explicit(&self_hi, memory_order_relaxed) -
	       atomic_load_explicit(&self_lo, memory_order_relaxed);
}

/* Frames a walk may pass over before it records: the skipped ones and, at
 * most this many more, labyrinth's own. */
#define SELF_FRAMES_MAX 16

/* pc[] holds the address looked up: inside the call instruction. w: the
 * pages known readable to begin with. skip_self: leave out labyrinth's own
 * frames until the first that is not. */
static void walk(struct stack *s, struct regs *r, unsigned skip, struct window w,
		 bool skip_self)
{
	uintptr_t lookup = r->pc;
	s->n = 0;
	for (unsigned i = 0; i < skip + SELF_FRAMES_MAX + STACK_FRAMES; i++) {
		if (i >= skip && !(skip_self && s->n == 0 && in_self(lookup))) {
			s->pc[s->n++] = lookup;
			if (s->n == STACK_FRAMES)
				return;
		}
		if (!step(&w, r, lookup))
			return;
		lookup = r->pc - 1;
	}
}

__attribute__((noinline)) void stack_here(struct stack *s, unsigned skip)
{
	struct regs r;
	__asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
			 : "=r"(r.pc), "=r"(r.sp), "=r"(r.bp));
	/* This thread runs on the page at its stack pointer: no need to try
	 * it (most walks inside malloc then need no system call). */
	uintptr_t page = r.sp & ~(PAGE_BYTES - 1);
	struct window w = { .lo = page, .hi = page + PAGE_BYTES };
	struct regs start = r;
	walk(s, &r, skip + 1, w, true);
	/* Nothing but labyrinth's frames (a walk stopped inside it, or a
	 * thread of its own): those, rather than nothing. */
	if (s->n == 0)
		walk(s, &start, skip + 1, w, false);
}

void stack_of_context(struct stack *s, const void *ucontext)
{
	const ucontext_t *uc = ucontext;
	struct regs r = {
		.pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP],
		.sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP],
		.bp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP],
	};
	/* The interrupted context's registers may be anything: try them all.
	 * Its first frame is the faulting instruction, wherever it lies. */
	walk(s, &r, 0, (struct window){ 0 }, false);
}

/*
 * frames: a stack's frames named, for the report: the function, from the
 * module's dynamic symbol table, and the module's path and offset, without
 * a lock and without allocating (a signal handler prints them too).
 */
#include "stack.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>

/*
 * The loader's data for a module is only as trustworthy as the memory it
 * lies in: a dlopen'ed module's link map is a block of our own heap, which a
 * heap overflow can rewrite. So every table its dynamic section points to
 * is read only when it lies inside the module's mapping [start, end), and
 * its name only when the link map and the name lie outside the heap.
 */
static bool inside(const struct stack_object *o, uintptr_t p, size_t bytes)
{
	return p >= o->start && p < o->end && bytes <= o->end - p;
}

/* The loader relocates most of a module's dynamic entries in place, but not
 * those of a read-only dynamic section (the vDSO's). */
static uintptr_t dyn_ptr(const struct stack_object *o, uintptr_t v)
{
	return v < o->lm->l_addr ? v + o->lm->l_addr : v;
}

/* Symbols in the dynamic symbol table: DT_HASH says so; DT_GNU_HASH must be
 * walked to the end of its longest chain. 0 if a table leaves the module. */
static size_t dyn_symbols(const struct stack_object *o, const uint32_t *hash, const uint32_t *gnu)
{
	if (hash)
		return inside(o, (uintptr_t)hash, 8) ? hash[1] : 0;
	if (!gnu || !inside(o, (uintptr_t)gnu, 16))
		return 0;
	uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom = gnu[2];
	const uint32_t *buckets = (const uint32_t *)((const uint64_t *)(gnu + 4) + bloom);
	const uint32_t *chain = buckets + nbuckets;
	if (!inside(o, (uintptr_t)buckets, (size_t)nbuckets * 4))
		return 0;
	uint32_t last = 0;
	for (uint32_t b = 0; b < nbuckets; b++)
		if (buckets[b] > last)
			last = buckets[b];
	if (last < symoffset)
		return symoffset;
	for (;;) {
		const uint32_t *c = chain + (last - symoffset);
		if (!inside(o, (uintptr_t)c, 4))
			return 0;
		if (*c & 1)
			return (size_t)last + 1;
		last++;
	}
}

/* The exported function holding pc, from the module's dynamic symbols. */
static const char *function_of(const struct stack_object *o, uintptr_t pc, uintptr_t *start)
{
	const struct link_map *lm = o->lm;
	const ElfW(Sym) *syms = NULL;
	const char *strs = NULL;
	const uint32_t *hash = NULL, *gnu = NULL;
	size_t strsz = 0;
	for (const ElfW(Dyn) *d = lm->l_ld; inside(o, (uintptr_t)d, sizeof *d) &&
	     d->d_tag != DT_NULL; d++) {
		uintptr_t v = dyn_ptr(o, d->d_un.d_ptr);
		if (d->d_tag == DT_SYMTAB)
			syms = (const ElfW(Sym) *)v;
		else if (d->d_tag == DT_STRTAB)
			strs = (const char *)v;
		else if (d->d_tag == DT_STRSZ)
			strsz = d->d_un.d_val;
		else if (d->d_tag == DT_HASH)
			hash = (const uint32_t *)v;
		else if (d->d_tag == DT_GNU_HASH)
			gnu = (const uint32_t *)v;
	}
	if (!syms || !strs || !inside(o, (uintptr_t)strs, strsz))
		return NULL;
	size_t n = dyn_symbols(o, hash, gnu);
	if (!inside(o, (uintptr_t)syms, 0) || n > (o->end - (uintptr_t)syms) / sizeof *syms)
		return NULL;
	const ElfW(Sym) *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const ElfW(Sym) *y = &syms[i];
		unsigned type = ELF64_ST_TYPE(y->st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || y->st_shndx == SHN_UNDEF)
			continue;
		uintptr_t a = lm->l_addr + y->st_value;
		if (a <= pc && pc - a < (y->st_size ? y->st_size : 1) &&
		    (!best || y->st_value > best->st_value))
			best = y;
	}
	/* The name must end inside the string table. */
	if (!best || best->st_name >= strsz || !memchr(strs + best->st_name, 0,
							strsz - best->st_name))
		return NULL;
	*start = lm->l_addr + best->st_value;
	return strs + best->st_name;
}

/* The module's path, or NULL when the loader's copy of it is in the heap
 * (the caller then names the module by its address). The main program's
 * empty name is its AT_EXECFN. */
static const char *module_path(const struct stack_object *o)
{
	const struct link_map *lm = o->lm;
	if (fault_heap_holds(lm) || fault_heap_holds(lm->l_name) || !lm->l_name)
		return NULL;
	return lm->l_name[0] ? lm->l_name : (const char *)getauxval(AT_EXECFN);
}

static void frame_line(struct line *l, unsigned i, uintptr_t pc)
{
	line_str(l, "labyrinth:     #");
	line_dec(l, i);
	line_str(l, " ");
	struct stack_object o;
	if (!stack_object_of(pc, &o) || !o.lm || !inside(&o, pc, 1)) {
		line_hex(l, pc);
		return;
	}
	uintptr_t start;
	const char *fn = function_of(&o, pc, &start);
	if (fn) {
		line_str(l, fn);
		line_str(l, "+");
		line_hex(l, pc - start);
		line_str(l, " ");
	}
	const char *path = module_path(&o);
	line_str(l, "(");
	if (path) {
		line_str(l, path);
		line_str(l, "+");
		line_hex(l, pc - o.lm->l_addr);
	} else {
		line_str(l, "module@");
		line_hex(l, o.start);
		line_str(l, "+");
		line_hex(l, pc - o.start);
	}
	line_str(l, ")");
}

/* Why a walk found no frame, said plainly. */
#ifdef HAVE__DL_FIND_OBJECT
#define NO_FRAMES ": none found (no unwind table for its first frame, or its stack unreadable)\n"
#else
#define NO_FRAMES ": none (the unwinder needs _dl_find_object, glibc 2.35 or later)\n"
#endif

void stack_print(const struct stack *s, const char *title, void (*write)(struct line *))
{
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: ");
	line_str(&l, title);
	line_str(&l, s->n ? ":\n" : NO_FRAMES);
	write(&l);
	for (uint32_t i = 0; i < s->n; i++) {
		l.len = 0;
		frame_line(&l, i, s->pc[i]);
		line_str(&l, "\n");
		write(&l);
	}
}

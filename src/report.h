/* report: one-line reports on stderr, written without allocating. */
#ifndef LAB_REPORT_H
#define LAB_REPORT_H

#include <stddef.h>
#include <stdint.h>

/* Heap errors the allocator detects; each has one fixed wording. */
enum heap_error {
	ERR_DOUBLE_FREE,
	ERR_INVALID_FREE,
	ERR_INVALID_REALLOC,
	ERR_INVALID_USABLE_SIZE,
	ERR_CORRUPTION,
	ERR_OVERFLOW,
	ERR_WRITE_AFTER_FREE,
	ERR_WRONG_SIZE,
	ERR_INVALID_PAGE_FREE,
	ERR_STALE_HANDLE,
	ERR_FREE_SLOT_WRITE,    /* the sweep found a free slot that is not zero */
	ERR_UNDERFLOW,          /* damage before a block, where nothing else could be */
};

/* What is known about the address at the time of the report. */
struct error_site {
	const void *addr;
	const void *next;       /* the block after addr, when the damage is at
				   addr's last bytes and may be next's underflow */
	const char *why;        /* short reason, or NULL */
	size_t class_size;      /* 0 if unknown */
	uint64_t version;       /* 0 if unknown */
	int has_version;
	size_t offset;          /* of the damaged byte from addr, if has_offset */
	int has_offset;
	size_t before;          /* of the damaged byte before addr, if has_before
				   (with has_allocated: the block's size) */
	int has_before;
	size_t given;           /* a size the caller passed, if has_given */
	int has_given;
	size_t allocated;       /* the size that was allocated, if has_allocated */
	int has_allocated;
};

/*
 * Report a heap error in one line and abort(); under LABYRINTH_ON_ERROR=log,
 * return instead, and the caller goes on where that is safe (a bad free is
 * ignored).
 */
__attribute__((cold))
void report_heap_error(enum heap_error kind, const struct error_site *site);

/*
 * A release of a slot or region failed: its version word had generation gen.
 * Generation 0 was never allocated; otherwise a free is a double free, and
 * other calls (realloc, usable size) were given a freed pointer.
 */
__attribute__((cold))
void report_failed_release(enum heap_error kind, const void *addr, size_t class_size,
			   uint64_t gen);

/* Heap errors reported so far in this process (all labyrinths). */
uint64_t report_count(void);

/* A sized free said `given` bytes (SIZE_MAX: not a sized free); report it
 * if that is not the size allocated. */
void report_wrong_size_if(const void *addr, size_t given, size_t allocated, size_t class_size);
/* The same, given always wrong. */
void report_wrong_size(const void *addr, size_t given, size_t allocated, size_t class_size);

__attribute__((noreturn, cold))
void report_fatal_errno(const char *what, const void *addr);

__attribute__((noreturn, cold))
void report_fatal(const char *what);

/* One warning line: "labyrinth: warning: <text>". */
void report_warning(const char *a, const char *b, const char *c);
/* Warnings written so far (the config harness counts them). */
uint64_t report_warning_count(void);

/* Append text and numbers to a fixed buffer; used by report and stats. */
struct line {
	char buf[512];
	size_t len;
};
void line_str(struct line *l, const char *s);
void line_dec(struct line *l, uint64_t v);
/* v in decimal, written into tmp without allocating (also for the map). */
#define DEC_DIGITS_MAX 24
const char *dec_digits(char tmp[DEC_DIGITS_MAX], uint64_t v);
/* v as 0x and lowercase hex digits, the same way. */
const char *hex_digits(char tmp[DEC_DIGITS_MAX], uint64_t v);
void line_hex(struct line *l, uint64_t v);
void line_write(struct line *l, int fd);
/* To stderr, and to LABYRINTH_REPORT_FD while it is still the same pipe. */
void line_write_reports(struct line *l);

#endif

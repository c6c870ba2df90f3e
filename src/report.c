/*
 * report: the fatal path. Every heap error ends here with one line of fixed
 * wording per kind, so tests and users can match it, then abort(). The line is
 * built on the stack and written with write(2): the heap may be corrupt.
 */
#include "report.h"
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fault.c's, in the library; weak, so that the labyrinth command, which
 * links this file for its warnings, need not bring the unwinder along. */
void fault_report_stacks(const void *addr) __attribute__((weak));

static const char *const error_words[] = {
	[ERR_DOUBLE_FREE] = "double free",
	[ERR_INVALID_FREE] = "invalid free",
	[ERR_INVALID_REALLOC] = "invalid realloc",
	[ERR_INVALID_USABLE_SIZE] = "invalid pointer to malloc_usable_size",
	[ERR_CORRUPTION] = "heap corruption",
	[ERR_OVERFLOW] = "heap overflow",
	[ERR_WRITE_AFTER_FREE] = "write after free",
	[ERR_WRONG_SIZE] = "invalid sized free",
	[ERR_INVALID_PAGE_FREE] = "invalid page free",
	[ERR_STALE_HANDLE] = "stale page handle",
	/* A free slot has no owner to blame: the write came through a stale
	 * pointer, or from anywhere (an overflow, an underflow, a wild index). */
	[ERR_FREE_SLOT_WRITE] = "write after free or wild write",
	[ERR_UNDERFLOW] = "heap underflow",
};

void line_str(struct line *l, const char *s)
{
	size_t n = strlen(s);
	if (n > sizeof l->buf - 1 - l->len)
		n = sizeof l->buf - 1 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

const char *dec_digits(char tmp[DEC_DIGITS_MAX], uint64_t v)
{
	int i = DEC_DIGITS_MAX;
	tmp[--i] = 0;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return tmp + i;
}

void line_dec(struct line *l, uint64_t v)
{
	char tmp[DEC_DIGITS_MAX];
	line_str(l, dec_digits(tmp, v));
}

const char *hex_digits(char tmp[DEC_DIGITS_MAX], uint64_t v)
{
	int i = DEC_DIGITS_MAX;
	tmp[--i] = 0;
	do {
		tmp[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	tmp[--i] = 'x';
	tmp[--i] = '0';
	return tmp + i;
}

void line_hex(struct line *l, uint64_t v)
{
	char tmp[DEC_DIGITS_MAX];
	line_str(l, hex_digits(tmp, v));
}

void line_write(struct line *l, int fd)
{
	size_t done = 0;
	while (done < l->len) {
		ssize_t n = write(fd, l->buf + done, l->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		done += (size_t)n;
	}
}

/* One ", label N unit" item of a report's parenthesis. */
static void field(struct line *l, const char **sep, const char *label, uint64_t n,
		  const char *unit)
{
	line_str(l, *sep);
	line_str(l, label);
	line_dec(l, n);
	line_str(l, unit);
	*sep = ", ";
}

static _Atomic uint64_t heap_errors;

/*
 * LABYRINTH_REPORT_FD: the pipe the labyrinth command reads reports from.
 * Programs close and reuse descriptors, so the line is written only while
 * the descriptor is still the pipe that was there at start-up: a report must
 * never land in a file or socket that took its number.
 */
static dev_t report_dev;
static ino_t report_ino;
static int report_fd = -1;

__attribute__((constructor)) static void report_fd_note(void)
{
	struct stat st;
	if (!secure_getenv("LABYRINTH_REPORT_FD"))
		return;         /* do not parse the configuration before it is needed */
	int fd = (int)config_get()->report_fd;
	if (fd > 2 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
		report_dev = st.st_dev;
		report_ino = st.st_ino;
		report_fd = fd;
	}
}

void line_write_reports(struct line *l)
{
	line_write(l, STDERR_FILENO);
	struct stat st;
	if (report_fd >= 0 && fstat(report_fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
	    st.st_dev == report_dev && st.st_ino == report_ino)
		line_write(l, report_fd);
}

uint64_t report_count(void)
{
	return atomic_load_explicit(&heap_errors, memory_order_relaxed);
}

void report_heap_error(enum heap_error kind, const struct error_site *site)
{
	atomic_fetch_add_explicit(&heap_errors, 1, memory_order_relaxed);
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: ");
	line_str(&l, error_words[kind]);
	line_str(&l, kind == ERR_FREE_SLOT_WRITE ? " to " : " of ");
	line_hex(&l, (uintptr_t)site->addr);
	if (site->next) {
		line_str(&l, " or underflow of ");
		line_hex(&l, (uintptr_t)site->next);
	}
	const char *sep = " (";
	if (site->why) {
		line_str(&l, sep);
		line_str(&l, site->why);
		sep = ", ";
		if (site->has_offset) {
			line_str(&l, " at +");
			line_dec(&l, site->offset);
		}
		if (site->has_before && site->has_allocated) {
			line_dec(&l, site->before);
			line_str(&l, site->before == 1 ? " byte before the " : " bytes before the ");
			line_dec(&l, site->allocated);
			line_str(&l, "-byte block");
		}
	}
	if (site->has_given)
		field(&l, &sep, "size ", site->given, " given");
	if (site->has_allocated && !site->has_before)
		field(&l, &sep, "", site->allocated, " allocated");
	if (site->class_size)
		field(&l, &sep, "class ", site->class_size, " B");
	if (site->has_version)
		field(&l, &sep, "version ", site->version, "");
	if (sep[0] == ',')
		line_str(&l, ")");
	line_str(&l, "\n");
	line_write_reports(&l);
	if (fault_report_stacks)        /* the labyrinth command has no stacks to add */
		fault_report_stacks(site->addr);
	if (config_get()->on_error != CFG_ON_ERROR_LOG)
		abort();
}

void report_failed_release(enum heap_error kind, const void *addr, size_t class_size,
			   uint64_t gen)
{
	struct error_site site = {
		.addr = addr, .class_size = class_size, .version = gen, .has_version = gen != 0,
	};
	if (gen == 0)
		site.why = "never allocated";
	else if (kind == ERR_INVALID_FREE)
		kind = ERR_DOUBLE_FREE;
	else
		site.why = "already freed";
	report_heap_error(kind, &site);
}

void report_wrong_size_if(const void *addr, size_t given, size_t allocated, size_t class_size)
{
	if (given != SIZE_MAX && given != allocated)
		report_wrong_size(addr, given, allocated, class_size);
}

void report_wrong_size(const void *addr, size_t given, size_t allocated, size_t class_size)
{
	struct error_site site = {
		.addr = addr, .given = given, .has_given = 1, .allocated = allocated,
		.has_allocated = 1, .class_size = class_size,
	};
	report_heap_error(ERR_WRONG_SIZE, &site);
}

void report_fatal_errno(const char *what, const void *addr)
{
	int e = errno;
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: ");
	line_str(&l, what);
	if (addr) {
		line_str(&l, " at ");
		line_hex(&l, (uintptr_t)addr);
	}
	line_str(&l, " (errno ");
	line_dec(&l, (uint64_t)e);
	line_str(&l, ")\n");
	line_write_reports(&l);
	abort();
}

void report_fatal(const char *what)
{
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: ");
	line_str(&l, what);
	line_str(&l, "\n");
	line_write_reports(&l);
	abort();
}

static _Atomic uint64_t warnings_reported;

uint64_t report_warning_count(void)
{
	return atomic_load_explicit(&warnings_reported, memory_order_relaxed);
}

void report_warning(const char *a, const char *b, const char *c)
{
	atomic_fetch_add_explicit(&warnings_reported, 1, memory_order_relaxed);
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: warning: ");
	line_str(&l, a);
	if (b)
		line_str(&l, b);
	if (c)
		line_str(&l, c);
	line_str(&l, "\n");
	line_write(&l, STDERR_FILENO);
}

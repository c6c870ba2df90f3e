#!/bin/sh
# autoproj: writes a small autotools project into DIR and runs autoreconf
# on it once, for the `build` row of `make bench`.
#
#   bench/autoproj.sh DIR
#
# The row then times `configure && make -j2` of it under each allocator:
# the many short processes of a real build (shells, sed, gcc, cc1, as, ld)
# rather than one big one. autoreconf runs here, without the allocator under
# test, so that only configure and make are measured. Exits non-zero, with
# autoreconf's messages on stderr, if autotools are missing or fail.
set -eu
dir=$1
mkdir -p "$dir/src"
cd "$dir"

cat > configure.ac <<'AC'
AC_INIT([autoproj], [1.0])
AC_CONFIG_SRCDIR([src/main.c])
AC_CONFIG_AUX_DIR([build-aux])
AM_INIT_AUTOMAKE([foreign subdir-objects])
AC_PROG_CC
AC_PROG_RANLIB
AM_PROG_AR
AC_CHECK_HEADERS([stdint.h stdlib.h string.h unistd.h sys/time.h])
AC_CHECK_FUNCS([strdup strndup clock_gettime])
AC_TYPE_SIZE_T
AC_C_INLINE
AC_CONFIG_HEADERS([config.h])
AC_CONFIG_FILES([Makefile])
AC_OUTPUT
AC

cat > Makefile.am <<'AM'
# cr: the D modifier binutils adds to ar by default makes u moot (and noisy).
ARFLAGS = cr
noinst_LIBRARIES = libwords.a
libwords_a_SOURCES = src/words.c src/table.c src/words.h
bin_PROGRAMS = wordcount
wordcount_SOURCES = src/main.c src/report.c
wordcount_LDADD = libwords.a
AM

cat > src/words.h <<'H'
#include <stddef.h>
struct table;
struct table *table_new(size_t buckets);
void table_add(struct table *t, const char *word, size_t len);
size_t table_count(const struct table *t, const char *word);
size_t table_size(const struct table *t);
void table_free(struct table *t);
size_t next_word(const char *s, size_t *start);
void report(const struct table *t, const char *const *words, size_t n);
H

cat > src/words.c <<'C'
#include <config.h>
#include <ctype.h>
#include "words.h"

/* The length of the next word at or after s[*start]; *start moves to it. */
size_t next_word(const char *s, size_t *start)
{
	size_t i = *start, len = 0;

	while (s[i] && !isalpha((unsigned char)s[i]))
		i++;
	while (isalpha((unsigned char)s[i + len]))
		len++;
	*start = i;
	return len;
}
C

cat > src/table.c <<'C'
#include <config.h>
#include <stdlib.h>
#include <string.h>
#include "words.h"

struct entry { struct entry *next; char *word; size_t count; };
struct table { struct entry **bucket; size_t n, size; };

static size_t hash(const char *s, size_t len)
{
	size_t h = 5381;

	while (len--)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

struct table *table_new(size_t buckets)
{
	struct table *t = calloc(1, sizeof(*t));

	t->bucket = calloc(buckets, sizeof(*t->bucket));
	t->n = buckets;
	return t;
}

void table_add(struct table *t, const char *word, size_t len)
{
	struct entry **b = &t->bucket[hash(word, len) % t->n], *e;

	for (e = *b; e; e = e->next)
		if (strlen(e->word) == len && memcmp(e->word, word, len) == 0) {
			e->count++;
			return;
		}
	e = malloc(sizeof(*e));
	e->word = strndup(word, len);
	e->count = 1;
	e->next = *b;
	*b = e;
	t->size++;
}

size_t table_count(const struct table *t, const char *word)
{
	const struct entry *e = t->bucket[hash(word, strlen(word)) % t->n];

	for (; e; e = e->next)
		if (strcmp(e->word, word) == 0)
			return e->count;
	return 0;
}

size_t table_size(const struct table *t)
{
	return t->size;
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		while (t->bucket[i]) {
			struct entry *e = t->bucket[i];

			t->bucket[i] = e->next;
			free(e->word);
			free(e);
		}
	free(t->bucket);
	free(t);
}
C

cat > src/report.c <<'C'
#include <config.h>
#include <stdio.h>
#include "words.h"

void report(const struct table *t, const char *const *words, size_t n)
{
	printf("%zu distinct words\n", table_size(t));
	for (size_t i = 0; i < n; i++)
		printf("%s: %zu\n", words[i], table_count(t, words[i]));
}
C

cat > src/main.c <<'C'
#include <config.h>
#include <stdlib.h>
#include "words.h"

static const char text[] =
	"the quick brown fox jumps over the lazy dog and the dog sleeps";

int main(int argc, char **argv)
{
	struct table *t = table_new(64);
	size_t at = 0, len;

	while ((len = next_word(text, &at)) > 0) {
		table_add(t, text + at, len);
		at += len;
	}
	report(t, (const char *const *)argv + 1, (size_t)(argc - 1));
	table_free(t);
	return 0;
}
C

# Without the allocator under test, and only once: not part of the timing.
env -u LD_PRELOAD autoreconf -fi >autoreconf.log 2>&1 || {
	cat autoreconf.log >&2
	exit 1
}

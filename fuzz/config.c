/*
 * config harness: any environment gives a valid configuration or warnings,
 * never a crash or an unsafe setting.
 *
 * The input is an environment block: entries separated by newlines or NUL
 * bytes, each "NAME=value" (anything else is kept as an entry too). It goes
 * through config_parse() with a lookup over the block instead of getenv,
 * then config_check_names(). An independent reference parser, written from
 * the table's rules (a number is decimal digits only, within [min, max]; a
 * word is one of the listed words exactly), predicts each field and each
 * warning; the harness fails on any difference, and on any field outside
 * its variable's range.
 */
#include "config.h"
#include "fuzz.h"
#include "report.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 256

static char block[1 << 16];
static char *entries[MAX_ENTRIES + 1];

void fuzz_setup(void)
{
}

/* Split the input into NUL-terminated entries (a copy: the input is read-only). */
static void split(const uint8_t *data, size_t len)
{
	if (len > sizeof block - 1)
		len = sizeof block - 1;
	memcpy(block, data, len);
	block[len] = 0;
	size_t n = 0, start = 0;
	for (size_t i = 0; i <= len && n < MAX_ENTRIES; i++) {
		if (i == len || block[i] == '\n' || block[i] == 0) {
			block[i] = 0;
			if (i > start)
				entries[n++] = block + start;
			start = i + 1;
		}
	}
	entries[n] = NULL;
}

/* getenv over the block: the first entry named exactly `name`. */
static char *lookup(const char *name)
{
	size_t n = strlen(name);
	for (char **e = entries; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

/* The reference: is s a value the table allows, and which? */
static int expect_value(const struct cfg_var *v, const char *s, unsigned *out)
{
	if (v->choices) {
		for (unsigned i = 0; v->choices[i]; i++) {
			/* A word ending in FILE ("json:FILE") takes its prefix and any
			 * file name that fits CFG_PATH_MAX. */
			const char *w = v->choices[i];
			size_t wl = strlen(w), pl = wl >= 4 ? wl - 4 : 0;
			bool file = wl >= 4 && strcmp(w + pl, "FILE") == 0;
			if (file && strncmp(s, w, pl) == 0 && s[pl] && strlen(s + pl) < CFG_PATH_MAX)
				return *out = i, 1;
			if (strcmp(s, w) == 0)
				return *out = i, 1;
		}
		return 0;
	}
	if (!*s || strspn(s, "0123456789") != strlen(s))
		return 0;
	s += strspn(s, "0");    /* leading zeros are still decimal */
	if (strlen(s) > 19)
		return 0;
	unsigned long long x = strtoull(s, NULL, 10);
	if (x < v->min || x > v->max)
		return 0;
	*out = (unsigned)x;
	return 1;
}

static unsigned field(const struct config *c, const struct cfg_var *v)
{
	return *(const unsigned *)((const char *)c + v->offset);
}

static unsigned choice_count(const struct cfg_var *v)
{
	unsigned n = 0;
	while (v->choices[n])
		n++;
	return n;
}

/* Every field in its variable's range, and equal to what the reference says. */
static uint64_t check_fields(const struct config *c)
{
	uint64_t warnings = 0;
	for (size_t i = 0; i < config_var_count; i++) {
		const struct cfg_var *v = &config_vars[i];
		unsigned got = field(c, v), want = v->def;
		const char *s = lookup(v->name);
		if (s && *s && !expect_value(v, s, &want))
			warnings++;
		if (got != want)
			fuzz_fail("%s: parsed %u, expected %u", v->name, got, want);
		if (v->choices ? got >= choice_count(v) : got < v->min || got > v->max)
			fuzz_fail("%s: %u is outside its range", v->name, got);
	}
	return warnings;
}

/* Entries starting LABYRINTH_ whose name is not in the table. */
static uint64_t unknown_names(void)
{
	uint64_t n = 0;
	for (char **e = entries; *e; e++) {
		if (strncmp(*e, "LABYRINTH_", 10) != 0)
			continue;
		size_t len = strcspn(*e, "=");
		int known = 0;
		for (size_t i = 0; i < config_var_count && !known; i++)
			known = strlen(config_vars[i].name) == len &&
				memcmp(config_vars[i].name, *e, len) == 0;
		n += !known;
	}
	return n;
}

void fuzz_one(const uint8_t *data, size_t len)
{
	split(data, len);
	struct config c;
	memset(&c, 0xa5, sizeof c);     /* every field must be written */
	uint64_t before = report_warning_count();
	config_parse(&c, lookup);
	uint64_t parse_warnings = report_warning_count() - before;
	uint64_t want = check_fields(&c);
	if (parse_warnings != want)
		fuzz_fail("config_parse warned %llu times, expected %llu",
			  (unsigned long long)parse_warnings, (unsigned long long)want);
	before = report_warning_count();
	config_check_names(entries);
	uint64_t name_warnings = report_warning_count() - before;
	if (name_warnings != unknown_names())
		fuzz_fail("config_check_names warned %llu times, expected %llu",
			  (unsigned long long)name_warnings, (unsigned long long)unknown_names());
}

/*
 * config: one table of every LABYRINTH_* variable. The parser, the warnings,
 * the man page and the fuzz harness all read this list, so they cannot drift.
 */
#include "config.h"
#include "os.h"
#include "report.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>

static const char *const guard_words[] = { "auto", "markers", "mprotect", NULL };
static const char *const bool_words[] = { "0", "1", NULL };
static const char *const on_error_words[] = { "abort", "log", NULL };
static const char *const stats_words[] = { "0", "1", "json:FILE", NULL };
static const char *const map_words[] = { "0", "FILE", NULL };
static const char *const seccomp_words[] = { "0", "wx", NULL };
static const char *const exit_check_words[] = { "auto", "0", "1", NULL };

const struct cfg_var config_vars[] = {
	{ "LABYRINTH_GUARD", guard_words, 0, 2, CFG_GUARD_AUTO,
	  offsetof(struct config, guard),
	  "how guard pages are made: auto (markers when the kernel has "
	  "MADV_GUARD_INSTALL, else mprotect), markers, or mprotect" },
	{ "LABYRINTH_STATS", stats_words, 0, 2, CFG_STATS_OFF,
	  offsetof(struct config, stats),
	  "1: print a one-line summary on stderr at exit; json:FILE: write it to "
	  "FILE as JSON (costs a walk of the maze index at exit)" },
	{ "LABYRINTH_ARENAS", NULL, 0, 64, 0,
	  offsetof(struct config, arenas),
	  "number of arenas (lock domains); 0 picks twice the CPUs, at most 16" },
	{ "LABYRINTH_CANARY", bool_words, 0, 1, 1,
	  offsetof(struct config, canary),
	  "1: fill the bytes from the end of each allocation to the end of its slot "
	  "with a keyed canary, checked at free (every small request gets at least one "
	  "canary byte, so it may take the next size class)" },
	{ "LABYRINTH_ZERO", bool_words, 0, 1, 1,
	  offsetof(struct config, zero),
	  "1: zero small slots when they are freed (calloc then needs no memset)" },
	{ "LABYRINTH_UAF_CHECK", bool_words, 0, 1, 1,
	  offsetof(struct config, uaf_check),
	  "1: check that a reused slot is still zero, catching writes after free "
	  "(needs LABYRINTH_ZERO=1)" },
	{ "LABYRINTH_QUARANTINE", NULL, 0, 65536, 1024,
	  offsetof(struct config, quarantine),
	  "freed slots each thread (each arena of a private labyrinth) holds back "
	  "before reuse (half in random order, half "
	  "first in, first out); 0 reuses at once" },
	{ "LABYRINTH_LARGE_QUARANTINE", NULL, 0, 4096, 64,
	  offsetof(struct config, large_quarantine),
	  "freed large regions whose addresses are held back (their pages are "
	  "returned and fault at once); 0 reuses addresses at once" },
	{ "LABYRINTH_ON_ERROR", on_error_words, 0, 1, CFG_ON_ERROR_ABORT,
	  offsetof(struct config, on_error),
	  "abort: end the process at the first heap error; log: report it and go on "
	  "where that is safe (the bad free is ignored), for triage only" },
	{ "LABYRINTH_MAP", map_words, 0, 1, 0,
	  offsetof(struct config, map),
	  "FILE: draw the heap map (wings, rooms, guard pages) as SVG into FILE at "
	  "exit and on SIGUSR2; 0: off (costs a walk of the maze index per picture)" },
	{ "LABYRINTH_SECCOMP", seccomp_words, 0, 1, CFG_SECCOMP_OFF,
	  offsetof(struct config, seccomp),
	  "wx: at start-up, install a seccomp filter that refuses (EPERM) writable, "
	  "executable memory and executable anonymous memory; breaks JIT compilers" },
	{ "LABYRINTH_REPORT_FD", NULL, 0, 65535, 0,
	  offsetof(struct config, report_fd),
	  "N: also write every report line to file descriptor N, if it is the pipe it "
	  "was at start-up (the labyrinth command names the report that ended a "
	  "program with it); 0: off" },
	{ "LABYRINTH_EPOCH", NULL, 0, 1u << 30, 4096,
	  offsetof(struct config, epoch),
	  "room placements per epoch: at the end of each, the key that places rooms "
	  "is redrawn and rooms emptied during it, kept closed meanwhile, become "
	  "free again (costs address space for those rooms, no memory); 0 turns "
	  "epochs off" },
	{ "LABYRINTH_GUARD_ALL", bool_words, 0, 1, 0,
	  offsetof(struct config, guard_all),
	  "1: give every allocation pages of its own, its end against a guard page "
	  "(an overflow of one byte faults), freed pages guarded and their addresses "
	  "not reused for long; for fuzzing and triage: costs a page and two system "
	  "calls per allocation" },
	{ "LABYRINTH_SAMPLE", NULL, 0, 1000000, 0,
	  offsetof(struct config, sample),
	  "N: give about one allocation in N the treatment of LABYRINTH_GUARD_ALL, "
	  "at random; 0 (off) or 1 (all) to 1000000" },
	{ "LABYRINTH_EXIT_CHECK", exit_check_words, 0, 2, CFG_EXIT_CHECK_AUTO,
	  offsetof(struct config, exit_check),
	  "1: at exit, check the canaries of every live allocation and report "
	  "overflows of blocks never freed (costs a walk of the heap at exit); auto: "
	  "only with LABYRINTH_GUARD_ALL or LABYRINTH_SAMPLE; 0: never" },
};
const size_t config_var_count = sizeof config_vars / sizeof config_vars[0];

static bool parse_number(const char *s, unsigned min, unsigned max, unsigned *out)
{
	if (*s < '0' || *s > '9')
		return false;
	unsigned long v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return false;
	}
	if (v < min)
		return false;
	*out = (unsigned)v;
	return true;
}

/*
 * A word ending in "FILE" (as "json:FILE") takes any file name in place of
 * FILE; the variable's value is the word's index, the name is kept here.
 */
static const struct {
	const char *name;
	size_t offset;          /* of a char[CFG_PATH_MAX] in struct config */
} text_vars[] = {
	{ "LABYRINTH_STATS", offsetof(struct config, stats_file) },
	{ "LABYRINTH_MAP", offsetof(struct config, map_file) },
};

/* "json:FILE" matches "json:" and a file name, which is copied to text. */
static bool match_file_word(const char *s, const char *word, char *text)
{
	size_t wl = strlen(word);
	if (wl < 4 || strcmp(word + wl - 4, "FILE") != 0 || !text)
		return false;
	size_t pl = wl - 4;
	if (strncmp(s, word, pl) != 0 || !s[pl] || strlen(s + pl) >= CFG_PATH_MAX)
		return false;
	strcpy(text, s + pl);
	return true;
}

static bool parse_choice(const char *s, const char *const *words, unsigned *out,
			 char *text)
{
	for (unsigned i = 0; words[i]; i++) {
		if (match_file_word(s, words[i], text) || strcmp(s, words[i]) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

static char *text_of(struct config *c, const struct cfg_var *v)
{
	for (size_t i = 0; i < sizeof text_vars / sizeof text_vars[0]; i++)
		if (strcmp(v->name, text_vars[i].name) == 0)
			return (char *)c + text_vars[i].offset;
	return NULL;
}

static void parse_one(struct config *c, const struct cfg_var *v, const char *s)
{
	unsigned val;
	bool ok = v->choices ? parse_choice(s, v->choices, &val, text_of(c, v))
			     : parse_number(s, v->min, v->max, &val);
	if (ok) {
		*(unsigned *)((char *)c + v->offset) = val;
		return;
	}
	report_warning(v->name, ": invalid value, keeping the default; ", v->doc);
}

void config_parse(struct config *out, cfg_lookup get)
{
	for (size_t i = 0; i < config_var_count; i++) {
		*(unsigned *)((char *)out + config_vars[i].offset) = config_vars[i].def;
		char *text = text_of(out, &config_vars[i]);
		if (text)
			text[0] = 0;
	}
	for (size_t i = 0; i < config_var_count; i++) {
		const char *s = get(config_vars[i].name);
		if (s && *s)    /* NAME= (empty) is how shells unset: the default */
			parse_one(out, &config_vars[i], s);
	}
}

static bool known_name(const char *entry)
{
	size_t len = strcspn(entry, "=");
	for (size_t i = 0; i < config_var_count; i++) {
		const char *n = config_vars[i].name;
		if (strlen(n) == len && memcmp(n, entry, len) == 0)
			return true;
	}
	return false;
}

void config_check_names(char **envp)
{
	for (; envp && *envp; envp++) {
		if (strncmp(*envp, "LABYRINTH_", 10) != 0 || known_name(*envp))
			continue;
		char name[64];
		size_t len = strcspn(*envp, "=");
		if (len >= sizeof name)
			len = sizeof name - 1;
		memcpy(name, *envp, len);
		name[len] = 0;
		report_warning(name, ": unknown variable, ignored", NULL);
	}
}

/* A page of its own, so it can be made read-only without touching neighbours. */
static union {
	struct config c;
	char page[PAGE_SIZE];
} config_page __attribute__((aligned(PAGE_SIZE)));

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static void config_load(void)
{
	config_parse(&config_page.c, secure_getenv);
	extern char **environ;
	if (!getauxval(AT_SECURE))     /* set-uid: say nothing about the env */
		config_check_names(environ);
	mprotect(&config_page, sizeof config_page, PROT_READ);
}

const struct config *config_get(void)
{
	pthread_once(&config_once, config_load);
	return &config_page.c;
}

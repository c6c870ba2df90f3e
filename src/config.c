/*
 * config: one table of every LABYRINTH_* variable. The parser, the warnings,
 * the man page and the fuzz harness all read this list, so they cannot drift.
 */
#include "config.h"
#include "os.h"
#include "quarantine.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

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
	{ "LABYRINTH_QUARANTINE", NULL, 0, 65536, QUARANTINE_DEFAULT,
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
	{ "LABYRINTH_CHECKED", NULL, 0, UINT_MAX, 0,
	  offsetof(struct config, checked),
	  "set by the labyrinth command once it has told of every bad LABYRINTH_ "
	  "setting: a process whose LABYRINTH_ variables are still the ones it "
	  "checked does not tell them again; it changes no setting" },
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

static bool parse_value(const struct cfg_var *v, const char *s, unsigned *val, char *text)
{
	return v->choices ? parse_choice(s, v->choices, val, text)
			  : parse_number(s, v->min, v->max, val);
}

/* ---- telling of a bad setting ------------------------------------------ */

/* A value echoed in a warning: printable, and short enough for one line. */
static void line_value(struct line *l, const char *s)
{
	char buf[72];
	size_t n = 0;
	for (; *s && n < 64; s++)
		buf[n++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
	if (*s) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = 0;
	line_str(l, buf);
}

static void line_accepted(struct line *l, const struct cfg_var *v)
{
	if (!v->choices) {
		line_dec(l, v->min);
		line_str(l, " to ");
		line_dec(l, v->max);
		return;
	}
	for (unsigned i = 0; v->choices[i]; i++) {
		line_str(l, i ? ", " : "");
		line_str(l, v->choices[i]);
	}
}

void config_accepted(const struct cfg_var *v, char *out, size_t size)
{
	struct line l = { .len = 0 };
	line_accepted(&l, v);
	l.buf[l.len] = 0;
	strncpy(out, l.buf, size - 1);
	out[size - 1] = 0;
}

void config_process_name(char out[CFG_NAME_MAX])
{
	ssize_t n = -1;
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, CFG_NAME_MAX - 1);
		close(fd);
	}
	if (n <= 0 && program_invocation_short_name) {      /* no /proc */
		n = (ssize_t)strnlen(program_invocation_short_name, CFG_NAME_MAX - 1);
		memcpy(out, program_invocation_short_name, (size_t)n);
	}
	while (n > 0 && out[n - 1] == '\n')
		n--;
	if (n <= 0) {
		out[0] = '?';
		n = 1;
	}
	out[n] = 0;
	for (ssize_t i = 0; i < n; i++)     /* it goes into JSON and terminals */
		if (out[i] < 0x20 || out[i] >= 0x7f || out[i] == '"' || out[i] == '\\')
			out[i] = '?';
}

void config_line_who(struct line *l)
{
	char name[CFG_NAME_MAX];
	config_process_name(name);
	line_str(l, name);
	line_str(l, " (pid ");
	line_dec(l, (uint64_t)getpid());
	line_str(l, "): ");
}

/* One warning line, named after the process when the library tells it. */
static void tell(enum cfg_voice voice, struct line *l)
{
	if (voice == CFG_QUIET)
		return;
	l->buf[l->len] = 0;     /* line_str leaves a byte for this */
	struct line who = { .len = 0 };
	if (voice == CFG_NAMED)
		config_line_who(&who);
	who.buf[who.len] = 0;
	report_warning(who.buf, l->buf, NULL);
}

static void parse_one(struct config *c, const struct cfg_var *v, const char *s,
		      enum cfg_voice voice)
{
	unsigned val;
	if (parse_value(v, s, &val, text_of(c, v))) {
		*(unsigned *)((char *)c + v->offset) = val;
		return;
	}
	struct line l = { .len = 0 };
	line_str(&l, v->name);
	line_str(&l, "=");
	line_value(&l, s);
	line_str(&l, ": invalid value, keeping the default ");
	if (v->choices)
		line_str(&l, v->choices[v->def]);
	else
		line_dec(&l, v->def);
	line_str(&l, "; accepted: ");
	line_accepted(&l, v);
	tell(voice, &l);
}

void config_parse_voice(struct config *out, cfg_lookup get, enum cfg_voice voice)
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
			parse_one(out, &config_vars[i], s, voice);
	}
}

void config_parse(struct config *out, cfg_lookup get)
{
	config_parse_voice(out, get, CFG_PLAIN);
}

const struct cfg_var *config_var_named(const char *name)
{
	for (size_t i = 0; i < config_var_count; i++)
		if (strcmp(config_vars[i].name, name) == 0)
			return &config_vars[i];
	return NULL;
}

bool config_value_ok(const struct cfg_var *v, const char *s)
{
	struct config scratch;
	unsigned val;
	return parse_value(v, s, &val, text_of(&scratch, v));
}

void config_check_together(const struct config *c, cfg_lookup get, enum cfg_voice voice)
{
	const char *uaf = get("LABYRINTH_UAF_CHECK");
	if (c->zero || !uaf || strcmp(uaf, "1") != 0)
		return;
	struct line l = { .len = 0 };
	line_str(&l, "LABYRINTH_UAF_CHECK=1: the check is off, since it needs "
		     "LABYRINTH_ZERO=1 and LABYRINTH_ZERO=0 is set");
	tell(voice, &l);
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

void config_check_names_voice(char **envp, enum cfg_voice voice)
{
	for (; envp && *envp; envp++) {
		if (strncmp(*envp, "LABYRINTH_", 10) != 0 || known_name(*envp))
			continue;
		struct line l = { .len = 0 };
		char name[64];
		size_t len = strcspn(*envp, "=");
		if (len >= sizeof name)
			len = sizeof name - 1;
		memcpy(name, *envp, len);
		name[len] = 0;
		line_value(&l, name);
		line_str(&l, ": unknown variable, ignored");
		tell(voice, &l);
	}
}

void config_check_names(char **envp)
{
	config_check_names_voice(envp, CFG_PLAIN);
}

void config_read(struct config *out, cfg_lookup get, char **envp, enum cfg_voice voice)
{
	config_parse_voice(out, get, voice);
	if (envp)
		config_check_names_voice(envp, voice);
	config_check_together(out, get, voice);
}

/* The entries the command sets itself are left out: the mark, and the
 * report pipe, whose number it chooses after checking. */
static bool marked_entry(const char *e)
{
	return strncmp(e, "LABYRINTH_", 10) == 0 &&
	       strncmp(e, "LABYRINTH_CHECKED=", 18) != 0 &&
	       strncmp(e, "LABYRINTH_REPORT_FD=", 20) != 0;
}

/* A sum of each entry's FNV-1a: shells pass the environment on in any order.
 * Not a secret: the mark only silences warnings, and every setting stays as
 * it would be without it. */
unsigned config_env_mark(char **envp)
{
	uint32_t sum = 0;
	for (; envp && *envp; envp++) {
		if (!marked_entry(*envp))
			continue;
		uint32_t h = 2166136261u;
		for (const unsigned char *p = (const unsigned char *)*envp; *p; p++)
			h = (h ^ *p) * 16777619u;
		sum += h;
	}
	return sum ? sum : 1;
}

/* A page of its own, so it can be made read-only without touching neighbours. */
static union {
	struct config c;
	char page[PAGE_SIZE];
} config_page __attribute__((aligned(PAGE_SIZE)));

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static void config_load(void)
{
	extern char **environ;
	/* Set-uid: secure_getenv gives nothing, so nothing is said or used. */
	const char *mark = secure_getenv("LABYRINTH_CHECKED");
	unsigned m;
	enum cfg_voice voice = mark && parse_number(mark, 1, UINT_MAX, &m) &&
			       m == config_env_mark(environ) ? CFG_QUIET : CFG_NAMED;
	config_read(&config_page.c, secure_getenv, getauxval(AT_SECURE) ? NULL : environ,
		    voice);
	mprotect(&config_page, sizeof config_page, PROT_READ);
}

const struct config *config_get(void)
{
	pthread_once(&config_once, config_load);
	return &config_page.c;
}

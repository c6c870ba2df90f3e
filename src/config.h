/*
 * config: the LABYRINTH_* environment variables, read once, validated, and then
 * kept in a read-only page so that a heap bug cannot switch hardening off.
 */
#ifndef LAB_CONFIG_H
#define LAB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum cfg_guard { CFG_GUARD_AUTO, CFG_GUARD_MARKERS, CFG_GUARD_MPROTECT };

enum cfg_on_error { CFG_ON_ERROR_ABORT, CFG_ON_ERROR_LOG };

enum cfg_stats { CFG_STATS_OFF, CFG_STATS_LINE, CFG_STATS_JSON };

enum cfg_seccomp { CFG_SECCOMP_OFF, CFG_SECCOMP_WX };

/* Longest file name a variable may carry (LABYRINTH_MAP, LABYRINTH_STATS=json:). */
#define CFG_PATH_MAX 512
enum cfg_exit_check { CFG_EXIT_CHECK_AUTO, CFG_EXIT_CHECK_OFF, CFG_EXIT_CHECK_ON };

struct config {
	unsigned guard;         /* enum cfg_guard */
	unsigned stats;         /* enum cfg_stats: a summary at exit */
	unsigned arenas;        /* 0: automatic */
	unsigned canary;        /* canary bytes after every allocation */
	unsigned zero;          /* zero freed slots */
	unsigned uaf_check;     /* check reused slots are still zero */
	unsigned quarantine;    /* freed slots held back per arena */
	unsigned large_quarantine;      /* freed large regions held back */
	unsigned on_error;      /* enum cfg_on_error */
	unsigned map;           /* 1: draw the heap map into map_file */
	unsigned seccomp;       /* enum cfg_seccomp */
	unsigned report_fd;     /* 0, or a pipe that also gets every report line */
	char stats_file[CFG_PATH_MAX];  /* LABYRINTH_STATS=json:FILE */
	char map_file[CFG_PATH_MAX];    /* LABYRINTH_MAP=FILE */
	unsigned epoch;         /* room placements per epoch; 0: no epochs */
	unsigned guard_all;     /* every allocation in guarded pages (guarded.c) */
	unsigned sample;        /* one allocation in about N guarded; 0: off */
	unsigned exit_check;    /* enum cfg_exit_check: canary sweep at exit */
	unsigned checked;       /* the labyrinth command's mark: config_env_mark() */
};

/* One variable: its name, its legal values, its default, and its cost. */
struct cfg_var {
	const char *name;
	const char *const *choices;     /* NULL-terminated words, or NULL for a number */
	unsigned min, max, def;
	size_t offset;                  /* of the field in struct config */
	const char *doc;
};

extern const struct cfg_var config_vars[];
extern const size_t config_var_count;

/*
 * Who tells of a bad setting: nobody (the labyrinth command told it already),
 * the command (plain lines), or the library, naming its process, since many
 * processes may share one environment.
 */
enum cfg_voice { CFG_QUIET, CFG_PLAIN, CFG_NAMED };

/* Parse from a getenv-like lookup; bad values warn and keep the default. */
typedef char *(*cfg_lookup)(const char *name);
void config_parse(struct config *out, cfg_lookup get);
void config_parse_voice(struct config *out, cfg_lookup get, enum cfg_voice voice);

/* Warn about LABYRINTH_* names in envp that are not ours (typos). */
void config_check_names(char **envp);
void config_check_names_voice(char **envp, enum cfg_voice voice);

/* Warn about settings that are valid alone but cancel each other. */
void config_check_together(const struct config *c, cfg_lookup get, enum cfg_voice voice);

/* All three: what the library does at start-up and the command before it runs
 * a program. envp NULL: no check of the names. */
void config_read(struct config *out, cfg_lookup get, char **envp, enum cfg_voice voice);

/* The variable called name, or NULL. */
const struct cfg_var *config_var_named(const char *name);
/* Whether s is a value v takes. */
bool config_value_ok(const struct cfg_var *v, const char *s);
/* What v takes, for a message: "0 to 65536", "auto, markers, mprotect". */
void config_accepted(const struct cfg_var *v, char *out, size_t size);

/*
 * LABYRINTH_CHECKED: the labyrinth command, having told of every bad setting
 * once, sets it to a mark of the LABYRINTH_* entries it checked; a process
 * whose entries still give that mark stays quiet about them. Any change to
 * them (a script exporting a new value) gives another mark, and the process
 * tells again. Never 0.
 */
unsigned config_env_mark(char **envp);

/* The process's name, printable, for "name (pid N)" in warnings and stats. */
#define CFG_NAME_MAX 32
void config_process_name(char out[CFG_NAME_MAX]);
/* Appends "name (pid N): " to l. */
struct line;
void config_line_who(struct line *l);

/* The process's configuration, parsed on first call, then read-only. */
const struct config *config_get(void);

#endif

/* The LABYRINTH_* parser: good values taken, bad ones warned about. */
#include "config.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const *fake_env;

static char *fake_lookup(const char *name)
{
	size_t n = strlen(name);
	for (const char *const *e = fake_env; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return (char *)*e + n + 1;
	return NULL;
}

Test(config, defaults_without_variables)
{
	static const char *const env[] = { NULL };
	struct config c;
	fake_env = env;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.guard, CFG_GUARD_AUTO);
	cr_assert_eq(c.stats, 0);
	cr_assert_eq(c.arenas, 0);
}

Test(config, good_values_are_taken)
{
	static const char *const env[] = {
		"LABYRINTH_GUARD=mprotect", "LABYRINTH_STATS=1", "LABYRINTH_ARENAS=7", NULL,
	};
	struct config c;
	fake_env = env;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.guard, CFG_GUARD_MPROTECT);
	cr_assert_eq(c.stats, 1);
	cr_assert_eq(c.arenas, 7);
}

static void parse_bad(void *arg)
{
	struct config *c = arg;
	config_parse(c, fake_lookup);
}

static void expect_one_warning(const char *setting, const char *name)
{
	const char *env[] = { setting, NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_bad, &c);
	cr_assert_eq(o.exit_code, 0);
	char want[CFG_PATH_MAX + 64];
	(void)name;     /* the warning names the variable and echoes the value */
	snprintf(want, sizeof want, "labyrinth: warning: %s: invalid value", setting);
	cr_assert(strncmp(o.err, want, strlen(want)) == 0, "got: %s", o.err);
	cr_assert(strchr(o.err, '\n') == o.err + strlen(o.err) - 1, "not one line: %s", o.err);
	config_parse(&c, fake_lookup);  /* and the safe default is kept */
	cr_assert_eq(c.guard, CFG_GUARD_AUTO);
	cr_assert_eq(c.arenas, 0);
	cr_assert_eq(c.stats, 0);
}

Test(config, bad_values_warn_and_keep_defaults)
{
	expect_one_warning("LABYRINTH_GUARD=nonsense", "LABYRINTH_GUARD");
	expect_one_warning("LABYRINTH_ARENAS=65", "LABYRINTH_ARENAS");
	expect_one_warning("LABYRINTH_ARENAS=-1", "LABYRINTH_ARENAS");
	expect_one_warning("LABYRINTH_ARENAS=3x", "LABYRINTH_ARENAS");
	expect_one_warning("LABYRINTH_ARENAS=99999999999999999999", "LABYRINTH_ARENAS");
	expect_one_warning("LABYRINTH_STATS=yes", "LABYRINTH_STATS");
	expect_one_warning("LABYRINTH_EPOCH=often", "LABYRINTH_EPOCH");
	expect_one_warning("LABYRINTH_EPOCH=1073741825", "LABYRINTH_EPOCH");
}

Test(config, epoch_default_and_value)
{
	static const char *const none[] = { NULL };
	static const char *const set[] = { "LABYRINTH_EPOCH=64", NULL };
	struct config c;
	fake_env = none;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.epoch, 4096);
	fake_env = set;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.epoch, 64);
}

Test(config, empty_value_means_the_default)
{
	static const char *const env[] = { "LABYRINTH_GUARD=", "LABYRINTH_ARENAS=", NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_bad, &c);
	cr_assert_str_empty(o.err, "an empty value warned: %s", o.err);
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.guard, CFG_GUARD_AUTO);
	cr_assert_eq(c.arenas, 0);
}

static void check_names(void *arg)
{
	config_check_names(arg);
}

Test(config, unknown_names_are_reported)
{
	static char *env[] = { "LABYRINTH_GAURD=1", "LABYRINTH_STATS=1", "PATH=/bin", NULL };
	struct outcome o = run_in_child(check_names, env);
	cr_assert_str_eq(o.err, "labyrinth: warning: LABYRINTH_GAURD: unknown variable, ignored\n");
}

Test(config, every_variable_is_documented_in_the_table)
{
	for (size_t i = 0; i < config_var_count; i++) {
		cr_assert(strncmp(config_vars[i].name, "LABYRINTH_", 10) == 0);
		cr_assert_not_null(config_vars[i].doc);
		cr_assert_gt(strlen(config_vars[i].doc), 10);
	}
}

Test(config, file_names_and_new_variables)
{
	static const char *const env[] = {
		"LABYRINTH_STATS=json:/tmp/s-%p.json", "LABYRINTH_MAP=heap.svg",
		"LABYRINTH_SECCOMP=wx", "LABYRINTH_REPORT_FD=9", NULL,
	};
	struct config c;
	fake_env = env;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.stats, CFG_STATS_JSON);
	cr_assert_str_eq(c.stats_file, "/tmp/s-%p.json");
	cr_assert_eq(c.map, 1);
	cr_assert_str_eq(c.map_file, "heap.svg");
	cr_assert_eq(c.seccomp, CFG_SECCOMP_WX);
	cr_assert_eq(c.report_fd, 9);
}

Test(config, file_values_default_to_off)
{
	static const char *const env[] = { "LABYRINTH_STATS=1", "LABYRINTH_MAP=0", NULL };
	struct config c;
	fake_env = env;
	config_parse(&c, fake_lookup);
	cr_assert_eq(c.stats, CFG_STATS_LINE);
	cr_assert_str_empty(c.stats_file);
	cr_assert_eq(c.map, 0);
	cr_assert_str_empty(c.map_file);
	cr_assert_eq(c.seccomp, CFG_SECCOMP_OFF);
}

Test(config, bad_new_values_warn_and_keep_defaults)
{
	expect_one_warning("LABYRINTH_STATS=json:", "LABYRINTH_STATS");
	expect_one_warning("LABYRINTH_STATS=xml:/tmp/x", "LABYRINTH_STATS");
	expect_one_warning("LABYRINTH_SECCOMP=all", "LABYRINTH_SECCOMP");
	expect_one_warning("LABYRINTH_REPORT_FD=-3", "LABYRINTH_REPORT_FD");
}

/* issue 16: a warning said "invalid value, keeping the default" and nothing
 * of what was given or what is accepted. */
static void expect_exactly(const char *setting, const char *line)
{
	const char *env[] = { setting, NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_bad, &c);
	cr_assert_str_eq(o.err, line);
}

Test(config, a_bad_value_says_the_value_the_default_and_what_is_accepted)
{
	expect_exactly("LABYRINTH_QUARANTINE=999999",
		       "labyrinth: warning: LABYRINTH_QUARANTINE=999999: invalid value, keeping "
		       "the default 1024; accepted: 0 to 65536\n");
	expect_exactly("LABYRINTH_GUARD=foo",
		       "labyrinth: warning: LABYRINTH_GUARD=foo: invalid value, keeping the "
		       "default auto; accepted: auto, markers, mprotect\n");
	expect_exactly("LABYRINTH_STATS=json:",
		       "labyrinth: warning: LABYRINTH_STATS=json:: invalid value, keeping the "
		       "default 0; accepted: 0, 1, json:FILE\n");
}

/* The value is echoed: a terminal escape in it must not reach the terminal,
 * and a long one must not push the line past its buffer. */
Test(config, an_echoed_value_is_printable_and_cut_short)
{
	static char setting[400];
	snprintf(setting, sizeof setting, "LABYRINTH_ARENAS=\033]0;owned\007%0300d", 7);
	const char *env[] = { setting, NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_bad, &c);
	cr_assert(strncmp(o.err, "labyrinth: warning: LABYRINTH_ARENAS=?]0;owned?000", 50) == 0,
		  "got: %s", o.err);
	cr_assert(strstr(o.err, "...: invalid value, keeping the default 0; accepted: 0 to 64\n"),
		  "got: %s", o.err);
	cr_assert(strchr(o.err, '\n') == o.err + strlen(o.err) - 1, "not one line: %s", o.err);
	for (const char *p = o.err; *p; p++)
		cr_assert(*p == '\n' || (*p >= 0x20 && *p < 0x7f), "byte %#x", *p);
}

static void read_plain(void *arg)
{
	config_read(arg, fake_lookup, NULL, CFG_PLAIN);
}

/* issue 16: LABYRINTH_UAF_CHECK=1 LABYRINTH_ZERO=0 turned the check off
 * without a word. */
Test(config, asking_for_the_uaf_check_without_zeroing_says_it_is_off)
{
	static const char *const both[] = { "LABYRINTH_UAF_CHECK=1", "LABYRINTH_ZERO=0", NULL };
	static const char *const zero_off[] = { "LABYRINTH_ZERO=0", NULL };
	static const char *const fine[] = { "LABYRINTH_UAF_CHECK=1", "LABYRINTH_ZERO=1", NULL };
	struct config c;
	fake_env = both;
	struct outcome o = run_in_child(read_plain, &c);
	cr_assert_str_eq(o.err, "labyrinth: warning: LABYRINTH_UAF_CHECK=1: the check is off, "
			 "since it needs LABYRINTH_ZERO=1 and LABYRINTH_ZERO=0 is set\n");
	fake_env = zero_off;    /* not asked for: --no-zero says enough */
	o = run_in_child(read_plain, &c);
	cr_assert_str_empty(o.err);
	fake_env = fine;
	o = run_in_child(read_plain, &c);
	cr_assert_str_empty(o.err);
}

static void parse_named(void *arg)
{
	config_parse_voice(arg, fake_lookup, CFG_NAMED);
	char **names = (char *[]){ "LABYRINTH_STAT=1", NULL };
	config_check_names_voice(names, CFG_NAMED);
	char name[CFG_NAME_MAX];
	config_process_name(name);      /* test_config, or a tool's name under one */
	fprintf(stderr, "pid %d %s\n", (int)getpid(), name);
}

/* issue 16: without the command, each process of a script warns, and the
 * lines must say which process each is. */
Test(config, the_library_names_the_process_that_warns)
{
	static const char *const env[] = { "LABYRINTH_ARENAS=x", NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_named, &c);
	int pid = 0;
	char name[CFG_NAME_MAX] = "";
	const char *last = strrchr(o.err, 'p');
	while (last && last > o.err && last[-1] != '\n')
		last = memrchr(o.err, 'p', (size_t)(last - o.err));
	cr_assert(last && sscanf(last, "pid %d %31s", &pid, name) == 2, "got: %s", o.err);
	cr_assert(name[0] && !strchr(name, ' '), "name '%s'", name);
	char want[512];
	snprintf(want, sizeof want,
		 "labyrinth: warning: %s (pid %d): LABYRINTH_ARENAS=x: invalid value"
		 ", keeping the default 0; accepted: 0 to 64\n"
		 "labyrinth: warning: %s (pid %d): LABYRINTH_STAT: unknown variable, "
		 "ignored\npid %d %s\n", name, pid, name, pid, pid, name);
	cr_assert_str_eq(o.err, want);
}

static void parse_quiet(void *arg)
{
	config_read(arg, fake_lookup, (char **)fake_env, CFG_QUIET);
}

Test(config, the_quiet_voice_says_nothing_and_parses_the_same)
{
	static const char *const env[] = { "LABYRINTH_ARENAS=x", "LABYRINTH_STAT=1",
					   "LABYRINTH_QUARANTINE=5", NULL };
	struct config c;
	fake_env = env;
	struct outcome o = run_in_child(parse_quiet, &c);
	cr_assert_str_empty(o.err);
	config_read(&c, fake_lookup, NULL, CFG_QUIET);
	cr_assert_eq(c.arenas, 0);
	cr_assert_eq(c.quarantine, 5);
}

/* The command's mark: the same for the same LABYRINTH_ entries in any order
 * (shells reorder), blind to other variables and to the two the command sets
 * itself, and different once any LABYRINTH_ entry changes. */
Test(config, the_mark_follows_the_labyrinth_entries_only)
{
	char *a[] = { "PATH=/bin", "LABYRINTH_QUARANTINE=5", "LABYRINTH_STAT=1", NULL };
	char *b[] = { "LABYRINTH_STAT=1", "HOME=/root", "LABYRINTH_QUARANTINE=5",
		      "LABYRINTH_CHECKED=77", "LABYRINTH_REPORT_FD=901", NULL };
	char *changed[] = { "LABYRINTH_QUARANTINE=6", "LABYRINTH_STAT=1", NULL };
	char *added[] = { "LABYRINTH_QUARANTINE=5", "LABYRINTH_STAT=1", "LABYRINTH_ZERO=0",
			  NULL };
	char *none[] = { "PATH=/bin", NULL };
	unsigned m = config_env_mark(a);
	cr_assert_neq(m, 0);
	cr_assert_eq(config_env_mark(b), m);
	cr_assert_neq(config_env_mark(changed), m);
	cr_assert_neq(config_env_mark(added), m);
	cr_assert_neq(config_env_mark(none), 0);
}

Test(config, the_command_checks_values_with_the_table)
{
	const struct cfg_var *q = config_var_named("LABYRINTH_QUARANTINE");
	const struct cfg_var *s = config_var_named("LABYRINTH_STATS");
	cr_assert_not_null(q);
	cr_assert_null(config_var_named("LABYRINTH_STAT"));
	cr_assert(config_value_ok(q, "65536"));
	cr_assert_not(config_value_ok(q, "65537"));
	cr_assert(config_value_ok(s, "json:/tmp/x.json"));
	cr_assert_not(config_value_ok(s, "json:"));
	char acc[64];
	config_accepted(s, acc, sizeof acc);
	cr_assert_str_eq(acc, "0, 1, json:FILE");
	config_accepted(q, acc, 8);
	cr_assert_str_eq(acc, "0 to 65");
}

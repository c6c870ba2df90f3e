/* The LABYRINTH_* parser: good values taken, bad ones warned about. */
#include "config.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

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
	char want[128];
	snprintf(want, sizeof want, "labyrinth: warning: %s: invalid value", name);
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

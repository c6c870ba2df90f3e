/*
 * labyrinth: run a program with the labyrinth preloaded, options mapped to
 * the LABYRINTH_* variables, and say which report, if any, ended it. The
 * command checks options and variables with the library's own table and
 * parser (src/config.c, built in), so both always agree: a bad option is
 * refused, a bad variable told once for every process of the program.
 */
#include "cli.h"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Option to variable. value NULL: the option takes =VALUE. */
static const struct option_var {
	const char *option;
	const char *var;
	const char *value;
	const char *help;
} options[] = {
	{ "--guard", "LABYRINTH_GUARD", NULL, "auto|markers|mprotect: how guard pages are made" },
	{ "--stats", "LABYRINTH_STATS", "1", "a summary on stderr at exit" },
	{ "--stats", "LABYRINTH_STATS", NULL, "json:FILE: the summary as JSON in FILE" },
	{ "--map", "LABYRINTH_MAP", NULL, "FILE.svg: the heap map at exit and on SIGUSR2" },
	{ "--seccomp", "LABYRINTH_SECCOMP", "wx", "refuse writable, executable memory" },
	{ "--no-canary", "LABYRINTH_CANARY", "0", "no canary after allocations" },
	{ "--no-zero", "LABYRINTH_ZERO", "0", "do not zero freed slots" },
	{ "--no-uaf-check", "LABYRINTH_UAF_CHECK", "0", "do not check reused slots" },
	{ "--quarantine", "LABYRINTH_QUARANTINE", NULL, "N: freed slots held back per arena" },
	{ "--large-quarantine", "LABYRINTH_LARGE_QUARANTINE", NULL, "N: freed large regions held back" },
	{ "--arenas", "LABYRINTH_ARENAS", NULL, "N: arenas (lock domains)" },
	{ "--epoch", "LABYRINTH_EPOCH", NULL, "N: room placements per epoch" },
	{ "--on-error", "LABYRINTH_ON_ERROR", NULL, "abort|log: what a heap error does" },
	{ "--guard-all", "LABYRINTH_GUARD_ALL", "1", "every allocation against a guard page" },
	{ "--sample", "LABYRINTH_SAMPLE", NULL, "N: one allocation in N against a guard page" },
	{ "--exit-check", "LABYRINTH_EXIT_CHECK", "1", "check live blocks' canaries at exit" },
};
#define NOPTIONS (sizeof options / sizeof options[0])

static const char *library_option;      /* --library=PATH */
static bool quiet;

static void usage(FILE *f)
{
	fprintf(f, "usage: labyrinth [options] [--] program [args...]\n"
		   "       labyrinth check [options]\n"
		   "       labyrinth --help | --version\n\n"
		   "Runs program with the labyrinth allocator preloaded (its exit status is\n"
		   "the program's; 128+N when signal N ended it). check shows which\n"
		   "protections are active on this machine and that each one works.\n\n"
		   "options:\n");
	for (size_t i = 0; i < NOPTIONS; i++) {
		char left[40];
		snprintf(left, sizeof left, "%s%s", options[i].option,
			 options[i].value ? "" : "=...");
		fprintf(f, "  %-22s %s (%s)\n", left, options[i].help, options[i].var);
	}
	fprintf(f, "  %-22s %s\n", "--library=PATH", "the preload library to use");
	fprintf(f, "  %-22s %s\n", "-q, --quiet", "no line when a signal ends the program");
	fprintf(f, "\nSee labyrinth(1); the variables are in labyrinth(7).\n");
}

/* A file name the program may resolve after a chdir: make it absolute. */
static const char *absolute(const char *value, char *buf, size_t size)
{
	const char *file = strncmp(value, "json:", 5) == 0 ? value + 5 : value;
	if (file[0] == '/' || strcmp(value, "0") == 0 || strcmp(value, "1") == 0)
		return value;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return value;
	snprintf(buf, size, "%.*s%s/%s", (int)(file - value), value, cwd, file);
	return buf;
}

/* Why the program could not write file (a pattern: "%p" becomes its pid),
 * or NULL if it could as far as we can tell from here. */
static const char *unwritable(const char *file, char *why, size_t size)
{
	struct stat st;
	if (stat(file, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return "it is a directory";
		return access(file, W_OK) == 0 ? NULL : strerror(errno);
	}
	char dir[PATH_MAX];
	const char *slash = strrchr(file, '/');
	snprintf(dir, sizeof dir, "%.*s", !slash ? 1 : slash == file ? 1 : (int)(slash - file),
		 slash ? file : ".");
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, size, "no directory %s", dir);
		return why;
	}
	return access(dir, W_OK | X_OK) == 0 ? NULL : strerror(errno);
}

/* A refused option: one line naming it, what the option o accepts (if o),
 * and the command ends with 125. */
__attribute__((noreturn))
static void refuse(const char *arg, const char *why, const struct option_var *o, bool help)
{
	char accepted[128] = "";
	const struct cfg_var *v = o ? config_var_named(o->var) : NULL;
	if (v)
		config_accepted(v, accepted, sizeof accepted);
	fprintf(stderr, "labyrinth: %s: %s%s%s%s\n", arg, why, v ? "; accepted: " : "",
		accepted, help ? " (labyrinth --help)" : "");
	exit(125);
}

/* The file a LABYRINTH_STATS or LABYRINTH_MAP value names, or NULL. */
static const char *file_of(const char *var, const char *value)
{
	if (strcmp(var, "LABYRINTH_STATS") == 0)
		return strncmp(value, "json:", 5) == 0 ? value + 5 : NULL;
	if (strcmp(var, "LABYRINTH_MAP") == 0)
		return strcmp(value, "0") == 0 ? NULL : value;
	return NULL;
}

static void set_var(const char *arg, const struct option_var *o, const char *value)
{
	char buf[PATH_MAX + 16], why[PATH_MAX + 32];
	bool ok = config_value_ok(config_var_named(o->var), value);
	/* LABYRINTH_SAMPLE=0 is off: as an option, a mistake. */
	if (strcmp(o->var, "LABYRINTH_SAMPLE") == 0 && (!ok || strtoul(value, NULL, 10) == 0))
		refuse(arg, "invalid value; accepted: 1 (every allocation) to 1000000", NULL, true);
	if (!ok)
		refuse(arg, "invalid value", o, true);
	if (file_of(o->var, value)) {
		value = absolute(value, buf, sizeof buf);
		const char *bad = unwritable(file_of(o->var, value), why, sizeof why);
		if (bad) {
			char msg[sizeof why + 32];
			snprintf(msg, sizeof msg, "cannot write the file: %s", bad);
			refuse(arg, msg, NULL, false);
		}
	}
	setenv(o->var, value, 1);
}

/* One argument: an option we know (and set), or not. Exits on a bad one. */
static bool take_option(const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const struct option_var *named = NULL;
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct option_var *o = &options[i];
		if (strlen(o->option) != len || strncmp(arg, o->option, len) != 0)
			continue;
		named = o;
		bool takes_value = o->value == NULL;
		if (takes_value == (eq != NULL)) {
			set_var(arg, o, eq ? eq + 1 : o->value);
			return true;
		}
		/* --seccomp=wx: a switch that may also name its value */
		if (eq && o->value && strcmp(eq + 1, o->value) == 0) {
			set_var(arg, o, o->value);
			return true;
		}
	}
	if (named) {
		char why[128];
		if (!eq)        /* the help reads "FILE.svg: the heap map ..." */
			snprintf(why, sizeof why, "needs a value, as in %s=%.*s", named->option,
				 (int)strcspn(named->help, ":"), named->help);
		else if (strncmp(named->option, "--no-", 5) == 0)
			snprintf(why, sizeof why, "takes no value");
		else
			snprintf(why, sizeof why, "takes no value, or =%s", named->value);
		refuse(arg, why, NULL, true);
	}
	if (strncmp(arg, "--library=", 10) == 0) {
		library_option = arg + 10;
		return true;
	}
	if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
		quiet = true;
		return true;
	}
	return false;
}

/*
 * Settings the user put in the environment: told once here, before the
 * program starts, in the library's words; then LABYRINTH_CHECKED tells the
 * library in every process of the program that this was done, so that a
 * script of twelve processes does not say it twelve times. A file that
 * cannot be written is dropped, as a bad value is: the default (off) is kept,
 * and no process fails at exit to say it again. Only absolute names are
 * checked: a relative one is the program's, wherever it runs.
 */
static void check_environment(void)
{
	extern char **environ;
	struct config c;
	char why[PATH_MAX + 32];
	config_read(&c, getenv, environ, CFG_PLAIN);
	const char *files[2][3] = {
		{ "LABYRINTH_STATS", "json:", c.stats == CFG_STATS_JSON ? c.stats_file : NULL },
		{ "LABYRINTH_MAP", "", c.map ? c.map_file : NULL },
	};
	for (size_t i = 0; i < 2; i++) {
		const char *file = files[i][2];
		if (!file || file[0] != '/')
			continue;
		const char *bad = unwritable(file, why, sizeof why);
		if (!bad)
			continue;
		fprintf(stderr, "labyrinth: warning: %s=%s%s: cannot write it: %s; ignored\n",
			files[i][0], files[i][1], file, bad);
		unsetenv(files[i][0]);
	}
	char mark[16];
	snprintf(mark, sizeof mark, "%u", config_env_mark(environ));
	setenv("LABYRINTH_CHECKED", mark, 1);
}

/* ---- finding the library ---------------------------------------------- */

static bool exists(const char *path)
{
	return access(path, R_OK) == 0;
}

/* The directory this program runs from, resolved. */
static bool exe_dir(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	if (n <= 0)
		return false;
	out[n] = 0;
	char *slash = strrchr(out, '/');
	if (!slash)
		return false;
	*slash = 0;
	return true;
}

/*
 * --library; else the build tree's library when run from the build tree
 * (cli/labyrinth there); else the one installed in the configured libdir;
 * else ../lib next to this program (an installation that was moved).
 */
const char *cli_library(void)
{
	static const char built[] = LAB_BUILDDIR "/preload/.libs/liblabyrinth-preload.so";
	static const char installed[] = LAB_LIBDIR "/liblabyrinth-preload.so";
	static char beside[PATH_MAX + 64];
	char dir[PATH_MAX], tree[PATH_MAX];
	static char given[PATH_MAX];
	if (library_option)     /* absolute: the program's children may chdir */
		return realpath(library_option, given) && exists(given) ? given : NULL;
	bool have_dir = exe_dir(dir, sizeof dir);
	if (have_dir && realpath(LAB_BUILDDIR "/cli", tree) && strcmp(dir, tree) == 0 &&
	    exists(built))
		return built;
	if (exists(installed))
		return installed;
	snprintf(beside, sizeof beside, "%s/../lib/liblabyrinth-preload.so", dir);
	return have_dir && exists(beside) ? beside : NULL;
}

void cli_set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	if (!old || !*old) {
		setenv("LD_PRELOAD", lib, 1);
		return;
	}
	if (strstr(old, lib))
		return;
	/* Ours first: the first library that defines malloc serves it. */
	size_t n = strlen(lib) + strlen(old) + 2;
	char *v = malloc(n);
	if (!v)
		return;
	snprintf(v, n, "%s:%s", lib, old);
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

/* ---- running the program ---------------------------------------------- */

static volatile pid_t child_pid;

/* SIGINT and SIGQUIT from the terminal reach the child by themselves (the
 * same process group); other signals sent to us are meant for it. */
static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static void signals_forward(void)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM };
	struct sigaction sa = { .sa_handler = forward }, old;
	sigemptyset(&sa.sa_mask);
	/* An ignored one (nohup) stays ignored, and the program inherits that. */
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
			sigaction(sigs[i], &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
}

static void drain(int fd, struct ending *e, char *into, size_t *used, size_t cap)
{
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		if (into) {
			size_t k = (size_t)n < cap - 1 - *used ? (size_t)n : cap - 1 - *used;
			memcpy(into + *used, buf, k);
			*used += k;
			into[*used] = 0;
		} else {
			cli_report_bytes(e, buf, (size_t)n);
		}
	}
}

static pid_t spawn(char *const argv[], int report_w, int err_w, int exec_w)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	signal(SIGINT, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	/* The report pipe goes to a high number, which a program is unlikely to
	 * reuse for something else after closing it; it alone is inherited. */
	int high = fcntl(report_w, F_DUPFD, 900);
	if (high < 0) {
		high = report_w;
		fcntl(report_w, F_SETFD, 0);
	}
	char fd[16];
	snprintf(fd, sizeof fd, "%d", high);
	setenv("LABYRINTH_REPORT_FD", fd, 1);
	if (err_w >= 0)
		dup2(err_w, STDERR_FILENO);
	execvp(argv[0], argv);
	int err = errno;
	if (write(exec_w, &err, sizeof err) < 0)
		_exit(127);
	_exit(127);
}

/* Wait for the child, reading its reports (and stderr) as they come. */
static void wait_child(pid_t pid, int report_r, int err_r, struct ending *e)
{
	size_t used = 0;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	while (pidfd >= 0) {
		struct pollfd p[3] = { { pidfd, POLLIN, 0 }, { report_r, POLLIN, 0 },
				       { err_r, POLLIN, 0 } };
		if (poll(p, err_r >= 0 ? 3 : 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			drain(report_r, e, NULL, NULL, 0);
		if (err_r >= 0 && p[2].revents)
			drain(err_r, e, e->err, &used, sizeof e->err);
		if (p[0].revents)
			break;
	}
	while (waitpid(pid, &e->status, 0) < 0 && errno == EINTR)
		;
	child_pid = 0;          /* its number may be reused: forward no more */
	drain(report_r, e, NULL, NULL, 0);
	cli_report_bytes(e, "\n", 1); /* a last line the child did not end */
	if (err_r >= 0)
		drain(err_r, e, e->err, &used, sizeof e->err);
	if (pidfd >= 0)
		close(pidfd);
}

int cli_run(char *const argv[], bool capture, struct ending *e)
{
	int rep[2], err[2] = { -1, -1 }, ex[2];
	memset(e, 0, sizeof *e);
	/* Non-blocking: a full pipe must never stall the program; its writes
	 * fail instead. */
	if (pipe2(rep, O_CLOEXEC | O_NONBLOCK) || pipe2(ex, O_CLOEXEC) ||
	    (capture && pipe2(err, O_CLOEXEC | O_NONBLOCK))) {
		perror("labyrinth: pipe");
		return -1;
	}
	fflush(NULL);
	pid_t pid = spawn(argv, rep[1], err[1], ex[1]);
	close(rep[1]);
	close(ex[1]);
	if (err[1] >= 0)
		close(err[1]);
	int exec_err = 0;
	if (pid < 0 || read(ex[0], &exec_err, sizeof exec_err) > 0) {
		fprintf(stderr, "labyrinth: cannot run %s: %s\n", argv[0],
			strerror(pid < 0 ? errno : exec_err));
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return -1;
	}
	close(ex[0]);
	child_pid = pid;
	wait_child(pid, rep[0], err[0], e);
	close(rep[0]);
	if (err[0] >= 0)
		close(err[0]);
	return 0;
}

static int passthrough(const char *prog, const struct ending *e)
{
	cli_symbolize(e, stderr);
	if (WIFEXITED(e->status))
		return WEXITSTATUS(e->status);
	int sig = WTERMSIG(e->status);
	if (!quiet) {
		if (e->report[0])
			fprintf(stderr, "labyrinth: %s died of SIG%s (signal %d) after the report "
				"\"%s\"\n", prog, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", sig,
				e->report);
		else
			fprintf(stderr, "labyrinth: %s died of SIG%s (signal %d), with no labyrinth "
				"report%s\n", prog, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", sig,
				sig == SIGSEGV ? " (a guard page stops overflows and use after free "
						 "of large blocks this way)" : "");
	}
	return 128 + sig;
}

int main(int argc, char **argv)
{
	int i = 1;
	bool check = false;
	if (argc > 1 && strcmp(argv[1], "__probe") == 0)
		return probe_main(argc > 2 ? argv[2] : "");
	if (argc > 1 && strcmp(argv[1], "check") == 0) {
		check = true;
		i = 2;
	}
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("labyrinth %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (!take_option(argv[i])) {
			fprintf(stderr, "labyrinth: unknown option %s (labyrinth --help)\n", argv[i]);
			return 125;
		}
	}
	const char *lib = cli_library();
	if (!lib) {
		if (library_option)
			fprintf(stderr, "labyrinth: no library at --library=%s\n", library_option);
		else
			fprintf(stderr, "labyrinth: cannot find liblabyrinth-preload.so (looked in "
				LAB_LIBDIR " and in ../lib beside this program)\n");
		return 125;
	}
	if (check)
		return check_main(lib);
	if (i >= argc) {
		usage(stderr);
		return 125;
	}
	check_environment();
	cli_set_preload(lib);
	signals_forward();
	struct ending e;
	if (cli_run(argv + i, false, &e) < 0)
		return 127;
	return passthrough(argv[i], &e);
}

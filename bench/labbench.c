/*
 * labbench: run workloads under glibc malloc and under an LD_PRELOAD
 * allocator, and print one table comparing wall time and peak RSS.
 *
 *   labbench [-n RUNS] [-p PRELOAD.so] [-l LABEL] [-t TIMEOUT] [-w NAMES] [-k]
 *            -- NAME [VAR=VALUE...] COMMAND [ARG...] [:: NAME ...]...
 *
 * Workloads follow "--" and are separated by "::". Each is a name for the
 * table, optional environment assignments (as in the shell), and a command
 * looked up in PATH. A command that cannot be found is shown as skipped.
 *
 * Every workload runs RUNS times plainly and RUNS times with
 * LD_PRELOAD=PRELOAD.so, alternating which goes first (ABBA order) so that
 * drifting machine load falls on both columns alike. Each run is one fork,
 * exec and wait4; the time is CLOCK_MONOTONIC around all three and the peak
 * RSS is wait4's ru_maxrss, which covers the child and the descendants it
 * waited for (gcc's cc1, for example). The table shows medians, which shrug
 * off the odd run that the machine disturbed.
 *
 * The child's stdin and stdout are /dev/null; its stderr goes to a file per
 * workload in a temporary directory and is printed if a run fails. A run
 * fails on a non-zero exit, a signal or the timeout; the workload's row then
 * says FAILED and labbench exits 1 once the table is done.
 *
 * Without -p both columns run glibc: a quick way to see how much two
 * identical columns differ on this machine, i.e. the noise floor.
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 1000
#define SEPARATOR "::"
#define STDERR_TAIL 8192	/* bytes of a failed run's stderr to show */

enum { GLIBC, PRELOAD, NALLOC };
enum wstate { ST_PENDING, ST_DONE, ST_FAILED, ST_SKIPPED };

struct workload {
	const char *name;
	char **env;		/* VAR=VALUE words, nenv of them */
	int nenv;
	char **argv;		/* the command, NULL-terminated */
	enum wstate state;
	double *secs[NALLOC];	/* per run, filled in run order */
	double *mib[NALLOC];
	int done;		/* runs completed under both allocators */
	/* Why it failed: under which allocator, in which run, wait status. */
	int fail_alloc, fail_run, fail_status;	/* status -1: timeout */
	off_t fail_offset;	/* where that run's stderr starts in the file */
	char errpath[PATH_MAX];
};

struct options {
	int runs;
	const char *preload;	/* absolute path, or NULL: glibc twice */
	const char *label;
	unsigned timeout;
	const char *only;	/* comma-separated names, or NULL: all */
	int keep;
};

static const char *alloc_name[NALLOC] = { "glibc", NULL };

/* Set by signal handlers, read between and during wait4 calls. */
static volatile sig_atomic_t timed_out, interrupted;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
}

static void on_interrupt(int sig)
{
	interrupted = sig;
}

static void die(const char *what)
{
	fprintf(stderr, "labbench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: labbench [-n RUNS] [-p PRELOAD.so] [-l LABEL] [-t TIMEOUT_S]\n"
		"                [-w NAME,NAME...] [-k]\n"
		"                -- NAME [VAR=VALUE...] COMMAND [ARG...] [:: NAME ...]...\n");
	exit(2);
}

/* ---------------------------------------------------------------- parsing */

/* NAME=VALUE with NAME a valid shell variable name, as the shell takes them. */
static int is_assignment(const char *word)
{
	const char *eq = strchr(word, '=');

	if (!eq || eq == word || (word[0] >= '0' && word[0] <= '9'))
		return 0;
	for (const char *c = word; c < eq; c++)
		if (!(*c == '_' || (*c >= 'a' && *c <= 'z') ||
		      (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
			return 0;
	return 1;
}

/* Is name one of the comma-separated names in list? */
static int listed(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list;; p++) {
		const char *end = strchrnul(p, ',');

		if ((size_t)(end - p) == len && strncmp(p, name, len) == 0)
			return 1;
		if (*end == '\0')
			return 0;
		p = end;
	}
}

/* words[0..count) is one workload: NAME [VAR=VALUE...] COMMAND [ARG...]. */
static void parse_one(struct workload *w, char **words, int count, int runs)
{
	int k = 1;

	while (k < count && is_assignment(words[k]))
		k++;
	if (count == 0 || k == count) {
		fprintf(stderr, "labbench: workload '%s' has no command\n",
			count ? words[0] : "");
		usage();
	}
	w->name = words[0];
	w->env = words + 1;
	w->nenv = k - 1;
	w->argv = words + k;
	for (int a = 0; a < NALLOC; a++) {
		w->secs[a] = calloc((size_t)runs, sizeof(double));
		w->mib[a] = calloc((size_t)runs, sizeof(double));
		if (!w->secs[a] || !w->mib[a])
			die("calloc");
	}
}

/*
 * Split argv[first..argc) into workloads at each "::". The separators are
 * overwritten with NULL, which ends each command's argv in place.
 */
static int parse_workloads(int argc, char **argv, int first, int runs,
			   struct workload **out)
{
	int n = 1;

	for (int i = first; i < argc; i++)
		n += strcmp(argv[i], SEPARATOR) == 0;
	struct workload *w = calloc((size_t)n, sizeof(*w));
	if (!w)
		die("calloc");
	for (int i = first, k = 0; k < n; k++) {
		int end = i;

		while (end < argc && strcmp(argv[end], SEPARATOR) != 0)
			end++;
		argv[end] = NULL;	/* argv[argc] is NULL already */
		parse_one(&w[k], argv + i, end - i, runs);
		i = end + 1;
	}
	*out = w;
	return n;
}

/* Keep only the workloads named in -w, complaining about unknown names. */
static int select_workloads(struct workload *w, int n, const char *only)
{
	int kept = 0;

	/* Names must differ: they name the stderr files too. */
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (strcmp(w[i].name, w[j].name) == 0) {
				fprintf(stderr, "labbench: two workloads named '%s'\n",
					w[i].name);
				exit(2);
			}
	if (!only)
		return n;
	/* A misspelt name in -w would otherwise just shorten the table. */
	for (const char *p = only; *p; p++) {
		const char *end = strchrnul(p, ',');
		int found = 0;

		for (int i = 0; i < n && !found; i++)
			found = strlen(w[i].name) == (size_t)(end - p) &&
				strncmp(w[i].name, p, (size_t)(end - p)) == 0;
		if (!found) {
			fprintf(stderr, "labbench: -w: no workload named '%.*s'\n",
				(int)(end - p), p);
			exit(2);
		}
		if (*end == '\0')
			break;
		p = end;
	}
	for (int i = 0; i < n; i++)
		if (listed(only, w[i].name))
			w[kept++] = w[i];
	return kept;
}

static unsigned long parse_number(const char *s, unsigned long max)
{
	char *end;

	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max || s[0] == '-') {
		fprintf(stderr, "labbench: bad number '%s' (1..%lu)\n", s, max);
		exit(2);
	}
	return v;
}

/*
 * The preload path made absolute (so that a workload may chdir) but with its
 * symlinks kept, so the table names the file the user gave; checked once.
 */
static const char *absolute(const char *path)
{
	char *abs = NULL;

	if (access(path, R_OK) != 0) {
		fprintf(stderr, "labbench: preload library %s: %s\n", path,
			strerror(errno));
		exit(2);
	}
	if (path[0] == '/')
		return path;
	char *cwd = getcwd(NULL, 0);
	if (!cwd || asprintf(&abs, "%s/%s", cwd, path) < 0)
		die("getcwd");
	free(cwd);
	return abs;
}

static int parse_args(int argc, char **argv, struct options *o,
		      struct workload **w)
{
	int c;

	*o = (struct options){ .runs = 5, .timeout = 60 };
	while ((c = getopt(argc, argv, "+n:p:l:t:w:k")) != -1) {
		switch (c) {
		case 'n': o->runs = (int)parse_number(optarg, MAX_RUNS); break;
		case 'p': o->preload = optarg; break;
		case 'l': o->label = optarg; break;
		case 't': o->timeout = (unsigned)parse_number(optarg, 86400); break;
		case 'w': o->only = optarg; break;
		case 'k': o->keep = 1; break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	if (o->preload)
		o->preload = absolute(o->preload);
	if (!o->label)
		o->label = o->preload ? "labyrinth" : "glibc#2";
	alloc_name[PRELOAD] = o->label;
	int n = parse_workloads(argc, argv, optind, o->runs, w);
	return select_workloads(*w, n, o->only);
}

/* ---------------------------------------------------------------- running */

static void install_handlers(void)
{
	struct sigaction sa;

	/* No SA_RESTART: wait4 must return EINTR so we can kill the child. */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_interrupt;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Like execvp's search, but only asks whether the command exists. */
static int find_program(const char *cmd)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	struct stat st;

	if (strchr(cmd, '/'))
		return access(cmd, X_OK) == 0;
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		int len = (int)(end - p);

		/* An empty PATH entry means the current directory. */
		snprintf(buf, sizeof(buf), "%.*s%s%s", len, p, len ? "/" : "", cmd);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return 1;
		if (*end == '\0')
			return 0;
		p = end;
	}
}

/* In the child: wire up fds and environment, then become the workload. */
static void exec_child(const struct workload *w, int alloc,
		       const struct options *o, int errfd)
{
	int null = open("/dev/null", O_RDWR);

	/* Its own process group, so a timeout can kill gcc's cc1 as well. */
	setpgid(0, 0);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(126);
	if (alloc == PRELOAD && o->preload)
		setenv("LD_PRELOAD", o->preload, 1);
	else
		unsetenv("LD_PRELOAD");
	for (int i = 0; i < w->nenv; i++)
		putenv(w->env[i]);
	execvp(w->argv[0], w->argv);
	dprintf(2, "labbench: cannot run %s: %s\n", w->argv[0], strerror(errno));
	_exit(127);
}

/*
 * One timed run. Returns the wait status (0: success), or -1 if the run hit
 * the timeout and was killed.
 */
static int run_once(const struct workload *w, int alloc, const struct options *o,
		    int errfd, double *secs, double *mib)
{
	struct rusage ru;
	int status;

	timed_out = 0;
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		exec_child(w, alloc, o, errfd);
	setpgid(pid, pid);	/* as the child does: whichever runs first wins */
	alarm(o->timeout);
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR)
			die("wait4");
		if (timed_out || interrupted)
			kill(-pid, SIGKILL);
	}
	double t1 = now();
	alarm(0);
	*secs = t1 - t0;
	*mib = (double)ru.ru_maxrss / 1024.0;	/* ru_maxrss is in KiB */
	if (timed_out) {
		kill(-pid, SIGKILL);	/* leftovers of the group, if any */
		return -1;
	}
	return status;
}

/* Each workload's stderr file is named after it, made safe for a path. */
static int open_errfile(struct workload *w, const char *dir)
{
	char safe[64];
	size_t i;

	for (i = 0; w->name[i] && i < sizeof(safe) - 1; i++) {
		char c = w->name[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
		safe[i] = ok ? c : '_';
	}
	safe[i] = '\0';
	snprintf(w->errpath, sizeof(w->errpath), "%s/%s.stderr", dir, safe);
	int fd = open(w->errpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		      0600);
	if (fd < 0)
		die(w->errpath);
	return fd;
}

/* Run r of one allocator; on failure record why. Returns 0 on success. */
static int run_logged(struct workload *w, int alloc, int r,
		      const struct options *o, int fd)
{
	if (interrupted)
		return 0;
	off_t start = lseek(fd, 0, SEEK_END);
	dprintf(fd, "==== %s, run %d of %d ====\n", alloc_name[alloc], r + 1, o->runs);
	int st = run_once(w, alloc, o, fd, &w->secs[alloc][r], &w->mib[alloc][r]);
	if (st == 0 || interrupted)
		return 0;
	w->state = ST_FAILED;
	w->fail_alloc = alloc;
	w->fail_run = r + 1;
	w->fail_status = st;
	w->fail_offset = start;
	return -1;
}

/*
 * All runs of one workload, alternating which allocator goes first. The
 * first failure ends the workload: its later runs would only repeat it.
 */
static void run_workload(struct workload *w, const struct options *o,
			 const char *dir)
{
	if (!find_program(w->argv[0])) {
		w->state = ST_SKIPPED;
		return;
	}
	int fd = open_errfile(w, dir);
	for (int r = 0; r < o->runs && !interrupted; r++) {
		int first = r % 2 ? PRELOAD : GLIBC;

		if (run_logged(w, first, r, o, fd) ||
		    run_logged(w, NALLOC - 1 - first, r, o, fd))
			break;
		if (!interrupted)
			w->done = r + 1;
	}
	close(fd);
	if (w->state == ST_PENDING && !interrupted)
		w->state = ST_DONE;
}

/* -------------------------------------------------------------- reporting */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	static double tmp[MAX_RUNS];

	memcpy(tmp, v, (size_t)n * sizeof(*v));
	qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/*
 * The time ratio: the median of each run's labyrinth time over the glibc
 * time of the same run, which ran right before or after it. A slow spell of
 * a shared machine then falls on both halves of one pair, where a ratio of
 * the two columns' medians would compare runs made minutes apart.
 */
static double paired_ratio(const struct workload *w)
{
	double r[MAX_RUNS];

	for (int i = 0; i < w->done; i++)
		r[i] = w->secs[PRELOAD][i] / w->secs[GLIBC][i];
	return median(r, w->done);
}

#define ROW_FMT "%-*s %10s %10s %8s   %10s %10s %8s\n"

/* The workload column: as wide as the longest name, at least 16. */
static int name_width = 16;

/* A title centred in dashes over the three columns of a group. */
static const char *rule(const char *title, int which)
{
	static char buf[2][40];
	const int width = 10 + 1 + 10 + 1 + 8;
	int len = (int)strlen(title), left = (width - len) / 2;

	memset(buf[which], '-', (size_t)width);
	memcpy(buf[which] + left, title, (size_t)len);
	buf[which][width] = '\0';
	return buf[which];
}

static void print_header(const struct options *o)
{
	printf("labbench: %d run%s of each workload under glibc and under %s",
	       o->runs, o->runs == 1 ? "" : "s", o->label);
	if (o->preload)
		printf(" (LD_PRELOAD=%s)", o->preload);
	printf("\nmedians; time ratio = median of each run's %s / glibc, RSS ratio = "
	       "of the medians;\nbelow 1 means %s did better\n\n", o->label, o->label);
	printf("%-*s %s   %s\n", name_width, "", rule(" time (s) ", 0), rule(" peak RSS (MiB) ", 1));
	printf(ROW_FMT, name_width, "workload", "glibc", o->label, "ratio", "glibc", o->label,
	       "ratio");
	fflush(stdout);
}

/* How a run ended, in words. */
static void describe_status(const struct workload *w, unsigned timeout,
			    char *buf, size_t len)
{
	int st = w->fail_status;

	if (st == -1)
		snprintf(buf, len, "timed out after %u s", timeout);
	else if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "wait status %#x", st);
}

static void print_row(const struct workload *w, const struct options *o)
{
	char why[128];

	if (w->state == ST_SKIPPED) {
		printf("%-*s skipped: not installed (%s)\n", name_width, w->name, w->argv[0]);
	} else if (w->state == ST_FAILED) {
		describe_status(w, o->timeout, why, sizeof(why));
		printf("%-*s FAILED under %s, run %d of %d: %s\n", name_width, w->name,
		       alloc_name[w->fail_alloc], w->fail_run, o->runs, why);
	} else if (w->state == ST_DONE) {
		double t0 = median(w->secs[GLIBC], w->done);
		double t1 = median(w->secs[PRELOAD], w->done);
		double m0 = median(w->mib[GLIBC], w->done);
		double m1 = median(w->mib[PRELOAD], w->done);

		printf("%-*s %10.3f %10.3f %7.2fx   %10.1f %10.1f %7.2fx\n",
		       name_width, w->name, t0, t1, paired_ratio(w), m0, m1, m1 / m0);
	}
	fflush(stdout);
}

/* The geometric mean treats 2x slower and 2x faster as cancelling out. */
static void print_footer(const struct workload *w, int n)
{
	double lt = 0, lm = 0;
	int ok = 0;
	char rt[16] = "-", rm[16] = "-";

	for (int i = 0; i < n; i++) {
		if (w[i].state != ST_DONE)
			continue;
		lt += log(paired_ratio(&w[i]));
		lm += log(median(w[i].mib[PRELOAD], w[i].done) /
			  median(w[i].mib[GLIBC], w[i].done));
		ok++;
	}
	if (ok) {
		snprintf(rt, sizeof(rt), "%.2fx", exp(lt / ok));
		snprintf(rm, sizeof(rm), "%.2fx", exp(lm / ok));
	}
	printf(ROW_FMT, name_width, "geomean", "", "", rt, "", "", rm);
	if (ok < n)
		printf("(geomean of the %d workloads that completed; %d failed or skipped)\n",
		       ok, n - ok);
}

static const struct workload *find_done(const struct workload *w, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (w[i].state == ST_DONE && strcmp(w[i].name, name) == 0)
			return &w[i];
	return NULL;
}

/* One scaling line: the time of `one` over the time of `two`, per allocator. */
static void print_speedup(const struct workload *w, int n, const char *title, const char *one_name,
			  const char *two_name)
{
	const struct workload *one = find_done(w, n, one_name);
	const struct workload *two = find_done(w, n, two_name);
	if (!one || !two)
		return;
	printf("%s (%s / %s time): %s %.2fx, %s %.2fx\n", title, one_name, two_name,
	       alloc_name[GLIBC],
	       median(one->secs[GLIBC], one->done) / median(two->secs[GLIBC], two->done),
	       alloc_name[PRELOAD],
	       median(one->secs[PRELOAD], one->done) / median(two->secs[PRELOAD], two->done));
}

/*
 * Thread scaling: churn, churn-t2 and churn-p2 do the same total work, so
 * the ratio of their times is the 2-thread (or 2-process) throughput over
 * the 1-thread one (2.00 is perfect on two idle cores). Two processes share
 * nothing: their line is the ceiling these cores allow at the moment, and a
 * thread line close to it means the allocator's threads do not contend.
 */
static void print_scaling(const struct workload *w, int n)
{
	print_speedup(w, n, "2-thread throughput / 1-thread", "churn", "churn-t2");
	print_speedup(w, n, "2-process throughput / 1-process", "churn", "churn-p2");
}

/* A failed run's stderr: from its own header on, at most the last few KiB. */
static void print_stderr(const struct workload *w)
{
	char buf[4096];
	int fd = open(w->errpath, O_RDONLY | O_CLOEXEC);
	off_t end = fd < 0 ? 0 : lseek(fd, 0, SEEK_END);
	off_t from = w->fail_offset;
	ssize_t got;

	if (fd < 0)
		return;
	if (end - from > STDERR_TAIL)
		from = end - STDERR_TAIL;
	printf("\n---- stderr of %s under %s (%s) ----\n", w->name,
	       alloc_name[w->fail_alloc], w->errpath);
	fflush(stdout);
	lseek(fd, from, SEEK_SET);
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)got, stdout);
	close(fd);
	printf("---- end of stderr of %s ----\n", w->name);
}

/* Remove the stderr files unless asked to keep them (or something failed). */
static void finish_dir(const char *dir, const struct workload *w, int n, int keep)
{
	if (keep) {
		printf("\nlabbench: stderr of every run kept in %s\n", dir);
		return;
	}
	for (int i = 0; i < n; i++)
		if (w[i].errpath[0])
			unlink(w[i].errpath);
	rmdir(dir);
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	struct options o;
	struct workload *w;
	int n = parse_args(argc, argv, &o, &w);
	char dir[PATH_MAX / 2];
	int failed = 0;
	const char *tmp = getenv("TMPDIR");

	/* Half of PATH_MAX, to leave room in errpath for the file names. */
	if ((size_t)snprintf(dir, sizeof(dir), "%s/labbench.XXXXXX",
			     tmp && *tmp ? tmp : "/tmp") >= sizeof(dir)) {
		fprintf(stderr, "labbench: TMPDIR is too long\n");
		return 2;
	}
	if (!mkdtemp(dir))
		die(dir);
	install_handlers();
	for (int i = 0; i < n; i++)
		if ((int)strlen(w[i].name) > name_width)
			name_width = (int)strlen(w[i].name);
	print_header(&o);
	for (int i = 0; i < n && !interrupted; i++) {
		run_workload(&w[i], &o, dir);
		print_row(&w[i], &o);
		failed += w[i].state == ST_FAILED;
	}
	if (interrupted) {
		fprintf(stderr, "labbench: interrupted; stderr files kept in %s\n", dir);
		return 128 + interrupted;
	}
	print_footer(w, n);
	print_scaling(w, n);
	for (int i = 0; i < n; i++)
		if (w[i].state == ST_FAILED)
			print_stderr(&w[i]);
	finish_dir(dir, w, n, o.keep || failed);
	return failed ? 1 : 0;
}

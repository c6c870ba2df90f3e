/*
 * labbench: run workloads under glibc malloc and under an LD_PRELOAD
 * allocator, and print one table comparing wall time and peak RSS.
 *
 *   labbench [-n RUNS] [-p PRELOAD.so] [-l LABEL] [-t TIMEOUT] [-w NAMES] [-k]
 *            [-r NAME=RUNS]... [-y NAMES]
 *            -- NAME [VAR=VALUE...] COMMAND [ARG...] [:: NAME ...]...
 *
 * Workloads follow "--" and are separated by "::". Each is a name for the
 * table, optional environment assignments (as in the shell), and a command
 * looked up in PATH. A command that cannot be found is shown as skipped.
 * An LD_PRELOAD=LIB among the assignments is added after the allocator being
 * measured (a helper such as statexit.so), never in its place.
 *
 * Every workload runs RUNS times plainly and RUNS times with
 * LD_PRELOAD=PRELOAD.so, alternating which goes first (ABBA order) so that
 * drifting machine load falls on both columns alike. Each run is one fork,
 * exec and wait4; the time is CLOCK_MONOTONIC around all three and the peak
 * RSS is wait4's ru_maxrss, which covers the child and the descendants it
 * waited for (gcc's cc1, for example). The table shows medians, which shrug
 * off the odd run that the machine disturbed. Under each row a line gives
 * the page faults (wait4's ru_minflt, the waited-for descendants included:
 * every fresh page a program touches is one, so it shows memory the
 * allocator gave back and took again).
 *
 * The child's stdin and stdout are /dev/null; its stderr goes to a file per
 * workload in a temporary directory and is printed if a run fails. A run
 * fails on a non-zero exit, a signal or the timeout; the workload's row then
 * says FAILED and labbench exits 1 once the table is done.
 *
 * -r NAME=RUNS gives one workload its own number of runs (the slow ones);
 * -y NAMES adds a line of system time (wait4's ru_stime, the descendants it
 * waited for included) under those workloads' rows.
 *
 * Each run's $LABBENCH_METRICS names an empty file; a workload may append
 * "NAME VALUE" lines to it (fork latency, VmPTE). Of the lines one run
 * writes with one NAME the largest counts (the peak over the processes of a
 * shell's workload); the median over the runs is shown under the row.
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
#define MAX_METRICS 8		/* figures reported per workload */
#define METRIC_NAME 40
#define MAX_RUN_COUNTS 16	/* -r options */

enum { GLIBC, PRELOAD, NALLOC };
enum wstate { ST_PENDING, ST_DONE, ST_FAILED, ST_SKIPPED };

/* A figure a workload reported: per allocator, per run (NAN: not reported). */
struct metric {
	char name[METRIC_NAME];
	double *v[NALLOC];
};

struct workload {
	const char *name;
	char **env;		/* VAR=VALUE words, nenv of them */
	int nenv;
	char **argv;		/* the command, NULL-terminated */
	enum wstate state;
	int runs;		/* -n, or this workload's -r */
	int show_sys;		/* named in -y */
	double *secs[NALLOC];	/* per run, filled in run order */
	double *mib[NALLOC];
	double *sys[NALLOC];	/* system time, s */
	double *flt[NALLOC];	/* minor page faults */
	struct metric metric[MAX_METRICS];
	int nmetrics;
	int done;		/* runs completed under both allocators */
	/* Why it failed: under which allocator, in which run, wait status. */
	int fail_alloc, fail_run, fail_status;	/* status -1: timeout */
	off_t fail_offset;	/* where that run's stderr starts in the file */
	char errpath[PATH_MAX];
	char metpath[PATH_MAX];	/* $LABBENCH_METRICS of its runs */
};

struct options {
	int runs;
	const char *preload;	/* absolute path, or NULL: glibc twice */
	const char *label;
	unsigned timeout;
	const char *only;	/* comma-separated names, or NULL: all */
	const char *sys_names;	/* -y: comma-separated, or NULL */
	const char *run_counts[MAX_RUN_COUNTS];	/* -r NAME=RUNS */
	int nrun_counts;
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
		"                [-w NAME,NAME...] [-k] [-r NAME=RUNS]... [-y NAME,NAME...]\n"
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

/* A zeroed array of one double per run. */
static double *per_run(int runs)
{
	double *v = calloc((size_t)runs, sizeof(double));

	if (!v)
		die("calloc");
	return v;
}

/* How many runs workload `name` gets: its -r NAME=RUNS, else -n. */
static int runs_for(const struct options *o, const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < o->nrun_counts; i++) {
		const char *rc = o->run_counts[i];

		if (strncmp(rc, name, len) == 0 && rc[len] == '=')
			return (int)parse_number(rc + len + 1, MAX_RUNS);
	}
	return o->runs;
}

/* words[0..count) is one workload: NAME [VAR=VALUE...] COMMAND [ARG...]. */
static void parse_one(struct workload *w, char **words, int count,
		      const struct options *o)
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
	w->runs = runs_for(o, w->name);
	w->show_sys = o->sys_names && listed(o->sys_names, w->name);
	for (int a = 0; a < NALLOC; a++) {
		w->secs[a] = per_run(w->runs);
		w->mib[a] = per_run(w->runs);
		w->sys[a] = per_run(w->runs);
		w->flt[a] = per_run(w->runs);
	}
}

/*
 * Split argv[first..argc) into workloads at each "::". The separators are
 * overwritten with NULL, which ends each command's argv in place.
 */
static int parse_workloads(int argc, char **argv, int first,
			   const struct options *o, struct workload **out)
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
		parse_one(&w[k], argv + i, end - i, o);
		i = end + 1;
	}
	*out = w;
	return n;
}

/* Is there a workload called name[0..len)? */
static int known(const struct workload *w, int n, const char *name, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(w[i].name) == len && strncmp(w[i].name, name, len) == 0)
			return 1;
	return 0;
}

/*
 * A misspelt name in -w, -y or -r would otherwise just change the table
 * quietly: each name in the comma-separated list must be a workload's.
 */
static void check_names(const struct workload *w, int n, const char *list,
			char opt, char stop)
{
	for (const char *p = list; *p; p++) {
		const char *end = strchrnul(p, stop);

		if (!known(w, n, p, (size_t)(end - p))) {
			fprintf(stderr, "labbench: -%c: no workload named '%.*s'\n",
				opt, (int)(end - p), p);
			exit(2);
		}
		if (*end == '\0' || stop != ',')
			break;
		p = end;
	}
}

/* Keep only the workloads named in -w, complaining about unknown names. */
static int select_workloads(struct workload *w, int n, const struct options *o)
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
	if (o->sys_names)
		check_names(w, n, o->sys_names, 'y', ',');
	for (int i = 0; i < o->nrun_counts; i++)
		check_names(w, n, o->run_counts[i], 'r', '=');
	if (!o->only)
		return n;
	check_names(w, n, o->only, 'w', ',');
	for (int i = 0; i < n; i++)
		if (listed(o->only, w[i].name))
			w[kept++] = w[i];
	return kept;
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
	while ((c = getopt(argc, argv, "+n:p:l:t:w:kr:y:")) != -1) {
		switch (c) {
		case 'n': o->runs = (int)parse_number(optarg, MAX_RUNS); break;
		case 'p': o->preload = optarg; break;
		case 'l': o->label = optarg; break;
		case 't': o->timeout = (unsigned)parse_number(optarg, 86400); break;
		case 'w': o->only = optarg; break;
		case 'k': o->keep = 1; break;
		case 'r':
			if (o->nrun_counts == MAX_RUN_COUNTS || !strchr(optarg, '='))
				usage();
			parse_number(strchr(optarg, '=') + 1, MAX_RUNS);	/* checked now */
			o->run_counts[o->nrun_counts++] = optarg;
			break;
		case 'y': o->sys_names = optarg; break;
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
	int n = parse_workloads(argc, argv, optind, o, w);
	return select_workloads(*w, n, o);
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

/*
 * The child's LD_PRELOAD: the allocator under test (none for glibc), then
 * the helpers the workload's own LD_PRELOAD= assignments name, so that a
 * helper never replaces the allocator. NULL: none at all.
 */
static char *child_preload(const struct workload *w, int alloc,
			   const struct options *o)
{
	static const char key[] = "LD_PRELOAD=";
	char *list = NULL;

	if (alloc == PRELOAD && o->preload)
		list = strdup(o->preload);
	for (int i = 0; i < w->nenv; i++) {
		char *more = NULL;

		if (strncmp(w->env[i], key, sizeof(key) - 1) != 0)
			continue;
		if (asprintf(&more, "%s%s%s", list ? list : "", list ? " " : "",
			     w->env[i] + sizeof(key) - 1) < 0)
			_exit(126);
		free(list);
		list = more;
	}
	return list;
}

/* In the child: wire up fds and environment, then become the workload. */
static void exec_child(const struct workload *w, int alloc,
		       const struct options *o, int errfd)
{
	int null = open("/dev/null", O_RDWR);
	char *preload = child_preload(w, alloc, o);

	/* Its own process group, so a timeout can kill gcc's cc1 as well. */
	setpgid(0, 0);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(126);
	for (int i = 0; i < w->nenv; i++)
		putenv(w->env[i]);
	if (preload)
		setenv("LD_PRELOAD", preload, 1);
	else
		unsetenv("LD_PRELOAD");
	setenv("LABBENCH_METRICS", w->metpath, 1);
	execvp(w->argv[0], w->argv);
	dprintf(2, "labbench: cannot run %s: %s\n", w->argv[0], strerror(errno));
	_exit(127);
}

/*
 * One timed run. Returns the wait status (0: success), or -1 if the run hit
 * the timeout and was killed.
 */
static int run_once(const struct workload *w, int alloc, const struct options *o,
		    int errfd, int r)
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
	w->secs[alloc][r] = t1 - t0;
	w->mib[alloc][r] = (double)ru.ru_maxrss / 1024.0;	/* ru_maxrss is in KiB */
	w->sys[alloc][r] = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	w->flt[alloc][r] = (double)ru.ru_minflt;
	if (timed_out) {
		kill(-pid, SIGKILL);	/* leftovers of the group, if any */
		return -1;
	}
	return status;
}

/*
 * Each workload's files (stderr, metrics) are named after it, made safe for
 * a path.
 */
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
	snprintf(w->metpath, sizeof(w->metpath), "%s/%s.metrics", dir, safe);
	int fd = open(w->errpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
		      0600);
	if (fd < 0)
		die(w->errpath);
	return fd;
}

/* The figure called name[0..len), added (all runs NAN) if it is new. */
static struct metric *find_metric(struct workload *w, const char *name, size_t len)
{
	for (int i = 0; i < w->nmetrics; i++)
		if (strlen(w->metric[i].name) == len &&
		    strncmp(w->metric[i].name, name, len) == 0)
			return &w->metric[i];
	if (w->nmetrics == MAX_METRICS || len >= METRIC_NAME)
		return NULL;	/* dropped: the table has room for so many */
	struct metric *m = &w->metric[w->nmetrics++];
	memcpy(m->name, name, len);
	m->name[len] = '\0';
	for (int a = 0; a < NALLOC; a++) {
		m->v[a] = per_run(w->runs);
		for (int r = 0; r < w->runs; r++)
			m->v[a][r] = NAN;
	}
	return m;
}

/*
 * The "NAME VALUE" lines run r wrote to $LABBENCH_METRICS. Of several
 * processes' lines with one NAME, the largest value counts.
 */
static void read_metrics(struct workload *w, int alloc, int r)
{
	FILE *f = fopen(w->metpath, "r");
	char line[256];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		size_t len = strcspn(line, " \t\n");
		char *end;
		double v = strtod(line + len, &end);
		struct metric *m;

		if (len == 0 || end == line + len || !(m = find_metric(w, line, len)))
			continue;
		if (isnan(m->v[alloc][r]) || v > m->v[alloc][r])
			m->v[alloc][r] = v;
	}
	fclose(f);
}

/* Run r of one allocator; on failure record why. Returns 0 on success. */
static int run_logged(struct workload *w, int alloc, int r,
		      const struct options *o, int fd)
{
	if (interrupted)
		return 0;
	off_t start = lseek(fd, 0, SEEK_END);
	dprintf(fd, "==== %s, run %d of %d ====\n", alloc_name[alloc], r + 1, w->runs);
	/* Empty, so that the run's figures are its own. */
	int mfd = open(w->metpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (mfd < 0)
		die(w->metpath);
	close(mfd);
	int st = run_once(w, alloc, o, fd, r);
	if (st == 0 && !interrupted)
		read_metrics(w, alloc, r);
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
	for (int r = 0; r < w->runs && !interrupted; r++) {
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
static double paired(double *const v[NALLOC], int n)
{
	double r[MAX_RUNS];

	for (int i = 0; i < n; i++)
		r[i] = v[PRELOAD][i] / v[GLIBC][i];
	return median(r, n);
}

static double paired_ratio(const struct workload *w)
{
	return paired(w->secs, w->done);
}

/* The median of the runs that reported a figure (NAN: none did). */
static double median_reported(const double *v, int n)
{
	double have[MAX_RUNS];
	int k = 0;

	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			have[k++] = v[i];
	return k ? median(have, k) : NAN;
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

/* A figure in a 10-wide column, with as many decimals as its size needs. */
static const char *figure(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", fabs(v) >= 100 ? 0 : fabs(v) >= 10 ? 1 : 3, v);
	return buf;
}

/*
 * One line under a row: glibc, the allocator and their ratio in the time
 * columns; for a size (a name ending in _kB), the allocator's excess over
 * glibc in the RSS columns, which is what "extra resident memory" asks for.
 */
static void print_figure(const char *label, double g, double l, double ratio, int size)
{
	char gb[24], lb[24];

	printf("  %-*s %10s %10s %7.2fx", name_width - 2, label, figure(gb, sizeof(gb), g),
	       figure(lb, sizeof(lb), l), ratio);
	if (size && !isnan(g) && !isnan(l))
		printf("   %+10.0f kB (%s - glibc)", l - g, alloc_name[PRELOAD]);
	putchar('\n');
}

/* The lines under a row: page faults, system time (-y), then what the
 * workload reported. */
static void print_figures(const struct workload *w)
{
	print_figure("page faults", median(w->flt[GLIBC], w->done),
		     median(w->flt[PRELOAD], w->done), paired(w->flt, w->done), 0);
	if (w->show_sys)
		print_figure("sys time (s)", median(w->sys[GLIBC], w->done),
			     median(w->sys[PRELOAD], w->done), paired(w->sys, w->done), 0);
	for (int i = 0; i < w->nmetrics; i++) {
		const struct metric *m = &w->metric[i];
		double g = median_reported(m->v[GLIBC], w->done);
		double l = median_reported(m->v[PRELOAD], w->done);
		size_t len = strlen(m->name);

		print_figure(m->name, g, l, l / g, len > 3 && strcmp(m->name + len - 3, "_kB") == 0);
	}
}

static void print_row(const struct workload *w, const struct options *o)
{
	char why[128];

	if (w->state == ST_SKIPPED) {
		printf("%-*s skipped: not installed (%s)\n", name_width, w->name, w->argv[0]);
	} else if (w->state == ST_FAILED) {
		describe_status(w, o->timeout, why, sizeof(why));
		printf("%-*s FAILED under %s, run %d of %d: %s\n", name_width, w->name,
		       alloc_name[w->fail_alloc], w->fail_run, w->runs, why);
	} else if (w->state == ST_DONE) {
		double t0 = median(w->secs[GLIBC], w->done);
		double t1 = median(w->secs[PRELOAD], w->done);
		double m0 = median(w->mib[GLIBC], w->done);
		double m1 = median(w->mib[PRELOAD], w->done);

		printf("%-*s %10.3f %10.3f %7.2fx   %10.1f %10.1f %7.2fx",
		       name_width, w->name, t0, t1, paired_ratio(w), m0, m1, m1 / m0);
		if (w->runs != o->runs)
			printf("  [%d run%s]", w->runs, w->runs == 1 ? "" : "s");
		putchar('\n');
		print_figures(w);
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
		if (w[i].errpath[0]) {
			unlink(w[i].errpath);
			unlink(w[i].metpath);
		}
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

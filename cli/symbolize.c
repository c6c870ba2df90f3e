/*
 * symbolize: the stacks of a report, with function, file and line. The
 * library prints a frame as MODULE+OFFSET because the dying process must not
 * read debugging information (it would allocate, and take long); the command
 * outlives it, so it asks addr2line (or llvm-symbolizer) once per module,
 * under a time limit, and prints the report's stacks again the way ASan
 * does. Without either tool the frames are printed as they came.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME_PREFIX "labyrinth:     #"
#define MAX_FRAMES 256
#define MAX_NAMES 4             /* a frame and the calls inlined into it */
#define TOOL_SECONDS 10         /* for all the modules together */

static const char *const titles[] = { "stack", "allocated by", "freed by" };

/* ---- collecting the last report's stacks (as lines come) -------------- */

static void trace_add(struct ending *e, const char *p, size_t l)
{
	if (e->trace_len + l + 2 > sizeof e->trace)
		return;         /* a stack too long for the copy; stderr has it */
	memcpy(e->trace + e->trace_len, p, l);
	e->trace_len += l;
	e->trace[e->trace_len++] = '\n';
	e->trace[e->trace_len] = 0;
}

static bool is_title(const char *p, size_t l)
{
	for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++) {
		size_t t = strlen(titles[i]);
		if (l > 11 + t && strncmp(p + 11, titles[i], t) == 0 && p[11 + t] == ':')
			return true;
	}
	return false;
}

/* One line of the report pipe: a report (the last is kept, its stacks
 * follow it), a stack's title or frame, or a line that is neither. */
static void report_line(struct ending *e, const char *p, size_t l)
{
	if (l <= 11 || strncmp(p, "labyrinth: ", 11) != 0 ||
	    strncmp(p, "labyrinth: warning", 18) == 0 || strncmp(p, "labyrinth: stats", 16) == 0)
		return;
	if (strncmp(p, FRAME_PREFIX, strlen(FRAME_PREFIX)) == 0 || is_title(p, l)) {
		if (e->report[0])
			trace_add(e, p, l);
		return;
	}
	size_t k = l < sizeof e->report ? l : sizeof e->report - 1;
	memcpy(e->report, p, k);
	e->report[k] = 0;
	e->trace_len = 0;
	e->trace[0] = 0;
	/* A fault's first frame is where it faulted, not a return address. */
	e->trace_fault = strncmp(p, "labyrinth: SIGSEGV: ", 20) == 0 ||
			 strncmp(p, "labyrinth: SIGBUS: ", 19) == 0;
}

void cli_report_bytes(struct ending *e, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n' && e->pending_len < sizeof e->pending) {
			e->pending[e->pending_len++] = buf[i];
			continue;
		}
		report_line(e, e->pending, e->pending_len);
		e->pending_len = 0;
		if (buf[i] != '\n')     /* an overlong line: cut, and go on */
			e->pending[e->pending_len++] = buf[i];
	}
}

/* ---- the frames --------------------------------------------------------- */

struct frame {
	const char *title;      /* a stack's title line, or NULL: a frame */
	char raw[512];          /* "FUNCTION+0xN (MODULE+0xM)" */
	char module[PATH_MAX];
	unsigned long offset;   /* 0: no module */
	bool exact;             /* where a fault happened: not a return address */
	struct {
		char fn[256], file[256];        /* "" when unknown */
	} names[MAX_NAMES];                     /* innermost first */
	unsigned nnames;
};

/* "labyrinth:     #3 f+0x1d (/bin/prog+0x1139)": the module and offset, if
 * the frame has them (a bare address does not). */
static void parse_frame(struct frame *f, const char *p)
{
	const char *rest = strchr(p + strlen(FRAME_PREFIX), ' ');
	snprintf(f->raw, sizeof f->raw, "%s", rest ? rest + 1 : "");
	const char *open = rest ? strstr(rest, " (") : NULL;
	if (rest && rest[1] == '(')
		open = rest;
	const char *plus = open ? strstr(open, "+0x") : NULL;
	for (const char *q = plus; q && (q = strstr(q + 1, "+0x"));)
		plus = q;       /* the last one: a path may hold "+0x" */
	if (!plus)
		return;
	snprintf(f->module, sizeof f->module, "%.*s", (int)(plus - open - 2), open + 2);
	f->offset = strtoul(plus + 1, NULL, 16);
	if (f->module[0] && f->module[0] != '/') {      /* as the program was run */
		char abs[PATH_MAX];
		if (realpath(f->module, abs))
			snprintf(f->module, sizeof f->module, "%s", abs);
	}
}

static unsigned parse_trace(const struct ending *e, struct frame *fr, unsigned max)
{
	unsigned n = 0, stacks = 0;
	char line[sizeof fr->raw + PATH_MAX];
	for (const char *p = e->trace; *p && n < max; p += strcspn(p, "\n") + 1) {
		snprintf(line, sizeof line, "%.*s", (int)strcspn(p, "\n"), p);
		struct frame *f = &fr[n++];
		memset(f, 0, sizeof *f);
		if (strncmp(line, FRAME_PREFIX, strlen(FRAME_PREFIX)) == 0) {
			parse_frame(f, line);
			/* A fault's stack starts where it faulted. */
			f->exact = e->trace_fault && stacks == 1 && n >= 2 && fr[n - 2].title;
			continue;
		}
		size_t l = strcspn(line + 11, ":");
		for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
			if (strlen(titles[i]) == l && strncmp(line + 11, titles[i], l) == 0)
				f->title = titles[i];
		/* A stack shown by reference, or why there is none: kept. */
		if (line[11 + l] == ':' && line[12 + l] == ' ')
			snprintf(f->raw, sizeof f->raw, "%s", line + 13 + l);
		stacks++;
	}
	return n;
}

/* ---- asking the tool ---------------------------------------------------- */

static bool find_tool(const char *name, char *out, size_t size)
{
	const char *path = getenv("PATH");
	while (path && *path) {
		size_t l = strcspn(path, ":");
		snprintf(out, size, "%.*s/%s", (int)l, l ? path : ".", name);
		if (access(out, X_OK) == 0)
			return true;
		path += l + (path[l] == ':');
	}
	return false;
}

/* Run argv, its output into buf; false if it did not finish by deadline. */
static bool run_tool(char *const argv[], char *buf, size_t size, const struct timespec *deadline)
{
	int out[2];
	if (pipe2(out, O_CLOEXEC))
		return false;
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, STDIN_FILENO);
		dup2(null, STDERR_FILENO);
		dup2(out[1], STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	size_t used = 0;
	bool done = false;
	while (pid > 0) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (deadline->tv_sec - now.tv_sec) * 1000 +
			  (deadline->tv_nsec - now.tv_nsec) / 1000000;
		struct pollfd p = { out[0], POLLIN, 0 };
		if (ms <= 0 || (poll(&p, 1, (int)ms) < 0 && errno != EINTR))
			break;
		char tmp[4096];
		ssize_t n = p.revents ? read(out[0], tmp, sizeof tmp) : 0;
		if (n == 0 && p.revents) {
			done = true;
			break;
		}
		if (n > 0 && used + (size_t)n < size) {
			memcpy(buf + used, tmp, (size_t)n);
			used += (size_t)n;
		}
	}
	buf[used] = 0;
	close(out[0]);
	if (pid > 0) {
		if (!done)
			kill(pid, SIGKILL);
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		done = done && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	return done;
}

static bool known(const char *s)
{
	return s[0] && strncmp(s, "??", 2) != 0;
}

/* The tool's answer: for each address, "0x..." then pairs of lines,
 * function and FILE:LINE, one pair per inlined call. */
static void take_answer(char *buf, struct frame *fr, unsigned n, const char *module)
{
	unsigned i = 0;
	struct frame *f = NULL;
	char *fn = NULL;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "0x", 2) == 0 && line[2 + strspn(line + 2, "0123456789abcdef")] == 0) {
			for (f = NULL; i < n && !f; i++)
				if (!fr[i].title && strcmp(fr[i].module, module) == 0)
					f = &fr[i];
			fn = NULL;
			continue;
		}
		if (!f)
			continue;
		if (!fn) {
			fn = line;
			continue;
		}
		char *disc = strstr(line, " (discriminator");
		if (disc)
			*disc = 0;
		/* file:line unknown: the module and offset say more than "??:0" */
		if (f->nnames < MAX_NAMES && (known(fn) || known(line))) {
			snprintf(f->names[f->nnames].fn, sizeof f->names[0].fn, "%s",
				 known(fn) ? fn : "??");
			snprintf(f->names[f->nnames].file, sizeof f->names[0].file, "%s",
				 known(line) ? line : "");
			f->nnames++;
		}
		fn = NULL;
	}
}

static bool symbolize_module(const char *tool, struct frame *fr, unsigned n, unsigned first,
			     const struct timespec *deadline)
{
	static char *argv[MAX_FRAMES + 16];
	static char addrs[MAX_FRAMES][24], answer[1 << 18];
	const char *module = fr[first].module;
	unsigned a = 0;
	bool llvm = strstr(tool, "llvm-symbolizer") != NULL;
	static char obj[PATH_MAX + 8];
	argv[a++] = (char *)tool;
	if (llvm)
		argv[a++] = "--output-style=GNU";
	argv[a++] = "-a";
	argv[a++] = "-f";
	argv[a++] = "-C";
	argv[a++] = "-i";
	snprintf(obj, sizeof obj, "%s%s", llvm ? "--obj=" : "", module);
	if (!llvm)
		argv[a++] = "-e";
	argv[a++] = obj;
	unsigned k = 0;
	for (unsigned i = first; i < n; i++) {
		if (fr[i].title || strcmp(fr[i].module, module) != 0)
			continue;
		/* A return address is the instruction after the call: the call's
		 * line is that of the byte before it. */
		snprintf(addrs[k], sizeof addrs[k], "0x%lx", fr[i].offset - !fr[i].exact);
		argv[a++] = addrs[k++];
	}
	argv[a] = NULL;
	if (!run_tool(argv, answer, sizeof answer, deadline))
		return false;
	take_answer(answer, fr + first, n - first, module);
	return true;
}

static void print_frames(FILE *out, const struct frame *fr, unsigned n, const char *how)
{
	unsigned num = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct frame *f = &fr[i];
		if (f->title && f->raw[0]) {
			fprintf(out, "labyrinth: %s: %s\n", f->title, f->raw);
			continue;
		}
		if (f->title) {
			fprintf(out, "labyrinth: %s, %s:\n", f->title, how);
			num = 0;
			continue;
		}
		if (!f->nnames)
			fprintf(out, "    #%u %s\n", num++, f->raw);
		for (unsigned k = 0; k < f->nnames; k++) {
			const char *fn = f->names[k].fn, *file = f->names[k].file;
			if (file[0])
				fprintf(out, "    #%u 0x%lx in %s %s\n", num++, f->offset, fn, file);
			else    /* a function, no line: the module tells where */
				fprintf(out, "    #%u 0x%lx in %s (%s+0x%lx)\n", num++, f->offset, fn,
					f->module, f->offset);
		}
	}
}

void cli_symbolize(const struct ending *e, FILE *out)
{
	static struct frame fr[MAX_FRAMES];
	static char how[PATH_MAX + 128];
	if (!e->trace_len)
		return;
	unsigned n = parse_trace(e, fr, MAX_FRAMES);
	char tool[PATH_MAX];
	if (!find_tool("addr2line", tool, sizeof tool) &&
	    !find_tool("llvm-symbolizer", tool, sizeof tool)) {
		print_frames(out, fr, n, "not symbolized (no addr2line or llvm-symbolizer in PATH)");
		return;
	}
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += TOOL_SECONDS;
	unsigned failed = 0;
	for (unsigned i = 0; i < n; i++) {
		bool first = !fr[i].title && fr[i].module[0];
		for (unsigned j = 0; first && j < i; j++)
			first = fr[j].title || strcmp(fr[j].module, fr[i].module) != 0;
		if (first && !symbolize_module(tool, fr, n, i, &deadline))
			failed++;
	}
	/* A frame the tool could not name is printed as it came. */
	if (failed)
		snprintf(how, sizeof how, "symbolized by %s (it failed for %u module%s, or took "
			 "over %d s)", tool, failed, failed == 1 ? "" : "s", TOOL_SECONDS);
	else
		snprintf(how, sizeof how, "symbolized");
	print_frames(out, fr, n, how);
	fflush(out);
}

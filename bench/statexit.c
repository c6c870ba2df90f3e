/*
 * statexit.so: a helper preload for the labbench driver. At the exit of
 * every program it is loaded into, it appends that process's VmPTE, VmRSS
 * and VmHWM (kB, from /proc/self/status) to the file named by
 * $LABBENCH_METRICS, as "exit:VmPTE_kB 52" lines; the driver keeps the
 * largest of each per run, so a shell's workload reports its biggest page
 * table and resident size at exit.
 *
 * A file, not stderr: ls and other programs close their standard streams
 * before the destructors run. Only the process that was exec'd reports: a
 * forked child that never exec'd (a shell's $(...)) has its parent's page
 * tables and would only repeat them, at a cost on every fork.
 *
 * No malloc and no stdio here: this runs after the program's exit handlers,
 * under the allocator being measured, and must not change what it measures.
 */
#ifndef _GNU_SOURCE	/* the build may already pass -D_GNU_SOURCE */
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pid_t exec_pid;	/* the process the program was exec'd as */

__attribute__((constructor)) static void statexit_init(void)
{
	exec_pid = getpid();
}

/*
 * Appends "exit:FIELD_kB DIGITS\n" to out if status has a "FIELD:" line;
 * returns the new end of out. out has room for the three short lines.
 */
static char *copy_field(char *out, const char *status, const char *field)
{
	size_t len = strlen(field);
	const char *p = status;

	while ((p = strstr(p, field)) != NULL) {
		if ((p == status || p[-1] == '\n') && p[len] == ':')
			break;
		p += len;
	}
	if (!p)
		return out;
	p += len + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	out = stpcpy(out, "exit:");
	out = stpcpy(out, field);
	out = stpcpy(out, "_kB ");
	while (*p >= '0' && *p <= '9')
		*out++ = *p++;
	*out++ = '\n';
	return out;
}

/* The whole of /proc/self/status, NUL-terminated; 0 if it cannot be read. */
static size_t read_status(char *buf, size_t size)
{
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	while (got < size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	return got;
}

__attribute__((destructor)) static void statexit_report(void)
{
	const char *path = getenv("LABBENCH_METRICS");
	char status[8192], lines[256], *end = lines;

	if (!path || !*path || getpid() != exec_pid || !read_status(status, sizeof(status)))
		return;
	end = copy_field(end, status, "VmPTE");
	end = copy_field(end, status, "VmRSS");
	end = copy_field(end, status, "VmHWM");
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	/* One write with O_APPEND: lines of processes exiting at once stay whole. */
	if (write(fd, lines, (size_t)(end - lines)) < 0) {
		/* Nothing to do: the figure is simply missing from the table. */
	}
	close(fd);
}

/* The labyrinth command: shared between running a program and the self-test. */
#ifndef LAB_CLI_H
#define LAB_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <stdio.h>

/* How a child ended, and the last labyrinth report it made. */
struct ending {
	int status;             /* from waitpid */
	char report[512];       /* "labyrinth: double free of ...", or "" */
	char err[2048];         /* its stderr, when captured (the self-test) */
	char trace[32768];      /* the stack lines that followed the report */
	size_t trace_len;
	bool trace_fault;       /* the report was a SIGSEGV's or a SIGBUS's */
	char pending[1024];     /* a line of the report pipe not yet ended */
	size_t pending_len;
};

/* The preload library this command uses: --library, the build tree's when
 * run from it, else the installed one. NULL if none exists. */
const char *cli_library(void);

/* Set LD_PRELOAD (ours first, keeping what was there) in this process's
 * environment, which children inherit. */
void cli_set_preload(const char *lib);

/*
 * Run argv with the environment as it is, the reports of the library sent
 * through a pipe. capture: also collect its stderr (else it is ours).
 * Returns -1 (and says why) if it could not start, else fills *e.
 */
int cli_run(char *const argv[], bool capture, struct ending *e);

/* Bytes read from the report pipe: keeps the last report, and its stacks. */
void cli_report_bytes(struct ending *e, const char *buf, size_t len);

/* The last report's stacks on out, with function, file and line from
 * addr2line or llvm-symbolizer if PATH has one; nothing if it had none. */
void cli_symbolize(const struct ending *e, FILE *out);

/* `labyrinth check`; the exit status of the command. */
int check_main(const char *lib);
/* `labyrinth __probe NAME`, run under the preload by the self-test. */
int probe_main(const char *name);

#endif

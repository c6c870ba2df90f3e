/* The labyrinth command: shared between running a program and the self-test. */
#ifndef LAB_CLI_H
#define LAB_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* How a child ended, and the last labyrinth report it made. */
struct ending {
	int status;             /* from waitpid */
	char report[512];       /* "labyrinth: double free of ...", or "" */
	char err[2048];         /* its stderr, when captured (the self-test) */
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

/* `labyrinth check`; the exit status of the command. */
int check_main(const char *lib);
/* `labyrinth __probe NAME`, run under the preload by the self-test. */
int probe_main(const char *name);

#endif

/*
 * syscount: run a program under ptrace and print how many system calls it
 * made, so that tests can bound what the allocator adds to a process's
 * start-up without strace (which CI machines may lack).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: syscount PROGRAM [ARG...]\n");
		return 2;
	}
	pid_t pid = fork();
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		raise(SIGSTOP);
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st))
		return 2;
	ptrace(PTRACE_SETOPTIONS, pid, NULL, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL);
	long calls = 0;
	bool inside = false;
	int sig = 0;
	for (;;) {
		ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig);
		if (waitpid(pid, &st, 0) != pid || WIFEXITED(st) || WIFSIGNALED(st))
			break;
		sig = 0;
		if (WSTOPSIG(st) == (SIGTRAP | 0x80)) {
			calls += !inside;       /* count each call at its entry */
			inside = !inside;
		} else if (WSTOPSIG(st) != SIGTRAP) {
			sig = WSTOPSIG(st);     /* the program's own signal: pass it on */
		}
	}
	printf("%ld\n", calls);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

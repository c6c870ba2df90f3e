/*
 * seccomp: LABYRINTH_SECCOMP=wx. After start-up (when the library's
 * constructors run, the loader has mapped and relocated every library),
 * install a filter that refuses to make memory writable and executable, so
 * a heap overflow that wins control of data cannot turn the heap into code.
 *
 * The filter is a classic BPF program written out here, not built with
 * libseccomp: the preload is mapped into every process of a machine that
 * lists it in /etc/ld.so.preload, and libseccomp would be mapped and
 * relocated in each of them for a filter almost none of them installs.
 *
 * A filter sees only a system call's arguments, never what memory an
 * address is or what a descriptor is. So, all with EPERM:
 *  - mmap asking for PROT_WRITE and PROT_EXEC together, whatever backs it
 *    (anonymous memory, /dev/zero, a file opened for writing, a memfd);
 *  - mmap asking for PROT_EXEC with MAP_ANONYMOUS;
 *  - mprotect and pkey_mprotect asking for PROT_EXEC, whatever the memory
 *    (that is how written memory would become executable);
 *  - shmat with SHM_EXEC;
 *  - personality setting READ_IMPLIES_EXEC, which makes the kernel add
 *    PROT_EXEC to readable mappings after the filter saw the arguments.
 * mmap of a file with PROT_READ|PROT_EXEC, which is how the loader maps
 * libraries (dlopen too), is allowed. System calls through another
 * architecture's table (int 0x80, the x32 numbers) end the process: the
 * rules above know only the native numbers. The filter is inherited by
 * children and kept across execve.
 */
#include "seccomp_wx.h"
#include "config.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && !defined(__ILP32__)
#define WX_ARCH AUDIT_ARCH_X86_64
#define WX_X32_BIT 0x40000000u  /* __X32_SYSCALL_BIT */
#elif defined(__aarch64__)
#define WX_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef WX_ARCH

/* The low 32 bits of argument i: every flag tested lives there, and the
 * kernel reads these arguments as int or ignores their high bits. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#else
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i) + 4)
#endif

#define LD(off)         BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(action)     BPF_STMT(BPF_RET | BPF_K, (action))
#define JEQ(k, t, f)    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))
#define JGE(k, t, f)    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (k), (t), (f))
#define JSET(k, t, f)   BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, (k), (t), (f))
#define ALLOW           RET(SECCOMP_RET_ALLOW)
#define DENY            RET(SECCOMP_RET_ERRNO | EPERM)
#define KILL            RET(SECCOMP_RET_KILL_PROCESS)

/*
 * Jumps count the instructions they skip. Each rule is a block that starts
 * with a test of the number (A holds it), skips the whole block when it
 * does not match, and otherwise ends in ALLOW or DENY: so blocks can be
 * read, and counted, one at a time.
 */
static const struct sock_filter wx_filter[] = {
	LD(offsetof(struct seccomp_data, arch)),
	JEQ(WX_ARCH, 1, 0),
	KILL,
	LD(offsetof(struct seccomp_data, nr)),
#ifdef WX_X32_BIT
	/* x32 numbers reach the same kernel code under other numbers; -1 is
	 * what a tracer sets to skip a call (it fails with ENOSYS). */
	JGE(WX_X32_BIT, 0, 2),
	JEQ(0xffffffffu, 1, 0),
	KILL,
#endif

	JEQ(__NR_mmap, 0, 7),
	LD(ARG_LO(2)),                  /* prot */
	JSET(PROT_EXEC, 0, 3),
	JSET(PROT_WRITE, 3, 0),
	LD(ARG_LO(3)),                  /* flags */
	JSET(MAP_ANONYMOUS, 1, 0),
	ALLOW,
	DENY,

	JEQ(__NR_mprotect, 1, 0),
	JEQ(__NR_pkey_mprotect, 0, 4),
	LD(ARG_LO(2)),                  /* prot */
	JSET(PROT_EXEC, 1, 0),
	ALLOW,
	DENY,

	JEQ(__NR_shmat, 0, 4),
	LD(ARG_LO(2)),                  /* shmflg */
	JSET(SHM_EXEC, 1, 0),
	ALLOW,
	DENY,

	JEQ(__NR_personality, 0, 5),
	LD(ARG_LO(0)),                  /* persona, an unsigned int */
	JEQ(0xffffffffu, 1, 0),         /* a query: changes nothing */
	JSET(READ_IMPLIES_EXEC, 1, 0),
	ALLOW,
	DENY,

	ALLOW,
};

/* With READ_IMPLIES_EXEC every readable mapping made from now on, the heap
 * included, would be executable. A constructor that ran before ours may
 * have set it (execve of a 64-bit program clears it on x86-64; other
 * architectures keep what setarch -X set): clear it while we still may. */
static int clear_read_implies_exec(void)
{
	int persona = personality(0xffffffff);
	if (persona == -1 || !(persona & READ_IMPLIES_EXEC))
		return 0;
	if (personality((unsigned long)persona & ~READ_IMPLIES_EXEC) == -1)
		return -errno;
	return 0;
}

/* One line of /proc/self/maps, "lo-hi rwxp offset dev inode path": if it
 * is anonymous (inode 0), writable and executable, keep only its read and
 * write rights. A file's writable, executable segment holds the program's
 * code: taking its execute right would crash the program, so it stays. */
static void drop_exec_if_writable(const char *line)
{
	char *end, *perms;
	unsigned long lo = strtoul(line, &end, 16);
	if (*end != '-')
		return;
	unsigned long hi = strtoul(end + 1, &perms, 16);
	if (*perms != ' ' || perms[2] != 'w' || perms[3] != 'x')
		return;
	strtoul(perms + 5, &end, 16);                   /* offset */
	end = strchr(end + 1, ' ');                     /* past the device */
	if (!end || strtoul(end, NULL, 10) != 0)        /* the inode */
		return;
	mprotect((void *)lo, hi - lo, PROT_WRITE | (perms[1] == 'r' ? PROT_READ : 0));
}

/* Memory the kernel made writable and executable at execve, where no filter
 * sees it (the stack of a program linked with an executable stack), would
 * stay so. No stdio: this may run before the heap. The buffer holds a
 * whole line (a path is at most PATH_MAX). */
static void drop_wx_mappings(void)
{
	char buf[8192];
	size_t have = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			drop_exec_if_writable(line);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof buf - 1)
			have = 0;       /* no such line: give up on it */
	}
	close(fd);
}

int seccomp_lock_wx(void)
{
	struct sock_fprog prog = {
		.len = sizeof wx_filter / sizeof wx_filter[0],
		.filter = (struct sock_filter *)wx_filter,
	};
	int rc = clear_read_implies_exec();
	if (rc != 0)
		return rc;
	drop_wx_mappings();
	/* Without no_new_privs an unprivileged process may not install a
	 * filter; it also keeps a set-uid child from shedding it. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -errno;
	/* TSYNC: a thread some library's constructor started gets it too. */
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
	if (r > 0)
		return -EBUSY;  /* a thread could not be synchronised */
	return r == 0 ? 0 : -errno;
}

#else

int seccomp_lock_wx(void)
{
	return -ENOSYS;         /* no filter written for this architecture */
}

#endif

__attribute__((constructor)) static void seccomp_at_start(void)
{
	/* A glance first: the configuration is parsed when it is first needed. */
	if (!secure_getenv("LABYRINTH_SECCOMP") || config_get()->seccomp != CFG_SECCOMP_WX)
		return;
	if (seccomp_lock_wx() != 0) {
		report_warning("LABYRINTH_SECCOMP: the filter could not be installed; "
			       "running without it", NULL, NULL);
	}
}

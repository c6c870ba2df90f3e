/*
 * seccomp: LABYRINTH_SECCOMP=wx. After start-up (when the library's
 * constructors run, the loader has mapped and relocated every library),
 * install a filter that refuses to make anonymous memory executable, so a
 * heap overflow that wins control of data cannot turn the heap into code.
 *
 * A filter sees only a system call's arguments, never what memory an
 * address is. So: mmap with PROT_EXEC and MAP_ANONYMOUS is refused;
 * mprotect and pkey_mprotect that ask for PROT_EXEC are refused whatever the
 * memory (that is how anonymous memory would become executable); shmat with
 * SHM_EXEC is refused. mmap of a file with PROT_EXEC, which is how the
 * loader maps libraries (dlopen too), is allowed. Refusals fail with EPERM.
 * The filter is inherited by children and kept across execve.
 */
#include "seccomp_wx.h"
#include "config.h"
#include "report.h"

#include <errno.h>
#include <stdlib.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/shm.h>

static int add_exec_rules(scmp_filter_ctx f)
{
	uint32_t deny = SCMP_ACT_ERRNO(EPERM);
	int rc = seccomp_rule_add(f, deny, SCMP_SYS(mmap), 2,
				  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC),
				  SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
	if (rc == 0)
		rc = seccomp_rule_add(f, deny, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
	if (rc == 0)
		rc = seccomp_rule_add(f, deny, SCMP_SYS(pkey_mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
	if (rc == 0)
		rc = seccomp_rule_add(f, deny, SCMP_SYS(shmat), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC));
	return rc;
}

int seccomp_lock_wx(void)
{
	/* Everything else is allowed; system calls of another architecture
	 * (int 0x80 on x86-64) kill the process, libseccomp's default, so the
	 * filter cannot be gone around through the 32-bit table. */
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
	if (!f)
		return -ENOMEM;
	int rc = add_exec_rules(f);
	if (rc == 0)
		rc = seccomp_load(f);   /* sets no_new_privs first */
	seccomp_release(f);
	return rc;
}

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

/* seccomp: the LABYRINTH_SECCOMP=wx filter (no executable anonymous memory). */
#ifndef LAB_SECCOMP_WX_H
#define LAB_SECCOMP_WX_H

/* Install the filter in this process (and its future children);
 * 0, or a negative errno. */
int seccomp_lock_wx(void);

#endif

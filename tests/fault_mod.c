/*
 * A module tests/fault_probe dlopens (so that the loader's link map for it
 * is a heap block): its function calls back into the program, so a fault
 * there has a frame of this module on its stack.
 */
__attribute__((noinline)) void fault_mod_call(void (*f)(char *, long), char *p, long i)
{
	f(p, i);
	__asm__ volatile("" ::: "memory");     /* not a tail call */
}

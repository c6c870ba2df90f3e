/* annotate: whether this process runs under valgrind (see annotate.h). */
#include "annotate.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
bool annotate_valgrind;

/* Before any allocation: the first malloc comes after the constructors of
 * the preloaded library, and valgrind answers from the first instruction. */
__attribute__((constructor)) static void annotate_detect(void)
{
	annotate_valgrind = RUNNING_ON_VALGRIND != 0;
}
#endif

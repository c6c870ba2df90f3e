/* stats: counters of a labyrinth and the summary line at exit. */
#ifndef LAB_STATS_H
#define LAB_STATS_H

#include "lab.h"
#include "labyrinth.h"

void stats_collect(struct labyrinth *lab, labyrinth_stats_t *out);
/* "labyrinth: stats: ..." on fd, written without allocating. */
void stats_print(struct labyrinth *lab, int fd);
/* With LABYRINTH_STATS on: keep a copy of stderr for the summary at exit. */
void stats_hold_stderr(void);

#endif

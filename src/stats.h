/* stats: counters of a labyrinth and the summary line at exit. */
#ifndef LAB_STATS_H
#define LAB_STATS_H

#include "lab.h"
#include "labyrinth.h"

#include <stdbool.h>

/* The counters; cheap enough for mallinfo (no walk, no /proc). */
void stats_collect(struct labyrinth *lab, labyrinth_stats_t *out);
/* Also guard_pages (a walk of the index) and mappings (/proc/self/maps). */
void stats_collect_all(struct labyrinth *lab, labyrinth_stats_t *out);
/* LABYRINTH_STATS=json:FILE ("%p" in it becomes the pid). */
bool stats_write_json(struct labyrinth *lab, const char *path);
/* "labyrinth: stats: ..." on fd, written without allocating. */
void stats_print(struct labyrinth *lab, int fd);
/* With LABYRINTH_STATS on: keep a copy of stderr for the summary at exit. */
void stats_hold_stderr(void);

#endif

/*
 * stats: what a labyrinth has done, for the API, mallinfo, and the one-line
 * summary that LABYRINTH_STATS=1 prints at exit.
 */
#include "stats.h"
#include "config.h"
#include "guarded.h"
#include "os.h"
#include "report.h"

#include <fcntl.h>
#include <unistd.h>

/* A copy of stderr taken at start-up: many programs (coreutils, xz) close
 * fd 2 before they exit, and the summary would be lost. */
static int summary_fd = -1;

void stats_hold_stderr(void)
{
	if (summary_fd < 0)
		summary_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
}

void stats_collect(struct labyrinth *lab, labyrinth_stats_t *out)
{
	*out = (labyrinth_stats_t){ 0 };
	uint64_t guarded_live;
	guarded_counts(lab, &out->allocations, &out->frees, &guarded_live);
	out->allocations += atomic_load(&lab->large_allocs);
	out->frees += atomic_load(&lab->large_frees);
	for (unsigned i = 0; i < lab->narenas; i++) {
		out->allocations += atomic_load(&lab->arenas[i].allocs);
		out->frees += atomic_load(&lab->arenas[i].frees);
	}
	lab_note_peak(lab);
	out->live_bytes = lab_live_bytes(lab);
	out->peak_live_bytes = atomic_load(&lab->peak_live);
	out->live_rooms = atomic_load(&lab->maze.live_rooms);
	out->rooms_placed = atomic_load(&lab->maze.rooms_placed);
	out->mapped_bytes = atomic_load(&lab->maze.mapped_bytes);
	out->peak_mapped_bytes = atomic_load(&lab->maze.peak_mapped);
	out->maze_bytes = lab->maze.bytes;
	out->guard_mode = atomic_load(&lab->maze.guard_mode) == GUARD_MARKERS
				  ? LAB_GUARD_MARKERS : LAB_GUARD_MPROTECT;
	out->arenas = lab->narenas;
}

void stats_print(struct labyrinth *lab, int fd)
{
	labyrinth_stats_t s;
	stats_collect(lab, &s);
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: stats: allocations ");
	line_dec(&l, s.allocations);
	line_str(&l, ", frees ");
	line_dec(&l, s.frees);
	line_str(&l, ", peak live ");
	line_dec(&l, s.peak_live_bytes >> 10);
	line_str(&l, " KiB, peak mapped ");
	line_dec(&l, s.peak_mapped_bytes >> 10);
	line_str(&l, " KiB, rooms placed ");
	line_dec(&l, s.rooms_placed);
	line_str(&l, ", live rooms ");
	line_dec(&l, s.live_rooms);
	line_str(&l, ", mappings ");
	long maps = os_count_mappings();
	line_dec(&l, maps < 0 ? 0 : (uint64_t)maps);
	line_str(&l, " of ");
	line_dec(&l, (uint64_t)os_read_long_file("/proc/sys/vm/max_map_count", 0));
	line_str(&l, ", guards ");
	line_str(&l, s.guard_mode == LAB_GUARD_MARKERS ? "markers" : "mprotect");
	line_str(&l, "\n");
	line_write(&l, fd);
}

/* Runs when the library unloads or the process exits. */
__attribute__((destructor)) static void stats_at_exit(void)
{
	struct labyrinth *lab = lab_default_if_open();
	if (lab && config_get()->stats)
		stats_print(lab, summary_fd >= 0 ? summary_fd : STDERR_FILENO);
}

#define LAB_API __attribute__((visibility("default")))

LAB_API void labyrinth_get_stats(labyrinth_t *lab, labyrinth_stats_t *out)
{
	if (!lab)
		lab = lab_default();
	if (lab)
		stats_collect(lab, out);
	else
		*out = (labyrinth_stats_t){ 0 };
}

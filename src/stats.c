/*
 * stats: what a labyrinth has done, for the API, mallinfo, and the summary
 * that LABYRINTH_STATS prints (or writes as JSON) at exit. It also draws the
 * heap map (LABYRINTH_MAP) at exit and on SIGUSR2.
 */
#include "stats.h"
#include "config.h"
#include "map.h"
#include "guarded.h"
#include "os.h"
#include "page.h"
#include "report.h"
#include "tcache.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
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
	out->allocations += atomic_load(&lab->large_allocs) + atomic_load(&lab->zero.allocs);
	out->frees += atomic_load(&lab->large_frees) + atomic_load(&lab->zero.frees);
	for (unsigned i = 0; i < lab->narenas; i++) {
		out->allocations += atomic_load(&lab->arenas[i].allocs);
		out->frees += atomic_load(&lab->arenas[i].frees);
		out->quarantined_slots += quarantine_held(&lab->arenas[i].quarantine);
	}
	uint64_t live = 0;
	tcache_counts(lab, &out->allocations, &out->frees, &live, &out->quarantined_slots);
	out->quarantined_regions = __atomic_load_n(&lab->regions.count, __ATOMIC_RELAXED);
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
	out->heap_errors = report_count();
	out->epochs = atomic_load(&lab->maze.epoch);
	out->reserve_pages = page_reserve_total(lab);
	out->reserve_empty = page_reserve_empty(lab);
	out->page_allocations = atomic_load(&lab->page_allocs);
	out->page_frees = atomic_load(&lab->page_frees);
	out->allocations += out->page_allocations;
	out->frees += out->page_frees;
}

void stats_collect_all(struct labyrinth *lab, labyrinth_stats_t *out)
{
	stats_collect(lab, out);
	out->guard_pages = map_guard_pages(lab);
	long maps = os_count_mappings();
	out->mappings = maps < 0 ? 0 : (uint64_t)maps;
	out->max_map_count = (uint64_t)os_read_long_file("/proc/sys/vm/max_map_count", 0);
}

static void item(struct line *l, const char *label, uint64_t n, const char *unit)
{
	line_str(l, label);
	line_dec(l, n);
	line_str(l, unit);
}

void stats_print(struct labyrinth *lab, int fd)
{
	labyrinth_stats_t s;
	stats_collect_all(lab, &s);
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: stats: ");
	config_line_who(&l);    /* a script runs many processes */
	item(&l, "allocations ", s.allocations, "");
	item(&l, ", frees ", s.frees, "");
	item(&l, ", peak live ", s.peak_live_bytes >> 10, " KiB");
	item(&l, ", peak mapped ", s.peak_mapped_bytes >> 10, " KiB");
	item(&l, ", rooms placed ", s.rooms_placed, "");
	item(&l, ", live rooms ", s.live_rooms, "");
	item(&l, ", guard pages ", s.guard_pages, "");
	item(&l, ", mappings ", s.mappings, "");
	item(&l, " of ", s.max_map_count, "");
	item(&l, ", epochs ", s.epochs, "");
	item(&l, ", quarantine ", s.quarantined_slots, " slots");
	item(&l, " and ", s.quarantined_regions, " regions");
	item(&l, ", reserve ", s.reserve_pages, " pages");
	item(&l, " (", s.reserve_empty, " atomic allocations found it empty)");
	if (s.heap_errors)
		item(&l, ", heap errors ", s.heap_errors, "");
	line_str(&l, ", guards ");
	line_str(&l, s.guard_mode == LAB_GUARD_MARKERS ? "markers" : "mprotect");
	line_str(&l, "\n");
	line_write(&l, fd);
}

/* ---- JSON ------------------------------------------------------------- */

struct json {
	struct line l;
	int fd;
	bool first;
};

static void json_field(struct json *j, const char *name, uint64_t v)
{
	if (j->l.len > sizeof j->l.buf - 80) {  /* room for the longest field */
		line_write(&j->l, j->fd);
		j->l.len = 0;
	}
	line_str(&j->l, j->first ? "\n  \"" : ",\n  \"");
	j->first = false;
	line_str(&j->l, name);
	line_str(&j->l, "\": ");
	line_dec(&j->l, v);
}

static void json_write(const labyrinth_stats_t *s, int fd)
{
	struct json j = { .l = { .len = 0 }, .fd = fd, .first = true };
	char name[CFG_NAME_MAX];
	config_process_name(name);      /* printable, without quotes or backslashes */
	line_str(&j.l, "{");
	json_field(&j, "pid", (uint64_t)getpid());
	line_str(&j.l, ",\n  \"program\": \"");
	line_str(&j.l, name);
	line_str(&j.l, "\"");
	json_field(&j, "allocations", s->allocations);
	json_field(&j, "frees", s->frees);
	json_field(&j, "live_bytes", s->live_bytes);
	json_field(&j, "peak_live_bytes", s->peak_live_bytes);
	json_field(&j, "mapped_bytes", s->mapped_bytes);
	json_field(&j, "peak_mapped_bytes", s->peak_mapped_bytes);
	json_field(&j, "maze_bytes", s->maze_bytes);
	json_field(&j, "rooms_placed", s->rooms_placed);
	json_field(&j, "live_rooms", s->live_rooms);
	json_field(&j, "guard_pages", s->guard_pages);
	json_field(&j, "mappings", s->mappings);
	json_field(&j, "max_map_count", s->max_map_count);
	json_field(&j, "epochs", s->epochs);
	json_field(&j, "quarantined_slots", s->quarantined_slots);
	json_field(&j, "quarantined_regions", s->quarantined_regions);
	json_field(&j, "reserve_pages", s->reserve_pages);
	json_field(&j, "reserve_empty", s->reserve_empty);
	json_field(&j, "page_allocations", s->page_allocations);
	json_field(&j, "page_frees", s->page_frees);
	json_field(&j, "heap_errors", s->heap_errors);
	json_field(&j, "arenas", s->arenas);
	line_str(&j.l, ",\n  \"guard_mode\": \"");
	line_str(&j.l, s->guard_mode == LAB_GUARD_MARKERS ? "markers" : "mprotect");
	line_str(&j.l, "\"\n}\n");
	line_write(&j.l, fd);
}

bool stats_write_json(struct labyrinth *lab, const char *pattern)
{
	char path[CFG_PATH_MAX + 32];
	map_expand_path(path, sizeof path, pattern);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return false;
	labyrinth_stats_t s;
	stats_collect_all(lab, &s);
	json_write(&s, fd);
	return close(fd) == 0;
}

/* ---- at exit, when a signal ends the process, and on SIGUSR2 ---------- */

/* A file that cannot be written is said at the end, with the reason, on the
 * copy of stderr: many programs have closed fd 2 by then. */
static void cannot_write(const char *setting, const char *file)
{
	const char *why = errno ? strerrordesc_np(errno) : NULL;
	struct line l = { .len = 0 };
	line_str(&l, "labyrinth: warning: ");
	config_line_who(&l);
	line_str(&l, setting);
	line_str(&l, file);
	line_str(&l, ": cannot write it");
	line_str(&l, why ? ": " : "");
	line_str(&l, why ? why : "");
	line_str(&l, "\n");
	line_write(&l, summary_fd >= 0 ? summary_fd : STDERR_FILENO);
}

static atomic_flag told = ATOMIC_FLAG_INIT;

/* The summary and the map, once: at exit, or when a signal ends the process.
 * Counters, a walk that skips a wing it cannot lock soon, and write(2): no
 * heap and no lock held for long, so a signal handler may call it. */
static void stats_at_end(void)
{
	struct labyrinth *lab = lab_default_if_open();
	const struct config *c = config_get();
	if (!lab || atomic_flag_test_and_set(&told))
		return;
	if (c->stats == CFG_STATS_LINE)
		stats_print(lab, summary_fd >= 0 ? summary_fd : STDERR_FILENO);
	errno = 0;
	if (c->stats == CFG_STATS_JSON && !stats_write_json(lab, c->stats_file))
		cannot_write("LABYRINTH_STATS=json:", c->stats_file);
	errno = 0;
	if (c->map && !map_draw(lab, c->map_file))
		cannot_write("LABYRINTH_MAP=", c->map_file);
}

/* Runs when the library unloads or the process exits. */
__attribute__((destructor)) static void stats_at_exit(void)
{
	stats_at_end();
}

/*
 * The signals that stop a service (systemd sends SIGTERM, a terminal's hang-up
 * SIGHUP, Ctrl-backslash SIGQUIT). Not SIGINT: Python, among others, raises
 * KeyboardInterrupt only where it finds SIGINT at its default, and a program
 * that exits on Ctrl-C gets the summary from exit anyway.
 */
static const int ending_signals[] = { SIGTERM, SIGHUP, SIGQUIT };

/* Tells, then dies of the same signal by its default action: the exit status
 * (and a core for SIGQUIT) are what they would have been without us. */
static void stats_on_signal(int sig)
{
	int saved = errno;
	stats_at_end();
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	raise(sig);             /* blocked while we run: pending until ... */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);       /* ... now */
	errno = saved;
}

/* Draws the map now. The walk takes each wing's lock only if it comes free
 * soon, so a signal that interrupts the allocator skips that wing instead of
 * deadlocking; the picture is written without the heap. */
static void map_on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	struct labyrinth *lab = lab_default_if_open();
	if (lab)
		map_draw(lab, config_get()->map_file);
	errno = saved;
}

/* Only where the program left the default: a signal it ignores or handles is
 * its own (a handler it installs later replaces ours, and its exit tells). */
static void handle_if_default(int sig, void (*handler)(int))
{
	struct sigaction old;
	if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL)
		return;
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof ending_signals / sizeof ending_signals[0]; i++)
		sigaddset(&sa.sa_mask, ending_signals[i]);
	sigaction(sig, &sa, NULL);
}

/* With LABYRINTH_MAP set, SIGUSR2 draws the map; with it or LABYRINTH_STATS,
 * the ending signals tell the summary and the map before the process dies. */
__attribute__((constructor)) static void stats_signals_install(void)
{
	/* A glance first: the configuration is parsed when it is first needed. */
	if (!secure_getenv("LABYRINTH_MAP") && !secure_getenv("LABYRINTH_STATS"))
		return;
	const struct config *c = config_get();
	if (c->map || c->stats != CFG_STATS_OFF)
		stats_hold_stderr();
	if (c->map)
		handle_if_default(SIGUSR2, map_on_signal);
	if (c->map || c->stats != CFG_STATS_OFF)
		for (size_t i = 0; i < sizeof ending_signals / sizeof ending_signals[0]; i++)
			handle_if_default(ending_signals[i], stats_on_signal);
}

#define LAB_API __attribute__((visibility("default")))

LAB_API void labyrinth_get_stats(labyrinth_t *lab, labyrinth_stats_t *out)
{
	if (!lab)
		lab = lab_default();
	if (lab)
		stats_collect_all(lab, out);
	else
		*out = (labyrinth_stats_t){ 0 };
}

/* The heap map and the statistics of src/map.c and src/stats.c. */
#include "helpers.h"
#include "lab.h"
#include "map.h"
#include "stats.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static labyrinth_t *one_arena(void)
{
	labyrinth_options_t o = { .size = sizeof o, .arenas = 1 };
	labyrinth_t *lab = labyrinth_open(&o);
	cr_assert_not_null(lab);
	return lab;
}

/* Run a python3 snippet on a file; its first line of output. */
static void python_on(const char *code, const char *file, char *out, size_t size)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "python3 -c '%s' '%s' 2>&1", code, file);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	out[0] = 0;
	if (!fgets(out, (int)size, f))
		out[0] = 0;
	out[strcspn(out, "\n")] = 0;
	pclose(f);
}

/* Parses the SVG as XML (fails if it is not well formed) and counts boxes. */
static const char count_svg[] =
	"import sys, xml.etree.ElementTree as E\n"
	"r = E.parse(sys.argv[1]).getroot()\n"
	"n = lambda c: sum(1 for e in r.iter(\"{http://www.w3.org/2000/svg}rect\") if e.get(\"class\") == c)\n"
	"print(n(\"room\"), n(\"held\"), n(\"guard\"), r.tag)";

static void temp_name(char *buf, size_t size, const char *ext)
{
	snprintf(buf, size, "/tmp/labyrinth-test-%d-%s", (int)getpid(), ext);
}

Test(map, svg_is_well_formed_and_shows_every_room)
{
	labyrinth_t *lab = one_arena();
	void *large[7];
	for (int i = 0; i < 7; i++)
		large[i] = labyrinth_malloc(lab, 100000);
	for (int i = 0; i < 600; i++)
		cr_assert_not_null(labyrinth_malloc(lab, 40));  /* 48-byte class */
	labyrinth_free(lab, large[3]);  /* its cell is held in the region quarantine */
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	char path[256], out[256], want[256];
	temp_name(path, sizeof path, "map.svg");
	cr_assert(map_draw(lab, path));
	python_on(count_svg, path, out, sizeof out);
	/* 6 large rooms and 2 of 512 slots; live_rooms also counts the held cell */
	snprintf(want, sizeof want, "%llu 1 %llu {http://www.w3.org/2000/svg}svg",
		 (unsigned long long)s.live_rooms - 1, (unsigned long long)s.live_rooms - 1);
	cr_assert_str_eq(out, want);
	cr_assert_eq(s.live_rooms, 6 + 2 + 1, "live rooms %llu", (unsigned long long)s.live_rooms);
	unlink(path);
	labyrinth_close(lab);
}

/* Checks a picture a person can read: the height ends at the last thing
 * drawn, every legend line fits the width (monospace at 11 px: 0.6 em a
 * character), every live room and held region names its address, and the
 * states are patterns, which no size class's colour can be mistaken for. */
static const char readable_svg[] =
	"import sys, xml.etree.ElementTree as E\n"
	"S = \"{http://www.w3.org/2000/svg}\"\n"
	"r = E.parse(sys.argv[1]).getroot()\n"
	"W, H, bottom, wide = int(r.get(\"width\")), int(r.get(\"height\")), 0, 0\n"
	"for e in r.iter():\n"
	"  y = e.get(\"y\")\n"
	"  if y is None: continue\n"
	"  if e.tag == S + \"rect\": bottom = max(bottom, int(y) + int(e.get(\"height\")))\n"
	"  if e.tag == S + \"text\": bottom = max(bottom, int(y) + 3)\n"
	"  if e.get(\"class\") == \"legend\" and int(e.get(\"x\")) + len(e.text) * 6.6 > W - 10: wide += 1\n"
	"boxes = [e for e in r.iter(S + \"rect\") if e.get(\"class\") in (\"room\", \"held\")]\n"
	"named = sum(1 for e in boxes if \"at 0x\" in e.find(S + \"title\").text)\n"
	"css = r.find(S + \"style\").text\n"
	"print(H - bottom, wide, len(boxes), named, \"held{fill:url(\" in css and \"retired{fill:url(\" in css)";

Test(map, the_picture_fits_its_content_and_says_what_each_box_is)
{
	labyrinth_t *lab = one_arena();
	for (size_t size = 16; size <= 4096; size *= 2)
		cr_assert_not_null(labyrinth_malloc(lab, size));
	void *large = labyrinth_malloc(lab, 100000);
	cr_assert_not_null(labyrinth_malloc(lab, 300000));
	labyrinth_free(lab, large);
	char path[256], out[256];
	temp_name(path, sizeof path, "readable.svg");
	cr_assert(map_draw(lab, path));
	python_on(readable_svg, path, out, sizeof out);
	int blank, wide, boxes, named;
	char patterns[16];
	cr_assert_eq(sscanf(out, "%d %d %d %d %15s", &blank, &wide, &boxes, &named, patterns), 5,
		     "%s", out);
	cr_expect(blank >= 0 && blank <= 20, "%d pixels blank below the last box", blank);
	cr_expect_eq(wide, 0, "%d legend lines wider than the picture", wide);
	cr_expect_eq(boxes, 9 + 1 + 1, "%d rooms and held regions drawn", boxes);
	cr_expect_eq(named, boxes, "%d of %d boxes name their address", named, boxes);
	cr_expect_str_eq(patterns, "True", "held and retired cells are not filled with patterns");
	unlink(path);
	labyrinth_close(lab);
}

Test(map, pid_in_the_file_name)
{
	char got[64], want[64];
	map_expand_path(got, sizeof got, "/tmp/x-%p.svg");
	snprintf(want, sizeof want, "/tmp/x-%d.svg", (int)getpid());
	cr_assert_str_eq(got, want);
}

Test(map, an_unwritable_file_is_a_failure_not_a_crash)
{
	labyrinth_t *lab = one_arena();
	cr_assert_not_null(labyrinth_malloc(lab, 10));
	cr_assert_not(map_draw(lab, "/nonexistent-dir/map.svg"));
	labyrinth_close(lab);
}

Test(map, guard_pages_are_counted_per_cell)
{
	labyrinth_t *lab = one_arena();
	/* 100000 bytes: 25 pages open in a room of 28 (class 7); + its guard page */
	for (int i = 0; i < 5; i++)
		cr_assert_not_null(labyrinth_malloc(lab, 100000));
	cr_assert_eq(map_guard_pages(lab), 5 * (28 + 1 - 25));
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.guard_pages, 5 * 4);
	cr_assert_gt(s.max_map_count, 0);
	cr_assert_gt(s.mappings, 0);
	labyrinth_close(lab);
}

Test(map, quarantine_counts_what_it_holds)
{
	labyrinth_t *lab = one_arena();
	for (int i = 0; i < 10; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 64));
	for (int i = 0; i < 3; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 100000));
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.quarantined_slots, 10);
	cr_assert_eq(s.quarantined_regions, 3);
	cr_assert_eq(s.epochs, 0);
	labyrinth_close(lab);
}

static const char read_json[] =
	"import sys, json\n"
	"d = json.load(open(sys.argv[1]))\n"
	"print(d[\"allocations\"], d[\"frees\"], d[\"live_rooms\"], d[\"guard_mode\"], "
	"sorted(d) == sorted(set(d)), \"epochs\" in d and \"reserve_empty\" in d)";

Test(stats, json_is_valid_and_matches_the_counters)
{
	labyrinth_t *lab = one_arena();
	for (int i = 0; i < 50; i++)
		labyrinth_free(lab, labyrinth_malloc(lab, 200));
	cr_assert_not_null(labyrinth_malloc(lab, 30000));
	char path[256], out[256], want[256];
	temp_name(path, sizeof path, "stats.json");
	cr_assert(stats_write_json(lab, path));
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	python_on(read_json, path, out, sizeof out);
	snprintf(want, sizeof want, "51 50 %llu %s True True", (unsigned long long)s.live_rooms,
		 s.guard_mode == LAB_GUARD_MARKERS ? "markers" : "mprotect");
	cr_assert_str_eq(out, want);
	unlink(path);
	labyrinth_close(lab);
}

static void print_summary(void *arg)
{
	stats_print(arg, STDERR_FILENO);
}

Test(stats, the_summary_is_one_line_with_every_field)
{
	labyrinth_t *lab = one_arena();
	cr_assert_not_null(labyrinth_malloc(lab, 100));
	struct outcome o = run_in_child(print_summary, lab);
	static const char *const fields[] = {
		"labyrinth: stats: ", "): allocations 1,", "frees 0", "peak live", "peak mapped",
		"rooms placed 1", "live rooms 1", "guard pages 1", "mappings ", " of ",
		"epochs 0", "quarantine 0 slots and 0 regions", "reserve 0 pages",
		"guards ",
	};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		cr_assert(strstr(o.err, fields[i]), "no '%s' in %s", fields[i], o.err);
	cr_assert(strchr(o.err, '\n') == o.err + strlen(o.err) - 1, "not one line: %s", o.err);
	labyrinth_close(lab);
}

/* A signal handler that interrupts the allocator finds a wing's lock held by
 * its own thread: the walk must skip that wing, not wait for ever. */
Test(map, a_lock_held_by_this_thread_skips_the_wing, .timeout = 20)
{
	labyrinth_t *lab = one_arena();
	cr_assert_not_null(labyrinth_malloc(lab, 64));
	cr_assert_not_null(labyrinth_malloc(lab, 100000));
	struct wing *w = maze_wing_of(&lab->maze, labyrinth_malloc(lab, 64));
	pthread_mutex_lock(&w->lock);
	struct map_visitor v = { 0 };
	cr_assert_eq(map_walk(lab, &v), 1);
	char path[256], out[256];
	temp_name(path, sizeof path, "busy.svg");
	cr_assert(map_draw(lab, path));
	pthread_mutex_unlock(&w->lock);
	python_on(count_svg, path, out, sizeof out);
	cr_assert_str_eq(out, "1 0 1 {http://www.w3.org/2000/svg}svg", "the other wing is drawn");
	FILE *f = fopen(path, "r");
	char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	text[n] = 0;
	fclose(f);
	cr_assert(strstr(text, "busy, not drawn"));
	unlink(path);
	labyrinth_close(lab);
}

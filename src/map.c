/*
 * map: walk the maze index and draw the heap map. Each wing with an extent
 * becomes a band of rows, 128 cells to a row, in address order: free cells
 * light, every taken cell dark (its guard pages) with its open pages drawn
 * over it in the colour of its size class. So a person sees the scatter:
 * rooms at random cells, never touching, a guard page after each.
 *
 * The picture is written with write(2) from a buffer on the stack: it runs
 * at exit and from a SIGUSR2 handler, where the heap may not be touched.
 */
#include "map.h"
#include "report.h"
#include "config.h"
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>      /* rename */
#include <string.h>
#include <unistd.h>

/* ---- the walk ----------------------------------------------------------- */

/* Bounded: a lock held by the thread we interrupted never comes free. */
static bool lock_briefly(pthread_mutex_t *m)
{
	for (int i = 0; i < 2000; i++) {
		if (pthread_mutex_trylock(m) == 0)
			return true;
		sched_yield();
	}
	return false;
}

static void walk_cells(struct wing *w, unsigned index, uint32_t ext,
		       const struct map_visitor *v)
{
	uint32_t room_pages = (uint32_t)(w->room_bytes / PAGE_SIZE);
	for (uint32_t cell = cell_next_taken(w, 0, ext); cell < ext;
	     cell = cell_next_taken(w, cell + 1, ext)) {
		const struct cell_hdr *h = cell_hdr(w, cell);
		struct cell_view c = {
			.wing = index, .cell = cell, .room_pages = room_pages,
			.open_first = h->open_first, .open_end = h->open_end,
			.joined_prev = h->joined_prev != 0, .retired = h->retired != 0,
		};
		v->cell(v->ctx, &c);
	}
}

unsigned map_walk(struct labyrinth *lab, const struct map_visitor *v)
{
	unsigned skipped = 0;
	for (unsigned i = 0; i < lab->maze.nwings; i++) {
		struct wing *w = &lab->maze.wings[i];
		if (atomic_load_explicit(&w->ext_cells, memory_order_acquire) == 0)
			continue;
		bool locked = lock_briefly(&w->lock);
		/* Read under the lock: the extent only grows, and only under it. */
		uint32_t ext = atomic_load_explicit(&w->ext_cells, memory_order_acquire);
		if (v->wing)
			v->wing(v->ctx, w, i, ext);
		if (locked) {
			if (v->cell)
				walk_cells(w, i, ext, v);
			pthread_mutex_unlock(&w->lock);
		} else {
			skipped++;
		}
		if (v->wing_end)
			v->wing_end(v->ctx, i, !locked);
	}
	return skipped;
}

/* A taken cell's pages that are not open are guard pages, its last one too;
 * a joined room has opened the guard page of the cell before it. */
static void count_guards(void *ctx, const struct cell_view *c)
{
	uint64_t *n = ctx;
	*n += c->room_pages + 1 - (c->open_end - c->open_first);
	if (c->joined_prev)
		*n -= 1;
}

uint64_t map_guard_pages(struct labyrinth *lab)
{
	uint64_t n = 0;
	struct map_visitor v = { .cell = count_guards, .ctx = &n };
	map_walk(lab, &v);
	return n;
}

/* ---- output without the heap ------------------------------------------ */

struct out {
	int fd;
	bool failed;
	size_t len;
	char buf[4096];
};

static void out_flush(struct out *o)
{
	size_t done = 0;
	while (done < o->len && !o->failed) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			o->failed = true;
		else
			done += (size_t)n;
	}
	o->len = 0;
}

static void out_str(struct out *o, const char *s)
{
	for (; *s; s++) {
		if (o->len == sizeof o->buf)
			out_flush(o);
		o->buf[o->len++] = *s;
	}
}

static void out_dec(struct out *o, uint64_t v)
{
	char tmp[DEC_DIGITS_MAX];
	out_str(o, dec_digits(tmp, v));
}

/* ---- the picture ------------------------------------------------------ */

#define COLS 128                /* cells per row */
#define CELL_W 8                /* pixels per cell */
#define ROW_H 12
#define BAND_GAP 22             /* the wing's label above its rows */
#define MARGIN 10
#define MAX_ROWS 16384          /* per wing: bigger extents are cut short */

struct draw {
	struct out *o;
	struct labyrinth *lab;
	unsigned y;             /* top of the current wing's rows */
	uint32_t ext, drawn_to; /* cells of the extent; cells drawn so far */
	unsigned wing;
	uint64_t rooms, held, retired;  /* of the current wing */
};

static uint32_t rows_of(uint32_t ext)
{
	uint32_t rows = (ext + COLS - 1) / COLS;
	return rows > MAX_ROWS ? MAX_ROWS : rows;
}

/* A box of one row; hue: the size class's colour (-1: by the CSS class).
 * Hues step by 47 degrees per class, so neighbouring classes read apart. */
static void rect(struct out *o, const char *cls, uint64_t x, uint64_t y, uint64_t w,
		 int wing)
{
	out_str(o, "<rect class=\"");
	out_str(o, cls);
	out_str(o, "\" x=\"");
	out_dec(o, x);
	out_str(o, "\" y=\"");
	out_dec(o, y);
	out_str(o, "\" width=\"");
	out_dec(o, w);
	out_str(o, "\" height=\"10\"");
	if (wing >= 0) {
		out_str(o, " fill=\"hsl(");
		out_dec(o, (uint64_t)wing * 47 % 360);
		out_str(o, wing < SMALL_CLASSES ? ",70%,50%)\"" : ",45%,40%)\"");
	}
	out_str(o, "/>\n");
}

/* Free cells [from, to) of the extent, one rectangle per row they cross. */
static void free_run(struct draw *d, uint32_t from, uint32_t to)
{
	uint32_t limit = rows_of(d->ext) * COLS;
	if (to > limit)
		to = limit;
	while (from < to) {
		uint32_t row_end = (from / COLS + 1) * COLS;
		uint32_t end = to < row_end ? to : row_end;
		rect(d->o, "free", MARGIN + (uint64_t)(from % COLS) * CELL_W,
		     d->y + (uint64_t)(from / COLS) * ROW_H, (uint64_t)(end - from) * CELL_W, -1);
		from = end;
	}
}

static void draw_wing(void *ctx, const struct wing *w, unsigned index, uint32_t ext)
{
	struct draw *d = ctx;
	d->ext = ext;
	d->drawn_to = 0;
	d->wing = index;
	d->rooms = d->held = d->retired = 0;
	out_str(d->o, "<g class=\"wing\" data-class-bytes=\"");
	out_dec(d->o, w->class_size);
	out_str(d->o, "\" data-cells=\"");
	out_dec(d->o, ext);
	out_str(d->o, "\">\n");
}

static void draw_cell(void *ctx, const struct cell_view *c)
{
	struct draw *d = ctx;
	if (c->cell >= rows_of(d->ext) * COLS)
		return;
	free_run(d, d->drawn_to, c->cell);
	d->drawn_to = c->cell + 1;
	uint64_t x = MARGIN + (uint64_t)(c->cell % COLS) * CELL_W;
	uint64_t y = d->y + (uint64_t)(c->cell / COLS) * ROW_H;
	uint32_t open = c->open_end - c->open_first;
	/* The whole cell in guard colour; the open pages over it. */
	rect(d->o, open ? "guard" : c->retired ? "retired" : "held", x, y, CELL_W, -1);
	if (!open) {
		if (c->retired)
			d->retired++;
		else
			d->held++;
		return;
	}
	uint64_t pages = c->room_pages + 1;
	uint64_t x0 = (uint64_t)c->open_first * CELL_W / pages;
	uint64_t wpx = (uint64_t)open * CELL_W / pages;
	rect(d->o, "room", x + x0, y, wpx ? wpx : 1, (int)c->wing);
	d->rooms++;
}

static void draw_wing_end(void *ctx, unsigned index, bool busy)
{
	struct draw *d = ctx;
	struct wing *w = &d->lab->maze.wings[index];
	if (!busy)
		free_run(d, d->drawn_to, d->ext);
	out_str(d->o, "<text x=\"");
	out_dec(d->o, MARGIN);
	out_str(d->o, "\" y=\"");
	out_dec(d->o, d->y - 6);
	out_str(d->o, "\">");
	out_str(d->o, index < SMALL_CLASSES ? "small" : "large");
	out_str(d->o, " class ");
	out_dec(d->o, w->class_size);
	out_str(d->o, " B: ");
	if (busy) {
		out_str(d->o, "busy, not drawn");
	} else {
		out_dec(d->o, d->rooms);
		out_str(d->o, " live rooms, ");
		out_dec(d->o, d->held);
		out_str(d->o, " held, ");
		out_dec(d->o, d->retired);
		out_str(d->o, " retired this epoch, in an extent of ");
		out_dec(d->o, d->ext);
		out_str(d->o, " cells");
		if (d->ext > MAX_ROWS * COLS)
			out_str(d->o, " (cut short)");
	}
	out_str(d->o, "</text>\n</g>\n");
	d->y += rows_of(d->ext) * ROW_H + BAND_GAP;
}

/* The picture's height, from a first look at the extents. The extents may
 * grow before the walk reads them again; the walk draws what it sees, and
 * the picture's viewBox is sized from this first look plus slack. */
static unsigned picture_height(struct labyrinth *lab)
{
	unsigned h = 60;
	for (unsigned i = 0; i < lab->maze.nwings; i++) {
		uint32_t ext = atomic_load_explicit(&lab->maze.wings[i].ext_cells,
						    memory_order_acquire);
		if (ext)
			h += rows_of(ext) * ROW_H + BAND_GAP + 2 * ROW_H;
	}
	return h;
}

static void svg_head(struct out *o, unsigned height)
{
	unsigned width = 2 * MARGIN + COLS * CELL_W;
	out_str(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"");
	out_dec(o, width);
	out_str(o, "\" height=\"");
	out_dec(o, height);
	out_str(o, "\" viewBox=\"0 0 ");
	out_dec(o, width);
	out_str(o, " ");
	out_dec(o, height);
	out_str(o, "\" font-family=\"monospace\" font-size=\"11\">\n"
		   "<title>labyrinth heap map</title>\n"
		   "<style>.free{fill:#eeeeee}.guard{fill:#333333}.held{fill:#884444}.retired{fill:#445588}</style>\n"
		   "<text x=\"10\" y=\"16\">labyrinth heap map of pid ");
	out_dec(o, (uint64_t)getpid());
	out_str(o, ": one box per cell, 128 to a row; colour: the open pages of a "
		   "live room; dark: guard pages; red: a freed large region held "
		   "in quarantine; blue: a room emptied this epoch, closed until it "
		   "ends; light: free</text>\n");
}

static void svg_body(struct out *o, struct labyrinth *lab)
{
	struct draw d = { .o = o, .lab = lab, .y = 60 };
	struct map_visitor v = {
		.wing = draw_wing, .cell = draw_cell, .wing_end = draw_wing_end, .ctx = &d,
	};
	map_walk(lab, &v);
	out_str(o, "</svg>\n");
}

void map_expand_path(char *out, size_t size, const char *pattern)
{
	size_t n = 0;
	for (const char *s = pattern; *s && n + 24 < size; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			char pid[24];
			int i = sizeof pid;
			unsigned long v = (unsigned long)getpid();
			pid[--i] = 0;
			do {
				pid[--i] = (char)('0' + v % 10);
				v /= 10;
			} while (v);
			size_t l = strlen(pid + i);
			memcpy(out + n, pid + i, l);
			n += l;
			s++;
		} else {
			out[n++] = *s;
		}
	}
	out[n] = 0;
}

bool map_draw(struct labyrinth *lab, const char *pattern)
{
	char path[CFG_PATH_MAX + 32], tmp[CFG_PATH_MAX + 48];
	map_expand_path(path, sizeof path, pattern);
	size_t len = strlen(path);
	memcpy(tmp, path, len);
	memcpy(tmp + len, ".tmp", 5);
	struct out o = { .len = 0 };
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o.fd < 0)
		return false;
	svg_head(&o, picture_height(lab));
	svg_body(&o, lab);
	out_flush(&o);
	bool ok = !o.failed && close(o.fd) == 0;
	if (ok && rename(tmp, path) == 0)
		return true;
	unlink(tmp);
	return false;
}

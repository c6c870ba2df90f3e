/*
 * map_svg: the heap map, an SVG picture of the maze index. Each wing with an
 * extent becomes a band of rows, 128 cells to a row, in address order. A
 * cell's state is told by its fill's kind, never by a colour alone: a live
 * room is a solid box in its size class's colour, outlined, over the dark
 * of its guard pages; a held region is hatched, a retired room dotted, a
 * free cell plain light. Rows with no taken cell are folded into one line,
 * so a small heap makes a small picture. Each room carries a <title> (its
 * class, address and what is live in it), which a browser shows on hover.
 *
 * The picture is written with write(2) from a buffer on the stack: it runs
 * at exit and from a SIGUSR2 handler, where the heap may not be touched.
 * Its height is known only at the end, so the header's is written as a
 * fixed-width number and patched in place.
 */
#include "map.h"
#include "config.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>      /* rename */
#include <string.h>
#include <unistd.h>

/* ---- output without the heap ------------------------------------------ */

struct out {
	int fd;
	bool failed;
	size_t len;
	uint64_t flushed;       /* bytes written before buf */
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
	o->flushed += o->len;
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

static void out_hex(struct out *o, uint64_t v)
{
	char tmp[DEC_DIGITS_MAX];
	out_str(o, hex_digits(tmp, v));
}

/* Text from outside (a program's name) as XML character data. */
static void out_xml(struct out *o, const char *s)
{
	char one[2] = { 0, 0 };
	for (; *s; s++) {
		switch (*s) {
		case '<': out_str(o, "&lt;"); break;
		case '>': out_str(o, "&gt;"); break;
		case '&': out_str(o, "&amp;"); break;
		case '"': out_str(o, "&quot;"); break;
		default:
			one[0] = (unsigned char)*s < 0x20 ? '?' : *s;
			out_str(o, one);
		}
	}
}

/* The picture's height, digits wide: a number written now, corrected at
 * the end with pwrite. Leading zeros keep it a valid SVG length. */
#define HEIGHT_DIGITS 9

static uint64_t out_placeholder(struct out *o)
{
	uint64_t at = o->flushed + o->len;
	out_str(o, "000000000");
	return at;
}

static void out_patch(struct out *o, uint64_t at, uint64_t v)
{
	char d[HEIGHT_DIGITS];
	for (int i = HEIGHT_DIGITS - 1; i >= 0; i--, v /= 10)
		d[i] = (char)('0' + v % 10);
	if (pwrite(o->fd, d, sizeof d, (off_t)at) != (ssize_t)sizeof d)
		o->failed = true;
}

/* ---- the picture ------------------------------------------------------ */

#define COLS 128                /* cells per row */
#define CELL_W 8                /* pixels per cell */
#define ROW_H 12
#define BAND_GAP 18             /* the wing's label above its rows */
#define MARGIN 10
#define WIDTH (2 * MARGIN + COLS * CELL_W)
#define LINE_H 15               /* a line of the legend */
#define MAX_ROWS 16384          /* per wing: bigger extents are cut short */

struct draw {
	struct out *o;
	struct labyrinth *lab;
	uint64_t y;             /* top of the row the pen is on */
	uint64_t band_top;      /* top of the current wing's first row */
	uint32_t ext, drawn_to; /* cells of the extent; cells drawn so far */
	uint64_t rooms, held, retired;  /* of the current wing */
};

static uint32_t cells_drawn(uint32_t ext)
{
	return ext > MAX_ROWS * COLS ? MAX_ROWS * COLS : ext;
}

/* A box of one row, left open for a <title>; hue: a size class's colour,
 * or -1 to take the fill from the CSS class. */
static void rect_open(struct out *o, const char *cls, uint64_t x, uint64_t y, uint64_t w,
		      int hue)
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
	if (hue >= 0) {
		out_str(o, " fill=\"hsl(");
		out_dec(o, (uint64_t)hue * 47 % 360);
		out_str(o, hue < SMALL_CLASSES ? ",70%,55%)\"" : ",45%,45%)\"");
	}
	out_str(o, ">");
}

static void rect(struct out *o, const char *cls, uint64_t x, uint64_t y, uint64_t w, int hue)
{
	rect_open(o, cls, x, y, w, hue);
	out_str(o, "</rect>\n");
}

/* The pen moves to the next row once a row is full. */
static void pen_past(struct draw *d, uint32_t cell_end)
{
	d->drawn_to = cell_end;
	if (cell_end % COLS == 0)
		d->y += ROW_H;
}

/* Free cells up to `to`: part rows as boxes; two or more whole rows folded
 * into one dashed line that says how many it stands for. */
static void free_to(struct draw *d, uint32_t to)
{
	while (d->drawn_to < to) {
		uint32_t from = d->drawn_to;
		uint32_t rows = (to - from) / COLS;
		if (from % COLS == 0 && rows >= 2) {
			out_str(d->o, "<g class=\"fold\"><line x1=\"10\" x2=\"");
			out_dec(d->o, WIDTH - MARGIN);
			out_str(d->o, "\" y1=\"");
			out_dec(d->o, d->y + 5);
			out_str(d->o, "\" y2=\"");
			out_dec(d->o, d->y + 5);
			out_str(d->o, "\"/><text x=\"480\" y=\"");
			out_dec(d->o, d->y + 9);
			out_str(d->o, "\">");
			out_dec(d->o, rows);
			out_str(d->o, " rows of free cells</text></g>\n");
			d->drawn_to = from + rows * COLS;
			d->y += ROW_H;
			continue;
		}
		uint32_t row_end = (from / COLS + 1) * COLS;
		uint32_t end = to < row_end ? to : row_end;
		rect(d->o, "free", MARGIN + (uint64_t)(from % COLS) * CELL_W, d->y,
		     (uint64_t)(end - from) * CELL_W, -1);
		pen_past(d, end);
	}
}

static void draw_wing(void *ctx, const struct wing *w, unsigned index, uint32_t ext)
{
	struct draw *d = ctx;
	(void)index;
	d->ext = ext;
	d->drawn_to = 0;
	d->rooms = d->held = d->retired = 0;
	d->band_top = d->y;
	out_str(d->o, "<g class=\"wing\" data-class-bytes=\"");
	out_dec(d->o, w->class_size);
	out_str(d->o, "\" data-cells=\"");
	out_dec(d->o, ext);
	out_str(d->o, "\">\n");
}

/* "64 B class, room at 0x..., 3 of 64 slots live" */
static void room_title(struct out *o, const struct wing *w, const struct cell_view *c)
{
	out_str(o, "<title>");
	out_dec(o, w->class_size);
	out_str(o, c->wing < SMALL_CLASSES ? " B class, room at " : " B class, block at ");
	out_hex(o, (uintptr_t)c->addr + (uint64_t)c->open_first * PAGE_SIZE);
	out_str(o, ", ");
	if (c->slots) {
		out_dec(o, c->slots_live);
		out_str(o, " of ");
		out_dec(o, c->slots);
		out_str(o, " slots live");
	} else {
		out_dec(o, c->bytes_live);
		out_str(o, " bytes live in ");
		out_dec(o, c->open_end - c->open_first);
		out_str(o, " open pages");
	}
	out_str(o, "</title></rect>\n");
}

static void closed_cell(struct draw *d, const struct wing *w, const struct cell_view *c,
			uint64_t x)
{
	rect_open(d->o, c->retired ? "retired" : "held", x, d->y, CELL_W, -1);
	out_str(d->o, "<title>");
	out_dec(d->o, w->class_size);
	out_str(d->o, c->retired ? " B class, room emptied this epoch at "
			  : " B class, freed region held in quarantine at ");
	out_hex(d->o, (uintptr_t)c->addr);
	out_str(d->o, "</title></rect>\n");
	if (c->retired)
		d->retired++;
	else
		d->held++;
}

static void draw_cell(void *ctx, const struct cell_view *c)
{
	struct draw *d = ctx;
	if (c->cell >= cells_drawn(d->ext))
		return;
	free_to(d, c->cell);
	const struct wing *w = &d->lab->maze.wings[c->wing];
	uint64_t x = MARGIN + (uint64_t)(c->cell % COLS) * CELL_W;
	uint32_t open = c->open_end - c->open_first;
	if (!open) {
		closed_cell(d, w, c, x);
	} else {
		/* The whole cell dark (guard pages), its open pages over it. */
		rect(d->o, "guard", x, d->y, CELL_W, -1);
		uint64_t pages = c->room_pages + 1;
		uint64_t x0 = (uint64_t)c->open_first * CELL_W / pages;
		uint64_t wpx = (uint64_t)open * CELL_W / pages;
		rect_open(d->o, "room", x + x0, d->y, wpx ? wpx : 1, (int)c->wing);
		room_title(d->o, w, c);
		d->rooms++;
	}
	pen_past(d, c->cell + 1);
}

static void wing_label(struct draw *d, const struct wing *w, unsigned index, bool busy)
{
	struct out *o = d->o;
	out_str(o, "<text x=\"10\" y=\"");
	out_dec(o, d->band_top - 6);
	out_str(o, "\">");
	out_str(o, index < SMALL_CLASSES ? "small" : "large");
	out_str(o, " class ");
	out_dec(o, w->class_size);
	out_str(o, " B at ");
	out_hex(o, (uintptr_t)cell_addr(w, 0));
	out_str(o, ": ");
	if (busy) {
		out_str(o, "busy, not drawn");
	} else {
		out_dec(o, d->rooms);
		out_str(o, " live, ");
		out_dec(o, d->held);
		out_str(o, " held, ");
		out_dec(o, d->retired);
		out_str(o, " retired this epoch, of ");
		out_dec(o, d->ext);
		out_str(o, " cells");
		if (d->ext > MAX_ROWS * COLS)
			out_str(o, " (cut short)");
	}
	out_str(o, "</text>\n</g>\n");
}

static void draw_wing_end(void *ctx, unsigned index, bool busy)
{
	struct draw *d = ctx;
	if (!busy)
		free_to(d, cells_drawn(d->ext));
	if (d->drawn_to % COLS)                 /* a part row was drawn */
		d->y += ROW_H;
	wing_label(d, &d->lab->maze.wings[index], index, busy);
	d->y += BAND_GAP;
}

/* The legend: one line per state, a sample box before it. Every line is
 * short enough for the picture's width (test_map checks). */
static const struct {
	const char *cls, *text;
} legend[] = {
	{ "key room", "a live room: its open pages, coloured by size class (hover: class, address, use)" },
	{ "key guard", "dark: guard pages (a room's unopened pages and the page after it)" },
	{ "key held", "hatched: a freed large region held in quarantine, closed" },
	{ "key retired", "dotted: a room emptied this epoch, closed until the epoch ends" },
	{ "key free", "light: a free cell; a dashed line folds rows with nothing taken" },
};
#define LEGEND_LINES (sizeof legend / sizeof legend[0])
#define HEAD_H (MARGIN + LINE_H * (LEGEND_LINES + 1) + BAND_GAP)

static uint64_t svg_head(struct out *o)
{
	out_str(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"");
	out_dec(o, WIDTH);
	out_str(o, "\" height=\"");
	uint64_t at = out_placeholder(o);
	out_str(o, "\" font-family=\"monospace\" font-size=\"11\">\n"
		   "<title>labyrinth heap map</title>\n<defs>"
		   "<pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" "
		   "patternTransform=\"rotate(45)\"><rect width=\"4\" height=\"4\" fill=\"#f0d8d8\"/>"
		   "<rect width=\"2\" height=\"4\" fill=\"#222\"/></pattern>"
		   "<pattern id=\"dots\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">"
		   "<rect width=\"4\" height=\"4\" fill=\"#d8e0f0\"/>"
		   "<circle cx=\"2\" cy=\"2\" r=\"1\" fill=\"#222\"/></pattern></defs>\n"
		   "<style>.free{fill:#f4f4f4}.guard{fill:#333}.held{fill:url(#hatch)}"
		   ".retired{fill:url(#dots)}.room{stroke:#000;stroke-width:0.6}"
		   ".key.room{fill:hsl(140,70%,55%)}.fold line{stroke:#999;stroke-dasharray:3 3}"
		   ".fold text{font-size:9px;fill:#666}</style>\n"
		   "<text class=\"legend\" x=\"10\" y=\"20\">labyrinth heap map of pid ");
	out_dec(o, (uint64_t)getpid());
	out_str(o, " (");
	out_xml(o, program_invocation_short_name);
	out_str(o, "): one box per cell of a wing, 128 cells to a row, in address order</text>\n");
	for (size_t i = 0; i < LEGEND_LINES; i++) {
		uint64_t y = 20 + LINE_H * (i + 1);
		rect(o, legend[i].cls, MARGIN, y - 9, CELL_W, -1);
		out_str(o, "<text class=\"legend\" x=\"24\" y=\"");
		out_dec(o, y);
		out_str(o, "\">");
		out_str(o, legend[i].text);
		out_str(o, "</text>\n");
	}
	return at;
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
	uint64_t height_at = svg_head(&o);
	struct draw d = { .o = &o, .lab = lab, .y = HEAD_H };
	struct map_visitor v = {
		.wing = draw_wing, .cell = draw_cell, .wing_end = draw_wing_end, .ctx = &d,
	};
	map_walk(lab, &v);
	out_str(&o, "</svg>\n");
	out_flush(&o);
	out_patch(&o, height_at, d.y - BAND_GAP + MARGIN);
	bool closed = close(o.fd) == 0;
	bool ok = !o.failed && closed;
	if (ok && rename(tmp, path) == 0)
		return true;
	unlink(tmp);
	return false;
}

/*
 * handle: the public face of the page API. Handles carry the version a
 * block had when it was handed out; every use compares it with the block's
 * version word, so a handle kept past a free, a give or a reallocation is
 * caught (a generation never repeats). Giving a block to another thread is
 * one compare-and-swap from "owned by me" to "owned by them".
 */
#include "epoch.h"
#include "lab.h"
#include "page.h"
#include "report.h"
#include "reserve.h"
#include "version.h"
#include "labyrinth.h"

#include <errno.h>

#define LAB_API __attribute__((visibility("default")))
#define GFP_ALL (LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE | LAB_GFP_ZERO | LAB_GFP_NOFAIL)

/* The atomic path must not create the default labyrinth (that maps memory). */
static struct labyrinth *resolve(labyrinth_t *lab, lab_gfp_t flags)
{
	if (lab)
		return lab;
	return flags & LAB_GFP_ATOMIC ? lab_default_if_open() : lab_default();
}

LAB_API void *labyrinth_alloc_pages(labyrinth_t *lab, unsigned order, lab_gfp_t flags)
{
	struct labyrinth *l = resolve(lab, flags);
	if (order >= PAGE_ORDERS || (flags & ~GFP_ALL)) {
		errno = EINVAL;
		return NULL;
	}
	void *p = l ? page_alloc(l, order, flags, NULL) : NULL;
	if (!p && (flags & LAB_GFP_NOFAIL))     /* no labyrinth at all */
		report_fatal("the labyrinth has no exit: page allocation failed, out of memory");
	if (!p)
		errno = ENOMEM;
	return p;
}

LAB_API void *labyrinth_alloc_page(labyrinth_t *lab, lab_gfp_t flags)
{
	return labyrinth_alloc_pages(lab, 0, flags);
}

LAB_API void *labyrinth_alloc_page_atomic_exclusive(labyrinth_t *lab)
{
	return labyrinth_alloc_pages(lab, 0, LAB_GFP_ATOMIC | LAB_GFP_EXCLUSIVE);
}

LAB_API void labyrinth_free_page(labyrinth_t *lab, void *page)
{
	struct labyrinth *l = resolve(lab, LAB_GFP_ATOMIC);
	if (page && l)
		page_free(l, page, 0);
}

LAB_API lab_thread_t labyrinth_thread_self(void)
{
	return page_thread_tag();
}

/* ---- giving ------------------------------------------------------------ */

static int give(struct labyrinth *lab, void *p, uint64_t expect, lab_thread_t to,
		uint64_t *now)
{
	struct wing *w;
	const char *why;
	uint32_t cell = lab ? page_find(lab, p, &w, &why) : CELL_NONE;
	if (cell == CELL_NONE || to == 0 || to >= (1u << V_OWNER_BITS))
		return LAB_PAGE_INVALID;
	struct page_rec *rec = page_rec_of(w, cell);
	uint64_t v = version_read(&rec->version);
	for (;;) {
		if (expect && v != expect)
			return LAB_PAGE_STALE;
		if (v_state(v) != V_OWNED)
			return LAB_PAGE_NOT_ALLOCATED;
		if (rec->kind != PAGE_API)
			return LAB_PAGE_INVALID;
		if (!v_owner(v))
			return LAB_PAGE_NOT_EXCLUSIVE;
		if (v_owner(v) != page_thread_tag())
			return LAB_PAGE_NOT_OWNER;
		uint64_t next = v_next(v, V_OWNED, to);
		if (atomic_compare_exchange_weak_explicit(&rec->version, &v, next,
							  memory_order_acq_rel, memory_order_acquire)) {
			*now = next;
			return LAB_PAGE_OK;
		}
	}
}

LAB_API int labyrinth_page_give(labyrinth_t *lab, void *page, lab_thread_t to)
{
	uint64_t now;
	return give(resolve(lab, LAB_GFP_ATOMIC), page, 0, to, &now);
}

LAB_API int labyrinth_handle_give(labyrinth_t *lab, lab_page_handle_t *h, lab_thread_t to)
{
	if (!h || !h->page || !h->version)
		return LAB_PAGE_INVALID;
	uint64_t now;
	int r = give(resolve(lab, LAB_GFP_ATOMIC), h->page, h->version, to, &now);
	if (r == LAB_PAGE_OK)
		h->version = now;
	return r;
}

LAB_API const char *labyrinth_page_strerror(int code)
{
	switch (code) {
	case LAB_PAGE_OK: return "success";
	case LAB_PAGE_NOT_OWNER: return "the calling thread does not own the page";
	case LAB_PAGE_STALE: return "stale handle: the page changed hands since";
	case LAB_PAGE_NOT_EXCLUSIVE: return "not an exclusive page";
	case LAB_PAGE_NOT_ALLOCATED: return "the page is not allocated";
	case LAB_PAGE_INVALID: return "not a page of this labyrinth, or no such thread";
	default: return "unknown labyrinth page error";
	}
}

/* ---- handles ----------------------------------------------------------- */

LAB_API lab_page_handle_t labyrinth_alloc_handle(labyrinth_t *lab, unsigned order,
						 lab_gfp_t flags)
{
	lab_page_handle_t h = { NULL, 0 };
	struct labyrinth *l = resolve(lab, flags);
	if (order >= PAGE_ORDERS || (flags & ~GFP_ALL) || !l) {
		errno = order >= PAGE_ORDERS || (flags & ~GFP_ALL) ? EINVAL : ENOMEM;
		return h;
	}
	h.page = page_alloc(l, order, flags, &h.version);
	if (!h.page)
		errno = ENOMEM;
	return h;
}

/* The block's version word if p starts a block of lab, else NULL. */
static version_t *version_of(struct labyrinth *lab, const void *p)
{
	struct wing *w;
	const char *why;
	uint32_t cell = lab && p ? page_find(lab, p, &w, &why) : CELL_NONE;
	return cell == CELL_NONE ? NULL : &page_rec_of(w, cell)->version;
}

LAB_API lab_page_handle_t labyrinth_handle_of(labyrinth_t *lab, void *page)
{
	lab_page_handle_t h = { NULL, 0 };
	version_t *vw = version_of(resolve(lab, LAB_GFP_ATOMIC), page);
	uint64_t v = vw ? version_read(vw) : 0;
	if (!vw || v_state(v) != V_OWNED) {
		errno = vw ? ESTALE : EINVAL;
		return h;
	}
	h.page = page;
	h.version = v;
	return h;
}

LAB_API void *labyrinth_handle_page(labyrinth_t *lab, lab_page_handle_t h)
{
	version_t *vw = version_of(resolve(lab, LAB_GFP_ATOMIC), h.page);
	if (!vw || !h.version) {
		errno = EINVAL;
		return NULL;
	}
	if (version_read(vw) != h.version) {
		errno = ESTALE;
		return NULL;
	}
	return h.page;
}

LAB_API void labyrinth_handle_free(labyrinth_t *lab, lab_page_handle_t h)
{
	struct labyrinth *l = resolve(lab, LAB_GFP_ATOMIC);
	if (h.page && l)
		page_free(l, h.page, h.version ? h.version : ~0ULL);
}

/* ---- the reserve and epochs ------------------------------------------- */

LAB_API size_t labyrinth_reserve_order(labyrinth_t *lab, unsigned order, size_t blocks)
{
	struct labyrinth *l = resolve(lab, 0);
	if (!l || order >= PAGE_ORDERS)
		return 0;
	return page_fill(l, order, blocks);
}

LAB_API size_t labyrinth_reserve(labyrinth_t *lab, size_t pages)
{
	return labyrinth_reserve_order(lab, 0, pages);
}

LAB_API size_t labyrinth_reserve_low(labyrinth_t *lab, size_t pages)
{
	struct labyrinth *l = resolve(lab, 0);
	return l ? page_set_low(l, 0, pages) : 0;
}

LAB_API uint64_t labyrinth_epoch(labyrinth_t *lab)
{
	struct labyrinth *l = resolve(lab, LAB_GFP_ATOMIC);
	return l ? epoch_now(&l->maze) : 0;
}

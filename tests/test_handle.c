/*
 * Handles and exclusive ownership: stale handles are refused, gives are one
 * atomic step, and producers that give pages to consumers never share one.
 */
#include "helpers.h"
#include "lab.h"
#include "labyrinth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096


/* ---- handles ---------------------------------------------------------- */

Test(handle, handles_go_stale_when_the_page_changes_hands)
{
	labyrinth_t *lab = open_reserved(4);
	lab_page_handle_t h = labyrinth_alloc_handle(lab, 0, LAB_GFP_ATOMIC);
	cr_assert_not_null(h.page);
	cr_assert_eq(labyrinth_handle_page(lab, h), h.page);
	lab_page_handle_t same = labyrinth_handle_of(lab, h.page);
	cr_assert_eq(same.version, h.version);
	labyrinth_handle_free(lab, h);
	errno = 0;
	cr_assert_null(labyrinth_handle_page(lab, h), "a freed page's handle resolved");
	cr_assert_eq(errno, ESTALE);
	/* The reserve is a stack: the same page comes straight back. */
	lab_page_handle_t again = labyrinth_alloc_handle(lab, 0, LAB_GFP_ATOMIC);
	cr_assert_eq(again.page, h.page);
	cr_assert_neq(again.version, h.version, "a version repeated");
	cr_assert_null(labyrinth_handle_page(lab, h), "a reallocated page's old handle resolved");
	cr_assert_eq(labyrinth_handle_give(lab, &h, 7), LAB_PAGE_STALE);
	labyrinth_handle_free(lab, again);
	labyrinth_close(lab);
}

/* ---- exclusive pages and give --------------------------------------- */

struct taker {
	labyrinth_t *lab;
	lab_thread_t tag;
	void *page;
	atomic_int stage;
};

static void *take_and_free(void *arg)
{
	struct taker *t = arg;
	t->tag = labyrinth_thread_self();
	atomic_store(&t->stage, 1);
	while (atomic_load(&t->stage) != 2)
		;
	memset(t->page, 3, PG);         /* ours now */
	labyrinth_free_page(t->lab, t->page);
	return NULL;
}

Test(handle, give_hands_an_exclusive_page_to_another_thread)
{
	labyrinth_t *lab = open_private(0);
	struct taker t = { .lab = lab };
	pthread_t th;
	pthread_create(&th, NULL, take_and_free, &t);
	while (atomic_load(&t.stage) != 1)
		;
	cr_assert_neq(t.tag, labyrinth_thread_self());
	t.page = labyrinth_alloc_page(lab, LAB_GFP_EXCLUSIVE);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_OK);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_NOT_OWNER, "double give");
	atomic_store(&t.stage, 2);
	pthread_join(th, NULL);
	cr_assert_eq(labyrinth_page_give(lab, t.page, t.tag), LAB_PAGE_NOT_ALLOCATED);
	labyrinth_stats_t s;
	labyrinth_get_stats(lab, &s);
	cr_assert_eq(s.page_frees, 1);
	labyrinth_close(lab);
}

Test(handle, give_errors_have_codes)
{
	labyrinth_t *lab = open_private(0);
	void *shared = labyrinth_alloc_page(lab, 0);
	cr_assert_eq(labyrinth_page_give(lab, shared, 5), LAB_PAGE_NOT_EXCLUSIVE);
	void *mine = labyrinth_alloc_page(lab, LAB_GFP_EXCLUSIVE);
	cr_assert_eq(labyrinth_page_give(lab, mine, 0), LAB_PAGE_INVALID, "to no thread");
	cr_assert_eq(labyrinth_page_give(lab, (char *)mine + 8, 5), LAB_PAGE_INVALID);
	int local;
	cr_assert_eq(labyrinth_page_give(lab, &local, 5), LAB_PAGE_INVALID);
	lab_page_handle_t h = labyrinth_handle_of(lab, mine);
	cr_assert_eq(labyrinth_handle_give(lab, &h, labyrinth_thread_self()), LAB_PAGE_OK);
	cr_assert_eq(labyrinth_handle_page(lab, h), mine, "the new handle resolves");
	cr_assert_str_eq(labyrinth_page_strerror(LAB_PAGE_NOT_OWNER),
			 "the calling thread does not own the page");
	labyrinth_free_page(lab, shared);
	labyrinth_handle_free(lab, h);
	labyrinth_close(lab);
}

/* ---- producers give, consumers free --------------------------------- */

#define PRODUCERS 2
#define CONSUMERS 2
#define PER_PRODUCER 20000
#define MAILBOX 64

struct mailbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	lab_page_handle_t item[MAILBOX];
	size_t head, tail;
	lab_thread_t owner;
	atomic_int ready;
};

static struct mailbox boxes[CONSUMERS];
static labyrinth_t *stress_lab;
static atomic_uchar *owned;     /* per cell of the order-0 page wing */
static atomic_long double_owned, stale, handed;
struct pv {
	uintptr_t page;
	uint64_t version;
};
static struct pv *versions[PRODUCERS];

static atomic_uchar *owned_flag(void *p)
{
	struct wing *w = &stress_lab->maze.wings[stress_lab->page_wing0];
	return &owned[((char *)p - w->base) / w->cell_bytes];
}

static void *producer(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_PRODUCER; i++) {
		lab_gfp_t f = LAB_GFP_EXCLUSIVE | (i % 2 ? LAB_GFP_ATOMIC : 0);
		lab_page_handle_t h = labyrinth_alloc_handle(stress_lab, 0, f);
		if (!h.page)
			h = labyrinth_alloc_handle(stress_lab, 0, LAB_GFP_EXCLUSIVE);
		if (atomic_exchange(owned_flag(h.page), 1))
			atomic_fetch_add(&double_owned, 1);
		struct mailbox *b = &boxes[i % CONSUMERS];
		if (labyrinth_handle_give(stress_lab, &h, b->owner) != LAB_PAGE_OK)
			atomic_fetch_add(&stale, 1);
		versions[id][i] = (struct pv){ (uintptr_t)h.page, h.version };
		pthread_mutex_lock(&b->lock);
		while (b->head - b->tail == MAILBOX)
			pthread_cond_wait(&b->cond, &b->lock);
		b->item[b->head++ % MAILBOX] = h;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct mailbox *b = arg;
	b->owner = labyrinth_thread_self();
	atomic_store(&b->ready, 1);
	for (long n = 0; n < (long)PRODUCERS * PER_PRODUCER / CONSUMERS; n++) {
		pthread_mutex_lock(&b->lock);
		while (b->head == b->tail)
			pthread_cond_wait(&b->cond, &b->lock);
		lab_page_handle_t h = b->item[b->tail++ % MAILBOX];
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		if (labyrinth_handle_page(stress_lab, h) != h.page)
			atomic_fetch_add(&stale, 1);
		atomic_store(owned_flag(h.page), 0);
		labyrinth_handle_free(stress_lab, h);
		atomic_fetch_add(&handed, 1);
	}
	return NULL;
}

static int cmp_pv(const void *a, const void *b)
{
	const struct pv *x = a, *y = b;
	if (x->page != y->page)
		return x->page < y->page ? -1 : 1;
	return x->version < y->version ? -1 : x->version > y->version;
}

Test(handle, producers_give_consumers_free, .timeout = 120)
{
	stress_lab = open_reserved(128);
	struct wing *w = &stress_lab->maze.wings[stress_lab->page_wing0];
	owned = calloc(w->bytes / w->cell_bytes, 1);
	pthread_t p[PRODUCERS], c[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++) {
		pthread_mutex_init(&boxes[i].lock, NULL);
		pthread_cond_init(&boxes[i].cond, NULL);
		pthread_create(&c[i], NULL, consumer, &boxes[i]);
		while (!atomic_load(&boxes[i].ready))
			;
	}
	for (long i = 0; i < PRODUCERS; i++) {
		versions[i] = calloc(PER_PRODUCER, sizeof(struct pv));
		pthread_create(&p[i], NULL, producer, (void *)i);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(p[i], NULL);
	for (int i = 0; i < CONSUMERS; i++)
		pthread_join(c[i], NULL);
	cr_assert_eq(atomic_load(&double_owned), 0, "a page was owned twice");
	cr_assert_eq(atomic_load(&stale), 0, "a give or a handle failed");
	cr_assert_eq(atomic_load(&handed), PRODUCERS * PER_PRODUCER);
	/* A page's generation only grows: no (page, version) is handed out twice. */
	static struct pv all[PRODUCERS * PER_PRODUCER];
	for (int i = 0; i < PRODUCERS; i++)
		memcpy(all + (size_t)i * PER_PRODUCER, versions[i], PER_PRODUCER * sizeof(struct pv));
	qsort(all, PRODUCERS * PER_PRODUCER, sizeof all[0], cmp_pv);
	size_t pages = 1;
	for (size_t i = 1; i < PRODUCERS * PER_PRODUCER; i++) {
		cr_assert(all[i].page != all[i - 1].page || all[i].version != all[i - 1].version,
			  "version %#lx of page %#lx handed out twice", (unsigned long)all[i].version,
			  (unsigned long)all[i].page);
		pages += all[i].page != all[i - 1].page;
	}
	cr_log_info("%zu distinct pages, %d handovers", pages, PRODUCERS * PER_PRODUCER);
	for (int i = 0; i < PRODUCERS; i++)
		free(versions[i]);
	labyrinth_stats_t s;
	labyrinth_get_stats(stress_lab, &s);
	cr_assert_eq(s.page_allocations, PRODUCERS * PER_PRODUCER);
	cr_assert_eq(s.page_frees, s.page_allocations);
	cr_assert_eq(s.allocations, s.frees);
	cr_assert_eq(s.live_bytes, 0);
	cr_assert_geq(s.reserve_pages, 128, "the reserve lost pages: %lu",
		      (unsigned long)s.reserve_pages);
	free(owned);
	labyrinth_close(stress_lab);
}


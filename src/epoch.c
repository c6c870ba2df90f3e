/*
 * epoch: the placement key of every wing is redrawn once per epoch, from a
 * maze-wide ChaCha8 stream kept out of the heap, so no system call is made;
 * knowing a wing's key (say, from a leak of its state) predicts its
 * placements until the epoch ends, and nothing after. Wings catch up lazily,
 * at their next placement, so an epoch's end costs one derivation per wing
 * that still places rooms.
 */
#include "epoch.h"

void epoch_key_locked(struct maze *m, struct wing *w)
{
	pthread_mutex_lock(&m->epoch_lock);
	rng_derive(w->rng, &m->epoch_rng);
	pthread_mutex_unlock(&m->epoch_lock);
	w->epoch = epoch_now(m);
	w->reseeds = atomic_load_explicit(&m->reseeds, memory_order_relaxed);
}

void epoch_release_locked(struct maze *m, struct wing *w)
{
	for (uint32_t c = w->retired_head; c != CELL_NONE;) {
		struct cell_hdr *h = cell_hdr(w, c);
		uint32_t next = h->next_retired;
		h->retired = 0;
		h->next_retired = CELL_NONE;
		cell_mark(w, c, false);
		w->live_cells--;
		c = next;
	}
	w->retired_head = CELL_NONE;
	w->retired_count = 0;
	epoch_key_locked(m, w);
}

void epoch_enter_locked(struct maze *m, struct wing *w)
{
	uint64_t now = epoch_now(m);
	uint64_t reseeds = atomic_load_explicit(&m->reseeds, memory_order_relaxed);
	if (__builtin_expect(now == w->epoch && reseeds == w->reseeds, 1))
		return;
	if (now != w->epoch)
		epoch_release_locked(m, w);
	else
		epoch_key_locked(m, w); /* a forked child: a new key, the same epoch */
}

bool epoch_retire_locked(struct maze *m, struct wing *w, uint32_t cell)
{
	if (!m->epoch_len)
		return false;
	struct cell_hdr *h = cell_hdr(w, cell);
	h->retired = 1;
	h->next_retired = w->retired_head;
	w->retired_head = cell;
	w->retired_count++;
	return true;
}

void epoch_count_placement(struct maze *m)
{
	uint64_t n = atomic_fetch_add_explicit(&m->rooms_placed, 1, memory_order_relaxed) + 1;
	if (m->epoch_len && n % m->epoch_len == 0)
		atomic_fetch_add_explicit(&m->epoch, 1, memory_order_relaxed);
}

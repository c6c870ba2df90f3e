/*
 * tcache_private: thread caches for private labyrinths (labyrinth_open()),
 * the same caches as the default labyrinth's (tcache.c), found another way.
 *
 * A thread names the caches it holds of private labyrinths in a few static
 * TLS entries, each the labyrinth's serial and the cache. A serial is never
 * reused, so an entry whose labyrinth was closed matches no open one, even
 * one opened at the same address: the thread never touches a cache through
 * it again. labyrinth_close() makes the labyrinth's caches blank under the
 * pool's lock (tcache_close()), and the lock decides every race between a
 * close and a thread letting its cache go: the cache's own lab_serial says
 * whether it still belongs to the entry that names it.
 *
 * A thread that uses more labyrinths at once than it has entries lets the
 * oldest entry's cache go idle; one that exits lets them all go. Idle
 * caches wait in their labyrinth's list, batches and quarantine kept (the
 * quarantine's delay survives thread churn), for the next thread of that
 * labyrinth or labyrinth_trim(). They are not given back at exit, as the
 * default labyrinth's are: that would touch the labyrinth's rooms, which a
 * close in another thread may be unmapping.
 */
#include "tcache.h"

#define PRIVATE_CACHES 4

struct private_entry {
	uint64_t serial;        /* 0: unused */
	struct thread_cache *tc;
};

static __thread struct private_entry mine[PRIVATE_CACHES]
	__attribute__((tls_model("initial-exec")));
static __thread unsigned mine_oldest __attribute__((tls_model("initial-exec")));

struct thread_cache *tcache_private_find(const struct labyrinth *lab)
{
	for (unsigned i = 0; i < PRIVATE_CACHES; i++)
		if (mine[i].serial == lab->serial)
			return mine[i].tc;
	return NULL;
}

/* Under the pool's lock: e's cache goes idle if its labyrinth is still
 * open, and e is free. */
static void entry_let_go(struct private_entry *e)
{
	struct thread_cache *tc = e->tc;
	if (e->serial && tc->lab_serial == e->serial) {
		tc->in_use = false;
		tc->next_idle = tc->lab->idle_caches;
		tc->lab->idle_caches = tc;
	}
	e->serial = 0;
	e->tc = NULL;
}

/* Under the pool's lock: an entry to fill, freed if need be. */
static struct private_entry *entry_free(void)
{
	for (unsigned i = 0; i < PRIVATE_CACHES; i++)
		if (!mine[i].serial || mine[i].tc->lab_serial != mine[i].serial)
			return &mine[i];
	struct private_entry *e = &mine[mine_oldest];
	mine_oldest = (mine_oldest + 1) % PRIVATE_CACHES;
	entry_let_go(e);
	return e;
}

/*
 * A thread that is exiting takes the arena path: its exit hook has run,
 * and a cache it took now would never go idle (a pthread key's destructor
 * that frees, say). An idle cache of an older process generation was a forking
 * thread's own, let go in the child (a fifth labyrinth): its batches are
 * the parent's and every sibling's, so they are marked inherited, as
 * tcache_forked() does at that thread's next malloc.
 */
struct thread_cache *tcache_private_attach(struct labyrinth *lab, struct arena *a)
{
	if (tcache_exiting())
		return NULL;
	tcache_pool_lock();
	struct private_entry *e = entry_free();
	bool fresh;
	bool orphan = lab->idle_caches && lab->idle_caches->orphan;
	struct thread_cache *tc = tcache_pool_take(lab, &lab->idle_caches, &fresh);
	if (tc) {
		tc->lab_serial = lab->serial;
		*e = (struct private_entry){ lab->serial, tc };
		if (!fresh && !orphan && tc->gen != generation_now())
			tcache_forked(lab, tc);
	}
	tcache_pool_unlock();
	if (!tc)
		return NULL;
	tcache_rekey(tc, a);
	tc->arena = a;
	tcache_hook_exit();
	return tc;
}

void tcache_private_exit(void)
{
	tcache_pool_lock();
	for (unsigned i = 0; i < PRIVATE_CACHES; i++)
		entry_let_go(&mine[i]);
	tcache_pool_unlock();
}

bool tcache_private_mine(const struct thread_cache *tc)
{
	for (unsigned i = 0; i < PRIVATE_CACHES; i++)
		if (mine[i].serial && mine[i].tc == tc && tc->lab_serial == mine[i].serial)
			return true;
	return false;
}

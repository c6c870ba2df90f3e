/*
 * A library whose constructor makes 40 pthread keys, as some libraries'
 * constructors do. Loaded before the preload's constructor runs, it leaves
 * every key made after it (a key labyrinth made, or the program's) at 40 or
 * past: glibc keeps the values of those in blocks it callocs, that is in
 * labyrinth's heap. tests/test_tcache.sh runs tests/tcache_probe with it.
 */
#include <pthread.h>

#define LIBKEYS_N 40

pthread_key_t libkeys[LIBKEYS_N];
int libkeys_made;

__attribute__((constructor)) static void make_keys(void)
{
	for (int i = 0; i < LIBKEYS_N; i++)
		libkeys_made += pthread_key_create(&libkeys[i], NULL) == 0;
}

#!/bin/bash
# The thread cache under the preload, in a process where a library made 40
# pthread keys before labyrinth's constructor ran (tests/libkeys.c), so
# glibc keeps the values of every later key in blocks of labyrinth's heap.
# Runs tests/tcache_probe; prints TAP.
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
probe=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests/tcache_probe
if [ ! -f "$lib" ] || [ ! -x "$probe" ]; then
	echo "Bail out! missing $lib or $probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"
run() { timeout 300 env LD_PRELOAD="$lib" "$probe" "$@" 2>&1; }

# An attacker who overwrites the values glibc keeps in the heap for a
# thread (any key's) with a fake thread cache, then arms it with an address
# of their choosing, must not get that address from malloc: no cache is
# ever found through heap memory. (Before: labyrinth's key was 40, its value
# the cache; the fake was adopted and malloc returned the chosen address.)
out=$(run attack)
echo "# attack: $out"
check '[[ $out == *"libkeys=40 "* ]]' "the library made its 40 keys first" "$out"
check '[[ $out == *"adopted=0 chosen=0"* ]]' \
	"a fake cache put in the heap's key blocks is never adopted" "$out"

# Threads that set a key past 31 before their first malloc (glibc callocs
# its block for it, from inside which the thread's cache is made): each
# thread's cache must still come back at exit. Before: 1.9 MB -> 196 MB.
out=$(run keys)
echo "# keys: $out"
if [[ $out =~ key=([0-9]+)\ before=([0-9]+)\ after=([0-9]+) ]]; then
	key=${BASH_REMATCH[1]} before=${BASH_REMATCH[2]} after=${BASH_REMATCH[3]}
	check '[ "$key" -ge 32 ]' "the program's key is past 31 ($key)" "$out"
	check '[ $((after - before)) -lt 32768 ]' \
		"2,000 threads setting a key before their first malloc: VmRSS +$((after - before)) kB" \
		"$out"
else
	not_ok "keys: $out"
fi

# malloc_trim gives memory back, never a quarantined address early: a
# freed 64-byte block never comes back within the next 32 mallocs (before:
# 882 times in 2,000).
out=$(run trim)
echo "# trim: $out"
check '[[ $out == "returned=0" ]]' "malloc_trim keeps freed addresses quarantined" "$out"

# A child whose threads resize in place (realloc within a class, the fast
# path) blocks its parent made, and forks: its children check every live
# block at exit, and none may take a block caught midway for damage (the
# block takes the child's generation first). Before: about 5 in 100 died.
out=$(LABYRINTH_EXIT_CHECK=1 run forkresize)
echo "# forkresize: ${out//$'\n'/ | }"
check '[[ $out == "died=0" ]]' "no child takes a block resized at its fork for damage" "$out"

# The miss overlap of releases (each slot's record fetched a few slots
# ahead): gcc dropped the calls of the prefetch helpers as calls without
# effect, and the library had no prefetch at all. (malloc prefetches
# nothing since the fast path: see tcache_hand_out.)
if [[ $(uname -m) == x86_64 ]] && command -v objdump >/dev/null; then
	prefetches=$(objdump -d "$lib" | grep -c prefetch)
	check '[ "$prefetches" -ge 3 ]' "the library prefetches ($prefetches instructions)" \
		"$prefetches"
else
	skip "prefetch instructions (not x86_64, or no objdump)"
fi
echo "1..$n"

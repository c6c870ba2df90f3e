#!/bin/bash
# What a process pays for labyrinth at start-up, in system calls, counted
# with tests/syscount (ptrace): a program that never allocates pays only
# for loading the library; the allocator's own start-up is a handful of
# calls, and each room it opens one more. Prints TAP.
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
bin=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests
if [ ! -f "$lib" ] || [ ! -x "$bin/syscount" ] || [ ! -x "$bin/startup_probe" ]; then
	echo "Bail out! missing $lib, $bin/syscount or $bin/startup_probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"

# The calls of `prog`, without and with the preload (the counter itself is
# never preloaded: only the traced program is).
calls() { "$bin/syscount" "$@" 2>/dev/null | tail -n 1; }
lab_calls() { "$bin/syscount" env LD_PRELOAD="$lib" "$@" 2>/dev/null | tail -n 1; }
env_calls() { "$bin/syscount" env "$@" 2>/dev/null | tail -n 1; }

none_glibc=$(env_calls "$bin/startup_probe" none)
none_lab=$(lab_calls "$bin/startup_probe" none)
one_lab=$(lab_calls "$bin/startup_probe" one 16)
five_lab=$(lab_calls "$bin/startup_probe" one 16 100 1000 10000 100000)
echo "# no allocation: $none_glibc calls with glibc, $none_lab with labyrinth"
echo "# one allocation: $one_lab; five of five sizes: $five_lab"

check '[ -n "$none_glibc" ] && [ "$none_glibc" -gt 0 ]' "the counter counts" "'$none_glibc'"
# Loading the library (and its dependencies) is all a program that never
# allocates pays: nothing is initialised until the first malloc.
check '[ $((none_lab - none_glibc)) -le 16 ]' \
	"a program that never allocates pays only for loading the library" \
	"$none_lab against $none_glibc"
# The allocator's start-up: its reservations, its seeds, a thread cache
# and the first room; no call per wing beyond opening a room.
check '[ $((one_lab - none_lab)) -le 24 ]' \
	"the first allocation costs at most 24 system calls" "$((one_lab - none_lab))"
check '[ $((five_lab - one_lab)) -le 8 ]' \
	"four more size classes cost about a call each" "$((five_lab - one_lab))"

if [ -x /bin/ls ]; then
	ls_glibc=$(env_calls ls /)
	ls_lab=$(lab_calls ls /)
	echo "# ls /: $ls_glibc calls with glibc, $ls_lab with labyrinth"
	check '[ $((ls_lab - ls_glibc)) -le 64 ]' "ls / makes at most 64 more system calls" \
		"$ls_lab against $ls_glibc"
else
	skip "ls / (no /bin/ls)"
fi
echo "1..$n"

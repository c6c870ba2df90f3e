#!/bin/bash
# Where the maze lands, across processes: a leaked address of the C library
# (or of the preload library, the program or the loader) must not give the
# heap's. tests/aslr_probe runs the preload RUNS times and prints the
# collision entropy of each distance; RUNS runs can show at most
# log2(RUNS^2/2) bits (25.6 for 10,000), printed as ">BITS" when no two runs
# agreed. Then again with the kernel's randomisation off (personality
# ADDR_NO_RANDOMIZE, as setarch -R), where only the allocator's own draw is
# left. The maze index and the guarded region (LABYRINTH_SAMPLE is set) are
# placed apart: neither may say where the maze is. Where mmap put them, the
# maze's distance from every library took about 9 bits, none at all with
# randomisation off, and the index lay right below the maze. Prints TAP.
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
probe=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests/aslr_probe
if [ ! -f "$lib" ] || [ ! -x "$probe" ]; then
	echo "Bail out! missing $lib or $probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"
runs=${LAB_TEST_ASLR_RUNS:-10000}    # fewer than 2,000 cannot show 20 bits

# at_least FILE NAME BITS: the entropy NAME in FILE is BITS or more.
at_least() {
	awk -v name="$2" -v min="$3" '$1 == name { v = $2; sub(/^>/, "", v); found = 1
		exit !(v + 0 >= min) } END { if (!found) exit 1 }' "$1"
}
value() { awk -v name="$2" '$1 == name { print $2 }' "$1"; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for mode in randomised norandom; do
	arg=; [ $mode = norandom ] && arg=norandom
	if ! LABYRINTH_SAMPLE=1000 timeout 300 "$probe" runs "$runs" "$lib" $arg >"$out"; then
		not_ok "$mode: $runs runs of the probe"
		continue
	fi
	echo "# $mode, $runs runs: maze $(value "$out" maze) bits;" \
		"from the maze to libc $(value "$out" maze-libc), the preload" \
		"$(value "$out" maze-preload), the program $(value "$out" maze-program)," \
		"the loader $(value "$out" maze-loader); from the first allocation to libc" \
		"$(value "$out" first-libc); libc's place in a span $(value "$out" libc-in-span);" \
		"from the maze to its index $(value "$out" maze-index), to the guarded region" \
		"$(value "$out" maze-guarded); from libc to the index $(value "$out" index-libc)," \
		"to the guarded region $(value "$out" guarded-libc)"
	check "at_least $out maze 20" "$mode: the maze's base has 20 bits or more" \
		"$(value "$out" maze) bits"
	for what in libc preload program loader; do
		check "at_least $out maze-$what 20" \
			"$mode: the maze's base given the $what's has 20 bits or more" \
			"$(value "$out" maze-$what) bits"
	done
	check "at_least $out maze-index 20" \
		"$mode: the maze's base given its index's address has 20 bits or more" \
		"$(value "$out" maze-index) bits"
	check "at_least $out maze-guarded 20" \
		"$mode: the maze's base given the guarded region's has 20 bits or more" \
		"$(value "$out" maze-guarded) bits"
	check "at_least $out index-libc 20" \
		"$mode: the maze index's address given libc's has 20 bits or more" \
		"$(value "$out" index-libc) bits"
	check "at_least $out guarded-libc 20" \
		"$mode: the guarded region's address given libc's has 20 bits or more" \
		"$(value "$out" guarded-libc) bits"
	check "at_least $out maze-zero 20" \
		"$mode: the maze's base given the zero region's has 20 bits or more" \
		"$(value "$out" maze-zero) bits"
	check "at_least $out zero-libc 20" \
		"$mode: the zero region's address given libc's has 20 bits or more" \
		"$(value "$out" zero-libc) bits"
	if [ $mode = norandom ]; then
		check "[ \"\$(value $out libc)\" = 0.0 ]" \
			"norandom: the kernel put the C library at one address" "$(value "$out" libc)"
	fi
done
echo "1..$n"

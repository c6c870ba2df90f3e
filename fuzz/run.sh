#!/bin/bash
# make check's part of fuzzing: replay every corpus file through every
# harness (plain build; the ops harness also in the guard-all, sampling and
# mprotect modes), then, when AFL++ is installed, fuzz each harness for
# FUZZ_SECONDS (default 60; 0 skips) and fail on any crash or hang (an
# input running 5 s: a loaded CI machine must not turn slowness into one).
# Prints TAP; each AFL run's execs/s goes into the log.
src=$(cd "$(dirname "$0")/.." && pwd)
build=${LAB_TEST_BUILDDIR:-$src}
harnesses="ops config"
seconds=${FUZZ_SECONDS:-60}
. "$src/tests/tap.sh"

replay() {      # name, harness, env...
	local name=$1 h=$2 out
	shift 2
	if out=$(env "$@" timeout 600 "$build/fuzz/replay-$h" "$src/fuzz/corpus/$h" 2>&1 >/dev/null) &&
		! grep -q "invariant broken" <<<"$out"; then
		ok "replay $h corpus$name ($(ls "$src/fuzz/corpus/$h" | wc -l) inputs)"
	else
		not_ok "replay $h corpus$name"
		grep -v "^labyrinth: " <<<"$out" | tail -5 | sed 's/^/# /'
	fi
}

for h in $harnesses; do
	replay "" "$h"
done
replay " in guard-all mode" ops LABYRINTH_GUARD_ALL=1
replay " sampling one in 3" ops LABYRINTH_SAMPLE=3
replay " with mprotect guards" ops LABYRINTH_GUARD=mprotect

# ---- short AFL++ campaigns ------------------------------------------------
afl_skip() {
	for h in $harnesses; do skip "afl-fuzz $h for ${seconds}s: $1"; done
	echo "1..$n"
	exit 0
}
[ "$seconds" -gt 0 ] 2>/dev/null || afl_skip "FUZZ_SECONDS=$seconds"
[ -z "${LAB_TEST_SANITIZERS:-}" ] || afl_skip "sanitizer build (the normal build fuzzes)"
command -v afl-fuzz >/dev/null || afl_skip "afl-fuzz is not installed"
make -s -C "$build" fuzz >/dev/null 2>&1 || afl_skip "make fuzz failed (no AFL++ compiler?)"

for h in $harnesses; do
	out=$(mktemp -d)
	dict=()
	[ "$h" = config ] && dict=(-x "$src/fuzz/labyrinth.dict")
	AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
		AFL_NO_AFFINITY=1 AFL_QUIET=1 \
		nice -n 10 timeout $((seconds + 120)) afl-fuzz -V "$seconds" -t 5000 -i "$src/fuzz/corpus/$h" \
		-o "$out" "${dict[@]}" -- "$build/fuzz/afl-$h" >"$out/log" 2>&1
	stats=$out/default/fuzzer_stats
	eps=$(sed -n 's/^execs_per_sec *: *//p' "$stats" 2>/dev/null)
	execs=$(sed -n 's/^execs_done *: *//p' "$stats" 2>/dev/null)
	crashes=$(find "$out/default/crashes" "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
	echo "# afl-fuzz $h: ${execs:-0} execs, ${eps:-0} execs/s, $crashes crashes or hangs"
	if [ -f "$stats" ] && [ "$crashes" -eq 0 ]; then
		ok "afl-fuzz $h for ${seconds}s: no crash (${eps} execs/s)"
	else
		not_ok "afl-fuzz $h for ${seconds}s: $crashes crashes or hangs"
		tail -5 "$out/log" | sed 's/^/# /'
		for f in "$out"/default/crashes/id:*; do
			[ -f "$f" ] && echo "# finding: $(base64 -w0 "$f")"
		done
	fi
	rm -rf "$out"
done

# ---- the planted 1-byte overflow of fuzz/demo-overflow.c -----------------
# AFL++ with the preload in guard-all mode must find it; with glibc's malloc
# it must not (the byte lands in the chunk's slack). Stops at the first find.
demo() {        # preload or "", then LABYRINTH_GUARD_ALL; prints the finds
	local out
	out=$(mktemp -d)
	env ${1:+AFL_PRELOAD=$1} LABYRINTH_GUARD_ALL=$2 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 \
		AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_BENCH_UNTIL_CRASH=1 \
		nice -n 10 timeout $((demo_seconds + 120)) afl-fuzz -V "$demo_seconds" \
		-i "$src/fuzz/corpus/demo" -o "$out" -- "$build/fuzz/afl-demo-overflow" >/dev/null 2>&1
	find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l
	rm -rf "$out"
}
demo_seconds=$((seconds < 30 ? seconds : 30))
preload=$build/preload/.libs/liblabyrinth-preload.so
with=$(demo "$preload" 1)
without=$(demo "" 0)
echo "# demo-overflow: $with finds with LABYRINTH_GUARD_ALL=1, $without with glibc"
if [ "$with" -gt 0 ] && [ "$without" -eq 0 ]; then
	ok "afl-fuzz finds the planted 1-byte overflow with LABYRINTH_GUARD_ALL=1, not with glibc"
else
	not_ok "planted overflow: $with finds in guard-all mode, $without with glibc"
fi
echo "1..$n"

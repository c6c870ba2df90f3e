#!/bin/bash
# What LABYRINTH_SAMPLE=1000 costs a real program: labyrinth against itself,
# not against glibc, since the question is what turning sampling on in
# production adds to the default mode.
#
#   bench/samplecost.sh -p PRELOAD.so [-b BASE.so] [-s TOP_SRCDIR] [-n RUNS]
#
# -b: another build of the preload (the one before a change), measured in
# the same runs, interleaved with the first, so that a before/after
# comparison sees the same machine load.
#
# Each workload runs RUNS times in the default mode and RUNS times with
# LABYRINTH_SAMPLE=1000, alternating which goes first (ABBA), so that drifting
# machine load falls on both alike. The figure is CPU time, user + system,
# of the process (bash's `time`): unlike wall time it does not count the
# time the process waited for a core another engineer's job held. Prints
# medians and their ratio; exits 1 if a run fails.
set -u
preload=''
base=''
srcdir=$(dirname "$0")/..
runs=7
while getopts p:b:s:n: opt; do
	case $opt in
	p) preload=$OPTARG ;;
	b) base=$OPTARG ;;
	s) srcdir=$OPTARG ;;
	n) runs=$OPTARG ;;
	*) echo "usage: $0 -p PRELOAD.so [-b BASE.so] [-s TOP_SRCDIR] [-n RUNS]" >&2; exit 2 ;;
	esac
done
if [ -z "$preload" ]; then
	echo "usage: $0 -p PRELOAD.so [-b BASE.so] [-s TOP_SRCDIR] [-n RUNS]" >&2
	exit 2
fi
python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || python=''
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# cpu LIB VAR=VALUE... COMMAND...: the run's user + system seconds under
# the preload LIB, or FAILED.
cpu() {
	local TIMEFORMAT='%3U %3S' t lib=$1
	shift
	t=$( { time env LD_PRELOAD="$lib" "$@" >/dev/null 2>"$err"; } 2>&1 ) || {
		echo FAILED
		return
	}
	awk '{ printf "%.3f\n", $1 + $2 }' <<<"$t"
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

status=0
# pair LIB WHAT: one run of the default mode and one with sampling, in the
# order the run's number says (ABBA); their times in $a and $b. If either
# failed: says so (WHAT names the build), marks the status, returns 1.
pair() {
	if [ $((i % 2)) -eq 1 ]; then
		a=$(cpu "$1" "${cmd[@]}"); b=$(cpu "$1" LABYRINTH_SAMPLE=1000 "${cmd[@]}")
	else
		b=$(cpu "$1" LABYRINTH_SAMPLE=1000 "${cmd[@]}"); a=$(cpu "$1" "${cmd[@]}")
	fi
	if [ "$a" = FAILED ] || [ "$b" = FAILED ]; then
		printf '  %-22s FAILED%s: %s\n' "$name" "$2" "$(tail -c 2000 "$err")"
		status=1
		return 1
	fi
}

line() {
	awk -v n="$1" -v a="$(printf '%s' "$2" | median)" -v b="$(printf '%s' "$3" | median)" \
		'BEGIN { printf "  %-22s %9.3f %12.3f %8.3fx\n", n, a, b, b / a }'
}

# row NAME VAR=VALUE... COMMAND...
row() {
	local name=$1 i a b as='' bs='' bas='' bbs=''
	shift
	cmd=("$@")
	for i in $(seq 1 "$runs"); do
		pair "$preload" "" || return
		as="$as$a"$'\n'; bs="$bs$b"$'\n'
		[ -n "$base" ] || continue
		pair "$base" " (base)" || return
		bas="$bas$a"$'\n'; bbs="$bbs$b"$'\n'
	done
	line "$name" "$as" "$bs"
	[ -z "$base" ] || line "$name (base)" "$bas" "$bbs"
}

echo "sampling cost: labyrinth's default mode against LABYRINTH_SAMPLE=1000,"
echo "CPU time (user + system, s), median of $runs runs each, interleaved:"
printf '  %-22s %9s %12s %9s\n' workload default sample=1000 ratio
if [ -z "$python" ]; then
	printf '  %-22s skipped: python3 not installed\n' python
else
	row python "$python" "$srcdir/bench/alloc.py"
	row python-malloc PYTHONMALLOC=malloc "$python" "$srcdir/bench/alloc.py" 4
fi
exit "$status"

#!/bin/bash
# What LABYRINTH_SAMPLE=1000 costs a real program: labyrinth against itself,
# not against glibc, since the question is what turning sampling on in
# production adds to the default mode.
#
#   bench/samplecost.sh -p PRELOAD.so [-s TOP_SRCDIR] [-n RUNS]
#
# Each workload runs RUNS times in the default mode and RUNS times with
# LABYRINTH_SAMPLE=1000, alternating which goes first (ABBA), so that drifting
# machine load falls on both alike. The figure is CPU time, user + system,
# of the process (bash's `time`): unlike wall time it does not count the
# time the process waited for a core another engineer's job held. Prints
# medians and their ratio; exits 1 if a run fails.
set -u
preload=''
srcdir=$(dirname "$0")/..
runs=7
while getopts p:s:n: opt; do
	case $opt in
	p) preload=$OPTARG ;;
	s) srcdir=$OPTARG ;;
	n) runs=$OPTARG ;;
	*) echo "usage: $0 -p PRELOAD.so [-s TOP_SRCDIR] [-n RUNS]" >&2; exit 2 ;;
	esac
done
if [ -z "$preload" ]; then
	echo "usage: $0 -p PRELOAD.so [-s TOP_SRCDIR] [-n RUNS]" >&2
	exit 2
fi
python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || python=''
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# cpu VAR=VALUE... COMMAND...: the run's user + system seconds, or FAILED.
cpu() {
	local TIMEFORMAT='%3U %3S' t
	t=$( { time env LD_PRELOAD="$preload" "$@" >/dev/null 2>"$err"; } 2>&1 ) || {
		echo FAILED
		return
	}
	awk '{ printf "%.3f\n", $1 + $2 }' <<<"$t"
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

status=0
# row NAME VAR=VALUE... COMMAND...
row() {
	local name=$1 i a b as='' bs=''
	shift
	for i in $(seq 1 "$runs"); do
		if [ $((i % 2)) -eq 1 ]; then
			a=$(cpu "$@"); b=$(cpu LABYRINTH_SAMPLE=1000 "$@")
		else
			b=$(cpu LABYRINTH_SAMPLE=1000 "$@"); a=$(cpu "$@")
		fi
		if [ "$a" = FAILED ] || [ "$b" = FAILED ]; then
			printf '  %-16s FAILED: %s\n' "$name" "$(tail -c 2000 "$err")"
			status=1
			return
		fi
		as="$as$a"$'\n'; bs="$bs$b"$'\n'
	done
	a=$(printf '%s' "$as" | median)
	b=$(printf '%s' "$bs" | median)
	awk -v n="$name" -v a="$a" -v b="$b" \
		'BEGIN { printf "  %-16s %9.3f %12.3f %8.3fx\n", n, a, b, b / a }'
}

echo "sampling cost: labyrinth's default mode against LABYRINTH_SAMPLE=1000,"
echo "CPU time (user + system, s), median of $runs runs each, interleaved:"
printf '  %-16s %9s %12s %9s\n' workload default sample=1000 ratio
if [ -z "$python" ]; then
	printf '  %-16s skipped: python3 not installed\n' python
else
	row python "$python" "$srcdir/bench/alloc.py"
	row python-malloc PYTHONMALLOC=malloc "$python" "$srcdir/bench/alloc.py" 4
fi
exit "$status"

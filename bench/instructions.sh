#!/bin/sh
# Instructions per operation of the small fast path, labyrinth and glibc,
# counted by callgrind (`make bench-instructions`; see bench/README.md).
#
# Each program runs twice, with N and 2N iterations: the difference divided
# by N is what one iteration of the loop costs, start-up, set-up and exit
# cancelled out. The loop's own work (churn's random sizes and its stamps)
# is in both columns: compare the columns, not a column with zero.
# N is 500,000 by default: long enough for a fast path that gives way
# only after a while to show (one did: its release list was left full
# after about 200,000 frees, and every free after took the general path).
#
#   instructions.sh -p LIB.so -b BUILDDIR [-n N]
set -eu

lib= builddir=. n=500000
while getopts p:b:n: opt; do
	case $opt in
	p) lib=$OPTARG ;;
	b) builddir=$OPTARG ;;
	n) n=$OPTARG ;;
	*) echo "usage: $0 -p LIB.so -b BUILDDIR [-n N]" >&2; exit 2 ;;
	esac
done
if [ -z "$lib" ] || ! command -v valgrind >/dev/null 2>&1; then
	echo "$0: needs -p LIB.so and valgrind" >&2
	exit 2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions callgrind counted for one run of "$@" (preload $1, or none).
count() {
	pre=$1
	shift
	if [ -n "$pre" ]; then
		LD_PRELOAD=$pre valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
			"$@" 2>"$out/log" >/dev/null
	else
		valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
			"$@" 2>"$out/log" >/dev/null
	fi
	sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$out/log"
}

# Per iteration: (count at 2N - count at N) / N, to one decimal.
per_op() {
	pre=$1 prog=$2 flag=$3
	shift 3
	a=$(count "$pre" "$prog" "$@" "$flag" "$n")
	b=$(count "$pre" "$prog" "$@" "$flag" $((2 * n)))
	if [ -z "$a" ] || [ -z "$b" ]; then
		echo "$0: callgrind failed on $prog:" >&2
		cat "$out/log" >&2
		exit 1
	fi
	awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }'
}

fast=$builddir/bench/fastpath
churn=$builddir/bench/churn
printf '%-44s %10s %10s %8s\n' "instructions per operation" glibc labyrinth ratio
api=$builddir/bench/apipair
for row in pair step private; do
	if [ $row = pair ]; then
		name="malloc(16)/free pair"
		g=$(per_op "" "$fast" -n -s 16)
		l=$(per_op "$lib" "$fast" -n -s 16)
		g_pair=$g
	elif [ $row = private ]; then
		# The API on a private labyrinth, against glibc's malloc/free.
		name="labyrinth_malloc(16)/free, private labyrinth"
		g=$g_pair
		l=$(per_op "" "$api" -n -s 16)
	else
		name="churn step (4096 live, free one, malloc)"
		g=$(per_op "" "$churn" -s -n 4096)
		l=$(per_op "$lib" "$churn" -s -n 4096)
	fi
	printf '%-44s %10s %10s %7sx\n' "$name" "$g" "$l" \
		"$(awk -v g="$g" -v l="$l" 'BEGIN { printf "%.2f", l / g }')"
done

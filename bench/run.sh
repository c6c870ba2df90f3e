#!/bin/sh
# The workloads of `make bench`, handed to the labbench driver.
#
#   bench/run.sh [-c] [-p PRELOAD.so] [-s TOP_SRCDIR] [-b TOP_BUILDDIR] [-- LABBENCH_OPTION...]
#
# -c  what each default protection costs (make bench-protections) instead of
#     the main table: see protection_rows below
# -p  the allocator to compare with glibc; without it both columns are glibc
#     (shows the noise floor of this machine)
# -s  the source tree, for alloc.py, sqlite.sql and gencfile.awk
#     (default: the directory above this script)
# -b  the build tree holding bench/labbench and the workload programs
#     (default: the current directory)
# Options after -- go to labbench as they are (e.g. -- -k -l mybuild).
#
# Environment:
#   BENCH_RUNS     runs per allocator and workload (default 5)
#   BENCH_ONLY     comma-separated workload names to run (default: all)
#   BENCH_TIMEOUT  seconds before a single run counts as failed (default 60)
set -eu

costs=''
preload=''
srcdir=''
builddir=.
while getopts cp:s:b: opt; do
	case $opt in
	c) costs=1 ;;
	p) preload=$OPTARG ;;
	s) srcdir=$OPTARG ;;
	b) builddir=$OPTARG ;;
	*) echo "usage: $0 [-c] [-p PRELOAD.so] [-s TOP_SRCDIR] [-b TOP_BUILDDIR] [-- LABBENCH_OPTION...]" >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$srcdir" ] || srcdir=$(dirname "$0")/..
bin=$builddir/bench

# pyenv and similar put a shell-script shim first in PATH; run the real
# interpreter, so the shim's own start-up is not part of the measurement.
python=python3
if command -v python3 >/dev/null 2>&1; then
	python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || python=python3
fi

set -- ${preload:+-p "$preload"} \
	-n "${BENCH_RUNS:-5}" -t "${BENCH_TIMEOUT:-60}" \
	${BENCH_ONLY:+-w "$BENCH_ONLY"} "$@"

# -c: the workloads furthest from glibc, with every default protection on,
# then one of them off at a time, then all three off; each row against glibc
# in the same run, so a row's distance from its :all-on row is the price of
# that protection. A measurement only: the defaults stay on. Splitting
# $vars into words is intended.
if [ -n "$costs" ]; then
	echo "what each default protection costs (ratios against glibc; rows differ in one setting):"
	set -- "$@" --
	sep=''
	for w in fastpath churn python-malloc sqlite; do
		for s in all-on no-canary no-zero no-quarantine all-off; do
			case $s in
			all-on) vars='' ;;
			no-canary) vars='LABYRINTH_CANARY=0' ;;
			no-zero) vars='LABYRINTH_ZERO=0 LABYRINTH_UAF_CHECK=0' ;;
			no-quarantine) vars='LABYRINTH_QUARANTINE=0' ;;
			all-off) vars='LABYRINTH_CANARY=0 LABYRINTH_ZERO=0 LABYRINTH_UAF_CHECK=0 LABYRINTH_QUARANTINE=0' ;;
			esac
			[ -z "$sep" ] || set -- "$@" ::
			sep=1
			# shellcheck disable=SC2086
			case $w in
			fastpath) set -- "$@" "$w:$s" $vars "$bin/fastpath" ;;
			churn) set -- "$@" "$w:$s" $vars "$bin/churn" ;;
			python-malloc) set -- "$@" "$w:$s" PYTHONMALLOC=malloc $vars \
				"$python" "$srcdir/bench/alloc.py" 4 ;;
			sqlite) set -- "$@" "$w:$s" $vars \
				sqlite3 -bail :memory: ".read '$srcdir/bench/sqlite.sql'" ;;
			esac
		done
	done
	"$bin/labbench" "$@"
	exit
fi

# The gcc workload compiles a generated file; keep it out of the source tree
# (read-only under distcheck) and remove it however we exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/labbench-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
awk -f "$srcdir/bench/gencfile.awk" > "$work/big.c"

# Name, optional VAR=VALUE, then the command. Missing programs (python3,
# sqlite3, gcc) show as skipped. Sizes are tuned for about 0.3..1.2 s each
# under glibc on 2 idle cores. python-malloc turns off CPython's own small-
# object pools, so that every object goes through malloc. The *-sample1000
# workloads measure LABYRINTH_SAMPLE=1000 against the same workload without
# it (glibc ignores the variable).
status=0
"$bin/labbench" "$@" -- \
	churn     "$bin/churn" :: \
	churn-t2  "$bin/churn" -t 2 :: \
	churn-t4  "$bin/churn" -t 4 :: \
	churn-p2  "$bin/churn" -P 2 :: \
	xfree     "$bin/xfree" :: \
	realloc   "$bin/realloc" :: \
	fastpath  "$bin/fastpath" :: \
	footprint "$bin/footprint" :: \
	churn-sample1000 LABYRINTH_SAMPLE=1000 "$bin/churn" :: \
	python    "$python" "$srcdir/bench/alloc.py" :: \
	python-malloc PYTHONMALLOC=malloc "$python" "$srcdir/bench/alloc.py" 4 :: \
	python-malloc-sample1000 PYTHONMALLOC=malloc LABYRINTH_SAMPLE=1000 \
		"$python" "$srcdir/bench/alloc.py" 4 :: \
	sqlite    sqlite3 -bail :memory: ".read '$srcdir/bench/sqlite.sql'" :: \
	gcc       gcc -O2 -c "$work/big.c" -o "$work/big.o" :: \
	redis     sh "$srcdir/bench/redis.sh" || status=$?

# Scale: heaps that need more guarded regions than vm.max_map_count allows
# one mapping each. Not a ratio: they must run to completion, in both guard
# modes; each prints the mappings it held at its peak.
if [ -n "$preload" ] && { [ -z "${BENCH_ONLY:-}" ] || [ "${BENCH_ONLY#*scale}" != "$BENCH_ONLY" ]; }; then
	echo
	echo "scale (labyrinth only, must complete):"
	for mode in markers mprotect; do
		for w in "small -g ${BENCH_SCALE_GIB:-4}" "large -n 200000"; do
			# shellcheck disable=SC2086
			if out=$(LABYRINTH_GUARD=$mode LD_PRELOAD=$preload "$bin/scale" $w 2>&1); then
				echo "  $mode: $out"
			else
				echo "  $mode: scale $w FAILED: $out"
				status=1
			fi
		done
	done
fi
exit "${status:-0}"

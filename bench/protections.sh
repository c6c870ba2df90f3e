#!/bin/sh
# What each default protection costs: `make bench-protections`.
#
#   bench/protections.sh -p PRELOAD.so [-s TOP_SRCDIR] [-b TOP_BUILDDIR]
#
# Runs the workloads where labyrinth is furthest from glibc with every
# default protection on, then with one turned off at a time, then with all
# of them off. Each row's ratio is against glibc in the same run, so the
# difference between a row and the "all on" row is that protection's price.
# This is a measurement, not a recommendation: the defaults stay on.
#
# Environment: BENCH_RUNS (default 5), BENCH_TIMEOUT (default 60).
set -eu

preload=''
srcdir=''
builddir=.
while getopts p:s:b: opt; do
	case $opt in
	p) preload=$OPTARG ;;
	s) srcdir=$OPTARG ;;
	b) builddir=$OPTARG ;;
	*) echo "usage: $0 -p PRELOAD.so [-s TOP_SRCDIR] [-b TOP_BUILDDIR]" >&2
	   exit 2 ;;
	esac
done
[ -n "$preload" ] || { echo "$0: -p PRELOAD.so is required" >&2; exit 2; }
[ -n "$srcdir" ] || srcdir=$(dirname "$0")/..
bin=$builddir/bench

python=python3
if command -v python3 >/dev/null 2>&1; then
	python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || python=python3
fi

# The settings: a row name suffix and the variables that make it.
off_canary='LABYRINTH_CANARY=0'
off_zero='LABYRINTH_ZERO=0 LABYRINTH_UAF_CHECK=0'
off_quarantine='LABYRINTH_QUARANTINE=0'
off_all="$off_canary $off_zero $off_quarantine"

# The labbench arguments: NAME VAR=VALUE... COMMAND..., separated by "::",
# for each workload and setting. Splitting $vars into words is intended.
set --
for w in fastpath churn python-malloc sqlite; do
	[ "$w" != sqlite ] || command -v sqlite3 >/dev/null 2>&1 || continue
	for s in all-on no-canary no-zero no-quarantine all-off; do
		case $s in
		all-on) vars='' ;;
		no-canary) vars=$off_canary ;;
		no-zero) vars=$off_zero ;;
		no-quarantine) vars=$off_quarantine ;;
		all-off) vars=$off_all ;;
		esac
		[ $# -eq 0 ] || set -- "$@" ::
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
echo "what each default protection costs (ratios against glibc; rows differ in one setting):"
exec "$bin/labbench" -p "$preload" -n "${BENCH_RUNS:-5}" -t "${BENCH_TIMEOUT:-60}" -- "$@"

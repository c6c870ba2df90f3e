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
#   BENCH_RUNS       runs per allocator and workload (default 5)
#   BENCH_SLOW_RUNS  runs of the configure and build rows (default 3, or
#                    BENCH_RUNS if that is smaller)
#   BENCH_ONLY       comma-separated workload names to run (default: all)
#   BENCH_TIMEOUT    seconds before a single run counts as failed (default 60)
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

runs=${BENCH_RUNS:-5}
set -- ${preload:+-p "$preload"} -n "$runs" -t "${BENCH_TIMEOUT:-60}" "$@"

# -c: the workloads furthest from glibc, with every default protection on,
# then one of them off at a time, then all three off; each row against glibc
# in the same run, so a row's distance from its :all-on row is the price of
# that protection. A measurement only: the defaults stay on. Splitting
# $vars into words is intended.
if [ -n "$costs" ]; then
	echo "what each default protection costs (ratios against glibc; rows differ in one setting):"
	set -- ${BENCH_ONLY:+-w "$BENCH_ONLY"} "$@" --
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

# The workloads of each table, for BENCH_ONLY. The allocation table is the
# one make bench always had; the process table (start-up, fork, exec) has
# its own geomean, so that its large ratios do not swamp the first one's.
alloc_rows='churn churn-t2 churn-t4 churn-p2 xfree realloc fastpath footprint
churn-sample1000 python python-malloc python-malloc-sample1000 sqlite gcc redis perl'
proc_rows='fork-shell fork-grown ls-300 subshell-300 startup configure build'

# Is workload $1 selected by BENCH_ONLY (empty: all are)?
wanted() {
	case ",${BENCH_ONLY:-$1}," in
	*",$1,"*) return 0 ;;
	*) return 1 ;;
	esac
}

# The names of the list $1 that BENCH_ONLY selects, comma-separated, for
# labbench -w; empty if it selects none of them.
selected() {
	out=''
	for n in $1; do
		wanted "$n" && out=$out${out:+,}$n
	done
	echo "$out"
}

# A name in BENCH_ONLY that no table has would otherwise be ignored quietly.
for n in $(echo "${BENCH_ONLY:-}" | tr ',' ' '); do
	found=''
	for row in $alloc_rows $proc_rows sample-cost scale; do
		[ "$row" != "$n" ] || found=1
	done
	if [ -z "$found" ]; then
		echo "$0: BENCH_ONLY: no workload named '$n'" >&2
		exit 2
	fi
done

# The gcc workload compiles a generated file, the configure and build rows
# work in copies: all of it out of the source tree (read-only under
# distcheck), and removed however we exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/labbench-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
status=0

# Name, optional VAR=VALUE, then the command. Missing programs (python3,
# sqlite3, gcc, redis-server, perl) show as skipped. Sizes are tuned for about 0.3..1.2 s each
# under glibc on 2 idle cores. python-malloc turns off CPython's own small-
# object pools, so that every object goes through malloc. The *-sample1000
# workloads measure LABYRINTH_SAMPLE=1000 against the same workload without
# it (glibc ignores the variable).
# perl: a hash of 120,000 strings of 1 to 300 bytes, half of it deleted,
# joins and a string built a character at a time; twice.
perl_script='my %h; my @keep;
for my $r (1..2) {
	for my $i (1..120000) { $h{"k$r.$i"} = ("x" x ($i % 300)) . $i; }
	push @keep, join(",", map { $h{"k$r.$_"} } grep { $_ % 97 == 0 } 1..120000);
	my @k = sort keys %h;
	delete @h{@k[0 .. $#k / 2]};
	my $s = ""; $s .= chr(65 + $_ % 26) for 1..120000; push @keep, scalar reverse $s;
}
print scalar(keys %h), " ", length(join "", @keep), "\n";'
only=$(selected "$alloc_rows")
if [ -n "$only" ]; then
	wanted gcc && awk -f "$srcdir/bench/gencfile.awk" > "$work/big.c"
	"$bin/labbench" -w "$only" "$@" -- \
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
		redis     sh "$srcdir/bench/redis.sh" :: \
		perl      perl -e "$perl_script" || status=$?
fi

# Sampling's cost: labyrinth with LABYRINTH_SAMPLE=1000 against labyrinth
# itself, in CPU time, over at least 7 runs (bench/samplecost.sh).
if [ -n "$preload" ] && wanted sample-cost; then
	echo
	bash "$srcdir/bench/samplecost.sh" -p "$preload" -s "$srcdir" \
		-n "$((runs < 7 ? 7 : runs))" || status=1
fi

# A script $1 that runs the rest of the words in directory $2, for the rows
# that must run somewhere else than labbench's directory. The make that
# configure and the build run must not join the jobserver of `make bench`.
in_dir() {
	script=$1 dir=$2
	shift 2
	printf '#!/bin/sh\nunset MAKEFLAGS MFLAGS MAKELEVEL\ncd "%s" || exit 1\n%s\n' \
		"$dir" "$*" > "$script"
	chmod +x "$script"
}

# configure: this project's own configure script, in a copy of the source
# tree without its build output, so that the user's tree is never touched.
# It needs a bootstrapped tree; without one the row shows as skipped,
# naming the missing script.
configure_cmd=$srcdir/configure
if wanted configure && [ -x "$srcdir/configure" ]; then
	mkdir "$work/cfg"
	(cd "$srcdir" && tar cf - --exclude=.git --exclude=.libs --exclude=.deps \
		--exclude='*.o' --exclude='*.lo' --exclude=autom4te.cache --exclude=./build-san \
		--exclude=./fuzz/out --exclude=./fuzz/findings .) |
		(cd "$work/cfg" && tar xf -)
	chmod -R u+w "$work/cfg"
	configure_cmd=$work/run-configure
	in_dir "$configure_cmd" "$work/cfg" ./configure
fi

# build: a small autotools project, autoreconf'd once here with glibc; each
# run is a fresh out-of-tree configure and make -j2 of it (removing the last
# run's build directory is part of the run). If autotools are missing or
# fail, the row shows as skipped, naming the configure that is not there.
build_cmd=$work/proj/configure
if wanted build; then
	if sh "$srcdir/bench/autoproj.sh" "$work/proj" 2>"$work/autoproj.err"; then
		build_cmd=$work/run-build
		in_dir "$build_cmd" "$work/proj" \
			'rm -rf build && mkdir build && cd build && ../configure && make -j2'
	else
		echo "build: the small autotools project failed (bench/autoproj.sh):" >&2
		cat "$work/autoproj.err" >&2
	fi
fi

# The process table: what a process costs, not an allocation pattern; every
# shell and program in a row runs under the allocator, as with
# /etc/ld.so.preload. statexit.so reports each exec'd program's VmPTE and
# VmRSS at its exit (the largest per run shows under the row). The loops
# in single quotes are for the shell of the row to expand.
statexit=$bin/statexit.so
slow=${BENCH_SLOW_RUNS:-3}
[ "$slow" -le "$runs" ] || slow=$runs
only=$(selected "$proc_rows")
if [ -n "$only" ]; then
	[ -z "$(selected "$alloc_rows")" ] || echo
	echo "start-up, fork and exec: every process of a row runs under the allocator"
	# shellcheck disable=SC2016
	"$bin/labbench" -w "$only" -y "fork-shell,fork-grown,ls-300,subshell-300,configure,build" \
		-r "configure=$slow" -r "build=$slow" "$@" -- \
		fork-shell BASH_ENV= LD_PRELOAD="$statexit" \
			bash "$srcdir/bench/forkshell.sh" 5000 400 :: \
		fork-grown "$bin/forkgrown" -n 20000 -f 20 :: \
		ls-300 LD_PRELOAD="$statexit" \
			sh -c 'i=0; while [ $i -lt 300 ]; do ls / >/dev/null; i=$((i + 1)); done' :: \
		subshell-300 BASH_ENV= \
			bash -c 'i=0; while [ $i -lt 300 ]; do y=$(echo $i); i=$((i + 1)); done' :: \
		startup LD_PRELOAD="$statexit" ls / :: \
		configure "$configure_cmd" :: \
		build "$build_cmd" || status=$?
	if wanted startup; then
		sh "$srcdir/bench/syscalls.sh" ${preload:+-p "$preload"} || status=$?
	fi
fi

# Scale: heaps that need more guarded regions than vm.max_map_count allows
# one mapping each. Not a ratio: they must run to completion, in both guard
# modes; each prints the mappings it held at its peak.
if [ -n "$preload" ] && wanted scale; then
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

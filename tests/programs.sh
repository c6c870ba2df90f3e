#!/bin/bash
# programs.sh: run real programs with and without the labyrinth preload and
# compare what they print.
#
# Each test runs a program (or a small pipeline of programs) twice: once
# plainly and once with LD_PRELOAD set to the labyrinth preload library.
# Both runs must exit 0 and print the same stdout and stderr. The preloaded
# run is made with LABYRINTH_STATS=1, and its stderr must contain a
# "labyrinth: stats:" line (proof that labyrinth was really in use); those
# lines are taken out of its stderr before the comparison (also when git
# relays them from a child as "remote: labyrinth: stats: ...").
#
# Output: TAP on stdout. The exit status is 0 whether tests pass or fail;
# it is non-zero only when the harness itself cannot run.
#
# Environment:
#   LAB_TEST_PRELOAD       the preload library (default: the in-tree
#                               build next to this script's directory)
#   LAB_TEST_PROGRAMS_TIMEOUT  seconds allowed to each program run (120)
#   LAB_TEST_PROGRAMS_KEEP     if set to 1, keep the work directory (its
#                               name is printed as a TAP comment at the end)
# Everything else (LABYRINTH_GUARD in particular) is passed through to the
# programs unchanged, except the test harness's own variables
# (LAB_TEST_PRELOAD, LAB_TEST_BUILDDIR, LAB_TEST_PROGRAMS_*), which are
# taken out so the programs see the environment a user would give them.
#
# Data files are in programs/ beside this script.

# Started by sh (e.g. the test driver's $(SHELL))? This needs bash.
if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi

set -u

here=$(cd "$(dirname "$0")" && pwd) || { echo "Bail out! cannot find the script's directory"; exit 1; }
data=$here/programs
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
tmo=${LAB_TEST_PROGRAMS_TIMEOUT:-120}
# env(1) options that take the harness's variables out of a program's environment.
unset_harness=(-u LAB_TEST_PRELOAD -u LAB_TEST_BUILDDIR
	-u LAB_TEST_PROGRAMS_TIMEOUT -u LAB_TEST_PROGRAMS_KEEP)
keep=${LAB_TEST_PROGRAMS_KEEP:-0}

if [ ! -f "$lib" ]; then
	echo "Bail out! preload library not found: $lib"
	exit 1
fi
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
case $lib in
*[[:space:]:]*)
	# ld.so splits LD_PRELOAD on spaces and colons.
	echo "Bail out! preload library path contains a space or colon: $lib"
	exit 1
	;;
esac
if [ ! -d "$data" ]; then
	echo "Bail out! data directory not found: $data"
	exit 1
fi
if ! command -v timeout >/dev/null; then
	echo "Bail out! timeout(1) not installed"
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/labyrinth-programs.XXXXXXXX") || {
	echo "Bail out! mktemp -d failed"
	exit 1
}

# Background processes (their timeout(1) pids) that cleanup must stop.
bg_pids=()

stop_bg() { # stop_bg PID: TERM, then KILL, the process and its group
	local pid=$1 i
	kill -TERM -- "-$pid" "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$pid" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

# shellcheck disable=SC2317 # (called by the trap)
cleanup() {
	local pid
	for pid in "${bg_pids[@]}"; do
		stop_bg "$pid"
	done
	bg_pids=()
	cd /
	if [ "$keep" = 1 ]; then
		echo "# work directory kept: $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$tmp" || exit 1
mkdir out || exit 1

# ---------------------------------------------------------------- helpers

n_tests=11
echo "1..$n_tests"
t=0
diagfile=$tmp/diag
stats_re='^(remote: )?labyrinth: stats:'
: >"$diagfile"

diag() { # diag TEXT...: one diagnostic line for the current test
	printf '%s\n' "$*" >>"$diagfile"
}

diag_file() { # diag_file FILE [LINES]: the last LINES lines of FILE, indented
	[ -s "$1" ] || { diag "  (empty)"; return; }
	tail -n "${2:-15}" "$1" | cut -c1-300 | sed 's/^/  | /' >>"$diagfile"
}

result() { # result NAME: ok or not ok, with the diagnostics gathered
	t=$((t + 1))
	if [ -s "$diagfile" ]; then
		echo "not ok $t - $1"
		sed 's/^/# /' "$diagfile"
	else
		echo "ok $t - $1"
	fi
	: >"$diagfile"
}

skip() { # skip NAME: the program is not installed
	t=$((t + 1))
	echo "ok $t - $1 # SKIP not installed"
	: >"$diagfile"
}

have() { # have PROGRAM...: all installed?
	local p
	for p; do
		command -v "$p" >/dev/null 2>&1 || return 1
	done
}

describe_rc() { # describe_rc STATUS: how a run ended, in words
	local rc=$1
	case $rc in
	0) echo "exit 0" ;;
	124) echo "timed out: stopped by timeout(1) at the ${tmo} s limit" ;;
	137) echo "killed by signal 9 (SIGKILL: timeout's -k after SIGTERM did not stop it, or the OOM killer)" ;;
	125) echo "timeout(1) itself failed (status 125)" ;;
	126) echo "program found but could not be run (status 126)" ;;
	127) echo "program not found (status 127)" ;;
	*)
		if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then
			echo "killed by signal $((rc - 128)) (SIG$(kill -l $((rc - 128)) 2>/dev/null))"
		else
			echo "exit $rc"
		fi
		;;
	esac
}

now_ms() { # now_ms: a clock in milliseconds
	if [ -n "${EPOCHREALTIME:-}" ]; then
		local us=${EPOCHREALTIME/[.,]/}
		echo $((us / 1000))
	else
		echo $((SECONDS * 1000))
	fi
}

# run TAG MODE INPUT PROGRAM ARGS...
# Run one program (bounded by timeout) with stdin from INPUT, into
# out/TAG.{out,err,rc,ms}. MODE is "plain" (LD_PRELOAD removed) or "preload"
# (LD_PRELOAD=the library, LABYRINTH_STATS=1; the stats lines are kept in
# TAG.rawerr and filtered out of TAG.err).
run() {
	local tag=$1 mode=$2 input=$3 rc t0
	shift 3
	local base=out/$tag
	t0=$(now_ms)
	# (The outer 2>/dev/null keeps bash's own "Segmentation fault" notices
	# off our stderr: the diagnostics say it.)
	if [ "$mode" = preload ]; then
		{
			timeout -k 10 "$tmo" env "${unset_harness[@]}" LD_PRELOAD="$lib" LABYRINTH_STATS=1 "$@" \
				<"$input" >"$base.out" 2>"$base.rawerr"
			rc=$?
		} 2>/dev/null
		grep -Ev "$stats_re" "$base.rawerr" >"$base.err"
	else
		{
			timeout -k 10 "$tmo" env "${unset_harness[@]}" -u LD_PRELOAD "$@" \
				<"$input" >"$base.out" 2>"$base.err"
			rc=$?
		} 2>/dev/null
		cp "$base.err" "$base.rawerr"
	fi
	echo "$rc" >"$base.rc"
	echo $(($(now_ms) - t0)) >"$base.ms"
	return "$rc"
}

check_rc() { # check_rc TAG WHAT: the run exited 0, else say how it ended
	local rc ms
	rc=$(cat "out/$1.rc")
	[ "$rc" = 0 ] && return 0
	ms=$(cat "out/$1.ms" 2>/dev/null || echo 0)
	if [ "$rc" = 124 ]; then
		diag "$2: $(describe_rc "$rc")"
	else
		diag "$2: $(describe_rc "$rc"), after $((ms / 1000)).$((ms % 1000 / 100)) s"
	fi
	diag "$2: stderr (last lines):"
	diag_file "out/$1.rawerr"
	return 1
}

check_stats() { # check_stats TAG WHAT: labyrinth printed its stats line
	if ! grep -Eq "$stats_re" "out/$1.rawerr"; then
		diag "$2: no 'labyrinth: stats:' line on stderr with LABYRINTH_STATS=1 (labyrinth not active?)"
		return 1
	fi
	# In the fallback run, the lines that name the guard mode must name it.
	if [ "${LABYRINTH_GUARD:-}" = mprotect ] &&
		grep -E "$stats_re" "out/$1.rawerr" | grep -F 'guards ' | grep -vqF 'guards mprotect'; then
		diag "$2: LABYRINTH_GUARD=mprotect, but a stats line names another guard mode:"
		grep -E "$stats_re" "out/$1.rawerr" | grep -F 'guards ' | grep -vF 'guards mprotect' >"$tmp/guards"
		diag_file "$tmp/guards" 3
		return 1
	fi
}

same_file() { # same_file A B WHAT: A and B must be identical
	if ! cmp -s "$1" "$2"; then
		diag "$3 differ (--- without preload, +++ with preload):"
		diff -u "$1" "$2" | head -n 40 | cut -c1-300 | sed 's/^/  /' >>"$diagfile"
		return 1
	fi
}

# compare TAG_A TAG_B WHAT: same stdout and same (filtered) stderr. Not
# done when a run failed (its failure is the news, not its partial output).
compare() {
	[ "$(cat "out/$1.rc")" = 0 ] && [ "$(cat "out/$2.rc")" = 0 ] || return 0
	same_file "out/$1.out" "out/$2.out" "$3: stdout"
	same_file "out/$1.err" "out/$2.err" "$3: stderr"
}

# pair TAG WHAT INPUT PROGRAM ARGS...: the whole plain/preload test of one
# command: both runs exit 0, labyrinth was active, same outputs. In the
# arguments, @MODE@ stands for "plain" or "preload" (for output paths that
# must differ between the two runs).
pair() {
	local tag=$1 what=$2 input=$3
	shift 3
	run "$tag.plain" plain "$input" "${@//@MODE@/plain}"
	run "$tag.preload" preload "$input" "${@//@MODE@/preload}"
	check_rc "$tag.plain" "$what, without preload"
	check_rc "$tag.preload" "$what, with preload" && check_stats "$tag.preload" "$what, with preload"
	compare "$tag.plain" "$tag.preload" "$what"
}

# ---------------------------------------------------------------- tests

# Reminder: a run's working directory is $tmp.

# 1, 2. Python: an allocation-heavy script, with pymalloc (the default) and
# with PYTHONMALLOC=malloc (every object from malloc).
if have python3; then
	pair py python3 /dev/null python3 -B "$data/alloc.py"
	result "python3 alloc.py"
	pair pymalloc python3 /dev/null env PYTHONMALLOC=malloc python3 -B "$data/alloc.py"
	result "python3 alloc.py with PYTHONMALLOC=malloc"
else
	skip "python3 alloc.py"
	skip "python3 alloc.py with PYTHONMALLOC=malloc"
fi

# 3. SQLite: 300000 rows from a recursive CTE, indexes, aggregates, vacuum.
if have sqlite3; then
	mkdir sqlite.plain sqlite.preload
	run sqlite.plain plain "$data/sqlite.sql" sqlite3 sqlite.plain/t.db
	run sqlite.preload preload "$data/sqlite.sql" sqlite3 sqlite.preload/t.db
	check_rc sqlite.plain "sqlite3, without preload"
	check_rc sqlite.preload "sqlite3, with preload" && check_stats sqlite.preload "sqlite3, with preload"
	compare sqlite.plain sqlite.preload sqlite3
	result "sqlite3 300000 rows, indexes, aggregates"
else
	skip "sqlite3 300000 rows, indexes, aggregates"
fi

# compile_test NAME COMPILER SOURCE FLAGS...: compile SOURCE (copied into
# the work directory) with and without the preload on the compiler (and so
# on cc1 or cc1plus, as, collect2 and ld); the two binaries must be the
# same. Run both plainly and the one built under the preload also under the
# preload: all three must print the same.
compile_test() {
	local name=$1 cc=$2 src=$3 d
	shift 3
	d=$name.build
	mkdir "$d"
	cp "$data/$src" "$d/$src"
	run "$name.cc.plain" plain /dev/null "$cc" "$@" -o "$d/work.plain" "$d/$src"
	run "$name.cc.preload" preload /dev/null "$cc" "$@" -o "$d/work.preload" "$d/$src"
	check_rc "$name.cc.plain" "$cc, without preload"
	if check_rc "$name.cc.preload" "$cc, with preload"; then
		check_stats "$name.cc.preload" "$cc, with preload"
		if [ -f "$d/work.plain" ]; then
			same_file "$d/work.plain" "$d/work.preload" "$cc: the two binaries"
		fi
	fi
	compare "$name.cc.plain" "$name.cc.preload" "$cc"
	if [ -x "$d/work.plain" ] && [ -x "$d/work.preload" ]; then
		run "$name.run.a" plain /dev/null "$d/work.plain"
		run "$name.run.b" plain /dev/null "$d/work.preload"
		run "$name.run.c" preload /dev/null "$d/work.preload"
		check_rc "$name.run.a" "work.plain (built without preload)"
		check_rc "$name.run.b" "work.preload (built with preload)"
		check_rc "$name.run.c" "work.preload run with preload" &&
			check_stats "$name.run.c" "work.preload run with preload"
		compare "$name.run.a" "$name.run.b" "outputs of the binaries built without and with preload"
		compare "$name.run.a" "$name.run.c" "output of the program run without and with preload"
	fi
}

# 4. gcc: work.c (sorting, hashing, realloc, threads, the whole malloc family).
if have gcc; then
	compile_test gcc gcc work.c -O2 -g -Wall -Wextra -pthread
	result "gcc compile and run"
else
	skip "gcc compile and run"
fi

# 5. g++: work.cc (containers, aligned new, exceptions, threads, streams).
if have g++; then
	compile_test gxx g++ work.cc -O2 -g -Wall -Wextra -pthread
	result "g++ compile and run"
else
	skip "g++ compile and run"
fi

# 6. git: init, commits, log --stat, diff, gc, fsck, archive, clone.
if have git; then
	pair git git /dev/null bash "$data/git-work.sh" "$tmp/git.@MODE@"
	result "git commits, log, gc, fsck, clone"
else
	skip "git commits, log, gc, fsck, clone"
fi

# 7. redis-server: one server without and one with the preload, both on
# 127.0.0.1 only, on free ports. The same redis-cli commands must get the
# same replies from both, also after redis-benchmark has hammered the
# preloaded one; then both must exit cleanly on SIGTERM.

port_in_use() { # port_in_use PORT: something accepts connections on it
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

bg_forget() { # bg_forget PID: cleanup need not stop it any more
	local p rest=()
	for p in "${bg_pids[@]}"; do
		[ "$p" = "$1" ] || rest+=("$p")
	done
	bg_pids=("${rest[@]}")
}

# redis_start TAG MODE: start a server; sets redis_pid and redis_port.
# Its stdout (the log) goes to out/TAG.log, its stderr to out/TAG.rawerr.
redis_start() {
	local tag=$1 mode=$2 dir=$tmp/$1 try port pid i reply rc
	local pre=(env "${unset_harness[@]}" -u LD_PRELOAD)
	[ "$mode" = preload ] && pre=(env "${unset_harness[@]}" LD_PRELOAD="$lib" LABYRINTH_STATS=1)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	for ((try = 0; try < 8; try++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		port_in_use "$port" && continue
		timeout -k 10 $((tmo * 3)) "${pre[@]}" redis-server \
			--bind 127.0.0.1 --port "$port" --save '' --appendonly no \
			--daemonize no --enable-debug-command yes --dir "$dir" \
			--logfile '' --unixsocket '' \
			</dev/null >"out/$tag.log" 2>"out/$tag.rawerr" &
		pid=$!
		bg_pids+=("$pid")
		for ((i = 0; i < 100; i++)); do # up to about 20 s
			kill -0 "$pid" 2>/dev/null || break
			# The reply must name our directory: it is our server.
			reply=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" CONFIG GET dir 2>/dev/null </dev/null)
			if [ "$(printf '%s\n' "$reply" | sed -n 2p)" = "$dir" ]; then
				redis_pid=$pid
				redis_port=$port
				return 0
			fi
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			stop_bg "$pid"
			bg_forget "$pid"
			diag "redis-server $mode: no reply on 127.0.0.1:$port within 20 s; log:"
			diag_file "out/$tag.log"
			return 1
		fi
		wait "$pid" 2>/dev/null
		rc=$?
		bg_forget "$pid"
		# Lost a race for the port: try another one.
		grep -qi 'address already in use' "out/$tag.log" "out/$tag.rawerr" && continue
		diag "redis-server $mode: exited at start: $(describe_rc "$rc"); log:"
		diag_file "out/$tag.log"
		diag "stderr:"
		diag_file "out/$tag.rawerr"
		return 1
	done
	diag "redis-server $mode: found no free port after 8 tries"
	return 1
}

# redis_stop TAG MODE PID: SIGTERM, then it must exit 0 within 20 s.
redis_stop() {
	local tag=$1 mode=$2 pid=$3 i rc
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		diag "redis-server $mode: still running 20 s after SIGTERM; killed"
		stop_bg "$pid"
		bg_forget "$pid"
		return 1
	fi
	wait "$pid" 2>/dev/null
	rc=$?
	bg_forget "$pid"
	echo "$rc" >"out/$tag.rc"
	if [ "$rc" != 0 ] || grep -qE 'REDIS BUG REPORT|crashed by signal' "out/$tag.log"; then
		diag "redis-server $mode: did not exit cleanly: $(describe_rc "$rc"); log:"
		diag_file "out/$tag.log" 25
		diag "stderr:"
		diag_file "out/$tag.rawerr"
		return 1
	fi
}

if have redis-server redis-cli redis-benchmark; then
	if redis_start redis.srv.plain plain; then
		plain_pid=$redis_pid plain_port=$redis_port
		if redis_start redis.srv.preload preload; then
			pre_pid=$redis_pid pre_port=$redis_port
			run redis.cli.plain plain "$data/redis.txt" redis-cli -h 127.0.0.1 -p "$plain_port"
			run redis.cli.preload plain "$data/redis.txt" redis-cli -h 127.0.0.1 -p "$pre_port"
			check_rc redis.cli.plain "redis-cli against the plain server"
			check_rc redis.cli.preload "redis-cli against the preloaded server"
			compare redis.cli.plain redis.cli.preload "redis-cli replies"
			run redis.bench plain /dev/null redis-benchmark -h 127.0.0.1 -p "$pre_port" \
				-q -n 20000 -r 100000 -t set,get,lpush,lpop,incr
			if check_rc redis.bench "redis-benchmark against the preloaded server"; then
				nres=$(tr '\r' '\n' <out/redis.bench.out | grep -c ' requests per second')
				if [ "$nres" -lt 5 ]; then
					diag "redis-benchmark: $nres results instead of 5; output:"
					diag_file out/redis.bench.out
				fi
			fi
			run redis.cli.after plain "$data/redis.txt" redis-cli -h 127.0.0.1 -p "$pre_port"
			check_rc redis.cli.after "redis-cli against the preloaded server after redis-benchmark"
			compare redis.cli.plain redis.cli.after "redis-cli replies after redis-benchmark"
			if redis_stop redis.srv.preload preload "$pre_pid"; then
				check_stats redis.srv.preload "redis-server with preload"
			fi
		fi
		redis_stop redis.srv.plain plain "$plain_pid"
	fi
	result "redis-server with redis-cli and redis-benchmark"
else
	skip "redis-server with redis-cli and redis-benchmark"
fi

# 8. Perl: regexes, hashes, sorting, string building.
if have perl; then
	pair perl perl /dev/null perl "$data/strings.pl"
	result "perl strings.pl"
else
	skip "perl strings.pl"
fi

# 9. bash itself: arrays, associative arrays, expansions, command substitutions.
if have bash; then
	pair bash bash /dev/null bash "$data/strings.bash"
	result "bash strings.bash"
else
	skip "bash strings.bash"
fi

# Input for sort and xz: about 11 MB of generated text (made without preload).
if have awk; then
	awk 'BEGIN {
		x = 12345
		for (i = 0; i < 400000; i++) {
			x = (x * 1103515245 + 12345) % 2147483648
			printf "%d w%d %s%d\n", x % 100000, int(x / 65536) % 5000, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1, 5), i
		}
	}' >input.txt || rm -f input.txt
fi

# sort and xz close stderr before exiting (coreutils' close_stdout, xz's
# tuklib_exit), before labyrinth's exit-time destructor runs, so their own
# "labyrinth: stats:" lines are lost. They run inside a bash that waits for
# them (trap : EXIT keeps it from exec'ing the last command) and prints its
# line; they inherit LD_PRELOAD from it, and a library that failed to load
# in them would say so on stderr.

# 10. sort: multithreaded, with a small buffer so that it merges temp files.
if have sort && [ -s input.txt ]; then
	mkdir sort.tmp.plain sort.tmp.preload
	# shellcheck disable=SC2016 # ($1 is for the inner bash)
	pair sort "sort" /dev/null bash -c 'trap : EXIT
		LC_ALL=C sort --parallel=2 -S 2M -T "$1" -k2,2 -k1,1n -k3 input.txt' \
		bash "sort.tmp.@MODE@"
	result "sort --parallel=2 of 400000 lines"
else
	skip "sort --parallel=2 of 400000 lines"
fi

# 11. xz: multithreaded compression and decompression.
if have xz sha256sum && [ -s input.txt ]; then
	# shellcheck disable=SC2016 # ($1 is for the inner bash)
	pair xz xz /dev/null bash -c 'set -e -o pipefail; trap : EXIT
		xz -T2 -6 --block-size=1MiB -c input.txt >"$1"
		sha256sum <"$1"
		xz -T2 -dc "$1" | sha256sum
		sha256sum <input.txt' bash "xz.@MODE@.xz"
	result "xz -T2 compress and decompress"
else
	skip "xz -T2 compress and decompress"
fi

if [ "$t" != "$n_tests" ]; then
	echo "Bail out! harness error: ran $t tests, planned $n_tests"
	exit 1
fi
exit 0

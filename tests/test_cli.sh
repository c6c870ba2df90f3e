#!/bin/bash
# The labyrinth command: options become LABYRINTH_* variables, the program's
# exit status passes through, a signal names the report that came before it,
# and `labyrinth check` passes in both guard modes. Prints TAP.
build=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}
lab=$build/cli/labyrinth
probe=$build/tests/shim_probe
if [ ! -x "$lab" ] || [ ! -x "$probe" ]; then
	echo "Bail out! missing $lab or $probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset LABYRINTH_GUARD

out=$("$lab" --help)
check '[[ $out == "usage: labyrinth "* && $out == *"--seccomp"* && $out == *"--map=..."* ]]' \
	"--help prints the usage" "'$out'"
out=$("$lab" --version)
check '[[ $out =~ ^labyrinth\ [0-9]+\.[0-9]+ ]]' "--version prints the version" "'$out'"

"$lab" -- sh -c 'exit 7'
st=$?
check '[ $st -eq 7 ]' "the program's exit status passes through" "status $st"

"$lab" nonexistent-program-xyz 2>"$tmp/err"
st=$?
check '[ $st -eq 127 ] && grep -q "cannot run nonexistent-program-xyz" "$tmp/err"' \
	"a program that cannot run: 127 and one line" "status $st, $(cat "$tmp/err")"

"$lab" --bogus true 2>"$tmp/err"
st=$?
check '[ $st -eq 125 ] && grep -q "unknown option --bogus" "$tmp/err"' \
	"an unknown option: 125" "status $st, $(cat "$tmp/err")"

# Options reach the program as variables; LD_PRELOAD keeps what was there.
out=$(LD_PRELOAD=libm.so.6 "$lab" --no-zero --quarantine=7 --epoch=9 --on-error=log \
	--guard=mprotect sh -c 'echo "$LD_PRELOAD|$LABYRINTH_ZERO|$LABYRINTH_QUARANTINE|$LABYRINTH_EPOCH|$LABYRINTH_ON_ERROR|$LABYRINTH_GUARD"' 2>/dev/null)
check '[[ $out == *"liblabyrinth-preload.so:libm.so.6|0|7|9|log|mprotect" ]]' \
	"options set the variables and keep LD_PRELOAD" "'$out'"

"$lab" "$probe" double-free 2>"$tmp/err" >/dev/null
st=$?
last=$(tail -n1 "$tmp/err")
check '[ $st -eq 134 ] && [[ $last == *"died of SIGABRT (signal 6) after the report \"labyrinth: double free of 0x"* ]]' \
	"a double free: 134 and the report named" "status $st, '$last'"

"$lab" sh -c 'kill -SEGV $$' 2>"$tmp/err"
st=$?
check '[ $st -eq 139 ] && grep -q "died of SIGSEGV (signal 11), with no labyrinth report" "$tmp/err"' \
	"a signal without a report: 128+N and says so" "status $st, $(cat "$tmp/err")"

# A wrong value in the environment: one warning line naming it, the value
# and what is accepted, and the program runs with the default.
err=$(LABYRINTH_QUARANTINE=lots "$lab" "$probe" first 2>&1 >/dev/null)
st=$?
check '[ $st -eq 0 ] && [ "$err" = "labyrinth: warning: LABYRINTH_QUARANTINE=lots: invalid value, keeping the default 1024; accepted: 0 to 65536" ]' \
	"a bad value warns once and runs" "status $st, '$err'"

err=$("$lab" --stats "$probe" first 2>&1 >/dev/null)
check '[[ $err == "labyrinth: stats: shim_probe (pid "[0-9]*"): allocations "*", guard pages "*", mappings "*" of "* ]]' \
	"--stats prints the summary" "'$err'"

# JSON and the map from the same exit: the map shows every live room
# (live_rooms also counts large cells held in quarantine).
(cd "$tmp" && "$lab" --stats=json:s.json --map=m.svg "$probe" grow 16 >/dev/null)
res=$(python3 - "$tmp/s.json" "$tmp/m.svg" <<'PY'
import json, sys, xml.etree.ElementTree as E
s = json.load(open(sys.argv[1]))
r = E.parse(sys.argv[2]).getroot()
n = lambda c: sum(1 for e in r.iter("{http://www.w3.org/2000/svg}rect") if e.get("class") == c)
print(s["live_rooms"] == n("room") + n("held") and s["live_rooms"] > 3, s["live_rooms"], n("room"))
PY
)
check '[[ $res == True* ]]' "--stats=json and --map (relative names) agree on the rooms" "'$res'"

# SIGUSR2 draws the map while the program runs.
rm -f "$tmp/u.svg"
"$lab" --map="$tmp/u.svg" sh -c 'kill -USR2 $$; test -s "$0"' "$tmp/u.svg"
st=$?
check '[ $st -eq 0 ] && grep -q "</svg>" "$tmp/u.svg"' "SIGUSR2 draws the map at once" "status $st"

# Run from the build tree it uses the build tree's library; a copy
# elsewhere uses the installed one, or ../lib beside itself.
out=$("$lab" sh -c 'echo "$LD_PRELOAD"')
check '[ "$out" = "$(cd "$build" && pwd -P)/preload/.libs/liblabyrinth-preload.so" ]' \
	"from the build tree: the build tree's library" "'$out'"
mkdir -p "$tmp/inst/bin" "$tmp/inst/lib"
cp "$lab" "$tmp/inst/bin/" && cp "$build/preload/.libs/liblabyrinth-preload.so" "$tmp/inst/lib/"
out=$("$tmp/inst/bin/labyrinth" sh -c 'echo "$LD_PRELOAD"')
check '[[ $out == "$tmp/inst/bin/../lib/liblabyrinth-preload.so" || ( $out == /* && $out != *"/preload/.libs/"* ) ]]' \
	"installed elsewhere: not the build tree's library" "'$out'"

for mode in markers mprotect; do
	out=$("$lab" check --guard=$mode 2>&1)
	st=$?
	check '[ $st -eq 0 ] && [[ $out == *"10 of 10 checks passed"* ]]' \
		"labyrinth check passes ($mode)" "status $st: $out"
	check '[[ $out == *"guard every block "*"1 byte past a 32-byte block"*"SIGSEGV"*ok* &&
		$out == *"sampling, one in 1 "*"SIGSEGV"*ok* ]]' \
		"labyrinth check has rows for --guard-all and --sample ($mode)" "$out"
done
out=$("$lab" check --no-canary 2>&1)
st=$?
check '[ $st -eq 1 ] && [[ $out == *"canary "*"not stopped"*"FAILED"* ]]' \
	"labyrinth check fails when a protection is off" "status $st: $out"

# ---- issue 16: rough edges ------------------------------------------------

# A service stopped the normal way (systemd sends SIGTERM) still tells its
# summary and draws its map, and dies of the same signal as before.
rm -f "$tmp/t.svg"
err=$("$lab" --stats --map="$tmp/t.svg" bash -c 'x=$(echo hi); kill -TERM $$' 2>&1)
st=$?
check '[ $st -eq 143 ] && [[ $err == "labyrinth: stats: bash (pid "*"): allocations "* ]] &&
	[[ $err == *"died of SIGTERM (signal 15)"* ]] && grep -q "</svg>" "$tmp/t.svg"' \
	"SIGTERM: the summary and the map, and still 143" "status $st, '$err'"
err=$("$lab" --stats=json:"$tmp/h.json" bash -c 'x=$(echo hi); kill -HUP $$' 2>&1)
st=$?
check '[ $st -eq 129 ] && grep -q "\"program\": \"bash\"" "$tmp/h.json"' \
	"SIGHUP: the JSON summary, and still 129" "status $st, '$err'"
err=$(ulimit -c 0; "$lab" --stats python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGQUIT)' 2>&1)
st=$?
check '[ $st -eq 131 ] && [[ $err == *"labyrinth: stats: python3 (pid "*"): allocations "* ]]' \
	"SIGQUIT: the summary, and still 131" "status $st, '$err'"
# The program's own handler is the program's; its exit tells the summary.
err=$("$lab" --stats bash -c 'trap "exit 3" TERM; kill -TERM $$; sleep 5' 2>&1)
st=$?
check '[ $st -eq 3 ] && [ "$(grep -c "labyrinth: stats: bash" <<<"$err")" -eq 1 ]' \
	"a program that handles SIGTERM keeps its handler" "status $st, '$err'"
# An ignored signal stays ignored (nohup): in the command and in the program.
out=$(nohup "$lab" --stats bash -c 'kill -HUP $$; echo alive' 2>/dev/null)
check '[ "$out" = alive ]' "an ignored SIGHUP stays ignored" "'$out'"

# Each summary names its process: a script's processes can be told apart.
err=$("$lab" --stats sh -c '"$0" first; "$0" first' "$probe" 2>&1 >/dev/null)
pids=$(grep -o '^labyrinth: stats: shim_probe (pid [0-9]*)' <<<"$err" | sort -u | wc -l)
check '[ "$pids" -eq 2 ]' "each summary line names its process" "'$err'"
"$lab" --stats=json:"$tmp/p-%p.json" "$probe" first >/dev/null 2>&1
res=$(python3 -c 'import json,sys,glob; f=glob.glob(sys.argv[1]+"/p-*.json")[0]; s=json.load(open(f))
print(s["program"] == "shim_probe" and f.endswith("p-%d.json" % s["pid"]))' "$tmp")
check '[ "$res" = True ]' "the JSON summary names its process" "'$res'"

# Through the command a bad setting is told once, not by every process.
err=$(LABYRINTH_STAT=1 "$lab" sh -c '"$0" first; "$0" first; "$0" first' "$probe" 2>&1 >/dev/null)
check '[ "$err" = "labyrinth: warning: LABYRINTH_STAT: unknown variable, ignored" ]' \
	"a misspelled variable: one line for a script of three processes" "'$err'"
# A value the script sets itself was not checked: that process tells it,
# naming itself; and a mark made up by hand silences nothing.
err=$("$lab" sh -c 'LABYRINTH_ARENAS=x "$0" first' "$probe" 2>&1 >/dev/null)
check '[[ $err == "labyrinth: warning: shim_probe (pid "[0-9]*"): LABYRINTH_ARENAS=x: invalid value"* ]]' \
	"a value set after the command checked is told by its process" "'$err'"
err=$(LABYRINTH_CHECKED=12345 LABYRINTH_STAT=1 LD_PRELOAD=$build/preload/.libs/liblabyrinth-preload.so \
	"$probe" first 2>&1 >/dev/null)
check '[[ $err == "labyrinth: warning: shim_probe (pid "[0-9]*"): LABYRINTH_STAT: unknown variable, ignored" ]]' \
	"without the command: one line, naming the process" "'$err'"

# Every option is checked, and a bad one refused with one line that names
# it, the value and what is accepted.
bad_option() { # bad_option ARG EXPECTED-LINE
	local err st want=$2
	err=$("$lab" "$1" true 2>&1)
	st=$?
	check '[ $st -eq 125 ] && [ "$err" = "$want" ]' "$1 is refused" "status $st, '$err'"
}
bad_option --guard=foo "labyrinth: --guard=foo: invalid value; accepted: auto, markers, mprotect (labyrinth --help)"
bad_option --quarantine=999999 "labyrinth: --quarantine=999999: invalid value; accepted: 0 to 65536 (labyrinth --help)"
bad_option --map "labyrinth: --map: needs a value, as in --map=FILE.svg (labyrinth --help)"
bad_option --stats=json: "labyrinth: --stats=json:: invalid value; accepted: 0, 1, json:FILE (labyrinth --help)"
bad_option --stats=json:/nonexistent-dir/x.json "labyrinth: --stats=json:/nonexistent-dir/x.json: cannot write the file: no directory /nonexistent-dir"
bad_option --map="$tmp" "labyrinth: --map=$tmp: cannot write the file: it is a directory"
bad_option --no-zero=1 "labyrinth: --no-zero=1: takes no value (labyrinth --help)"
bad_option --seccomp=foo "labyrinth: --seccomp=foo: takes no value, or =wx (labyrinth --help)"

# A file in the environment that cannot be written: one line, up front.
err=$(LABYRINTH_STATS=json:/nonexistent-dir/x.json LABYRINTH_MAP=/nonexistent-dir/x.svg \
	"$lab" sh -c '"$0" first; "$0" first' "$probe" 2>&1 >/dev/null)
st=$?
check '[ $st -eq 0 ] && [ "$err" = "labyrinth: warning: LABYRINTH_STATS=json:/nonexistent-dir/x.json: cannot write it: no directory /nonexistent-dir; ignored
labyrinth: warning: LABYRINTH_MAP=/nonexistent-dir/x.svg: cannot write it: no directory /nonexistent-dir; ignored" ]' \
	"unwritable files in the environment: told once, up front" "status $st, '$err'"
# Without the command the library tells it when it fails, naming itself.
err=$(LABYRINTH_STATS=json:/nonexistent-dir/x.json LD_PRELOAD=$build/preload/.libs/liblabyrinth-preload.so \
	"$probe" first 2>&1 >/dev/null)
check '[[ $err == "labyrinth: warning: shim_probe (pid "[0-9]*"): LABYRINTH_STATS=json:/nonexistent-dir/x.json: cannot write it: No such file or directory" ]]' \
	"without the command: an unwritable file is told at exit" "'$err'"

err=$(LABYRINTH_UAF_CHECK=1 LABYRINTH_ZERO=0 "$lab" "$probe" first 2>&1 >/dev/null)
check '[ "$err" = "labyrinth: warning: LABYRINTH_UAF_CHECK=1: the check is off, since it needs LABYRINTH_ZERO=1 and LABYRINTH_ZERO=0 is set" ]' \
	"the use-after-free check turned off by LABYRINTH_ZERO=0 is said" "'$err'"

# labyrinth check: every row's result under the header's "result".
out=$("$lab" check --no-canary 2>&1)
col=$(awk '/^protection / { print index($0, "result") }' <<<"$out")
bad=$(awk -v c="$col" '/ (ok|FAILED)$/ && substr($0, c) !~ /^(ok|FAILED)$/' <<<"$out")
check '[ -n "$col" ] && [ -z "$bad" ]' "labyrinth check: the result column lines up" "$bad"


# ---- issue 15: the fuzzing modes ----------------------------------------

out=$("$lab" --guard-all --sample=100 --exit-check sh -c 'echo "$LABYRINTH_GUARD_ALL|$LABYRINTH_SAMPLE|$LABYRINTH_EXIT_CHECK"' 2>&1)
check '[ "$out" = "1|100|1" ]' "--guard-all, --sample=N, --exit-check set their variables" "'$out'"
out=$("$lab" --help)
check '[[ $out == *"--guard-all "* && $out == *"--sample=..."* && $out == *"--exit-check "* ]]' \
	"--help names the fuzzing modes" "'$out'"

# One byte past a 32-byte block: the canary would find it only at free or
# exit; under --guard-all the write itself faults and is explained.
err=$("$lab" --guard-all -- "$lab" __probe one-byte-overflow 2>&1)
st=$?
check '[ $st -eq 139 ] && [[ $err == "labyrinth: SIGSEGV: heap overflow, write at 0x"*"-byte block at 0x"* ]] &&
	[[ $err == *"died of SIGSEGV (signal 11) after the report \"labyrinth: SIGSEGV: heap overflow"* ]]' \
	"--guard-all: a 1-byte overflow of a small block faults at once" "status $st, '$err'"
err=$("$lab" --sample=1 -- "$lab" __probe one-byte-overflow 2>&1)
st=$?
check '[ $st -eq 139 ] && [[ $err == "labyrinth: SIGSEGV: heap overflow, write at 0x"* ]]' \
	"--sample=1: the same overflow faults at once" "status $st, '$err'"

for bad in 0 foo -3 1000001; do
	err=$("$lab" --sample=$bad true 2>&1)
	st=$?
	check '[ $st -eq 125 ] && [ "$err" = "labyrinth: --sample=$bad: invalid value; accepted: 1 (every allocation) to 1000000 (labyrinth --help)" ]' \
		"--sample=$bad is refused: one line, 125" "status $st, '$err'"
done
for bad in --guard-all=2 --exit-check=yes --sample; do
	err=$("$lab" $bad true 2>&1)
	st=$?
	check '[ $st -eq 125 ] && [ "$(wc -l <<<"$err")" -eq 1 ] && [[ $err == "labyrinth: $bad: "* ]]' \
		"$bad is refused: one line, 125" "status $st, '$err'"
done

echo "1..$n"

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

# A wrong value: one warning line from the library, and the program runs.
err=$("$lab" --quarantine=lots "$probe" first 2>&1 >/dev/null)
check '[[ $err == "labyrinth: warning: LABYRINTH_QUARANTINE: invalid value"* ]] && [ "$(wc -l <<<"$err")" -eq 1 ]' \
	"a bad value warns once and runs" "'$err'"

err=$("$lab" --stats "$probe" first 2>&1 >/dev/null)
check '[[ $err == "labyrinth: stats: allocations "*", guard pages "*", mappings "*" of "* ]]' \
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
	check '[ $st -eq 0 ] && [[ $out == *"8 of 8 checks passed"* ]]' \
		"labyrinth check passes ($mode)" "status $st: $out"
done
out=$("$lab" check --no-canary 2>&1)
st=$?
check '[ $st -eq 1 ] && [[ $out == *"canary "*"not stopped"*"FAILED"* ]]' \
	"labyrinth check fails when a protection is off" "status $st: $out"

echo "1..$n"

#!/bin/bash
# tests/run-criterion, the runner of every Criterion program: a program that
# hangs is killed at LAB_TEST_TIMEOUT and reported as a failure in each
# guard mode, and a program that stops short of its plan is reported too.
# TAP.
. "$(dirname "$0")/tap.sh"
runner=$(dirname "$0")/run-criterion
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Stand-ins for a Criterion program: one result, then a hang or an early exit.
printf '#!/bin/sh\necho 1..2; echo "ok - first"; sleep 300\n' >"$tmp/hangs"
printf '#!/bin/sh\necho 1..2; echo "ok - first"; exit 1\n' >"$tmp/stops"
chmod +x "$tmp/hangs" "$tmp/stops"

start=$SECONDS
out=$(LAB_TEST_TIMEOUT=2 "$runner" "$tmp/hangs")
took=$((SECONDS - start))
check '[ "$took" -lt 60 ]' "a hung program is killed at the limit" "took $took s"
for mode in markers mprotect; do
	check 'grep -q "^not ok - $mode: hangs was still running after 2 s" <<<"$out"' \
		"$mode: the hang is a failure naming the program" "$out"
	check 'grep -q "^ok - $mode: first" <<<"$out"' "$mode: results before the hang are kept" "$out"
done

out=$("$runner" "$tmp/stops")
check 'grep -q "^not ok - markers: stops reported 1 of 2 tests" <<<"$out"' \
	"a program that stops short of its plan is a failure" "$out"
check '[ "$(head -n1 <<<"$out")" = "1..$(grep -c "^ok\|^not ok" <<<"$out")" ]' \
	"the plan counts every line" "$out"
echo "1..$n"

#!/bin/bash
# Add up the TAP results of the last `make check` and print the closing line
# "N passed, N failed" (skips are counted apart). Run from the build dir.
dir=${1:-.}
pass=0 fail=0 skip=0
while IFS= read -r trs; do
	while IFS= read -r line; do
		case $line in
		":test-result: PASS"* | ":test-result: XFAIL"*) pass=$((pass + 1)) ;;
		":test-result: FAIL"* | ":test-result: XPASS"* | ":test-result: ERROR"*) fail=$((fail + 1)) ;;
		":test-result: SKIP"*) skip=$((skip + 1)) ;;
		esac
	done <"$trs"
done < <(find "$dir/tests" -name '*.trs' 2>/dev/null)
# Name what failed, so a CI log says why without the build tree.
while IFS= read -r log; do
	grep -q '^not ok' "$log" 2>/dev/null || continue
	echo "--- failures in ${log#"$dir"/}:"
	grep -A12 '^not ok' "$log" | head -60
done < <(find "$dir/tests" -name '*.log' ! -name test-suite.log 2>/dev/null)
if [ $((pass + fail)) -eq 0 ]; then
	[ -f "$dir/config.log" ] && tail -20 "$dir/config.log"
	echo "0 passed, 1 failed"       # no results at all is a failure
	exit 1
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]

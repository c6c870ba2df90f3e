#!/bin/bash
# Add up the TAP results of the last `make check` and print the closing line
# "N passed, N failed" (skips are counted apart). Run from the build dir;
# with several build dirs (the normal and the sanitizer build), one line for
# all of them. A dir with no results at all counts as a failure.
[ $# -gt 0 ] || set -- .
pass=0 fail=0 skip=0 empty=0
for dir in "$@"; do
	before=$((pass + fail))
	while IFS= read -r trs; do
		while IFS= read -r line; do
			case $line in
			":test-result: PASS"* | ":test-result: XFAIL"*) pass=$((pass + 1)) ;;
			":test-result: FAIL"* | ":test-result: XPASS"* | ":test-result: ERROR"*) fail=$((fail + 1)) ;;
			":test-result: SKIP"*) skip=$((skip + 1)) ;;
			esac
		done <"$trs"
	done < <(find "$dir/tests" "$dir/fuzz" -name '*.trs' 2>/dev/null)
	# Name what failed, so a CI log says why without the build tree.
	while IFS= read -r log; do
		grep -q '^not ok' "$log" 2>/dev/null || continue
		echo "--- failures in ${log#"$dir"/}:"
		grep -A12 '^not ok' "$log" | head -60
	done < <(find "$dir/tests" "$dir/fuzz" -name '*.log' ! -name test-suite.log 2>/dev/null)
	if [ $((pass + fail)) -eq "$before" ]; then
		echo "--- no test results in $dir"
		[ -f "$dir/config.log" ] && tail -20 "$dir/config.log"
		empty=$((empty + 1))
	fi
done
fail=$((fail + empty))         # no results at all is a failure
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]

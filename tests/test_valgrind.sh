#!/bin/bash
# Valgrind's memcheck sees labyrinth's blocks (src/annotate.h): a program
# using the API gets no false report, and its planted leak, use after free,
# overflow and uninitialised read are reported. Prints TAP; skips when
# valgrind or its headers (the annotations) are missing.
build=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}
probe=$build/tests/vg_probe
if ! command -v valgrind >/dev/null; then
	echo "1..0 # SKIP valgrind is not installed"
	exit 0
fi
if ! grep -q "HAVE_VALGRIND_MEMCHECK_H 1" "$build/config.log" 2>/dev/null; then
	echo "1..0 # SKIP built without valgrind/memcheck.h: no annotations"
	exit 0
fi
echo "1..5"
n=0
check() {       # mode, pattern, description
	n=$((n + 1))
	local out
	out=$(LABYRINTH_GUARD=mprotect timeout 300 valgrind --leak-check=full "$probe" "$1" 2>&1)
	if grep -q "$2" <<<"$out"; then
		echo "ok $n - $3"
	else
		echo "not ok $n - $3"
		tail -15 <<<"$out" | sed 's/^/# /'
	fi
}
check clean "ERROR SUMMARY: 0 errors" "a clean program gets no report"
check leak "77 bytes in 1 blocks are definitely lost" "a lost labyrinth block is a leak"
check uaf "Invalid read of size 1" "a read of a freed block is an invalid read"
check overflow "Invalid read of size 1" "a read past a block is an invalid read"
check uninit "depends on uninitialised value" "malloc's bytes are undefined"

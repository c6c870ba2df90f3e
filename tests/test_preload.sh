#!/bin/bash
# The preload shim seen from a plain program: the malloc family's contract,
# random first addresses, a heap of GiB within the map count, reports.
# Prints TAP. Runs each check in both guard modes.
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
probe=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests/shim_probe
if [ ! -f "$lib" ] || [ ! -x "$probe" ]; then
	echo "Bail out! missing $lib or $probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"
run() { timeout 300 env LD_PRELOAD="$lib" "$probe" "$@"; }

for mode in markers mprotect; do
	export LABYRINTH_GUARD=$mode
	# The probe's own checks, renumbered into this stream.
	while IFS= read -r line; do
		case $line in
		"ok - "*) ok "$mode: ${line#ok - }" ;;
		"not ok - "*) not_ok "$mode: ${line#not ok - }" ;;
		esac
	done < <(run shim 2>&1)

	# An address-space limit (ulimit -v) shrinks the maze rather than fail:
	# a 2 GB limit once left every program "memory exhausted".
	if out=$(ulimit -v 2000000; run first 2>&1) && [ -n "$out" ]; then
		ok "$mode: a program runs under ulimit -v 2000000"
	else
		not_ok "$mode: under ulimit -v 2000000: $out"
	fi

	a=$(run first); b=$(run first); c=$(run first)
	if [ -n "$a" ] && [ "$a" != "$b" ] && [ "$b" != "$c" ] && [ "$a" != "$c" ]; then
		ok "$mode: first allocations differ between runs"
	else
		not_ok "$mode: first allocations repeat: '$a' '$b' '$c'"
	fi

	if out=$(run grow 2048) ; then
		read -r before after <<<"$out"
		echo "# $mode: 2 GiB of 64-byte objects: $before mappings before, $after with the heap"
		ok "$mode: 2 GiB of small objects within the map count"
	else
		not_ok "$mode: 2 GiB of small objects failed: $out"
	fi

	err=$(run double-free 2>&1 >/dev/null)
	status=$?
	if [ $status -eq 134 ] && [[ $err == "labyrinth: double free of 0x"* ]]; then
		ok "$mode: double free aborts with one line"
	else
		not_ok "$mode: double free: status $status, stderr '$err'"
	fi

	# realloc's fast path checks the old block as free does: an overflow
	# of one byte is found whether the block stays or moves, and a freed
	# block is refused.
	for m in realloc-overflow realloc-overflow-move realloc-freed; do
		err=$(run $m 2>&1 >/dev/null)
		status=$?
		case $m in
		realloc-freed) what="labyrinth: invalid realloc of 0x" why="already freed" ;;
		*) what="labyrinth: heap overflow of 0x" why="canary changed at +20," ;;
		esac
		first=$(head -n 1 <<<"$err")
		if [ $status -eq 134 ] && [[ $first == "$what"* && $first == *"$why"* ]]; then
			ok "$mode: $m aborts with one line naming it"
		else
			not_ok "$mode: $m: status $status, stderr '$err'"
		fi
	done

	err=$(run zero-double-free 2>&1 >/dev/null)
	status=$?
	if [ $status -eq 134 ] && [[ $err == "labyrinth: double free of 0x"* ]] && [ "$(grep -vc '^labyrinth: \(stack:\|    #\|allocated by:\|freed by:\)' <<<"$err")" -eq 1 ]; then
		ok "$mode: double free of a zero-size block aborts with one report line (and its stack)"
	else
		not_ok "$mode: zero-size double free: status $status, stderr '$err'"
	fi
done
unset LABYRINTH_GUARD

err=$(LABYRINTH_STATS=1 run first 2>&1 >/dev/null)
if [[ $err == "labyrinth: stats: "* ]]; then ok "LABYRINTH_STATS=1 prints a summary"; else not_ok "no summary: '$err'"; fi

# C++ new and delete go through the shim: sizes are checked exactly, and
# correct code (zero sizes, over-aligned types, pmr, bad_alloc) runs clean.
if command -v g++ >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	cat >"$tmp/cxx.cc" <<'CC'
#include <cstdio>
#include <cstdint>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>
/* C23's sized free, which this libc does not declare: the preload has it. */
extern "C" void free_sized(void *, std::size_t) __attribute__((weak));
struct alignas(8192) Page { char bytes[100]; };
struct alignas(64) Line { char bytes[16384]; };
struct Counted { std::string s = "x"; ~Counted() {} };
int main(int argc, char **argv)
{
	if (argc > 1 && argv[1][0] == 'z') {    /* the bug: a write to new char[0] */
		static char *volatile z;        /* kept: the compiler may not drop it */
		z = new char[argc - 2];         /* 0, unknown to the compiler */
		z[0] = 1;
		return 0;
	}
	if (argc > 1 && argv[1][0] == 'm') {    /* the bug: SIZE_MAX, by delete or free_sized */
		void *p = ::operator new(24);
		if (argv[1][1] == 'c' && free_sized)
			free_sized(p, SIZE_MAX);
		else
			::operator delete(p, SIZE_MAX);
		return 0;
	}
	if (argc > 1) {                         /* the bug: a wrong size */
		void *p = ::operator new(24);
		::operator delete(p, 32);
		return 0;
	}
	::operator delete(::operator new(0), std::size_t(0));
	void *a = ::operator new(33, std::align_val_t(32));
	::operator delete(a, 33, std::align_val_t(32));
	delete new Page;
	delete new Line;
	delete[] new Counted[7];
	auto *r = std::pmr::new_delete_resource();
	r->deallocate(r->allocate(100, 8), 100, 8);
	std::vector<std::string> v(1000, std::string(100, 'y'));
	try {
		volatile std::size_t huge = SIZE_MAX / 2;
		char *never = new char[huge];
		std::printf("no bad_alloc %p\n", (void *)never);
		return 1;
	} catch (const std::bad_alloc &) {
		std::puts("bad_alloc caught");
	}
	return 0;
}
CC
	if g++ -std=c++17 -O1 -fsized-deallocation "$tmp/cxx.cc" -o "$tmp/cxx" 2>"$tmp/err"; then
		out=$(timeout 60 env LD_PRELOAD="$lib" "$tmp/cxx" 2>&1)
		st=$?
		if [ $st -eq 0 ] && [ "$out" = "bad_alloc caught" ]; then
			ok "C++ new and delete: sizes, alignment, pmr and bad_alloc"
		else
			not_ok "C++ new/delete: status $st, '$out'"
		fi
		err=$(timeout 60 env LD_PRELOAD="$lib" "$tmp/cxx" wrong 2>&1)
		st=$?
		if [ $st -eq 134 ] && [[ $err == *"labyrinth: invalid sized free of 0x"*"(size 32 given, 24 allocated"* ]]; then
			ok "C++ sized delete with the wrong size is reported"
		else
			not_ok "wrong size: status $st, '$err'"
		fi
		# SIZE_MAX is what the free paths take for "no size given": it
		# is still a size no block has.
		for how in m mc; do
			err=$(timeout 60 env LD_PRELOAD="$lib" "$tmp/cxx" $how 2>&1)
			st=$?
			if [ $st -eq 134 ] && [[ $err == "labyrinth: invalid sized free of 0x"*"(size 18446744073709551615 given, 24 allocated"* ]]; then
				ok "a sized free of SIZE_MAX bytes is reported ($how)"
			else
				not_ok "SIZE_MAX sized free ($how): status $st, '$err'"
			fi
		done
		{ timeout 60 env LD_PRELOAD="$lib" "$tmp/cxx" zero; st=$?; } 2>/dev/null
		if [ $st -eq 139 ]; then
			ok "C++ new char[0]: a write through it faults"
		else
			not_ok "new char[0]: a write did not fault (status $st)"
		fi
	else
		not_ok "g++ could not build the C++ probe: $(cat "$tmp/err")"
	fi
	rm -rf "$tmp"
else
	n=$((n + 1)); echo "ok $n - C++ new and delete # SKIP g++ not installed"
fi

# coreutils close stderr before exiting; the summary must still appear.
err=$(LABYRINTH_STATS=1 timeout 60 env LD_PRELOAD="$lib" ls / 2>&1 >/dev/null)
if [[ $err == "labyrinth: stats: "* ]]; then ok "the summary survives a program closing stderr"; else not_ok "ls: no summary: '$err'"; fi

err=$(LABYRINTH_GUARD= run first 2>&1 >/dev/null)
if [ -z "$err" ]; then ok "an empty LABYRINTH_GUARD means the default, silently"; else not_ok "empty LABYRINTH_GUARD: '$err'"; fi

err=$(LABYRINTH_ARENAS=lots run first 2>&1 >/dev/null)
if [[ $err == "labyrinth: warning: shim_probe (pid "*"): LABYRINTH_ARENAS=lots: invalid value"* ]] && [ "$(wc -l <<<"$err")" -eq 1 ]; then
	ok "a bad LABYRINTH_ARENAS warns once and runs"
else
	not_ok "bad LABYRINTH_ARENAS: '$err'"
fi

echo "1..$n"

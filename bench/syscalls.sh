#!/bin/sh
# syscalls: the system calls of one `ls /` under glibc and under the
# allocator, counted by `strace -f -c`, for the startup row of `make bench`.
#
#   bench/syscalls.sh [-p PRELOAD.so]
#
# A process's fixed price under a machine-wide preload is mostly system
# calls made before main and at the first malloc (mappings, guard marks,
# mprotect); the total and the memory-management calls among them are
# printed. Without strace (or where ptrace is not allowed) it says so and
# succeeds: the benchmark does not need it.
set -u
preload=''
while getopts p: opt; do
	case $opt in
	p) preload=$OPTARG ;;
	*) echo "usage: $0 [-p PRELOAD.so]" >&2; exit 2 ;;
	esac
done

# shellcheck disable=SC2016 # the backquotes are text
title='system calls of one `ls /` (strace -f -c)'
if ! command -v strace >/dev/null 2>&1; then
	echo "$title: skipped, strace is not installed"
	exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/labbench-strace.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

# strace itself runs without the allocator; -E gives it to ls alone.
if ! env -u LD_PRELOAD strace -f -c -o "$dir/glibc" ls / >/dev/null 2>"$dir/err" ||
	! env -u LD_PRELOAD strace -f -c -o "$dir/alloc" ${preload:+-E "LD_PRELOAD=$preload"} \
		ls / >/dev/null 2>>"$dir/err"; then
	echo "$title: skipped, strace failed: $(head -n 1 "$dir/err")"
	exit 0
fi

# The calls column (the 4th) of one syscall's line, 0 if it made none.
calls() {
	awk -v name="$2" '$NF == name { n = $4 } END { print n + 0 }' "$dir/$1"
}

label=labyrinth
[ -n "$preload" ] || label='glibc#2'
g=$(calls glibc total) l=$(calls alloc total)
echo
echo "$title: glibc $g, $label $l ($(awk -v g="$g" -v l="$l" 'BEGIN { printf "%.2fx", l / g }'))"
line='  of which'
for c in mmap munmap mprotect madvise brk; do
	line="$line $c $(calls glibc $c)/$(calls alloc $c),"
done
echo "${line%,} (glibc/$label)"

#!/bin/bash
# The labyrinth command prints a report's stacks again after the program
# died, with function, file and line from addr2line or llvm-symbolizer,
# batched per module under a time limit; without either tool, the frames as
# they came. The program's stderr passes through, and its exit status.
# Prints TAP.
build=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}
lab=$build/cli/labyrinth
if [ ! -x "$lab" ]; then
	echo "Bail out! missing $lab"
	exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
	echo "1..0 # SKIP no cc to build the test program"
	exit 0
fi
. "$(dirname "$0")/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset LABYRINTH_GUARD LABYRINTH_GUARD_ALL LABYRINTH_SAMPLE LABYRINTH_ON_ERROR

# The bugs sit on lines whose numbers the test reads back from the source.
cat >"$tmp/bug.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void *volatile sink;
__attribute__((noinline)) static void release(char *p)
{
	free(p); /* FREE */
}
int main(int argc, char **argv)
{
	char *p = malloc(32); /* MALLOC */
	sink = p;
	fprintf(stderr, "bug: before\n");
	if (argc > 1 && strcmp(argv[1], "overflow") == 0)
		((volatile char *)sink)[32] = 'A'; /* OVERFLOW */
	if (argc > 1 && strcmp(argv[1], "underflow") == 0)
		((volatile char *)sink)[-1] = 'A';
	release(p);
	release(sink); /* SECOND */
	return 0;
}
EOF
line() { grep -n "/\* $1 \*/" "$tmp/bug.c" | cut -d: -f1; }
if ! cc -g -O0 -o "$tmp/bug" "$tmp/bug.c"; then
	echo "Bail out! cc -g -O0 failed"
	exit 1
fi

# A double free: the stack names release() at the free and main() at the
# second call, by file and line; then the line naming the report, last.
err=$("$lab" "$tmp/bug" 2>&1)
st=$?
sym=$(sed -n '/^labyrinth: stack, symbolized:$/,/^labyrinth: .*died of/p' <<<"$err")
check '[ $st -eq 134 ] && [[ $(head -n1 <<<"$err") == "bug: before" ]] &&
	grep -Eq "^    #[0-9]+ 0x[0-9a-f]+ in release .*bug\.c:$(line FREE)\$" <<<"$sym" &&
	grep -Eq "^    #[0-9]+ 0x[0-9a-f]+ in main .*bug\.c:$(line SECOND)\$" <<<"$sym" &&
	[[ $(tail -n1 <<<"$err") == *"died of SIGABRT (signal 6) after the report \"labyrinth: double free of "* ]]' \
	"a double free: the symbolized stack names file:line of the free and its caller" \
	"status $st, '$err'"
# The program's own report came first, unchanged: symbolizing adds, it
# does not replace.
raw=$(grep -c '^labyrinth:     #' <<<"$err")
check '[ "$raw" -ge 3 ] && [[ $err == *"labyrinth: double free of "*"labyrinth: stack:"*"labyrinth: stack, symbolized:"* ]]' \
	"the library's raw stack still comes first" "'$err'"

# A heap overflow under --guard-all: the frame where it faulted is the
# write itself (not a return address), and the block's allocation site.
err=$("$lab" --guard-all "$tmp/bug" overflow 2>&1)
st=$?
alloc=$(sed -n '/^labyrinth: allocated by, symbolized:$/,/^labyrinth: /p' <<<"$err")
check '[ $st -eq 139 ] &&
	grep -Eq "^    #0 0x[0-9a-f]+ in main .*bug\.c:$(line OVERFLOW)\$" <<<"$err" &&
	grep -Eq "^    #[0-9]+ 0x[0-9a-f]+ in main .*bug\.c:$(line MALLOC)\$" <<<"$alloc"' \
	"--guard-all: the fault's line and the block's allocation line" "status $st, '$err'"

# An underflow under --guard-all, found at the free: every stack starts at
# the program's own frame (#0 is release's call to free, main's to
# malloc), and the free's stack, the one above, is said to be so, symbolized
# or not.
err=$("$lab" --guard-all "$tmp/bug" underflow 2>&1)
st=$?
stack=$(sed -n '/^labyrinth: stack, symbolized:$/,/^labyrinth: /p' <<<"$err")
alloc=$(sed -n '/^labyrinth: allocated by, symbolized:$/,/^labyrinth: /p' <<<"$err")
check '[ $st -eq 134 ] && [[ $err == *"labyrinth: heap underflow of "* ]] &&
	grep -Eq "^    #0 0x[0-9a-f]+ in release .*bug\.c:$(line FREE)\$" <<<"$stack" &&
	grep -Eq "^    #0 0x[0-9a-f]+ in main .*bug\.c:$(line MALLOC)\$" <<<"$alloc" &&
	[ "$(grep -c "^labyrinth: freed by: the same frames as the stack above\$" <<<"$err")" -eq 2 ]' \
	"--guard-all underflow: stacks start at the program's call; the free's stack is the one above" \
	"status $st, '$err'"

# llvm-symbolizer alone serves as well as addr2line.
if command -v llvm-symbolizer >/dev/null 2>&1; then
	mkdir "$tmp/llvm" && ln -s "$(command -v llvm-symbolizer)" "$tmp/llvm/"
	err=$(PATH=$tmp/llvm "$lab" "$tmp/bug" 2>&1)
	st=$?
	check '[ $st -eq 134 ] && grep -Eq "^    #[0-9]+ 0x[0-9a-f]+ in release .*bug\.c:$(line FREE)\$" <<<"$err"' \
		"llvm-symbolizer when there is no addr2line" "status $st, '$err'"
else
	skip "llvm-symbolizer when there is no addr2line (none here)"
fi

# Neither tool: the frames as the library printed them, under a title that
# says so, and the same exit status.
mkdir "$tmp/empty"
err=$(PATH=$tmp/empty "$lab" "$tmp/bug" 2>&1)
st=$?
copy=$(sed -n '/^labyrinth: stack, not symbolized (no addr2line or llvm-symbolizer in PATH):$/,/^labyrinth: /p' <<<"$err" |
	grep '^    #' | sed 's/^    /labyrinth:     /')
orig=$(sed -n '/^labyrinth: stack:$/,/^labyrinth: stack, /p' <<<"$err" | grep '^labyrinth:     #')
check '[ $st -eq 134 ] && [ -n "$copy" ] && [ "$copy" = "$orig" ] && [[ $copy == *"bug+0x"* ]]' \
	"no addr2line: the raw frames are printed" "status $st, '$err'"

# A symbolizer that hangs is killed after 10 s: the program's status and
# its frames still come.
mkdir "$tmp/hang"
printf '#!/bin/sh\nexec /bin/sleep 600\n' >"$tmp/hang/addr2line"
chmod +x "$tmp/hang/addr2line"
start=$(date +%s)
err=$(PATH=$tmp/hang "$lab" "$tmp/bug" 2>&1)
st=$?
took=$(($(date +%s) - start))
check '[ $st -eq 134 ] && [ $took -le 15 ] && [[ $err == *"took over 10 s):"*"bug+0x"*"died of SIGABRT"* ]]' \
	"a hung addr2line is killed: the raw frames and the status still come" \
	"status $st after ${took}s, '$err'"

# With --on-error=log the program goes on; the last report's stacks are
# symbolized at its exit, and its status (0) passes through.
err=$("$lab" --on-error=log "$tmp/bug" 2>&1)
st=$?
check '[ $st -eq 0 ] && grep -Eq "^    #[0-9]+ 0x[0-9a-f]+ in release .*bug\.c:$(line FREE)\$" <<<"$err"' \
	"--on-error=log: symbolized at exit, status 0" "status $st, '$err'"

echo "1..$n"

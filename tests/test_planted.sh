#!/bin/bash
# Planted bugs: tests/planted CASE makes one heap bug and exits normally;
# this script runs each case under every labyrinth mode (and under
# AddressSanitizer, when the compiler has it) and holds the first report's
# kind, and when it came, to the table below. The table of fuzz/README.md
# is this table, printed by `tests/test_planted.sh --table`; the test fails
# if the two differ. Prints TAP.
src=$(dirname "$0")/..
lib=${LAB_TEST_PRELOAD:-$src/preload/.libs/liblabyrinth-preload.so}
bin=${LAB_TEST_BUILDDIR:-$src}/tests

# The expectations, one place for both the test and the README:
#   case | the bug | its verb | default | LABYRINTH_EXIT_CHECK=1 |
#   LABYRINTH_SAMPLE=1 | LABYRINTH_GUARD_ALL=1 | ASan
# A cell is "KIND@WHEN" (KIND: the first labyrinth line's kind, or ASan's
# ERROR line's kind and access; WHEN: bug, free or exit, the phase of the
# program it came in) or "-": nothing, the program exits with status 0.
# "SIGSEGV@bug" alone: the process died of the fault with no labyrinth line.
expected='
overflow-7|1-byte overflow of a 7-byte block (`p[7] = x`)|write|heap overflow@free|heap overflow@free|heap overflow@free|heap overflow@free|heap-buffer-overflow, WRITE of size 1@bug
uaf-write|write after free (`free(p); p[8] = x`)|write|-|write after free or wild write@exit|SIGSEGV: use after free@bug|SIGSEGV: use after free@bug|heap-use-after-free, WRITE of size 1@bug
uaf-read|read after free (`free(p); x = p[8]`)|read|-|-|SIGSEGV: use after free@bug|SIGSEGV: use after free@bug|heap-use-after-free, READ of size 1@bug
underflow|underflow of a 32-byte block (`p[-1] = x`)|write|-|write after free or wild write@exit|heap underflow@free|heap underflow@free|heap-buffer-overflow, WRITE of size 1@bug
double-free|double free|free|double free@bug|double free@bug|double free@bug|double free@bug|attempting double-free@bug
interior-free|invalid free (`free(p + 8)`)|free|invalid free@bug|invalid free@bug|invalid free@bug|invalid free@bug|attempting free on address which was not malloc()-ed@bug
large-overflow|1 byte past a 200,000-byte block (`p[200000] = x`)|write|heap overflow@free|heap overflow@free|SIGSEGV: heap overflow@bug|SIGSEGV: heap overflow@bug|heap-buffer-overflow, WRITE of size 1@bug
zero-write|write through `malloc(0)` (`p[0] = x`)|write|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|-
zero-read|read through `malloc(0)` (`x = p[0]`)|read|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|SIGSEGV: access to a zero-size block (malloc(0))@bug|-
'
modes=("" LABYRINTH_EXIT_CHECK=1 LABYRINTH_SAMPLE=1 LABYRINTH_GUARD_ALL=1)
mode_names=("default" "LABYRINTH_EXIT_CHECK=1" "LABYRINTH_SAMPLE=1" "LABYRINTH_GUARD_ALL=1")

# A cell as the README shows it.
words() {
	local cell=$1 verb=$2 kind=${1%@*} when=${1#*@}
	case $cell in
	-) echo "not detected"; return ;;
	SIGSEGV@*) echo "SIGSEGV at the $verb, no report line"; return ;;
	esac
	case $when in
	bug) [ "$verb" = free ] && when="at the call" || when="at the $verb" ;;
	*) when="at $when" ;;
	esac
	echo "$kind, $when"
}

table() {
	echo "| bug | default | \`LABYRINTH_EXIT_CHECK=1\` | \`LABYRINTH_SAMPLE=1\` | \`LABYRINTH_GUARD_ALL=1\` | ASan (gcc \`-fsanitize=address\`) |"
	echo "| --- | --- | --- | --- | --- | --- |"
	while IFS='|' read -r c bug verb d e s g a; do
		[ -n "$c" ] || continue
		echo "| $bug | $(words "$d" "$verb") | $(words "$e" "$verb") | $(words "$s" "$verb") | $(words "$g" "$verb") | $(words "$a" "$verb") |"
	done <<<"$expected"
}

if [ "$1" = "--table" ]; then
	table
	exit 0
fi

if [ ! -f "$lib" ] || [ ! -x "$bin/planted" ]; then
	echo "Bail out! missing $lib or $bin/planted"
	exit 1
fi
. "$src/tests/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The phase the first line matching PATTERN came in (the last marker
# before it); with no PATTERN, the last phase the program reached.
when_of() {
	awk -v pat="$1" '/^planted: / { when = $2 }
		pat != "" && $0 ~ pat { exit }
		END { print when }' "$tmp/err"
}

# outcome [VAR=value]: run the case under the preload; its cell in $got.
outcome() {
	# (in a subshell whose own stderr, the shell's "Aborted", is dropped)
	(env $1 LD_PRELOAD="$lib" "$bin/planted" "$c" 2>"$tmp/err"; exit $?) >/dev/null 2>&1
	rc=$?
	first=$(grep -m1 '^labyrinth: ' "$tmp/err")
	if [ -n "$first" ]; then
		kind=$(sed -E 's/^labyrinth: (SIG[A-Z]+: [^,]*),.*/\1/; t; s/^labyrinth: ([^0]*) (of|to) 0x.*/\1/' <<<"$first")
		got="$kind@$(when_of '^labyrinth: ')"
	elif [ "$rc" -eq 139 ]; then
		got="SIGSEGV@$(when_of '')"
	elif [ "$rc" -eq 0 ]; then
		got="-"
	else
		got="exit status $rc"
	fi
}

# A report must name an address and be followed by a stack; one made in
# the program's own call (not at exit) must reach main.
report_whole() {
	local frames
	grep -q '^labyrinth: [^ ].* 0x[0-9a-f]' <<<"$first" || { why="no address: $first"; return 1; }
	frames=$(sed -n '/^labyrinth: stack:/,/^labyrinth: [a-z]/p' "$tmp/err" | grep -c '^labyrinth:     #')
	[ "$frames" -gt 0 ] || { why="no stack"; return 1; }
	case $got in
	*@exit) ;;
	*) grep -q '^labyrinth:     #[0-9]* main+0x' "$tmp/err" || { why="the stack does not reach main"; return 1; } ;;
	esac
	grep -qE '^labyrinth: (stack|allocated by|freed by): (\(no frames\)|none)' "$tmp/err" &&
		{ why="a stack with no frames"; return 1; }
	return 0
}

# Every stack of a report made in the program's own call starts in the
# program: the faulting instruction, or the call to malloc or free, not
# one of labyrinth's frames (its malloc, its report functions).
first_frames_ours() {
	local bad
	bad=$(awk '/^labyrinth: (stack|allocated by|freed by):$/ { head = $0; getline
			if ($0 !~ /^labyrinth:     #0 .*[(\/]planted\+0x/) print head " " $0 }' "$tmp/err")
	[ -z "$bad" ] || { why="first frame not the program's: $bad"; return 1; }
}

while IFS='|' read -r c bug verb d e s g a; do
	[ -n "$c" ] || continue
	want=("$d" "$e" "$s" "$g")
	for i in 0 1 2 3; do
		outcome "${modes[$i]}"
		check '[ "$got" = "${want[$i]}" ]' "$c, ${mode_names[$i]}: ${want[$i]}" \
			"got '$got' (status $rc): $(head -c 600 "$tmp/err")"
		if [ -n "$first" ]; then
			why=""
			check 'report_whole' "$c, ${mode_names[$i]}: the report has its address and stack" \
				"$why: $(head -c 600 "$tmp/err")"
			if [[ $got != *@exit ]]; then
				check 'first_frames_ours' "$c, ${mode_names[$i]}: each stack starts at the program's frame" \
					"$why: $(head -c 1200 "$tmp/err")"
			fi
		fi
	done
done <<<"$expected"

# The same program under AddressSanitizer, for the last column.
cc=${CC:-cc}
asan=false
if "$cc" -O1 -fsanitize=address -o "$tmp/planted-asan" "$src/tests/planted.c" 2>/dev/null; then
	"$tmp/planted-asan" 2>/dev/null     # the usage line (status 2), if its runtime loads
	[ $? -ne 2 ] || asan=true
fi
if $asan; then
	while IFS='|' read -r c bug verb d e s g a; do
		[ -n "$c" ] || continue
		(ASAN_OPTIONS=detect_leaks=0 "$tmp/planted-asan" "$c" 2>"$tmp/err"; exit $?) >/dev/null 2>&1
		first=$(grep -m1 'ERROR: AddressSanitizer: ' "$tmp/err")
		if [ -n "$first" ]; then
			got=$(sed -E 's/.*AddressSanitizer: //; s/:? (on (address )?)?0x.*//' <<<"$first")
			access=$(grep -m1 -oE '^(READ|WRITE) of size [0-9]+' "$tmp/err")
			[ -z "$access" ] || got="$got, $access"
			got="$got@$(when_of 'ERROR: AddressSanitizer')"
		else
			got="-"
		fi
		check '[ "$got" = "$a" ]' "$c, ASan: $a" "got '$got': $(head -c 600 "$tmp/err")"
	done <<<"$expected"
else
	skip "ASan column: $cc cannot build and run -fsanitize=address here"
fi

# The README's table is this one.
readme=$src/fuzz/README.md
shown=$(sed -n '/<!-- planted: begin/,/<!-- planted: end/{/<!--/d;p;}' "$readme")
check '[ "$shown" = "$(table)" ]' "fuzz/README.md shows the table this test checks" \
	"$(diff <(echo "$shown") <(table))"

echo "1..$n"

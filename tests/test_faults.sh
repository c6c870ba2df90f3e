#!/bin/bash
# Fault reports: a program run under the preload makes one bad access
# (tests/fault_probe CASE) and dies of it; its stderr must say what the
# fault was, to the byte, and it must still die of SIGSEGV. Faults that are
# not labyrinth's must reach the program's own handler, or the default
# action, as if labyrinth were not there. Prints TAP.
lib=${LAB_TEST_PRELOAD:-$(dirname "$0")/../preload/.libs/liblabyrinth-preload.so}
bin=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests
if [ ! -f "$lib" ] || [ ! -x "$bin/fault_probe" ]; then
	echo "Bail out! missing $lib or $bin/fault_probe"
	exit 1
fi
. "$(dirname "$0")/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run [VAR=value...] -- CASE ARGS: stdout in $out, stderr in $err, status in $rc.
run() {
	local envs=()
	while [ "$1" != "--" ]; do envs+=("$1"); shift; done
	shift
	env "${envs[@]}" LD_PRELOAD="$lib" "$bin/fault_probe" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
	block=$(sed -n 's/^block //p' "$tmp/out" | head -n 1)
}
# The address block + n, as the report prints it.
at() { printf '0x%x' $((block + $1)); }
has() { grep -qF -- "$1" <<<"$err"; }
segv() { [ "$rc" -eq 139 ]; }
# "stack:" followed by frames that reach the probe's main.
has_stack() { has "labyrinth: stack:" && grep -q '^labyrinth:     #[0-9]* main+' <<<"$err"; }

# Default mode: a large block's pages end at a guard page.
run -- write 20483 20000
check 'has "labyrinth: SIGSEGV: heap overflow, write at $(at 20483) (483 bytes past the end of a 20000-byte block at $block, class 20480 B)" && segv' \
	"a large block's overflow: kind, write, address, block, distance; dies of SIGSEGV" "rc $rc: $err"
check 'has_stack && grep -q "#0 write_at+0x" <<<"$err"' \
	"the fault's stack starts at the faulting function" "$err"
run -- read 20480 20000
check 'has "heap overflow, read at $(at 20480) (480 bytes past the end of a 20000-byte block at $block" && segv' \
	"a read past a large block is a read" "rc $rc: $err"
run -- write -1 20000
check 'has "heap underflow, write at $(at -1) (1 byte before a 20000-byte block at $block" && segv' \
	"a write before a large block is an underflow" "rc $rc: $err"
run -- after-free 8 20000
check 'has "use after free, read at $(at 8) (8 bytes into a freed 20000-byte block at $block" && segv' \
	"a read of a freed large block is a use after free" "rc $rc: $err"

# malloc(0) returns a pointer into the zero region, which is never
# accessible: any access through it faults, and is named as such.
run -- write 0 0
check 'has "labyrinth: SIGSEGV: access to a zero-size block (malloc(0)), write at $block (a live block of 0 bytes)" && has_stack && segv' \
	"a write through a live malloc(0) pointer: kind, write, address, live; stack; dies of SIGSEGV" "rc $rc: $err"
run -- read 3 0
check 'has "access to a zero-size block (malloc(0)), read at $(at 3) (3 bytes past a live zero-size block at $block)" && segv' \
	"a read a few bytes past a malloc(0) pointer names the block and the distance" "rc $rc: $err"
run -- after-free 0 0
check 'has "access to a zero-size block (malloc(0)), read at $block (a freed block of 0 bytes)" && has_stack && segv' \
	"a read through a freed malloc(0) pointer says freed" "rc $rc: $err"
run -- write 4096 0
check 'has "access to a zero-size block (malloc(0)), write at $(at 4096) (never allocated)" && segv' \
	"an access to a zero-size slot never handed out says so" "rc $rc: $err"

# Guard-all: every block ends at a guard page, and keeps its stacks.
run LABYRINTH_GUARD_ALL=1 -- write 32 32
check 'has "heap overflow, write at $(at 32) (0 bytes past the end of a 32-byte block at $block)" && segv' \
	"guard-all: an overflow by one byte faults and is reported" "rc $rc: $err"
check 'grep -A4 "labyrinth: allocated by:" <<<"$err" | grep -q "alloc_here+0x"' \
	"guard-all: the report names where the block was allocated" "$err"
run LABYRINTH_GUARD_ALL=1 -- after-free 0 32
check 'has "use after free, read at $block (0 bytes into a freed 32-byte block at $block)" && segv' \
	"guard-all: a read after free faults and is reported" "rc $rc: $err"
check 'grep -A3 "labyrinth: freed by:" <<<"$err" | grep -q "main+0x"' \
	"guard-all: the report says where the block was freed" "$err"
run LABYRINTH_SAMPLE=1 -- write 32 32
check 'has "heap overflow, write at $(at 32) (0 bytes past the end of a 32-byte block at $block)" && segv' \
	"sampling: a sampled block's overflow is reported" "rc $rc: $err"

# Stacks in heap error reports.
run -- double-free
check 'has "labyrinth: double free of $block" && has_stack && [ "$rc" -eq 134 ]' \
	"a double free's report carries the freeing thread's stack" "rc $rc: $err"
run LABYRINTH_GUARD_ALL=1 -- double-free
check 'grep -A4 "labyrinth: freed by:" <<<"$err" | grep -q "double_free_here+0x" &&
       grep -A4 "labyrinth: allocated by:" <<<"$err" | grep -q "alloc_here+0x"' \
	"guard-all: a double free names the first free and the allocation" "$err"

# A block whose stacks a later block took over: the report says so,
# rather than print an empty stack.
run LABYRINTH_GUARD_ALL=1 -- lost-trace
if [[ $out == *skip:* ]]; then
	skip "guard-all: stacks taken over by a later block (${out#*skip: })"
else
	check 'has "labyrinth: double free of $block" &&
	       has "labyrinth: allocated by: not kept (a later block'"'"'s record took its place)" &&
	       has "labyrinth: freed by: not kept (a later block'"'"'s record took its place)" &&
	       ! grep -Eq "by: (\(no frames\)|none)" <<<"$err"' \
		"guard-all: stacks taken over by a later block are said to be lost, not shown empty" "rc $rc: $out $err"
fi

# Four threads walk their stacks at once through the unwinder's shared row
# cache; a block each kept names its own thread's function and start.
bad=""
for i in 0 1 2 3; do
	run LABYRINTH_GUARD_ALL=1 -- thread-stacks $i
	alloc=$(sed -n '/^labyrinth: allocated by:$/,/^labyrinth: [a-z]/p' <<<"$err")
	grep -q "#0 thread_alloc_$i+0x" <<<"$alloc" && grep -q "#1 thread_body+0x" <<<"$alloc" &&
		grep -q "labyrinth: double free of $block" <<<"$err" || bad+=" $i"
done
check '[ -z "$bad" ]' \
	"guard-all, 4 threads unwinding at once: each kept block's allocation stack is its thread's" \
	"failed for threads:$bad; last: $err"

# The report also goes to LABYRINTH_REPORT_FD (a pipe, as the command uses).
mkfifo "$tmp/fifo"
cat "$tmp/fifo" >"$tmp/fd7" &
reader=$!
env LABYRINTH_REPORT_FD=7 LD_PRELOAD="$lib" "$bin/fault_probe" write 20480 20000 \
	7>"$tmp/fifo" >/dev/null 2>&1
wait $reader
check 'head -n 1 "$tmp/fd7" | grep -q "^labyrinth: SIGSEGV: heap overflow, write at" && [ "$(sed -n 2p "$tmp/fd7")" = "labyrinth: stack:" ] && grep -q "^labyrinth:     #0 " "$tmp/fd7"' \
	"the report's line and its stack go to LABYRINTH_REPORT_FD too" "$(cat "$tmp/fd7")"
# ... so that the labyrinth command names it when the program dies.
lab=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/cli/labyrinth
if [ -x "$lab" ]; then
	"$lab" "$bin/fault_probe" write 20480 20000 >/dev/null 2>"$tmp/err"
	last=$(tail -n 1 "$tmp/err")
	check '[[ $last == *"died of SIGSEGV (signal 11) after the report \"labyrinth: SIGSEGV: heap overflow, write at 0x"* ]]' \
		"the labyrinth command names the fault's report" "'$last'"
else
	skip "the labyrinth command names the fault's report (no cli/labyrinth)"
fi

# Faults that are not labyrinth's.
run -- foreign
check 'segv && ! has "labyrinth:"' \
	"a fault outside the heap dies of SIGSEGV, unexplained" "rc $rc: $err"
run -- own-guard
check 'segv && ! has "labyrinth:"' \
	"a fault inside a live block (the program's own guard page) is the program's" "rc $rc: $err"
run -- own-handler
check 'grep -qx "chained" <<<"$out" && grep -qx "after foreign fault" <<<"$out"' \
	"a handler installed before labyrinth's still gets the program's faults" "rc $rc: $out"
check 'has "heap overflow, write at" && grep -qx "after heap fault" <<<"$out" && [ "$rc" -eq 0 ]' \
	"a heap fault is reported, then reaches that handler too" "rc $rc: $out $err"
run -- stack-overflow 1
check 'grep -qx "own handler on the alternate stack" <<<"$out" && [ "$rc" -eq 0 ]' \
	"a stack overflow reaches the program's handler on its alternate stack" "rc $rc: $out $err"
run -- stack-overflow 0
check 'segv && ! has "labyrinth:"' \
	"a stack overflow with no handler dies of SIGSEGV" "rc $rc: $err"
# The handler's own needs on an alternate stack: 2 KiB above the kernel's frame.
run LABYRINTH_GUARD_ALL=1 -- small-altstack 2048
check 'has "heap overflow, write at" && grep -q "#[0-9]* _start+" <<<"$err" && segv' \
	"the whole report fits an alternate stack of MINSIGSTKSZ + 2 KiB" "rc $rc: $err"


# A fault the program sends itself is not a fault: not explained, never
# swallowed (the kernel copies any siginfo rt_sigqueueinfo gives it).
run -- fake-fault 0
check 'segv && ! has "labyrinth:"' \
	"a self-sent SIGSEGV dressed as a fault at a freed block: unexplained, dies of it" "rc $rc: $out $err"
run -- fake-fault 1
check 'grep -qx "own handler" <<<"$out" && ! has "labyrinth:"' \
	"... and reaches the program's own handler, unexplained" "rc $rc: $out $err"
run -- fake-mce
check '[ "$rc" -eq 135 ] && ! has "labyrinth:"' \
	"an asynchronous machine check (BUS_MCEERR_AO) at a freed block is not a heap fault" "rc $rc: $err"

# A damaged frame: rbp 4 MiB above the stack, at a guard page or unmapped.
# The walk stops there; it must not fault inside the handler.
for how in 0 1; do
	run -- bad-rbp $how
	if [[ $out == skip:* ]]; then
		skip "bad-rbp $how: ${out#skip: }"
		continue
	fi
	check 'has "heap overflow, write at" && has "labyrinth: stack:" &&
	       grep -q "#0 bad_rbp_store+0x" <<<"$err" && segv' \
		"a frame whose rbp points at $( ((how)) && echo "unmapped memory" || echo "a guard page"): the stack stops there, the handler survives" "rc $rc: $err"
done

# The program's alternate stack, a guard page right below it, n bytes: from
# the smallest the kernel's frame fits to 3 KiB more, the fault must reach
# the program's handler on it; a report, if any, is whole (the line and the
# stack, or the line and why the stack is not shown).
min=$(LD_PRELOAD="$lib" "$bin/fault_probe" minsigstksz | head -n 1)
bad=""
lines=0
for size in 4096 $(seq "$min" 64 $((min + 3072))) 4096a $(seq "$min" 256 $((min + 3072)) | sed 's/$/a/'); do
	# "a": with SS_AUTODISARM, so sigaltstack says none while it runs.
	run -- tight-altstack "${size%a}" ${size//[0-9]/}
	whole=true
	if has "labyrinth: SIGSEGV:"; then
		has "stack not shown: the signal stack is too small" && lines=$((lines + 1))
		has "stack not shown: the signal stack is too small" || has_stack || whole=false
	fi
	if [ "$rc" -ne 0 ] || ! grep -qx handled <<<"$out" || ! $whole; then
		bad+=" $size (rc $rc)"
	fi
done
check '[ -z "$bad" ]' \
	"alternate stacks of $min to $((min + 3072)) and 4096 bytes, disarmed or not: never overrun, the program's handler runs" "failed at:$bad"
run -- tight-altstack 8192
check 'has_stack && grep -qx handled <<<"$out"' \
	"an 8 KiB alternate stack holds the whole report" "rc $rc: $out $err"
check '[ "$lines" -gt 0 ]' \
	"some of those stacks are short of the walk: the report's line, and why no stack" "none"

# A dlopen'ed module's link map is a heap block: a heap overflow into it
# must not choose what the report prints or send the handler astray.
mod=${LAB_TEST_BUILDDIR:-$(dirname "$0")/..}/tests/.libs/libfaultmod.so
mod=$(cd "$(dirname "$mod")" && pwd)/$(basename "$mod")
run -- dlopen-name 0 "$mod"
check 'has "#1 fault_mod_call+0x" && has "(module@0x" && grep -q "#2 main+" <<<"$err" && segv' \
	"a frame in a dlopen'ed module is named by the module's address, not its heap-held name" "rc $rc: $err"
run -- dlopen-name 1 "$mod"
check '! has "SECRET" && has "(module@0x" && grep -q "#2 main+" <<<"$err" && segv' \
	"a link map whose name a heap overflow rewrote: the string it points to is not printed" "rc $rc: $err"
run -- dlopen-name 2 "$mod"
check 'has "#1 (module@0x" && grep -q "#2 main+" <<<"$err" && grep -q "#[0-9] _start+" <<<"$err" && segv' \
	"a link map whose dynamic section address was rewritten: the frame is named by address, the walk goes on" "rc $rc: $err"

echo "1..$n"

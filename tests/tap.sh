# TAP helpers for the shell tests, sourced: each result line is numbered,
# and the script prints the plan ("1..$n") when it is done.
#   ok DESC, not_ok DESC, skip DESC
#   check 'SHELL CONDITION' DESC DETAIL   (DETAIL is printed on failure)
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $* # SKIP"; }
check() { if eval "$1"; then ok "$2"; else not_ok "$2: $3"; fi; }

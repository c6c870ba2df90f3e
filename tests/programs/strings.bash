#!/bin/bash
# strings.bash: string-, array- and hash-heavy bash workload for
# tests/programs.sh, run as `bash strings.bash`. Its output depends only on
# this code, so a run under the labyrinth preload must print exactly what a
# plain run prints.
set -eu
LC_ALL=C

state=7
rnd() { # rnd N: next pseudo-random number below N, in $r
	state=$(( (state * 1103515245 + 12345) % 2147483648 ))
	r=$(( (state >> 16) % $1 ))
}

letters=abcdefghijklmnopqrstuvwxyz
declare -A count=()
words=()
for ((i = 0; i < 12000; i++)); do
	rnd 5; len=$((r + 1))
	w=
	for ((j = 0; j < len; j++)); do
		rnd 26; w+=${letters:r:1}
	done
	words+=("$w")
	count[$w]=$(( ${count[$w]:-0} + 1 ))
done
echo "words ${#words[@]} distinct ${#count[@]}"

# Sort the distinct words by count, then name, with a printf round trip.
top=$(for w in "${!count[@]}"; do printf '%05d %s\n' "${count[$w]}" "$w"; done | sort -k1,1nr -k2,2 | head -n 5)
echo "$top"

# Long strings: join, pattern replacement, case changes, splitting.
joined=$(IFS=,; echo "${words[*]}")
echo "joined ${#joined}"
upper=${joined^^}
swapped=${upper//A/[a]}
swapped=${swapped//,/ }
read -r -a parts <<<"$swapped"
echo "upper ${#upper} swapped ${#swapped} parts ${#parts[@]}"

# Build and trim a growing string many times.
acc=
for ((i = 0; i < 8000; i++)); do
	printf -v piece '%d:%s;' "$i" "${words[i % ${#words[@]}]}"
	acc+=$piece
	if (( ${#acc} > 20000 )); then acc=${acc:5000}; fi
done
echo "acc ${#acc} head ${acc:0:24}"

# Delete and re-add hash entries (churn), then a checksum.
for ((i = 0; i < 12000; i += 2)); do
	unset "count[${words[i]}]"
done
for ((i = 0; i < 3000; i++)); do
	count[x$i]=$i
done
sum=0
for k in "${!count[@]}"; do
	sum=$(( (sum + ${#k} * 31 + ${count[$k]}) % 1000000007 ))
done
echo "left ${#count[@]} sum $sum"
echo "cksum $(printf '%s\n' "$acc" "$swapped" | cksum)"

# fork-shell: a shell whose heap has grown, forking for $(...), for
# `make bench` (run as `bash forkshell.sh [GROW] [FORKS]`).
#
# bash builds x by 5,000 concatenations (about 19 KB; each one allocates the
# longer string and frees the old), then runs 400 command substitutions.
# Every $(...) forks the shell, so each copies the page tables that bash's
# allocation history left behind, and the child's exit tears them down: the
# fork cost of a real script, which issue 12 measured at 31x glibc's.
grow=${1:-5000}
forks=${2:-400}
x=''
i=0
while [ "$i" -lt "$grow" ]; do
	x="$x$i"
	i=$((i + 1))
done
j=0
while [ "$j" -lt "$forks" ]; do
	# shellcheck disable=SC2116 # the fork is the point
	y=$(echo ${#x})
	j=$((j + 1))
done
[ "$y" = "${#x}" ]

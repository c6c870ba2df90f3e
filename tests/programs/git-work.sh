#!/bin/bash
# git-work.sh: git workload for tests/programs.sh, run as
# `bash git-work.sh DIR` (DIR must not exist yet). Creates a repository in
# DIR, commits a few hundred generated files in a few commits with fixed
# names and dates (so the hashes are always the same), then logs, diffs,
# gc's, clones and checks it. Everything printed is deterministic, so a run
# under the labyrinth preload must print exactly what a plain run prints.
set -eu

dir=$1
mkdir "$dir"
cd "$dir"

# Keep the user's and the system's configuration out of it.
export HOME="$dir/home"
mkdir "$HOME"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_AUTHOR_NAME="Ariadne" GIT_AUTHOR_EMAIL="ariadne@labyrinth.invalid"
export GIT_COMMITTER_NAME="Daedalus" GIT_COMMITTER_EMAIL="daedalus@labyrinth.invalid"
export GIT_PAGER=cat PAGER=cat LC_ALL=C TZ=UTC

git -c init.defaultBranch=main init -q repo
cd repo
git config gc.auto 0            # no automatic (background) gc
git config gc.autoDetach false
git config core.autocrlf false

# gen_file PATH SEED LINES: a text file whose content depends on its arguments.
gen_file() {
	local path=$1 seed=$2 lines=$3 i x
	mkdir -p "${path%/*}"
	x=$seed
	{
		for ((i = 0; i < lines; i++)); do
			x=$(( (x * 1103515245 + 12345) % 2147483648 ))
			printf 'line %d of %s: value %d, word w%d\n' "$i" "$path" "$x" $(( (x >> 16) % 997 ))
		done
	} >"$path"
}

commit() { # commit N MESSAGE
	export GIT_AUTHOR_DATE="2024-03-0$1T12:34:56+0000"
	export GIT_COMMITTER_DATE="2024-03-0$1T12:35:56+0000"
	git add -A
	git commit -q -m "$2"
}

# Commit 1: 240 new files in 12 directories.
for ((f = 0; f < 240; f++)); do
	gen_file "src/dir$((f % 12))/file$f.txt" "$f" $((5 + f % 30))
done
commit 1 "add 240 generated files"

# Commit 2: change every third file, add 60 more.
for ((f = 0; f < 240; f += 3)); do
	gen_file "src/dir$((f % 12))/file$f.txt" $((f + 1000)) $((10 + f % 25))
done
for ((f = 240; f < 300; f++)); do
	gen_file "lib/part$((f % 5))/mod$f.txt" "$f" 20
done
commit 2 "rewrite a third, add lib"

# Commit 3: delete some, rename some, append to some.
for ((f = 1; f < 240; f += 10)); do
	git rm -q "src/dir$((f % 12))/file$f.txt"
done
for ((f = 2; f < 240; f += 20)); do
	git mv "src/dir$((f % 12))/file$f.txt" "src/dir$((f % 12))/moved$f.txt"
done
for ((f = 240; f < 300; f += 2)); do
	echo "appended to mod$f" >>"lib/part$((f % 5))/mod$f.txt"
done
commit 3 "delete, rename, append"

# Commit 4: one big file and a branch merged back.
gen_file big/big.txt 4242 20000
commit 4 "add a big file"
git checkout -q -b side HEAD~1
gen_file side/only.txt 77 50
commit 5 "side work"
git checkout -q main
export GIT_AUTHOR_DATE="2024-03-06T00:00:00+0000" GIT_COMMITTER_DATE="2024-03-06T00:00:00+0000"
git merge -q --no-ff -m "merge side" side

echo "== log --stat"
git log --stat --no-color
echo "== log --graph"
git log --graph --oneline --no-color --all
echo "== diff --stat HEAD~3"
git diff --stat -M HEAD~3 HEAD
echo "== diff HEAD~3 (sha256)"
git diff -M HEAD~3 HEAD | sha256sum
echo "== grep"
git grep -c 'w12[0-9]' HEAD -- src | head -n 20
echo "== blame"
git blame -s lib/part0/mod240.txt | tail -n 3
echo "== gc"
git gc --quiet
git count-objects -v | grep -E '^(count|in-pack|packs|prune-packable|garbage):'
echo "== fsck"
git fsck --full --no-progress --strict
echo "== rev-list"
git rev-list --objects --all | sort | sha256sum
echo "== archive"
git archive --format=tar HEAD | sha256sum
echo "== clone"
cd ..
git clone -q --no-local repo clone
git -C clone fsck --full --no-progress
git -C clone log --format='%H %an %cn %s' --no-color
git -C clone ls-files | wc -l
echo "== done"

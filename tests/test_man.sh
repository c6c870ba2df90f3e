#!/bin/bash
# The manual pages: each renders without a warning from groff and mandoc;
# labyrinth(3) names every public function, labyrinth(7) every variable of
# the configuration table, labyrinth(1) every option of the command. TAP.
src=$(dirname "$0")/..
lab=${LAB_TEST_BUILDDIR:-$src}/cli/labyrinth
. "$(dirname "$0")/tap.sh"

for page in "$src"/man/labyrinth.[137]; do
	name=$(basename "$page")
	out=$(groff -man -ww -z "$page" 2>&1)
	if [ -z "$out" ]; then ok "$name: groff -ww is silent"; else not_ok "$name: groff: $out"; fi
	if command -v mandoc >/dev/null 2>&1; then
		out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
		if [ -z "$out" ]; then ok "$name: mandoc -Tlint is silent"; else not_ok "$name: mandoc: $out"; fi
	else
		skip "$name: mandoc -Tlint (mandoc not installed)"
	fi
	dup=$(grep '^\.SH' "$page" | sort | uniq -d; grep -n '^\.S[HS] .*\.S[HS]' "$page")
	if [ -z "$dup" ]; then ok "$name: section headings are whole and unique"
	else not_ok "$name: headings: $dup"; fi
	if command -v man >/dev/null 2>&1; then
		out=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null)
		lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
		if [ -z "$out" ] && [ "$lines" -gt 20 ]; then ok "$name: man -l renders ($lines lines)"
		else not_ok "$name: man -l: $lines lines, '$out'"; fi
	fi
done

missing=""
for f in $(grep -o 'labyrinth_[a-z_]*(' "$src/include/labyrinth.h" | tr -d '(' | sort -u); do
	grep -q "^\.BR $f ()" "$src/man/labyrinth.3" && sed -n '/^\.SH NAME/,/^\.SH/p' "$src/man/labyrinth.3" | grep -q "$f" ||
		missing="$missing $f"
done
if [ -z "$missing" ]; then ok "labyrinth(3) names and describes every public function"
else not_ok "labyrinth(3) lacks:$missing"; fi

# Described under ENVIRONMENT, not merely somewhere in the page.
missing=""
environment=$(sed -n '/^\.SH ENVIRONMENT/,/^\.SH /p' "$src/man/labyrinth.7")
for v in $(grep -o '{ "LABYRINTH_[A-Z_]*"' "$src/src/config.c" | grep -o 'LABYRINTH_[A-Z_]*'); do
	grep -Eq "^\.B[IR] $v(=| |$)" <<<"$environment" || missing="$missing $v"
done
if [ -z "$missing" ]; then ok "labyrinth(7) describes every LABYRINTH_ variable under ENVIRONMENT"
else not_ok "labyrinth(7) ENVIRONMENT lacks:$missing"; fi

version=$(sed -n 's/^AC_INIT(\[labyrinth\], \[\([^]]*\)\].*/\1/p' "$src/configure.ac")
stale=""
for page in "$src"/man/labyrinth.[137]; do
	grep -q "^\.TH .* \"labyrinth $version\"" "$page" || stale="$stale $(basename "$page")"
done
if [ -n "$version" ] && [ -z "$stale" ]; then ok "every page is of version $version"
else not_ok "pages not of version '$version':$stale"; fi

# Installed, every public function has a page of its own name.
build=${LAB_TEST_BUILDDIR:-$src}
dest=$(mktemp -d)
if make -s -C "$build" install-data DESTDIR="$dest" >/dev/null 2>&1; then
	mandir=$(find "$dest" -type d -name man3 | head -n 1)
	missing=""
	for f in $(grep -o 'labyrinth_[a-z_]*(' "$src/include/labyrinth.h" | tr -d '(' | sort -u); do
		MANWIDTH=80 man -M "${mandir%/man3}" 3 "$f" 2>/dev/null | grep -q "$f" ||
			missing="$missing $f"
	done
	if [ -n "$mandir" ] && [ -z "$missing" ]; then ok "man FUNCTION finds every public function"
	else not_ok "no installed page for:$missing"; fi
else
	not_ok "make install-data into $dest failed"
fi
rm -rf "$dest"

if [ -x "$lab" ]; then
	missing=""
	for o in $("$lab" --help | grep -o '^  -[-a-z]*\( \|=\|,\)' | tr -d ' =,' | sort -u); do
		grep -q -- "${o//-/\\\\-}" "$src/man/labyrinth.1" || missing="$missing $o"
	done
	if [ -z "$missing" ]; then ok "labyrinth(1) describes every option of labyrinth --help"
	else not_ok "labyrinth(1) lacks:$missing"; fi
else
	not_ok "no $lab to ask for its options"
fi
echo "1..$n"

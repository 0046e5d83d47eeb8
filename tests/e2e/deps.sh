#!/usr/bin/env bash
# Plain `make` on a machine without the packages (issue 17): it must stop
# before compiling with one line naming the missing packages and saying to run
# `make deps`, not fail on a missing header. Missing packages are simulated:
# pkg-config pointed at an empty directory, at a copy of its directories
# without jansson.pc, or a pkg-config that does not exist.
. "$(dirname "$0")/lib.sh"
ALL="libncurses-dev libreadline-dev liblapacke-dev libopenblas-dev libcmocka-dev libjansson-dev libpcre2-dev libutf8proc-dev"
# mk ENV... -- MAKE-ARGS: a make of its own (not the jobserver of the make running this)
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PKG_CONFIG_PATH "$@" >"$TMP/out" 2>"$TMP/err"; }
# expect_missing NAME LIST ENV...: make stops (status 2), first stderr line names LIST, nothing built
expect_missing() {
  local n=$1 want=$2; shift 2
  rm -rf "$TMP/b"
  mk "$@" make BUILD="$TMP/b" all; local rc=$?
  local line; line=$(head -1 "$TMP/err")
  if [ $rc -ne 2 ]; then fail "$n: make exited $rc, expected 2: $line"
  elif [ "$line" != "missing packages: $want; run \`make deps\` (apt-get install, via sudo when not root)" ]; then
    fail "$n: first stderr line is '$line'"
  elif [ -n "$(find "$TMP/b" -name '*.o' 2>/dev/null)" ]; then fail "$n: compiled before checking"
  else pass "$n"; fi
}
mkdir -p "$TMP/empty"
expect_missing "no -dev package" "$ALL" PKG_CONFIG_LIBDIR="$TMP/empty"

# every .pc file pkg-config knows, but jansson's
if command -v pkg-config >/dev/null && pkg-config --exists jansson; then
  mkdir -p "$TMP/pc"
  IFS=: read -r -a dirs <<<"$(pkg-config --variable pc_path pkg-config)"
  for d in "${dirs[@]}"; do
    for f in "$d"/*.pc; do [ -e "$f" ] && [ ! -e "$TMP/pc/${f##*/}" ] && ln -s "$f" "$TMP/pc/"; done
  done
  rm -f "$TMP/pc/jansson.pc"
  expect_missing "libjansson-dev alone" "libjansson-dev" PKG_CONFIG_LIBDIR="$TMP/pc"
  mk make BUILD="$TMP/b" check-deps && pass "check-deps passes with every package" ||
    fail "check-deps fails here: $(head -1 "$TMP/err")"
else
  fail "pkg-config or jansson.pc is missing (run \`make deps\`)"
fi

# without pkg-config itself, dpkg says what is absent
rm -rf "$TMP/b"
mk make BUILD="$TMP/b" PKG_CONFIG="$TMP/no-pkg-config" all; rc=$?
[ $rc -eq 2 ] && head -1 "$TMP/err" | grep -q '^missing packages: pkg-config.*; run `make deps`' &&
  [ -z "$(find "$TMP/b" -name '*.o' 2>/dev/null)" ] && pass "no pkg-config" ||
  fail "no pkg-config: exit $rc: $(head -1 "$TMP/err")"
finish

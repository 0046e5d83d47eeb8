# lib.sh — helpers for end-to-end scripts (sourced). Plain bash + grep, no
# python, so it runs on a bare CI machine.
set -u
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
TRACE=sample_data/traces/code-1k.safetensors
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "  ok   $1"; }
fail() { echo "  FAIL $1"; fails=$((fails + 1)); }
# expect_ok NAME CMD...: exit 0
expect_ok() { local n=$1; shift; if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$n"; else fail "$n (exit $?): $(head -c 300 "$TMP/err")"; fi; }
# expect_fail NAME PATTERN CMD...: non-zero exit, one-line stderr matching PATTERN, no crash
expect_fail() {
  local n=$1 pat=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  if [ $rc -eq 0 ]; then fail "$n: exit 0"; return; fi
  if [ $rc -ge 128 ]; then fail "$n: crashed (status $rc)"; return; fi
  if ! grep -q -- "$pat" "$TMP/err"; then fail "$n: stderr lacks '$pat': $(head -c 300 "$TMP/err")"; return; fi
  if [ "$(wc -l <"$TMP/err")" -ne 1 ]; then fail "$n: error is not one line: $(head -c 300 "$TMP/err")"; return; fi
  pass "$n"
}
# expect_out NAME PATTERN: the last command's stdout matches
expect_out() { if grep -q -- "$2" "$TMP/out"; then pass "$1"; else fail "$1: stdout lacks '$2'"; fi; }
finish() { [ "$fails" -eq 0 ] && echo "  all passed" || echo "  $fails failed"; exit $((fails > 0)); }

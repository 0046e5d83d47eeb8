#!/usr/bin/env bash
# The README's commands leave the working tree clean (issue 17): every file a
# command line there writes (--output, --out) goes under scratch/ (git-ignored)
# or /tmp, and scratch/ is ignored.
. "$(dirname "$0")/lib.sh"
R=README.md
n=0
while IFS= read -r line; do
  read -r -a w <<<"$line"
  for ((i = 0; i + 1 < ${#w[@]}; i++)); do
    case ${w[i]} in
      --out | --output)
        n=$((n + 1))
        case ${w[i + 1]} in scratch/?* | /tmp/?*) ;; *) fail "README writes '${w[i + 1]}' into the tree: $line" ;; esac ;;
    esac
  done
done < <(grep -E '^(\$ )?(kvstudio|\./build/kvstudio|python3 tools/)[^ ]* ' "$R")
[ $n -ge 5 ] && pass "$n output paths in README commands, all under scratch/ or /tmp" ||
  fail "found only $n output paths in README commands (expected the tour's 5 or more)"
if command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
  git check-ignore -q scratch/art/manifest.json && pass "scratch/ is git-ignored" || fail "scratch/ is not git-ignored"
fi
finish

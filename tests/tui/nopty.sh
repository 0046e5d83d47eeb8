#!/usr/bin/env bash
# nopty.sh — on a machine without usable ptys a studio test fails at once with
# the reason (issue 17) instead of waiting 30 s for a screen that never comes.
# No ptys is simulated with an empty tmpfs over /dev/pts in a private mount
# namespace (as root, or in an unprivileged user namespace); skips (exit 0)
# only where no mount namespace can be made.
set -u
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
export KVSTUDIO
NS=(unshare -m)
[ "$(id -u)" = 0 ] || NS=(unshare -r -m)
"${NS[@]}" true 2>/dev/null || { echo "SKIP: cannot make a mount namespace here (${NS[*]})"; exit 0; }
t0=$SECONDS
out=$("${NS[@]}" bash -c 'mount -t tmpfs none /dev/pts && exec bash tests/tui/studio.sh' 2>&1)
rc=$?
took=$((SECONDS - t0))
fails=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fails=$((fails + 1)); fi; }
check "studio.sh without ptys exits non-zero (status $rc)" '[ $rc -ne 0 ] && [ $rc -lt 128 ]'
check "within 10 s (took $took s)" '[ $took -lt 10 ]'
check "one line naming the reason: $(head -c 300 <<<"$out")" \
  '[ "$(wc -l <<<"$out")" -eq 1 ] && grep -q "^FAIL: cannot start a terminal: tmux new-session: .*no usable pty" <<<"$out"'
[ $fails -eq 0 ] && echo "  all passed" || echo "  $fails failed"
exit $((fails > 0))

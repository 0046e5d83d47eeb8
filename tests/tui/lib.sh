# lib.sh — shared driver for the studio tests (sourced): a private tmux server,
# polling waits with deadlines (never fixed sleeps), failure dumps. Set S first.
set -u
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
TRACE=sample_data/traces/code-1k.safetensors
command -v tmux >/dev/null 2>&1 || { echo "SKIP: tmux is not installed"; exit 0; }
[ -x "$KVSTUDIO" ] || { echo "FAIL: $KVSTUDIO not built"; exit 1; }
KVSTUDIO=$(cd "$(dirname "$KVSTUDIO")" && pwd)/$(basename "$KVSTUDIO")

TMP=$(mktemp -d)
SOCK="$TMP/tmux.sock"
S=${S:-kvstudio-test}
T() { tmux -S "$SOCK" -f /dev/null "$@"; }
cleanup() { T kill-server >/dev/null 2>&1; rm -rf "$TMP"; }
trap cleanup EXIT

screen() { T capture-pane -p -t "$S" 2>/dev/null; }
fail() {
    echo "FAIL: $*"
    echo "---- screen ----"
    screen
    [ -s "$TMP/err" ] && { echo "---- stderr ----"; head -c 2000 "$TMP/err"; }
    exit 1
}
# wait_for TEXT [SECONDS]: poll the pane until TEXT shows (fixed string)
wait_for() {
    local text=$1 deadline=$((SECONDS + ${2:-30}))
    until screen | grep -qF -- "$text"; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for '$text'"
        sleep 0.05
    done
}
wait_gone() {
    local text=$1 deadline=$((SECONDS + ${2:-30}))
    while screen | grep -qF -- "$text"; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for '$text' to go away"
        sleep 0.05
    done
}
wait_file() {
    local f=$1 deadline=$((SECONDS + ${2:-30}))
    until [ -s "$f" ]; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for $f"
        sleep 0.05
    done
}
keys() { T send-keys -t "$S" "$@"; }
step() { echo "  - $*"; }

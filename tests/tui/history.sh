#!/usr/bin/env bash
# history.sh — nothing lost: a run finished in the lab survives kill -9 of the
# studio and is restored on the next start (runs.json under XDG_STATE_HOME is
# rewritten atomically after every run). Skips (exit 0) only without tmux.
set -u
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
TRACE=sample_data/traces/code-1k.safetensors
command -v tmux >/dev/null 2>&1 || { echo "SKIP: tmux is not installed"; exit 0; }
[ -x "$KVSTUDIO" ] || { echo "FAIL: $KVSTUDIO not built"; exit 1; }
KVSTUDIO=$(cd "$(dirname "$KVSTUDIO")" && pwd)/$(basename "$KVSTUDIO")

TMP=$(mktemp -d)
SOCK="$TMP/tmux.sock"
S=kvstudio-history
T() { tmux -S "$SOCK" -f /dev/null "$@"; }
cleanup() { T kill-server >/dev/null 2>&1; rm -rf "$TMP"; }
trap cleanup EXIT

screen() { T capture-pane -p -t "$S" 2>/dev/null; }
fail() {
    echo "FAIL: $*"
    echo "---- screen ----"
    screen
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

mkdir -p "$TMP/state"
start() {
    T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
        "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE; sleep 600"
}
studio_pid() { pgrep -f "^$KVSTUDIO $TRACE" | head -1; }
start
step "run a method in the lab"
wait_for "layers x kv heads"
keys 2; wait_for "no runs yet"
keys r
wait_for "run 1: turboquant_mse k3/v2" 60
wait_file "$TMP/state/kvstudio/runs.json"
grep -q '"label": "turboquant_mse k3/v2"' "$TMP/state/kvstudio/runs.json" || fail "runs.json lacks the run"

step "kill -9 the studio, start again: the run is back"
pid=$(studio_pid)
[ -n "$pid" ] || fail "studio process not found"
kill -9 "$pid"
T kill-session -t "$S"
ls "$TMP/state/kvstudio/" | grep -q 'tmp' && fail "a temp file was left behind"
start
wait_for "1 earlier runs restored"
keys 2
wait_for "turboquant_mse k3/v2"

step "a corrupt history is set aside, not fatal"
kill -9 "$(studio_pid)"
T kill-session -t "$S"
echo '{"runs": [' > "$TMP/state/kvstudio/runs.json"
start
wait_for "layers x kv heads"
[ -f "$TMP/state/kvstudio/runs.json.bad" ] || fail "corrupt history not kept as runs.json.bad"
keys q
echo "PASS: run history survives kill -9"

#!/usr/bin/env bash
# history.sh — nothing lost: a run finished in the lab survives kill -9 of the
# studio and is restored on the next start (runs.json under XDG_STATE_HOME is
# rewritten atomically after every run).
S=kvstudio-history
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
start() {
    T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
        "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE; sleep 600"
}
# the pane's shell runs 'env ... kvstudio ...; sleep 600': its child is the studio
studio_pid() {
    local sh pid
    sh=$(T display-message -p -t "$S" '#{pane_pid}') && pid=$(child_pid "$sh") &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = kvstudio ] && echo "$pid"
}
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
wait_for "1 earlier run restored"
keys 2
wait_for "turboquant_mse k3/v2"

step "a corrupt history is set aside, not fatal"
pid=$(studio_pid)
[ -n "$pid" ] || fail "studio process not found"
kill -9 "$pid"
T kill-session -t "$S"
echo '{"runs": [' > "$TMP/state/kvstudio/runs.json"
start
wait_for "layers x kv heads"
[ -f "$TMP/state/kvstudio/runs.json.bad" ] || fail "corrupt history not kept as runs.json.bad"
keys q
echo "PASS: run history survives kill -9"

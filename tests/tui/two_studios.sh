#!/usr/bin/env bash
# two_studios.sh — nothing lost with two studios on one state directory:
# each save merges under flock with the runs another session wrote since
# (run ids are unique per session), so no studio drops the other's runs.
S=kvstudio-a
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
H="$TMP/state/kvstudio/runs.json"
start() {   # start SESSION
    T new-session -d -s "$1" -x 160 -y 45 -c "$PWD" \
        "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>>'$TMP/err'; sleep 600"
}
nruns() { [ -f "$H" ] && grep -c '"label":' "$H" || echo 0; }
wait_runs() {   # wait_runs N: runs.json holds N runs
    local deadline=$((SECONDS + 60))
    until [ "$(nruns)" = "$1" ]; do
        [ $SECONDS -ge $deadline ] && fail "runs.json holds $(nruns) runs, expected $1"
        sleep 0.05
    done
}
lab_run() {   # lab_run SESSION N: one run in SESSION's lab, then runs.json holds N
    S=$1
    keys r
    wait_runs "$2"
}

step "studio A: one run"
start kvstudio-a
S=kvstudio-a; wait_for "layers x kv heads"; keys 2; wait_for "no runs yet"
lab_run kvstudio-a 1

step "studio B (same state dir): restores it, adds three"
start kvstudio-b
S=kvstudio-b; wait_for "1 earlier run restored"; keys 2; wait_for "turboquant_mse k3/v2"
lab_run kvstudio-b 2
lab_run kvstudio-b 3
lab_run kvstudio-b 4

step "studio A saves its second run: B's runs stay"
lab_run kvstudio-a 5
ids=$(grep -o '"id": "[^"]*"' "$H" | sort -u | wc -l)
[ "$ids" = 5 ] || fail "expected 5 distinct run ids in runs.json, got $ids"
lab_run kvstudio-b 6

step "a third studio restores all six"
start kvstudio-c
S=kvstudio-c; wait_for "6 earlier runs restored"
for s in kvstudio-a kvstudio-b kvstudio-c; do S=$s; keys q; done
ls "$TMP/state/kvstudio/" | grep -q 'tmp' && fail "a temp file was left behind"
echo "PASS: two studios on one state directory keep every run"

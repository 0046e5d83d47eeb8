#!/usr/bin/env bash
# explorer_bg.sh — the studio opens a trace at once and fills the explorer
# from background jobs (issue 15): the first screen shows the trace's shape
# while its NaN/Inf scan runs, the grid fills (heads on screen first) with a progress
# bar and ETA, Esc stops the grid and r resumes it, v computes the values'
# half, a lab run preempts the grid (which resumes after it), and a trace
# with a NaN gives its error in the studio. KVSTUDIO_EXPLORER_DELAY_MS slows
# each step of the jobs so the 1K-token sample trace shows every stage.
SESS=kvstudio-explorer-bg
S=$SESS
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
start() {   # start WINDOW DELAY_MS TRACE
    T new-window -t "$SESS:" -n "$1" -c "$PWD" \
        "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' KVSTUDIO_EXPLORER_DELAY_MS=$2 '$KVSTUDIO' $3 2>>'$TMP/err'; echo \$? > '$TMP/rc.$1'; sleep 600"
    S=$SESS:$1
}
T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" 'sleep 600'

# some cells filled and some still waiting, on one screen
partial() {
    local deadline=$((SECONDS + 60)) scr
    while :; do
        scr=$(screen)
        grep -qE '^│ +[0-9]+ +[0-9]+\.[0-9] ' <<<"$scr" && grep -qF '   ...' <<<"$scr" && return 0
        [ $SECONDS -ge $deadline ] && fail "no partly filled grid"
        sleep 0.05
    done
}

step "first screen before the NaN/Inf scan ends"
start a 600 "$TRACE"
wait_for "layers x kv heads: keys"
wait_for "checking every tensor for NaN/Inf"
wait_for "checking code-1k.safetensors"        # the progress bar of the scan
screen | grep -qE '^│ +[0-9]+ +[0-9]+\.[0-9] ' && fail "numbers shown before the scan ended"

step "the grid fills in the background, with progress and ETA"
wait_for "no NaN/Inf"
wait_for "explorer keys"
wait_for "/12 heads"
wait_for "ETA"
partial
screen | grep -qF "layer 0, kv head 0: keys" || fail "no head panel while the grid fills"

step "Esc stops the grid, r resumes it"
keys Escape
wait_for "key statistics stopped (Esc); r in the explorer resumes"
wait_gone "explorer keys"
screen | grep -qF '    -' || fail "stopped cells should show '-'"
keys r
wait_for "explorer keys"
wait_for "key statistics of 12 heads ready"
screen | grep -qF '   ...' && fail "cells still waiting after 'ready'"

step "v computes the values' half"
keys v
wait_for "layers x kv heads: values"
wait_for "explorer values"
wait_for "value statistics of 12 heads ready"
keys q
wait_file "$TMP/rc.a"
[ "$(cat "$TMP/rc.a")" = 0 ] || fail "exit status $(cat "$TMP/rc.a"), expected 0"

step "a lab run preempts the grid, which resumes after it"
start b 300 "$TRACE"
wait_for "explorer keys"
keys 2 r
wait_for "run 1: turboquant_mse k3/v2" 60
# the grid's "ready" goes to the log; the status line keeps the run's result
keys L
wait_for "key statistics of 12 heads ready" 60
keys Escape
screen | grep -qF "run 1: turboquant_mse k3/v2" || fail "the grid's note replaced the run's result"

step ":load opens the same way"
keys 1 : "load $TRACE" Enter
wait_for "checking every tensor for NaN/Inf"
wait_for "no NaN/Inf ("
wait_for "key statistics of 12 heads ready" 60
keys q
wait_file "$TMP/rc.b"

step "Esc during the scan cancels the open"
start c 1500 "$TRACE"
wait_for "checking code-1k.safetensors"
keys Escape
wait_for "cancelled (Esc): no trace loaded"
wait_for "no trace loaded: press :"
keys q
wait_file "$TMP/rc.c"

step "a view key during the scan waits for it (calibrate runs, no 'no trace loaded')"
start e 600 "$TRACE"
wait_for "checking code-1k.safetensors"
keys 5; wait_for "ratequant options"
keys f; wait_for "ratequant: the first 2 layers"
keys Enter
wait_for "ratequant: done" 60
screen | grep -qF "no trace loaded" && fail "a view key during the scan found no trace"
keys q
wait_file "$TMP/rc.e"

step "a NaN in the trace: its error in the studio, no numbers"
start d 0 tests/data/tr_nan_keys.safetensors
wait_for "NaN at head 1, token 3, channel 5"
wait_for "no trace loaded: press :"
keys q
wait_file "$TMP/rc.d"
[ "$(cat "$TMP/rc.d")" = 0 ] || fail "NaN trace: exit status $(cat "$TMP/rc.d"), expected 0"

echo "PASS: the explorer fills from background jobs; Esc stops, r resumes, NaN is an error"

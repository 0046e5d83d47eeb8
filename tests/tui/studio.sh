#!/usr/bin/env bash
# studio.sh — the studio end to end through tmux: start it on the sample
# trace in a detached 120x40 session, drive it with send-keys, assert on
# capture-pane text (polling with a deadline, never fixed sleeps), and check
# the exit status.
S=kvstudio-test
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
# the wrapper records the studio's exit status once it returns
T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE; echo \$? > '$TMP/rc'; sleep 600"

step "explorer on start"
wait_for "layers x kv heads"
wait_for "layer 0, kv head 0: keys"
wait_for "max |k| per channel"
keys j l
wait_for "layer 1, kv head 1: keys"
keys v
wait_for "layer 1, kv head 1: values"

step "every view by number, Tab and ?"
keys 2; wait_for "run history"
keys 3; wait_for "Space plays"
keys 4; wait_for "rate-distortion"
keys 5; wait_for "calibrators"
keys 6; wait_for "Keys everywhere"
keys 7; wait_for "no model in this session"
keys Tab; wait_for "engine all (e)"    # 8 Deploy: opening it starts the recommend job
keys Escape; wait_for "recommend cancelled"
keys Tab; wait_for "layers x kv heads"
keys '?'; wait_for "Keys everywhere"
keys F1; wait_for "Commands (: prompt"

step "lab: run a method"
keys 2; wait_for "no runs yet"
keys r
wait_for "run 1: turboquant_mse k3/v2" 60

step "dashboard: play, step, speed"
keys 3 Space
wait_for "playing" 60
wait_for "distortion (keys)"
keys .
wait_for "paused"
keys +
wait_for "speed 8 tok/tick"

step "dashboard: generate text with the model, then stop it"
keys g
wait_for "generating (Esc stops)" 60
wait_for "def fibonacci(n):"
keys Escape
wait_for "generation stopped"

step ": command line with completion and history"
keys : 'bi'
wait_for ":bi"
keys Tab
wait_for ":bits"
keys ' 4' Enter
wait_for "turboquant_mse k4/v2"       # the header shows the new config
keys : 'view lab' Enter
wait_for "run history"
keys : 'run' Enter
wait_for "run 2: turboquant_mse k4/v2" 60
keys : 'export csv' ' ' "$TMP/runs.csv" Enter
wait_for "wrote 2 runs"
[ "$(wc -l < "$TMP/runs.csv")" -eq 3 ] || fail "runs.csv should hold a header and 2 runs"
keys : 'bits 99' Enter
wait_for "'99' is not"                  # errors land in the status line
grep -q "^bits  *4$" "$TMP/state/kvstudio/history" || fail "history file lacks bits 4: $(ls -R "$TMP/state"; cat "$TMP/state/kvstudio/history")"

step "calibration: start and cancel"
keys 5 Enter
wait_for "calibrating ratequant"
keys Escape
wait_for "calibration ratequant cancelled (no artifacts kept)"
wait_for "no artifacts yet"

step "quit asks while a job runs"
keys Enter
wait_for "calibrating ratequant"
keys q
wait_for "quit anyway? y/n"
keys n
wait_for "quit cancelled"
keys Escape
wait_for "calibration ratequant cancelled (no artifacts kept)"

step "resize to 60x20 and back"
T resize-window -t "$S" -x 60 -y 20
wait_for "terminal too small (need 80x24)"
T resize-window -t "$S" -x 120 -y 40
wait_gone "terminal too small"
wait_for "calibrators"

step "quit with q"
keys q
wait_file "$TMP/rc"
[ "$(cat "$TMP/rc")" = 0 ] || fail "exit status $(cat "$TMP/rc"), expected 0"

step "Ctrl-C quits cleanly too"
T new-window -t "$S" -c "$PWD" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE; echo \$? > '$TMP/rc0'; sleep 600"
wait_for "layers x kv heads"
keys C-c
wait_file "$TMP/rc0"
[ "$(cat "$TMP/rc0")" = 0 ] || fail "Ctrl-C: exit status $(cat "$TMP/rc0"), expected 0"

step "unknown and missing TERM are clear errors"
T new-window -t "$S" -c "$PWD" \
    "env TERM=no-such-terminal-kvs '$KVSTUDIO' $TRACE 2> '$TMP/err1'; echo \$? > '$TMP/rc1'; sleep 600"
wait_file "$TMP/rc1"
[ "$(cat "$TMP/rc1")" = 2 ] || fail "unknown TERM: exit $(cat "$TMP/rc1"), expected 2"
grep -q "no-such-terminal-kvs' is unknown to terminfo" "$TMP/err1" || fail "unknown TERM: $(cat "$TMP/err1")"
T new-window -t "$S" -c "$PWD" \
    "env -u TERM '$KVSTUDIO' $TRACE 2> '$TMP/err2'; echo \$? > '$TMP/rc2'; sleep 600"
wait_file "$TMP/rc2"
[ "$(cat "$TMP/rc2")" = 2 ] || fail "missing TERM: exit $(cat "$TMP/rc2"), expected 2"
grep -q "TERM is not set" "$TMP/err2" || fail "missing TERM: $(cat "$TMP/err2")"

step "no terminal: batch mode, never curses"
out=$(printf 'version\n' | "$KVSTUDIO" 2>&1) || fail "batch via stdin failed: $out"
[ "$out" = "kvstudio 0.1.0" ] || case "$out" in kvstudio\ *) ;; *) fail "batch via stdin: '$out'";; esac

out=$(printf 'load %s\nmethod q4_0\nbits 4\nrun\nexport json %s\nexport svg %s\n' "$TRACE" "$TMP/runs.json" \
      "$TMP/rd.svg" | "$KVSTUDIO" 2>&1) || fail "batch run/export failed: $out"
echo "$out" | grep -q "^run 1: llamacpp:q4_0 k4/v2" || fail "batch run: '$out'"
grep -q '"label": "llamacpp:q4_0 k4/v2"' "$TMP/runs.json" || fail "runs.json lacks the run"
grep -q "<polyline" "$TMP/rd.svg" || fail "rd.svg lacks the curve"

echo "PASS: studio through tmux"

#!/usr/bin/env bash
# keys.sh — keys do what they say (issue 12, items 11-13), at 80x24 with
# TERM=xterm, NO_COLOR and LANG=C: help is left with ? or Esc back to the
# view it came from and carries the metrics glossary; the plots' Left/Right
# hint reads in the keys' order; the log overlay owns the keys until closed;
# editing a lab field selects the old value so typing replaces it.
S=kvstudio-keys
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 80 -y 24 -c "$PWD" \
    "env TERM=xterm NO_COLOR=1 LANG=C LC_ALL=C XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
wait_for "layers x kv heads"

step "? and Esc leave help back to the previous view"
keys 2; wait_for "run history"
keys '?'; wait_for "Keys everywhere"
keys '?'; wait_for "run history"; wait_gone "Keys everywhere"
keys 4; wait_for "one curve per configuration"
keys F1; wait_for "Keys everywhere"
keys Escape; wait_for "one curve per configuration"; wait_gone "Keys everywhere"

step "help shows the metrics glossary"
keys '?'; wait_for "Keys everywhere"
keys / 'attention KL'; wait_for "Metrics (KL in bits"
wait_for "attention KL (bits)"
keys Escape; wait_gone "Esc clears it"
keys Escape; wait_for "one curve per configuration"

step "plots: Left/Right hint in the keys' order"
keys '?'; wait_for "Keys everywhere"
keys / 'next plot'; wait_for "Left/Right  previous / next plot"
keys Escape; wait_gone "Esc clears it"
keys Escape; wait_for "one curve per configuration"

step "log overlay owns the keys: End scrolls, other keys do not reach the view"
keys 2; wait_for "press r to run"
keys L; wait_for "output log"
keys End; wait_for "output log"
keys j k r; sleep 0.5   # r would start a lab run if it reached the view
screen | grep -qF "run 1:" && fail "a key pressed over the log overlay reached the lab"
wait_for "closes it"
keys Escape; wait_gone "End scroll; Esc"
keys r; wait_for "run 1: turboquant_mse k3/v2" 60

step "editing a field selects the old value: typing replaces it"
keys / outlier Enter; wait_for "outlier_channels"
keys j Enter; wait_for ":set outlier_channels=0"
keys 4 8; wait_for ":set outlier_channels=48"
screen | grep -qF "=048" && fail "typing appended to the old value"
keys Enter; wait_for "outlier_channels   48"
keys q
echo "PASS: help, log overlay and field edits own their keys"

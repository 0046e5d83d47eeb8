#!/usr/bin/env bash
# calib_sets.sh — nothing lost in calibration (issue 12, items 1 and 3), at
# 200x60: each calibrator owns its options (ratequant's target 2.5 leaves
# vecinfer's default valid), every method's set stays in the session side by
# side (calibrating spectral keeps ratequant's, so `method ratequant` + r runs
# and "(calibrated)" is true), the Calibrate view lists the sets, and an
# unsaved set is not replaced without a second Enter.
S=kvstudio-calib
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 200 -y 60 -c "$PWD" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
wait_for "layers x kv heads"

step "ratequant at target 2.5 (all layers: the lab runs it on the whole trace)"
keys 5; wait_for "ratequant options"
keys + +; wait_for "target_bits      2.5"
keys Enter; wait_for "ratequant: done" 120

step "vecinfer with its own default options"
keys j; wait_for "vecinfer options"
wait_for "target_bits      2"
screen | grep -q "target_bits      2.5" && fail "vecinfer shows ratequant's target_bits"
keys f; wait_for "vecinfer: the first 2 layers"
keys Enter; wait_for "vecinfer: done" 120

step "spectral: the earlier sets stay"
keys j; wait_for "spectral options"
keys f; wait_for "spectral: the first 2 layers"
keys Enter; wait_for "spectral: done" 120
wait_for "artifacts in this session (one set per method)"
for m in ratequant vecinfer spectral; do
    screen | grep -E "[> ] $m +[0-9:]+ +not saved" >/dev/null || fail "the sets list lacks $m (not saved)"
done
screen | grep -qE "ratequant +[0-9:]+ +not saved .*target_bits=2.5" || fail "ratequant's options not listed"

step "method ratequant + r runs with its calibration"
keys : 'method ratequant' Enter
keys 2; wait_for "ratequant  (calibrated)"
keys r; wait_for "run 1: ratequant" 120
screen | grep -qF "needs calibration" && fail "ratequant lost its calibration"

step "replacing an unsaved set asks first"
keys 5; wait_for "spectral options"
keys k k; wait_for "ratequant options"
keys Enter; wait_for "ratequant artifacts of"
wait_for "are not saved: Enter again replaces them"
keys s; wait_for ":save artifacts  ratequant"
keys "$TMP/rq" Enter; wait_for "saved ratequant artifacts to $TMP/rq"
ls "$TMP/rq" 2>/dev/null | grep -q . || fail "nothing written to $TMP/rq"
screen | grep -E "ratequant +[0-9:]+ +" | grep -q "not saved" && fail "the saved set is still shown as not saved"
keys Enter; wait_for "ratequant: done" 120
keys q
echo "PASS: calibration sets kept per method, own options, replace asks"

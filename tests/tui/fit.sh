#!/usr/bin/env bash
# fit.sh — the studio reads at any size, the way an engineer drives it
# (NO_COLOR=1, TERM=xterm, LANG=C) at 200x60, 160x45 and 80x24: no number
# is ever cut at a box or screen edge (labels shorten, columns go first),
# the header keeps the trace and config, the history keeps attention error
# and ratio, every list that scrolls says so, the log and help wrap, per-layer bars
# name their metric, and the explorer's channel chart has an axis.
S=kvstudio-fit
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 200 -y 60 -c "$PWD" \
    "env NO_COLOR=1 TERM=xterm LANG=C LC_ALL=C XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
size() { T resize-window -t "$S" -x "$1" -y "$2"; W=$1; }
# no digit (or digit and point, or exponent) against a box edge or the screen edge
no_cuts() {
    local shot=$TMP/shot bad
    screen > "$shot"
    bad=$(grep -nE '[0-9][.]?[|]|[0-9]e[+-]?[0-9]*[|]' "$shot"
          awk -v c="$W" 'length($0) >= c && /([0-9]|[0-9]e[+-]?[0-9]*|[0-9][.])$/ {print NR": "$0}' "$shot")
    [ -z "$bad" ] || fail "$1 at ${W} columns: a number is cut: $bad"
}
W=200

step "four runs through the command line"
wait_for "layers x kv heads"
n=0
for spec in "q8_0 8" "q4_0 4" "kivi 2" "turboquant_mse 3"; do
    set -- $spec
    keys : "method $1" Enter : "bits $2" Enter : run Enter
    n=$((n + 1)); wait_for "run $n: " 60
done
keys 3 Space; wait_for "playing" 60
wait_for "per layer: encode time (ms)"      # bars name their metric and unit
keys .; wait_for "paused"

for sz in "200 60" "160 45" "80 24"; do
    size $sz
    step "every view at ${W} columns"
    keys 1; wait_for "channel"; no_cuts explorer
    keys v; wait_for "kv head 0: values"; no_cuts "explorer (values)"
    keys v; wait_for "kv head 0: keys"
    keys 2; wait_for "run history"; no_cuts lab
    keys 3; wait_for "paused"; no_cuts dashboard
    keys 4; wait_for "rate-distortion:"; no_cuts "rate-distortion plot"
    keys l; wait_for "of every run"; no_cuts "compression plot"
    keys l; wait_for "bit allocation:"; no_cuts "allocation plot"
    keys h h; keys 5; wait_for "calibrators"; no_cuts calibrate
    keys 6; wait_for "Keys everywhere"; no_cuts help
    keys L; wait_for "output log  (Up"; no_cuts log; keys Escape; wait_gone "output log  (Up"
done

step "80x24: header, dashboard and history keep what matters"
keys 2; wait_for "run history"
screen | head -1 | grep -q "code-1k.*turboquant_mse k3/v2" || fail "the header lost the trace or the config"
screen | grep -q "attn err" || fail "the history dropped attention error"
screen | grep -q "ratio" || fail "the history dropped the compression ratio"
keys 3; wait_for "paused"
screen | grep -qE "cos 0\.[0-9]{4}  min 0\.[0-9]{4}" || fail "the dashboard lost key cosine or its minimum"
screen | grep -qE "out err 0\.[0-9]+" || fail "the dashboard lost the output error"
screen | grep -q "1 - cos per layer" || fail "the distortion bars do not name their metric"
screen | grep -qE "\+[0-9]+ layers: L[0-9]+-L[0-9]+" || fail "hidden layers are not counted"

keys 6; wait_for "Keys everywhere"
screen | grep -qE '^\| +runs\) +\|' || fail "help cut 'quit (asks while a job runs)' instead of wrapping it"

step "the config list scrolls with markers, and a taller window shows its top again"
keys 1 2; wait_for "run history"
for i in $(seq 30); do keys j; done
wait_for "residual_length"
screen | grep -qE "[0-9]+-[0-9]+ of [0-9]+ \^" || fail "the config list has no scroll marker"
size 200 60
wait_for "method             turboquant_mse"

step "the log wraps: the end of a long line is on screen"
size 80 24
keys L; wait_for "output log  (Up"
screen | grep -q "6.10x" || fail "the log cut the run line (no 6.10x)"
keys Escape q
echo "PASS: nothing cut at 200x60, 160x45 and 80x24"

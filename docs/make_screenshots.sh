#!/usr/bin/env bash
# make_screenshots.sh — regenerate docs/screenshots.md: drive the studio in a
# detached tmux session the way an engineer at a plain terminal sees it
# (NO_COLOR=1, TERM=xterm, LANG=C) and paste capture-pane text of every view
# at 80x24, 120x40 and 200x60.
# Usage (from the repo root, after `make`): bash docs/make_screenshots.sh
set -eu
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
OUT=${OUT:-docs/screenshots.md}
MODEL=sample_data/refmodel   # opens on the Model view; the trace views show code-1k.safetensors
SIZES="80x24 120x40 200x60"
command -v tmux >/dev/null || { echo "tmux is not installed" >&2; exit 1; }
KVSTUDIO=$(cd "$(dirname "$KVSTUDIO")" && pwd)/$(basename "$KVSTUDIO")
TMP=$(mktemp -d)
SOCK="$TMP/sock"
S=shots
T() { tmux -S "$SOCK" -f /dev/null "$@"; }
trap 'T kill-server >/dev/null 2>&1; rm -rf "$TMP"' EXIT
screen() { T capture-pane -p -t "$S"; }
wait_for() {
    local deadline=$((SECONDS + ${2:-60}))
    until screen | grep -qF -- "$1"; do
        [ $SECONDS -ge $deadline ] && { echo "timed out waiting for '$1'" >&2; screen >&2; exit 1; }
        sleep 0.05
    done
}
wait_for_re() {   # an extended regex, same deadline rule as wait_for
    local deadline=$((SECONDS + ${2:-60}))
    until screen | grep -qE -- "$1"; do
        [ $SECONDS -ge $deadline ] && { echo "timed out waiting for /$1/" >&2; screen >&2; exit 1; }
        sleep 0.05
    done
}
keys() { T send-keys -t "$S" "$@"; }
cmd() { keys : "$1" Enter; }
# resize WxH and wait for the studio's redraw at that width (a box edge at the last column)
size() {
    local w=${1%x*} h=${1#*x} deadline=$((SECONDS + 20))
    T resize-window -t "$S" -x "$w" -y "$h"
    until screen | awk -v w="$w" 'length($0) == w { ok = 1 } length($0) > w { bad = 1 } END { exit !(ok && !bad) }'; do
        [ $SECONDS -ge $deadline ] && { echo "no redraw at $1" >&2; exit 1; }
        sleep 0.05
    done
    sleep 0.2
}
capture() { { echo '```'; screen | sed 's/[[:space:]]*$//'; echo '```'; echo; } >> "$TMP/md"; }
heading() { { echo "## $1"; echo; if [ -n "${2:-}" ]; then echo "$2"; echo; fi; } >> "$TMP/md"; }
# shot TITLE NOTE TEXT: the current view at every size (TEXT on screen first)
shot() {
    heading "$1" "${2:-}"
    for sz in $SIZES; do
        size "$sz"
        wait_for "$3"
        echo "### $sz" >> "$TMP/md"; echo >> "$TMP/md"
        capture
    done
    size 120x40
}

T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
    "env NO_COLOR=1 TERM=xterm LANG=C LC_ALL=C XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $MODEL; sleep 600"
cat > "$TMP/md" <<'EOF2'
# kvstudio screenshots

Text captures of the studio opened on `sample_data/refmodel` (its trace views show
`sample_data/traces/code-1k.safetensors`) at
80x24, 120x40 and 200x60, as a plain terminal shows it: `NO_COLOR=1`,
`TERM=xterm`, `LANG=C` (ASCII lines and bars; plot points carry their
series' marker). Captured with tmux `capture-pane`; attributes are not shown.
Regenerate with `bash docs/make_screenshots.sh` after `make`.

EOF2

wait_for "tokenizer"
keys 1
wait_for "layers x kv heads"
keys j j
wait_for "layer 2, kv head 0: keys"
sleep 0.3   # let the grid finish (it fills a few cells per frame)
shot "1 Explorer" "Layers x kv heads grid (d_eff and the largest channel max / median), and for the selected head: norms over tokens, per-channel max |k| (outlier channels highlighted) over a channel axis from 0, the covariance spectrum with d_eff. \`v\` switches both panels to values." "channel"

# a small history of runs, through the command line
n=0
for spec in "q8_0 8" "q4_0 4" "kivi 2" "turboquant_mse 2" "turboquant_mse 3" "turboquant_mse 4" \
            "turboquant_prod 3" "polarquant 3"; do
    set -- $spec
    cmd "method $1"
    cmd "bits $2"
    cmd "run"
    n=$((n + 1))
    wait_for "run $n: " 120
done
cmd "method turboquant_mse"
cmd "bits 3"
keys 2
wait_for "run history"
keys c
wait_for "vs run"
shot "2 Method lab" "The form is built from the methods table and the config fields (Left/Right change a value through \`set\`, Enter edits it on the command line); \`r\` runs the quantize report on the worker thread; the history compares runs side by side (\`c\`). Narrow terminals get short column headers, then lose the least telling columns (attention error and the ratio stay longest); lists that scroll say \`3-12 of 26\`." "run history"

keys Up Up Up Up Up Up Up Up Enter
wait_for "Esc back to the form"
shot "2 Method lab: the method picker" "Enter on \`method\` opens the picker; the footer shows the picker's keys." "Esc back to the form"
keys Escape

keys 3 Space
wait_for "playing" 60
keys +
sleep 2
keys .
wait_for "paused"
shot "3 Dashboard" "The trace replayed through the caches (prefill of the first half, then token by token with the trace's queries): the five observers and attention against exact fp32, live. Every per-layer bar names its metric and unit; on a small screen labels shorten, figures go before any is cut, and hidden layers are counted." "paused"

keys 4
wait_for "rate-distortion:"
shot "4 Plots: rate-distortion" "Line plot of every run so far, one curve per configuration; each has a marker on its points and in the legend, and one colour in every plot and in \`export svg\` (\`a\` switches the y axis)." "rate-distortion:"
keys l
wait_for "of every run"
shot "4 Plots: compression" "" "of every run"
keys l
wait_for "bit allocation:"
shot "4 Plots: bit allocation" "" "bit allocation:"
keys l

keys 5
wait_for "calibrators"
keys Enter
wait_for "calibrating ratequant: sensitivity"
heading "5 Calibration (running)" "Progress bar and ETA from the engine's progress callback; Esc cancels."
capture
wait_for "bit allocation per layer" 120
shot "5 Calibration (result)" "" "bit allocation per layer"

keys 6
wait_for "Keys everywhere"
shot "6 Help" "Generated from the key tables and the command table the code dispatches on." "Keys everywhere"

keys 7
wait_for "tokenizer"
shot "7 Model" "The session's model (\`kvstudio sample_data/refmodel\`): its shape, counted from the safetensors headers; Enter fills the ppl/KL grid (one ppl run per cell on a worker, Esc cancels); \`c\` captures a trace from the model and opens it. Bits/byte vs key record bits is plotted beside the trace-level rate-distortion plot." "tokenizer"

keys 8
wait_for "formats measured" 300
shot "8 Deploy" "The \`recommend\` table for the session's trace, measured on the worker (e engine, c context, b budget, t tokens replayed), with memory vs quality, one marker and colour per engine." "formats measured"

keys L
wait_for "output log  (Up"
shot "The output log" "\`L\`: every status line, wrapped at the window's width." "output log  (Up"
keys Escape

keys 3 g
wait_for "generating (Esc stops)" 60
sleep 3
heading "3 Dashboard: generation" "\`g\` runs the model (the studio's MODEL_DIR, else sample_data/refmodel) through the same quantized caches on the worker thread; the observers update per token."
capture
keys Escape   # stops it, unless it finished its tokens first
wait_for_re "generation stopped|generated [0-9]+ tokens"

keys 1 : 'method turbo' Tab
wait_for "turboquant_mse  turboquant_prod"
heading "The : command line" "GNU readline (callback interface) on the status line: completion of commands, methods, options, config fields and paths; history in \$XDG_STATE_HOME/kvstudio/history."
capture
keys Escape

T resize-window -t "$S" -x 60 -y 20
wait_for "terminal too small"
heading "Below 80x24"
capture
T resize-window -t "$S" -x 120 -y 40
keys q
mv "$TMP/md" "$OUT"
echo "wrote $OUT"

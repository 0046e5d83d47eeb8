#!/usr/bin/env bash
# make_screenshots.sh — regenerate docs/screenshots.md: drive the studio in
# a detached 120x40 tmux session and paste capture-pane text of every view.
# Usage (from the repo root, after `make`): bash docs/make_screenshots.sh
set -eu
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
OUT=${OUT:-docs/screenshots.md}
TRACE=sample_data/traces/code-1k.safetensors
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
keys() { T send-keys -t "$S" "$@"; }
cmd() { keys : "$1" Enter; }
shot() {   # title, note
    { echo "## $1"; echo; [ -n "${2:-}" ] && { echo "$2"; echo; }
      echo '```'; screen | sed 's/[[:space:]]*$//'; echo '```'; echo; } >> "$TMP/md"
}

T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE; sleep 600"
cat > "$TMP/md" <<'EOF'
# kvstudio screenshots

Text captures of the studio at 120x40 on `sample_data/traces/code-1k.safetensors`
(tmux `capture-pane`; colours and attributes are not shown). Regenerate with
`bash docs/make_screenshots.sh` after `make`.

EOF

wait_for "layers x kv heads"
keys j j
wait_for "layer 2, kv head 0: keys"
sleep 0.3   # let the grid finish (it fills a few cells per frame)
shot "1 Explorer" "Layers x kv heads grid (d_eff and the largest channel max / median), and for the selected head: key norms over tokens, per-channel max |k| with outlier channels highlighted, the covariance spectrum with d_eff. \`v\` shows values."

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
shot "2 Method lab" "The form is built from the methods table and the config fields (Left/Right change a value through \`set\`, Enter edits it on the command line); \`r\` runs the quantize report on the worker thread; the history compares runs side by side (\`c\`)."

keys 3 Space
wait_for "playing" 60
keys +
sleep 2
keys .
wait_for "paused"
shot "3 Dashboard" "The trace replayed through the caches (prefill of the first half, then token by token with the trace's queries): the four observers and attention against exact fp32, live."

keys g
wait_for "generating (Esc stops)" 60
sleep 3
shot "3 Dashboard: generation" "\`g\` runs the model (the studio's MODEL_DIR, else sample_data/refmodel) through the same quantized caches on the worker thread; the observers update per token."
keys Escape
wait_for "generation stopped"

keys 4
wait_for "rate-distortion"
shot "4 Plots: rate-distortion" "Braille line plot of every run so far, one curve per method (\`a\` switches the y axis to the attention output error)."
keys l
wait_for "compression vs fp16"
shot "4 Plots: compression"

keys 5
wait_for "calibrators"
keys Enter
wait_for "calibrating ratequant: sensitivity"
shot "5 Calibration (running)" "Progress bar and ETA from the engine's progress callback; Esc cancels."
wait_for "bit allocation per layer" 120
shot "5 Calibration (result)"

keys 6
wait_for "Keys everywhere"
shot "6 Help" "Generated from the key tables and the command table the code dispatches on."

keys 1 : 'method turbo' Tab
wait_for "turboquant_mse  turboquant_prod"
shot "The : command line" "GNU readline (callback interface) on the status line: completion of commands, methods, options, config fields and paths; history in \$XDG_STATE_HOME/kvstudio/history."
keys Escape

T resize-window -t "$S" -x 60 -y 20
wait_for "terminal too small"
shot "Below 80x24"
T resize-window -t "$S" -x 120 -y 40
keys q
mv "$TMP/md" "$OUT"
echo "wrote $OUT"

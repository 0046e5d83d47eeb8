#!/usr/bin/env bash
# model.sh — the model as a first-class citizen (issue 12, items 4 and 5), at
# 200x60 on sample_data/refmodel: opening the model directory shows the model
# view with its shape; `:ppl` runs as a job on the session's model and method
# (no --model, no --method) with a progress bar, and Esc cancels it within
# moments; the ppl/KL grid fills in cell by cell for 2 configs on a short
# text; `c` captures a trace from the model and opens it in the session.
S=kvstudio-model
. "$(dirname "$0")/lib.sh"

MODEL=sample_data/refmodel
head -c 200 sample_data/texts/textwrap-1k.py >"$TMP/short.txt"   # about 1 s a grid cell
mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 200 -y 60 -c "$PWD" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $MODEL 2>'$TMP/err'; sleep 600"

step "opening the model directory shows the model view with its shape"
wait_for "7 Model" 20
wait_for "model $MODEL (7 Model)"
for t in "arch      llama" "layers    6" "heads     4 query, 2 kv" "head_dim  128" "params    19.1M" \
    "tokenizer bytes"; do
    screen | grep -qF "$t" || fail "the model view lacks '$t'"
done

step ":ppl without --model or --method: a job on the session's model and config, Esc cancels"
keys : 'method kivi' Enter; wait_for "kivi k3"
keys : 'ppl --text sample_data/texts/gpl3-2048-3071.txt' Enter
wait_for "Esc cancels" 10          # the progress bar: the UI is not frozen
wait_for " ppl ppl " 10
keys Escape
t0=$SECONDS
wait_for "ppl cancelled after" 5
[ $((SECONDS - t0)) -le 3 ] || fail "Esc took $((SECONDS - t0)) s to stop ppl"
screen | grep -qF -- "--model DIR is required" && fail "ppl asked for --model although the studio is on one"

step ":ppl to the end reports the session's method (kivi), not fp16"
keys : "ppl --text '$TMP/short.txt'" Enter
wait_for "throughput" 30
screen | grep -qF "KL(fp16 || kivi k3" || fail "ppl did not run the session's method"
screen | grep -qF "cache      kivi k3" || fail "ppl did not name the session's method as its cache"
screen | grep -qF "from the session config: method kivi" || fail "ppl's config line does not name the session config"
keys Escape; wait_gone "output log"

step "the grid fills in for 2 configs (kivi k2, k4), cell by cell"
keys : "grid --methods kivi --bits 2,4 --text '$TMP/short.txt'" Enter
wait_for "method \\ key bits" 5
wait_for "running" 5                # a cell in flight, the others still empty
wait_for "grid done: 2 cells" 40
row=$(screen | grep -E "│ kivi +[0-9]+\.[0-9]{4} +[0-9]+\.[0-9]{4} ") || fail "the kivi row lacks 2 bits/byte cells"
screen | grep -qE "next-token KL +[0-9]+\.[0-9]{5} +[0-9]+\.[0-9]{5}" || fail "the KL row lacks 2 cells"
screen | grep -qF "fp16 " || fail "the grid title lacks the fp16 reference"

step "c captures a trace from this model and opens it"
keys c
wait_for "opened the captured trace" 40
screen | grep -qF "capture-refmodel-" || fail "the tab bar does not show the captured trace"
ls "$TMP/state/kvstudio/"capture-refmodel-*.safetensors >/dev/null 2>&1 || fail "no capture file in the state dir"
keys q
echo "PASS: model view shape, ppl job with Esc on the session's method, grid of 2 cells, capture opens"

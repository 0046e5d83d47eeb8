#!/usr/bin/env bash
# deploy.sh — the Deploy view (issue 14), at 80x24 with TERM=xterm, NO_COLOR
# and LANG=C: opening it measures the recommend table on the worker with a
# progress bar that Esc cancels; `:recommend` fills it with llama.cpp, vLLM
# and mlx_lm rows, a memory vs quality plot and its legend (one ASCII marker
# per engine); e filters the engine, c and b edit the context and budget on
# the prompt, Left/Right shows the budget column; a click selects a row.
S=kvstudio-deploy
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 80 -y 24 -c "$PWD" \
    "env TERM=xterm NO_COLOR=1 LANG=C LC_ALL=C XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
wait_for "layers x kv heads"
# no digit (or digit and point) against a box or the screen edge (as fit.sh)
no_cuts() {
    local bad
    bad=$(screen | grep -nE '[0-9][.]?[|]|[0-9]e[+-]?[0-9]*[|]'
          screen | awk 'length($0) >= 80 && /([0-9]|[0-9][.])$/ {print NR": "$0}')
    [ -z "$bad" ] || fail "$1: a number is cut: $bad"
}

step "opening the view starts the job; Esc cancels it"
keys : 'view deploy' Enter; wait_for "engine all (e)"
# the deploy job's own line: "Esc cancels" alone also matches the open's NaN scan
# or a job the recommend waits for, and Esc would cancel that one instead
wait_for "measuring every format on the trace"
keys Escape; wait_for "recommend cancelled" 20

step "the table fills with every engine's rows, the plot and its legend"
keys : 'recommend --seq-len 32' Enter
wait_for "formats measured on 32 tokens" 60
for e in llamacpp vllm mlx; do
    screen | grep -qE "^\| +[0-9]+[* ] . $e " || fail "no $e row in the table"
done
for l in "o llamacpp" "+ vllm" "x mlx"; do   # legend: marker, engine, rows
    screen | grep -F -- "$l " | grep -qE ' [0-9]+ +\|$' || fail "no legend line '$l N'"
done
wait_for "# kvstudio (own)"
wait_for "output error (log, y toggles) vs KV memory at context at 1024 tokens"
no_cuts "the filled table"
# vllm auto and llamacpp f16 hold the same f16 rows and give the same attention: an exact tie
screen | grep -qE '^\|  1\* (\+ vllm +auto|o llamacpp +f16/f16) ' || fail "rank 1 is not an exact f16 format (vllm auto or llamacpp f16: the least memory of the exact formats)"

step "e filters the engine; c and b edit context and budget"
keys e; wait_for "engine llamacpp (e)"
wait_for "formats measured on 32 tokens" 60; wait_gone "x mlx  "
screen | grep -qE '^\| +[0-9]+[* ] . (vllm|mlx) ' && fail "another engine's row under engine llamacpp"
keys c; wait_for ":recommend --context 1024"
keys 8 1 9 2 Enter; wait_for "context 8192 (c)"; wait_for "at 8192 tokens" 60
keys b; wait_for ":recommend --budget-gb 0"
keys BSpace 0 . 0 1 5 Enter; wait_for "budget 0.015 GiB (b)"
wait_for "formats measured on 32 tokens" 60
keys Right Right Right Right; wait_for "front budget"
no_cuts "the table scrolled to its flags"
# the four 4-bit formats under 0.015 GiB at 8192 tokens come first (as tests/e2e/recommend.sh)
n=$(screen | grep -cE '^\|  [1-4][* ] o llamacpp .* fits ')
[ "$n" = 4 ] || fail "expected 4 fitting rows first, saw $n"
wait_for ": budget"

step "a click selects a row; the wheel scrolls the table"
p=$(screen | awk '/^\|  3[* ] o llamacpp/ { print NR; exit }')
[ -n "$p" ] || fail "no rank 3 row"
keys -l $'\e[<0;10;'"$p"M$'\e[<0;10;'"$p"m
fmt=$(screen | sed -n "${p}p" | awk '{print $5}')
wait_for " llamacpp $fmt:  -ctk"
keys -l $'\e[<65;10;'"$p"M $'\e[<65;10;'"$p"M
wait_gone " llamacpp $fmt:  -ctk"
keys q
echo "PASS: the Deploy view measures, filters, edits and plots the recommend table"

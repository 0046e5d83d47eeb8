#!/usr/bin/env bash
# ppl_table.sh — the README's table: bits/byte and KL(fp16 || method) of the
# reference model on the two reference texts, every method at 2, 3 and 4 key
# bits (values kept fp16 so the column isolates the key method), next to
# fp16, q8_0 and q4_0; plus turboquant_mse with values at the same bits.
# Calibrated methods use artifacts from `kvstudio precompute` on the code
# trace (out of sample for the prose text). Plain bash + sed.
#
#   tools/ppl_table.sh [KVSTUDIO] > table.md        (about 15 CPU minutes)
#   PPL_ROWS='turboquant_mse:3' tools/ppl_table.sh   (one row; README check)
set -u
K=${1:-${KVSTUDIO:-./build/kvstudio}}
M=sample_data/refmodel
TEXTS=(sample_data/texts/textwrap-1k.py sample_data/texts/gpl3-2048-3071.txt)
ART=$(mktemp -d)
trap 'rm -rf "$ART"' EXIT

# cell ARGS...: "bpb / KL" of one run on each text, tab-separated
cell() {
  local out=""
  for t in "${TEXTS[@]}"; do
    local j
    if j=$("$K" ppl --model "$M" --text "$t" --json "$@" 2>&1); then
      local b kl
      b=$(sed -n 's/.*"bits_per_byte": \([0-9.e+-]*\).*/\1/p' <<<"$j")
      kl=$(sed -n 's/.*"kl_divergence": \([0-9.e+-]*\).*/\1/p' <<<"$j")
      out+=$(printf ' %.4f / %.5f |' "$b" "$kl")
    else
      out+=" n/a |"
      echo "ppl $* on $t: $(tail -1 <<<"$j")" >&2
    fi
  done
  printf '%s' "$out"
}

# row LABEL KEYBITS VALUES ARGS...: one table row; PPL_ROWS="LABEL:KEYBITS ..." (labels as
# printed) limits the table to those rows (the cheap subset `make docs-check` re-runs).
row() {
  local label=$1 kb=$2 vals=$3; shift 3
  if [ -n "${PPL_ROWS:-}" ] && [[ " $PPL_ROWS " != *" $label:$kb "* ]]; then return 0; fi
  echo "| $label | $kb | $vals |$(cell "$@")"
}
wanted() { # LABEL: does any row of this label survive PPL_ROWS?
  [ -z "${PPL_ROWS:-}" ] || [[ " $PPL_ROWS " == *" $1:"* ]]
}

echo "| method | key bits | values | textwrap-1k.py bits/byte / KL | gpl3-2048-3071.txt bits/byte / KL |"
echo "| --- | --- | --- | --- | --- |"
row fp16 16 fp16 --method fp16 --bits 16 --value-bits 16
row q8_0 8 fp16 --method q8_0 --bits 8 --value-bits 16
row q4_0 4 fp16 --method q4_0 --bits 4 --value-bits 16
row iq4_nl 4 fp16 --method iq4_nl --bits 4 --value-bits 16
row q4_0_hadamard 4 fp16 --method q4_0_hadamard --bits 4 --value-bits 16
row qjl 1 fp16 --method qjl --bits 1 --value-bits 16
# turboquant_rvq runs 2 residual passes: about twice the nominal bits
for m in kivi turboquant_mse turboquant_prod "turboquant_rvq (2 passes)" polarquant; do
  for b in 2 3 4; do row "$m" "$b" fp16 --method "${m%% *}" --bits "$b" --value-bits 16; done
done
for b in 2 3 4; do
  row "turboquant_mse, values at $b bits" "$b" "$b-bit turboquant_mse" --method turboquant_mse --bits "$b" --value-bits "$b"
done
for m in ratequant spectral vecinfer rabitq commvq; do
  wanted "$m" || continue
  for b in 2 3 4; do
    if [ -n "${PPL_ROWS:-}" ] && [[ " $PPL_ROWS " != *" $m:$b "* ]]; then continue; fi
    d="$ART/$m-$b"
    if "$K" precompute --method "$m" --trace sample_data/traces/code-1k.safetensors --output "$d" \
      --target-bits "$b" >/dev/null 2>"$ART/err"; then
      row "$m" "$b" fp16 --method "$m" --bits "$b" --value-bits 16 --artifacts "$d"
    else
      echo "| $m | $b | fp16 | n/a | n/a |"
      echo "precompute $m $b: $(tail -1 "$ART/err")" >&2
    fi
  done
done

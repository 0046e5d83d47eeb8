#!/usr/bin/env bash
# ppl_table.sh — the README's table: bits/byte and KL(fp16 || method) of the
# reference model on the two reference texts, every method at 2, 3 and 4 key
# bits (values kept fp16 so the column isolates the key method), next to
# fp16, q8_0 and q4_0; plus turboquant_mse with values at the same bits.
# Calibrated methods use artifacts from `kvstudio precompute` on the code
# trace (out of sample for the prose text). Plain bash + sed.
#
#   tools/ppl_table.sh [KVSTUDIO] > table.md        (about 15 CPU minutes)
set -u
K=${1:-./build/kvstudio}
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

echo "| method | bits | textwrap-1k.py bits/byte / KL | gpl3-2048-3071.txt bits/byte / KL |"
echo "| --- | --- | --- | --- |"
echo "| fp16 | 16 |$(cell --method fp16 --bits 16)"
echo "| q8_0 | 8 |$(cell --method q8_0 --bits 8 --value-bits 16)"
echo "| q4_0 | 4 |$(cell --method q4_0 --bits 4 --value-bits 16)"
echo "| iq4_nl | 4 |$(cell --method iq4_nl --bits 4 --value-bits 16)"
echo "| q4_0_hadamard | 4 |$(cell --method q4_0_hadamard --bits 4 --value-bits 16)"
echo "| qjl | 1 |$(cell --method qjl --bits 1 --value-bits 16)"
for m in kivi turboquant_mse turboquant_prod turboquant_rvq polarquant; do
  for b in 2 3 4; do echo "| $m | $b |$(cell --method "$m" --bits "$b" --value-bits 16)"; done
done
for b in 2 3 4; do
  echo "| turboquant_mse, values at $b bits | $b |$(cell --method turboquant_mse --bits "$b" --value-bits "$b")"
done
for m in ratequant spectral vecinfer rabitq commvq; do
  for b in 2 3 4; do
    d="$ART/$m-$b"
    if "$K" precompute --method "$m" --trace sample_data/traces/code-1k.safetensors --output "$d" \
      --target-bits "$b" >/dev/null 2>"$ART/err"; then
      echo "| $m | $b |$(cell --method "$m" --bits "$b" --value-bits 16 --artifacts "$d")"
    else
      echo "| $m | $b | n/a | n/a |"
      echo "precompute $m $b: $(tail -1 "$ART/err")" >&2
    fi
  done
done

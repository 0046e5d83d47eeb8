#!/usr/bin/env bash
# sample_data/bpemodel (made by tools/train_bpe_model.py): a Llama trained with
# its own byte-level BPE tokenizer.json. kvstudio's tokenizer must give the ids
# the script's Python encoder gives (tests/data/bpemodel/*.ids, written by
# `tools/train_bpe_model.py --encode sample_data/bpemodel FILE`), and `ppl`
# must reproduce the script's F32 torch losses (sample_data/bpemodel/README.md,
# reference.json) to 0.002.
source "$(dirname "$0")/lib.sh"
M=sample_data/bpemodel
D=tests/data/bpemodel

for t in textwrap-1k:sample_data/texts/textwrap-1k.py gpl3-2048-3071:sample_data/texts/gpl3-2048-3071.txt \
         corpus:tests/tok/corpus.txt; do
  name=${t%%:*} file=${t#*:}
  expect_ok "tokenize $name" "$KVSTUDIO" tokenize --tokenizer "$M" --text "$file"
  cmp -s "$TMP/out" "$D/$name.ids" && pass "$name: ids equal the Python encoder's ($(wc -w <"$D/$name.ids") tokens)" ||
    fail "$name: ids differ from $D/$name.ids at word $(paste -d' ' <(tr ' ' '\n' <"$TMP/out") <(tr ' ' '\n' <"$D/$name.ids") | awk '$1 != $2 {print NR; exit}')"
done
expect_ok "tokenize --json" "$KVSTUDIO" tokenize --tokenizer "$M" "def f(x):" --json
expect_out "json has ids" '"ids"'

# within NAME GOT WANT: |GOT - WANT| <= 0.002
within() {
  awk -v g="$2" -v w="$3" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= 0.002) }' &&
    pass "$1 $2 (torch $3)" || fail "$1: kvstudio '$2', torch F32 $3"
}
num() { grep -o "\"$1\": [-0-9.e]*" "$TMP/out" | head -1 | awk '{print $2}'; }

# Figures of sample_data/bpemodel/reference.json ("samples").
ref() { grep -A12 "\"text\": \"$1\"" "$M/reference.json" | grep -o "\"$2\": [-0-9.e]*" | head -1 | awk '{print $2}'; }
for text in sample_data/texts/textwrap-1k.py sample_data/texts/gpl3-2048-3071.txt; do
  expect_ok "ppl $(basename "$text")" "$KVSTUDIO" ppl --model "$M" --text "$text" --json
  within "$(basename "$text") bits_per_token" "$(num bits_per_token)" "$(ref "$text" bits_per_token)"
  within "$(basename "$text") bits_per_byte" "$(num bits_per_byte)" "$(ref "$text" bits_per_byte)"
done

# A quantized cache runs on it and is scored against fp16.
expect_ok "ppl turboquant_mse 3/2" "$KVSTUDIO" ppl --model "$M" --text sample_data/texts/textwrap-1k.py \
  --method turboquant_mse --bits 3 --value-bits 2 --json
kl=$(num kl_divergence)
awk -v k="$kl" 'BEGIN { exit !(k != "" && k > 0) }' && pass "KL(fp16 || turboquant) $kl > 0" || fail "KL '$kl'"
finish

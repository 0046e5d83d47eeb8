#!/usr/bin/env bash
# ppl, generate and capture on the reference model: the README's bits/byte
# figure through the fp16 cache, KL of a quantized cache in the JSON report
# (atomic write), token files, streamed generation with observer reports, a
# captured trace that `info` opens, and the errors.
. "$(dirname "$0")/lib.sh"

M=sample_data/refmodel
CODE=sample_data/texts/textwrap-1k.py
head -c 256 "$CODE" >"$TMP/code256.txt"

expect_ok "ppl fp16 textwrap" "$KVSTUDIO" ppl --model "$M" --text "$CODE" --method fp16 --bits 16
expect_out "reference 1.5130 bits/byte" "^bits/byte  1\.51[23]"
expect_out "no KL line for fp16" "^cache      fp16 k16/v16$"

expect_ok "ppl q8_0 json" "$KVSTUDIO" ppl --model "$M" --text "$TMP/code256.txt" --method q8_0 --bits 8 \
  --value-bits 8 --output "$TMP/ppl.json"
expect_out "delta vs fp16" "^bits/byte  [0-9.]* (fp16 1\.71"
expect_out "KL line" "^next-token KL 0\.[0-9]* bits/token"
[ -s "$TMP/ppl.json" ] && pass "report written" || fail "report written"
ls "$TMP" | grep -q '\.tmp\.' && fail "temp file left behind" || pass "no temp file left"
grep -q '"bits_per_byte": 1\.7' "$TMP/ppl.json" && pass "json bits_per_byte" || fail "json bits_per_byte"
grep -q '"kl_divergence": [0-9]' "$TMP/ppl.json" && pass "json kl_divergence" || fail "json kl_divergence"
grep -q '"kl_divergence": 0\.0,' "$TMP/ppl.json" && fail "q8_0 KL is exactly 0" || pass "q8_0 KL > 0"

# issue 17: fixed-width methods take their width; defaults are said every time
expect_ok "ppl --method fp16 without --bits" "$KVSTUDIO" ppl --model "$M" --text "$TMP/code256.txt" --method fp16
expect_out "fp16 label" "^cache      fp16 k16/v16$"
expect_fail "conflicting width" "bits: llamacpp:q4_0 has a fixed width of 4 bits" "$KVSTUDIO" ppl --model "$M" \
  --text "$TMP/code256.txt" --method q4_0 --bits 3
expect_ok "ppl --value-bits only" "$KVSTUDIO" ppl --model "$M" --text "$TMP/code256.txt" --value-bits 4
expect_out "keys default said" "^config     given: value-bits 4; from the session config: method turboquant_mse, bits 3"
expect_out "label" "^cache      turboquant_mse k3/v4$"

# The same bytes as a token file give bits/token = bits/byte.
od -An -tu1 -v "$TMP/code256.txt" >"$TMP/tok.txt"
expect_ok "ppl --tokens" "$KVSTUDIO" ppl --model "$M" --tokens "$TMP/tok.txt" --json
expect_out "bits_per_token key" '"bits_per_token": 1\.71'
expect_out "fp16 kl 0" '"kl_divergence": 0\.0'

expect_ok "generate greedy" "$KVSTUDIO" generate --model "$M" --prompt "def wrap(text):" --max-tokens 24
expect_out "prompt echoed" "^def wrap(text):"
expect_out "cache line" "^cache       fp16 k16/v16 use_fused_sdpa=false$"
expect_out "reference said" "^config      no cache option given: the fp16 reference cache"
expect_out "speed line" "^speed       prefill 15 tokens .* decode 24 tokens"
expect_out "memory report" "^memory      peak"
expect_out "attention report" "^attention   output error 0\.0"
cp "$TMP/out" "$TMP/gen1"
expect_ok "generate deterministic" "$KVSTUDIO" generate --model "$M" --prompt "def wrap(text):" --max-tokens 24
[ "$(head -c 60 "$TMP/gen1")" = "$(head -c 60 "$TMP/out")" ] && pass "same text twice" || fail "same text twice"
expect_ok "generate sampled tq" "$KVSTUDIO" generate --model "$M" --prompt "import " --max-tokens 16 \
  --temperature 0.8 --seed 3 --method turboquant_mse --bits 3 --value-bits 2
expect_out "quantized cache line" "^cache       turboquant_mse k3/v2"
expect_out "distortion report" "^distortion  key cosine 0\.9"

expect_ok "capture 128" "$KVSTUDIO" capture --model "$M" --text "$CODE" --out "$TMP/cap.safetensors" --tokens 128
expect_out "capture summary" "128 tokens, F16"
expect_ok "info on capture" "$KVSTUDIO" info "$TMP/cap.safetensors"
expect_out "info shape" "6 layers, 4 heads, 2 kv heads, 128 tokens, head_dim 128, F16"
expect_out "info loss" "^loss      1\.[0-9]* bits/byte"
expect_out "info queries" "^queries   128"

expect_fail "no model" "--model DIR is required" "$KVSTUDIO" ppl --text "$CODE"
expect_fail "no config" "no config.json" "$KVSTUDIO" ppl --model "$TMP" --text "$CODE"
mkdir "$TMP/half"
cp "$M/config.json" "$M/model.safetensors.index.json" "$M/model-00001-of-00003.safetensors" "$TMP/half/"
expect_fail "missing shard" "shard 'model-00002-of-00003.safetensors' listed in model.safetensors.index.json is missing" \
  "$KVSTUDIO" ppl --model "$TMP/half" --text "$CODE"
mkdir "$TMP/gelu"
sed 's/"silu"/"gelu"/' "$M/config.json" >"$TMP/gelu/config.json"
expect_fail "unsupported field" "hidden_act' = 'gelu' is not supported" "$KVSTUDIO" generate --model "$TMP/gelu" \
  --prompt x --max-tokens 2
expect_fail "text and tokens" "give one of --text FILE or --tokens FILE" "$KVSTUDIO" ppl --model "$M" \
  --text "$CODE" --tokens "$TMP/tok.txt"
echo "1 2 999" >"$TMP/bad.txt"
expect_fail "token out of vocab" "token 999 at index 2 is outside the vocabulary 0..255" "$KVSTUDIO" ppl --model "$M" \
  --tokens "$TMP/bad.txt"
expect_fail "unknown option" "unknown option 'bogus'" "$KVSTUDIO" capture --model "$M" --text "$CODE" --out "$TMP/x" \
  --bogus 1
expect_fail "bad method" "unknown method 'nosuch'" "$KVSTUDIO" ppl --model "$M" --text "$CODE" --method nosuch
expect_fail "capture without out" "--out TRACE.safetensors is required" "$KVSTUDIO" capture --model "$M" --text "$CODE"

# grid: each cell is the ppl of its config (same figures), a fixed-width method fills one cell
head -c 64 "$CODE" >"$TMP/code64.txt"
expect_ok "ppl kivi k2/v4" "$KVSTUDIO" ppl --model "$M" --text "$TMP/code64.txt" --method kivi --bits 2 --value-bits 4
ppl_bpb=$(sed -n 's/^bits\/byte  \([0-9.]*\) (fp16 \([0-9.]*\).*/\1 \2/p' "$TMP/out")
expect_ok "grid" "$KVSTUDIO" grid --model "$M" --methods kivi,q8_0 --bits 2,3 --value-bits 4 --text "$TMP/code64.txt"
grid_bpb=$(awk '$1 == "kivi" && $2 == "k2/v4" {print $3, $4}' "$TMP/out")
[ -n "$ppl_bpb" ] && [ "$ppl_bpb" = "$grid_bpb" ] && pass "grid cell = ppl ($grid_bpb)" ||
  fail "grid cell '$grid_bpb' differs from ppl '$ppl_bpb'"
expect_out "second width" "^kivi k3/v4 "
expect_out "fixed width once" "^llamacpp:q8_0 k8/v4 "
[ "$(grep -c '^llamacpp:q8_0' "$TMP/out")" = 1 ] && pass "q8_0 one cell" || fail "q8_0 one cell"
expect_fail "grid without a model" "--model DIR is required" "$KVSTUDIO" grid --text "$TMP/code64.txt"
finish

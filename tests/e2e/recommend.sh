#!/usr/bin/env bash
# recommend (issue 14): the table's shape (one row a format of the engine,
# the exact flags), the memory arithmetic against a hand computation, the
# budget filter (fitting rows first), vLLM's TurboQuant presets (their
# boundary layers in the memory) and fp8 with calculated scales, mlx_lm's
# affine rows, the TurboQuant fork's turbo rows, transformers' QuantizedCache
# rows, the Pareto marking, kvstudio's own best labelled as not deployable,
# the JSON form, --model (bits/byte and KL per row), and bad input.
. "$(dirname "$0")/lib.sh"

R=("$KVSTUDIO" recommend --trace "$TRACE" --seq-len 64)
expect_ok "recommend llamacpp" "${R[@]}" --engine llamacpp --context 8192
expect_out "header names the shape" "^recommend on .*: 6 layers x 2 kv heads x head_dim 128, context 8192 tokens, budget none"
expect_out "column names from the metrics table" "KV bytes per token  KV memory at context  key rel MSE  output error  attention KL"
n=$(grep -cE '^ +[0-9]+  llamacpp  ' "$TMP/out")
[ "$n" -eq 15 ] && pass "15 llama.cpp rows" || fail "llama.cpp rows: $n, expected 15"
grep -q ' vllm ' "$TMP/out" && fail "vllm row under --engine llamacpp" || pass "only the chosen engine"
expect_out "K/V flags with flash attention" "q8_0/q4_0      -ctk q8_0 -ctv q4_0 -fa on"
expect_out "f16 keys, q8_0 values" "f16/q8_0       -ctk f16 -ctv q8_0 -fa on"
grep -E 'f32/f32|f16/f16|bf16/bf16' "$TMP/out" | grep -q -- '-fa on' && fail "float cache asks for -fa" || pass "float caches without -fa"
# by hand: q8_0 = 34 bytes / 32 values, q4_0 = 18; head_dim 128 = 4 blocks:
# (136 + 72) x 2 kv heads x 6 layers = 2496 bytes/token; x 8192 / 2^30 = 0.0190 GiB
expect_out "q8_0/q4_0 memory" "q8_0/q4_0 .* 8.500       4.500                2496                0.0190 "
# f16: 2 x 128 x 2 x 2 x 6 = 6144 bytes/token; x 8192 / 2^30 = 0.046875
expect_out "f16 memory" "f16/f16 .* 16.000      16.000                6144                0.0469 "
expect_out "f16 exact" "f16/f16 .*0.00000        0.0000       0.00000"
# ranks 1..15 in order of output error
awk '/^ +[0-9]+  llamacpp/ {print $(NF-3)}' "$TMP/out" >"$TMP/err_col"
sort -g -c "$TMP/err_col" && pass "ranked by output error" || fail "not ranked by output error"
grep -E '^ +[0-9]+  llamacpp' "$TMP/out" | grep -q '  \*  ' && pass "Pareto front marked" || fail "no front"
# a row both wider and worse than another must not be on the front: f32 holds
# twice f16's bytes for the same error
grep -E 'f32/f32' "$TMP/out" | grep -q '  \*  ' && fail "f32 on the front" || pass "f32 dominated by f16"
expect_out "kvstudio best apart" "^kvstudio's best within 0.0469 GiB (not deployable in llamacpp):"
expect_out "kvstudio best row" "^   -  kvstudio  turboquant_mse k.*not deployable in llamacpp"

# budget 0.015 GiB at 8192 tokens = 1966 bytes/token at most: q4_1/q4_1 (1920),
# q4_1/q4_0 (1824), q4_0 and iq4_nl (1728) fit; they come first.
expect_ok "recommend budget" "${R[@]}" --engine llamacpp --context 8192 --budget-gb 0.015
grep -E '^ +[0-9]+  llamacpp' "$TMP/out" | awk '{print $NF}' | tr '\n' ' ' >"$TMP/fits"
[ "$(cat "$TMP/fits")" = "fits fits fits fits over over over over over over over over over over over " ] \
  && pass "4 rows fit, first" || fail "budget order: $(cat "$TMP/fits")"
expect_out "budget in header" "budget 0.015 GiB"
expect_out "kvstudio best at the budget" "^kvstudio's best within 0.0150 GiB"
grep "^   -  kvstudio" "$TMP/out" | grep -q ' fits$' && pass "kvstudio best fits" || fail "kvstudio best over budget"

expect_ok "recommend vllm json" "${R[@]}" --engine vllm --context 8192 --budget-gb 0.03 --json
if command -v jq >/dev/null; then
  [ "$(jq '.rows | length' "$TMP/out")" = 9 ] && pass "json 9 vllm rows" || fail "json rows"
  [ "$(jq -r '.rows[] | select(.format=="fp8_calc") | .flags' "$TMP/out")" = "--kv-cache-dtype fp8 --calculate-kv-scales" ] \
    && pass "json calculated-scales flag" || fail "json calculated-scales flag"
  [ "$(jq '.rows[] | select(.format=="fp8_calc") | .output_error != null' "$TMP/out")" = true ] \
    && pass "json calculated-scales row measured" || fail "json calculated-scales row"
  [ "$(jq -r '.rows[] | select(.format=="k3v4_nc") | .flags' "$TMP/out")" = "--kv-cache-dtype turboquant_k3v4_nc" ] \
    && pass "json turboquant flag" || fail "json turboquant flag"
  # 2 of 6 layers in 118-byte slots, layers 0, 1, 4, 5 fp16: 2 x 2 x 118 + 4 x 2 x 512
  [ "$(jq '.rows[] | select(.format=="k3v4_nc") | .kv_bytes_per_token' "$TMP/out")" = 4568 ] \
    && pass "json k3v4_nc bytes/token with boundary layers" || fail "json k3v4_nc bytes"
  [ "$(jq -r '.rows[] | select(.format=="fp8") | .flags' "$TMP/out")" = "--kv-cache-dtype fp8" ] \
    && pass "json fp8 flag" || fail "json fp8 flag"
  [ "$(jq '.rows[] | select(.format=="fp8") | .kv_bytes_per_token' "$TMP/out")" = 3072 ] \
    && pass "json fp8 bytes/token (128 x 2 x 2 x 6)" || fail "json fp8 bytes"
  [ "$(jq '.rows[] | select(.format=="auto") | .within_budget' "$TMP/out")" = false ] \
    && pass "json auto over 0.03 GiB (0.0469)" || fail "json budget"
  [ "$(jq '.rows[0].within_budget' "$TMP/out")" = true ] && pass "json fitting row first" || fail "json order"
  [ "$(jq '.kvstudio_best.deployable' "$TMP/out")" = false ] && pass "json kvstudio best not deployable" \
    || fail "json kvstudio best"
  [ "$(jq -r '.rank_by' "$TMP/out")" = output_error ] && pass "json rank_by" || fail "json rank_by"
else
  grep -q '"kv_bytes_per_token": 3072' "$TMP/out" && pass "json fp8 bytes" || fail "json fp8 bytes"
fi

# mlx_lm: kv_bits 2..8 at group 64, 4 and 8 bits at 32 and 128. g64_b4 by hand:
# 128 x 4 / 8 = 64 code bytes + fp16 scale and bias for 2 groups = 72 bytes a
# vector, (72 + 72) x 2 x 6 = 1728 bytes/token = 4.5 bits; x 8192 / 2^30 = 0.0132
expect_ok "recommend mlx" "${R[@]}" --engine mlx --context 8192
n=$(grep -cE '^ +[0-9]+  mlx  ' "$TMP/out")
[ "$n" -eq 9 ] && pass "9 mlx rows" || fail "mlx rows: $n, expected 9"
expect_out "mlx flags" "g64_b4         --kv-bits 4 --kv-group-size 64 "
expect_out "mlx g64_b4 memory" "g64_b4 .* 4.500       4.500                1728                0.0132 "
expect_out "mlx g32_b8 memory (8 + 32/32 bits)" "g32_b8 .* 9.000       9.000                3456 "
expect_out "kvstudio best not deployable in mlx" "^kvstudio's best within .*(not deployable in mlx):"

# the TurboQuant fork (TheTom/llama-cpp-turboquant): turbo2/3/4 for K and V and
# q8_0 keys over them. By hand: turbo3 = 50 bytes / 128 values (3.125 bits),
# (50 + 50) x 2 x 6 = 1200 bytes/token, x 8192 / 2^30 = 0.0092 GiB; q8_0/turbo4
# = (136 + 68) x 2 x 6 = 2448.
expect_ok "recommend tomturbo" "${R[@]}" --engine tomturbo --context 8192
n=$(grep -cE '^ +[0-9]+  tomturbo  ' "$TMP/out")
[ "$n" -eq 6 ] && pass "6 tomturbo rows" || fail "tomturbo rows: $n, expected 6"
expect_out "turbo3 flags" "turbo3/turbo3  TURBO_AUTO_ASYMMETRIC=0 -ctk turbo3 -ctv turbo3 -fa on "
expect_out "turbo2 pins the boundary layers off" "TURBO_LAYER_ADAPTIVE=0 -ctk q8_0 -ctv turbo2 -fa on "
expect_out "turbo3 memory" "turbo3/turbo3 .* 3.125       3.125                1200                0.0092 "
expect_out "q8_0/turbo4 memory" "q8_0/turbo4 .* 8.500       4.250                2448 "
expect_out "kvstudio best not deployable in tomturbo" "^kvstudio's best within .*(not deployable in tomturbo):"

# a shape a format cannot hold (head_dim 8: no mlx group, no ggml block of 32)
# is a failed row naming why; the other engines' rows still rank
expect_ok "recommend head_dim 8" "$KVSTUDIO" recommend --trace tests/data/tr_valid.safetensors
expect_out "mlx row names the group size" "g64_b4 .* failed: mlx:affine_g64: head_dim 8 is not a multiple of the group size 64"
expect_out "vllm rows still rank" "^   1  vllm  "
expect_out "turboquant rows listed" "k3v4_nc  *--kv-cache-dtype turboquant_k3v4_nc "
n=$(grep -cE '  vllm  +[a-z0-9_]+ +--kv-cache-dtype turboquant_' "$TMP/out")
[ "$n" -eq 4 ] && pass "4 turboquant rows" || fail "turboquant rows: $n, expected 4"
expect_fail "only failed rows" "no format of engine 'mlx' ran" "$KVSTUDIO" recommend --trace tests/data/tr_valid.safetensors --engine mlx
grep -q "not sought" "$TMP/out" && pass "kvstudio best not sought without a budget" || fail "kvstudio best line"

expect_fail "unknown engine" "engine" "${R[@]}" --engine sglang
expect_fail "negative budget" "budget-gb" "${R[@]}" --budget-gb -1
expect_fail "seq-len too long" "exceeds the trace's 1024 tokens" "${R[@]}" --seq-len 5000
expect_fail "missing trace" "nope.safetensors" "$KVSTUDIO" recommend --trace "$TMP/nope.safetensors"

# transformers' QuantizedCache: quanto nbits 2/4 and HQQ 1/2/3/4/8 (axis 1),
# the Python to set. quanto_b4 by hand: 64 code bytes + fp16 scale and shift
# for 2 groups = 72 bytes a vector, (72 + 72) x 2 x 6 = 1728 bytes/token; the
# fp16 residual (127 tokens) adds 127 x (256 - 72) x 2 x 12 = 560832 bytes:
# (1728 x 8192 + 560832) / 2^30 = 0.0137. hqq_b3: 10 codes a uint32, 13 words
# + 8 = 60 bytes = 3.75 bits.
expect_ok "recommend transformers" "${R[@]}" --engine transformers --context 8192
n=$(grep -cE '^ +[0-9]+  transformers  ' "$TMP/out")
[ "$n" -eq 7 ] && pass "7 transformers rows" || fail "transformers rows: $n, expected 7"
expect_out "quanto python" 'quanto_b4      cache_implementation="quantized", cache_config={"backend": "quanto", "nbits": 4} '
expect_out "hqq python with axis 1" '"backend": "hqq", "nbits": 3, "axis_key": 1, "axis_value": 1}'
expect_out "quanto_b4 memory with the residual" "quanto_b4 .* 4.500       4.500                1728                0.0137 "
expect_out "hqq_b3 memory" "hqq_b3 .* 3.750       3.750                1440 "

# --model: the checkpoint run with each format's cache over a stated text
# sample; bits/byte and next-token KL from the metrics table. fp16 ("auto")
# is the reference: its KL is 0 and its bits/byte the header's fp16 figure.
M=(--model sample_data/refmodel --text-bytes 32)
expect_ok "recommend --model" "${R[@]}" --engine vllm "${M[@]}"
expect_out "model header states the sample" "^model sample_data/refmodel on sample_data/texts/textwrap-1k.py: first 32 bytes (32 tokens, 31 bytes scored), fp16 cache bits/byte "
expect_out "model columns" "budget  bits/byte  next-token KL$"
fp16=$(sed -n 's/.*fp16 cache bits\/byte \([0-9.]*\);.*/\1/p' "$TMP/out")
grep -E '^ +[0-9]+  vllm  +auto ' "$TMP/out" | grep -qE " $fp16 +0\.00000$" && pass "fp16 row = the reference" \
  || fail "fp16 row: $(grep ' auto ' "$TMP/out")"
kl=$(grep -E '^ +[0-9]+  vllm  +fp8_e5m2 ' "$TMP/out" | awk '{print $NF}')
awk -v k="$kl" 'BEGIN { exit !(k > 0) }' && pass "fp8_e5m2 KL > 0" || fail "fp8_e5m2 KL: $kl"
expect_out "kvstudio best also run" "^   -  kvstudio .*  [0-9]\.[0-9]*  *[0-9]\.[0-9]*$"
expect_ok "recommend --model json" "${R[@]}" --engine vllm "${M[@]}" --json
if command -v jq >/dev/null; then
  [ "$(jq -r '.model.text_bytes' "$TMP/out")" = 32 ] && pass "json model text_bytes" || fail "json model"
  [ "$(jq '.rows[] | select(.format=="auto") | .next_token_kl == 0' "$TMP/out")" = true ] && pass "json fp16 KL 0" \
    || fail "json fp16 KL"
  [ "$(jq '(.rows | length) as $n | [.rows[] | select(.bits_per_byte > 0)] | length == $n' "$TMP/out")" = true ] \
    && pass "json bits_per_byte on every row" \
    || fail "json bits_per_byte"
else
  grep -q '"next_token_kl": ' "$TMP/out" && pass "json next_token_kl" || fail "json next_token_kl"
fi
expect_fail "--text without --model" "go with --model" "${R[@]}" --text-bytes 32
expect_fail "model of another shape" "expected a trace of this model" "$KVSTUDIO" recommend \
  --trace tests/data/tr_valid.safetensors --model sample_data/refmodel
expect_fail "missing text" "nope.txt" "${R[@]}" --engine vllm --model sample_data/refmodel --text "$TMP/nope.txt"
finish

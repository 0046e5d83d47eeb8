#!/usr/bin/env bash
# benchmark and compare: the replay summary, the JSON report (atomic, with the
# original library's field names), fp16 exactness, config options passed
# through, the compare grid with a failing combination, and the errors.
. "$(dirname "$0")/lib.sh"

B=("$KVSTUDIO" benchmark --trace "$TRACE" --seq-len 192)
expect_ok "benchmark tq_mse k3/v2" "${B[@]}" --method turboquant_mse --bits 3 --value-bits 2 --output "$TMP/rep.json"
expect_out "summary header" "^benchmark  turboquant_mse k3/v2 on .*192 tokens (prefill 96, decode 96)"
expect_out "summary bits" "^bits       keys 3.125, values 2.125 per coordinate"
expect_out "summary memory" "^memory     peak .* MB vs .* MB fp16: .*x"
expect_out "summary attention" "^attention  output rel error .*top-8 recall"
expect_out "summary per layer" "^    5  0\.9"
[ -s "$TMP/rep.json" ] && pass "report written" || fail "report written"
ls "$TMP" | grep -q '\.tmp\.' && fail "temp file left behind" || pass "no temp file left"
for k in '"config"' '"distortion"' '"latency"' '"memory"' '"key_norm"' '"attention"' \
         mean_cosine_similarity min_cosine_similarity mean_ip_error per_layer_cosine_similarity worst_layer \
         total_tokens_measured mean_relative_mse mean_encode_ms mean_decode_ms p99_encode_ms total_encode_ms \
         total_decode_ms per_layer_encode_ms slowest_layer num_encode_calls peak_compressed_mb peak_fp16_mb \
         compression_ratio total_tokens bytes_per_token per_layer_mb mean_key_norm std_key_norm max_key_norm \
         outlier_count outlier_fraction mean_outlier_norm per_layer_outlier_count mean_output_rel_error \
         mean_kl_divergence topk_recall; do
  grep -q "\"${k//\"/}\":" "$TMP/rep.json" || { fail "report field $k"; continue; }
done
pass "report has every field"
grep -q '"total_tokens": 192' "$TMP/rep.json" && pass "memory total_tokens" || fail "memory total_tokens"
grep -q '"num_queries": 2304' "$TMP/rep.json" && pass "96 decode steps x 6 layers x 4 heads" || fail "num_queries"

expect_ok "benchmark fp16" "${B[@]}" --method fp16
expect_out "fp16 exact attention" "output rel error 0.0000, KL 0.00000, top-8 recall 1.000"
expect_out "fp16 key cosine 1" "key cosine mean 1.0000"

expect_ok "benchmark --json" "${B[@]}" --method q8_0 --value-bits 4 --json
expect_out "json to stdout" '"compression_ratio":'
expect_ok "options pass through" "${B[@]}" --method kivi --bits 2 --sliding-window 64 --sink-tokens 4 \
  --residual-length 16 --num-runs 2
expect_out "two runs" "1 run\|2 runs"
expect_out "window caps memory tokens" "memory"

C=("$KVSTUDIO" compare --trace "$TRACE" --seq-len 96)
expect_ok "compare grid" "${C[@]}" --methods turboquant_mse,rabitq,q8_0,kivi --bits 2,4
expect_out "compare header" "method .*bits .*k b/c .*v b/c .*ratio .*key cos .*attn err .*encode vec/s"
expect_out "tq_mse 2 bits" "^turboquant_mse  *2 "
expect_out "tq_mse 4 bits" "^turboquant_mse  *4 "
expect_out "failing combination reported" "^rabitq .*failed: .*rabitq.centroids"
expect_out "grid continues after failure" "^kivi  *4 "
expect_out "fixed-width baseline once" "^llamacpp:q8_0  *8 "
expect_ok "compare json output" "${C[@]}" --methods q4_0 --output "$TMP/cmp.json"
grep -q '"attention_output_rel_error":' "$TMP/cmp.json" && pass "compare json" || fail "compare json"

expect_fail "unknown method" "unknown method 'nope'" "$KVSTUDIO" benchmark --trace "$TRACE" --method nope
expect_fail "seq-len too long" "seq-len 5000 exceeds" "${B[@]/192/5000}" --method q8_0
expect_fail "bad bits for method" "bits: 3 out of range for llamacpp:q8_0" "${B[@]}" --method q8_0 --bits 3
expect_fail "unwritable output" "$TMP/nodir/r.json" "${B[@]}" --method q8_0 --output "$TMP/nodir/r.json"
expect_fail "missing trace" "nope.safetensors" "$KVSTUDIO" benchmark --trace "$TMP/nope.safetensors"
expect_fail "compare bad bits" "--bits: 'x'" "${C[@]}" --bits 2,x
expect_fail "compare unknown method" "unknown method 'zz'" "${C[@]}" --methods q8_0,zz
finish

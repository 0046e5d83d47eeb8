#!/usr/bin/env bash
# benchmark and compare: the replay summary, the JSON report (atomic, with the
# original library's field names), fp16 exactness, config options passed
# through, the compare grid with a failing combination, and the errors.
. "$(dirname "$0")/lib.sh"

B=("$KVSTUDIO" benchmark --trace "$TRACE" --seq-len 192)
expect_ok "benchmark tq_mse k3/v2" "${B[@]}" --method turboquant_mse --bits 3 --value-bits 2 --output "$TMP/rep.json"
expect_out "summary header" "^benchmark  turboquant_mse k3/v2 on .*192 tokens (prefill 96, decode 96)"
expect_out "summary bits" "^bits       key bits 3.125 bits/coord, value bits 2.125 bits/coord"
expect_out "summary memory" "^memory     peak cache memory .* MB vs peak fp16 memory .* MB: cache compression .*x"
expect_out "summary attention" "^attention  output error .*attention KL .* bits, top-k recall .*(k = 8"
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
expect_out "fp16 exact attention" "output error 0.0000, attention KL 0.00000 bits, top-k recall 1.000"
expect_out "fp16 key cosine 1" "key cosine 1.0000"

grep -q '"kl_unit": "bits"' "$TMP/rep.json" && pass "report states the KL unit" || fail "report kl_unit"
# issue 17: every layer kept in fp16 by sinks: key cosine is n/a, never nan
expect_ok "benchmark all fp16 sinks" "${B[@]}" --method turboquant_mse --sink-tokens 192
expect_out "n/a key cosine" "^distortion key cosine n/a"
expect_out "n/a per layer" "^    0  n/a "
expect_out "label says sinks" "^benchmark  turboquant_mse k3/v2 sink_tokens=192 on"
grep -qi "nan" "$TMP/out" && fail "nan printed: $(grep -i nan "$TMP/out" | head -1)" || pass "no nan printed"
expect_ok "benchmark all fp16 json" "${B[@]}" --method turboquant_mse --sink-tokens 192 --json
grep -q '"mean_cosine_similarity": null' "$TMP/out" && pass "json null key cosine" || fail "json null key cosine"
# fixed-width methods take their width when --bits is not given
expect_ok "fp16 without --bits" "${B[@]}" --method fp16
expect_out "fp16 at 16 bits" "^benchmark  fp16 k16/v16 on"
expect_ok "benchmark --json" "${B[@]}" --method q8_0 --value-bits 4 --json
expect_out "json to stdout" '"compression_ratio":'
expect_ok "options pass through" "${B[@]}" --method kivi --bits 2 --sliding-window 64 --sink-tokens 4 \
  --residual-length 16 --num-runs 2
expect_out "two runs" "1 run\|2 runs"
expect_out "window caps memory tokens" "memory"

C=("$KVSTUDIO" compare --trace "$TRACE" --seq-len 96)
expect_ok "compare grid" "${C[@]}" --methods turboquant_mse,rabitq,q8_0,kivi --bits 2,4
expect_out "compare header" "method .*bits .*key bits .*value bits .*cache compression .*key cosine .*output error .*attention KL .*encode throughput"
expect_out "tq_mse 2 bits" "^turboquant_mse  *2 "
expect_out "tq_mse 4 bits" "^turboquant_mse  *4 "
expect_out "failing combination reported" "^rabitq .*failed: .*rabitq.centroids"
expect_out "grid continues after failure" "^kivi  *4 "
expect_out "fixed-width baseline once" "^llamacpp:q8_0  *8 "
expect_out "fixed width named for the asked bits" "^llamacpp:q8_0  *-  note: fixed at 8 bits; ran once for --bits 2,4"
expect_ok "compare json output" "${C[@]}" --methods q4_0 --output "$TMP/cmp.json"
grep -q '"output_error":' "$TMP/cmp.json" && grep -q '"attention_kl":' "$TMP/cmp.json" && pass "compare json" || fail "compare json"

expect_fail "unknown method" "unknown method 'nope'" "$KVSTUDIO" benchmark --trace "$TRACE" --method nope
expect_fail "seq-len too long" "seq-len 5000 exceeds" "${B[@]/192/5000}" --method q8_0
expect_fail "bad bits for method" "bits: llamacpp:q8_0 has a fixed width of 8 bits" "${B[@]}" --method q8_0 --bits 3
expect_fail "unwritable output" "$TMP/nodir/r.json" "${B[@]}" --method q8_0 --output "$TMP/nodir/r.json"
expect_fail "missing trace" "nope.safetensors" "$KVSTUDIO" benchmark --trace "$TMP/nope.safetensors"
expect_fail "compare bad bits" "--bits: 'x'" "${C[@]}" --bits 2,x
expect_fail "compare unknown method" "unknown method 'zz'" "${C[@]}" --methods q8_0,zz
finish

#!/usr/bin/env bash
# quantize: the report in text and JSON, honest bits, baselines, errors.
. "$(dirname "$0")/lib.sh"

# num KEY FILE: the first number after "KEY": in a JSON file (top level comes first)
num() { grep -m1 -o "\"$1\": [-0-9.e]*" "$2" | awk '{print $2}'; }
# lt A B: A < B as numbers
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 < b + 0) }'; }

expect_ok "q8_0 json" "$KVSTUDIO" quantize "$TRACE" --method q8_0 --bits 8 --value-bits 16 --json
cp "$TMP/out" "$TMP/q8.json"
expect_out "json method" '"method": "q8_0"'
expect_out "json value_bits" '"value_bits": 16'
expect_out "json ip error" '"ip_relative_error": '
[ "$(grep -c '"layer":' "$TMP/q8.json")" -eq 6 ] && pass "6 per_layer rows" || fail "6 per_layer rows"
# keys come before values, so the first bits_per_coord is the keys'
[ "$(num bits_per_coord "$TMP/q8.json")" = "8.5" ] && pass "q8_0 holds 8.5 bits" || fail "q8_0 holds 8.5 bits: $(num bits_per_coord "$TMP/q8.json")"
grep -A4 '"values": {' "$TMP/q8.json" | grep -q '"bits_per_coord": 16' && pass "fp16 values 16 bits" || fail "fp16 values 16 bits"
lt "$(num relative_mse "$TMP/q8.json")" 0.0002 && pass "q8_0 key mse < 2e-4" || fail "q8_0 key mse $(num relative_mse "$TMP/q8.json")"
lt "$(num ip_relative_error "$TMP/q8.json")" 0.01 && pass "q8_0 ip error < 0.01" || fail "q8_0 ip error"

# ggml's published figures on these keys: q4_0 0.0109, iq4_nl 0.0078 at 4.5 bits
expect_ok "q4_0 json" "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4 --value-bits 16 --json
m=$(num relative_mse "$TMP/out")
lt "$m" 0.0112 && lt 0.0106 "$m" && pass "q4_0 key mse $m ~ 0.0109" || fail "q4_0 key mse $m"
grep -q '"bits_per_coord": 4.5' "$TMP/out" && pass "q4_0 holds 4.5 bits" || fail "q4_0 holds 4.5 bits"
expect_ok "iq4_nl json" "$KVSTUDIO" quantize "$TRACE" --method iq4_nl --bits 4 --value-bits 16 --json
m=$(num relative_mse "$TMP/out")
lt "$m" 0.0080 && lt 0.0076 "$m" && pass "iq4_nl key mse $m ~ 0.0078" || fail "iq4_nl key mse $m"

# llama.cpp's other cache types and vLLM's fp8 (issue 14): bits held = the engine's slot size
for mb in llamacpp:q4_1:4:5.0 llamacpp:q5_0:5:5.5 llamacpp:q5_1:5:6.0 llamacpp:bf16:16:16.0 llamacpp:f32:16:32.0 \
          vllm:fp8_e4m3:8:8.0 vllm:fp8_e5m2:8:8.0; do
  m=${mb%:*:*}; b=${mb#$m:}; b=${b%:*}; want=${mb##*:}
  expect_ok "$m json" "$KVSTUDIO" quantize "$TRACE" --method "$m" --bits "$b" --value-bits 16 --json
  [ "$(num bits_per_coord "$TMP/out")" = "$want" ] && pass "$m holds $want bits" || fail "$m holds $want bits: $(num bits_per_coord "$TMP/out")"
done
# finer formats lose less: q4_0 > q4_1 > q5_0 > q5_1 > q8_0 key MSE on this trace
prev=1
for m in llamacpp:q4_0 llamacpp:q4_1 llamacpp:q5_0 llamacpp:q5_1 llamacpp:q8_0; do
  "$KVSTUDIO" quantize "$TRACE" --method "$m" --value-bits 16 --json >"$TMP/o.json" 2>&1
  e=$(num relative_mse "$TMP/o.json")
  lt "$e" "$prev" && pass "$m key mse $e below the coarser format's" || fail "$m key mse $e vs $prev"
  prev=$e
done
# a 16-bit value format of its own is used as such, not replaced by fp16
expect_ok "f32 values" "$KVSTUDIO" quantize "$TRACE" --method llamacpp:q4_1 --value-method llamacpp:f32 --value-bits 16 --json
grep -A4 '"values": {' "$TMP/out" | grep -q '"bits_per_coord": 32' && pass "f32 values 32 bits" || fail "f32 values 32 bits"
expect_ok "bf16 values text" "$KVSTUDIO" quantize "$TRACE" --method llamacpp:q5_0 --value-method llamacpp:bf16 --value-bits 16
expect_out "bf16 values named" "values llamacpp:bf16 at 16 bits"
expect_fail "q5_0 bits" "bits: llamacpp:q5_0 has a fixed width of 5 bits" "$KVSTUDIO" quantize "$TRACE" --method llamacpp:q5_0 --bits 4

expect_ok "kivi text" "$KVSTUDIO" quantize "$TRACE" --method kivi --bits 2 --value-method kivi --value-bits 2
expect_out "text header" "keys kivi at 2 bits, values kivi at 2 bits"
expect_out "text overall row" "^  all  *3.000 "
[ "$(awk 'NF == 9 && $1 ~ /^[0-9]+$/' "$TMP/out" | wc -l)" -eq 6 ] && pass "6 layer rows" || fail "6 layer rows"
expect_ok "layers and tokens" "$KVSTUDIO" quantize "$TRACE" --method q4_0_hadamard --bits 4 --value-bits 16 --layers 1,3-4 --tokens 256 --json
[ "$(grep -c '"layer":' "$TMP/out")" -eq 3 ] && pass "3 layers measured" || fail "3 layers measured"
expect_out "tokens" '"tokens": 256'

printf 'load %s\nmethod q4_0\nbits 4\nvalue-bits 16\nquantize\nquantize --method iq4_nl\n' "$TRACE" >"$TMP/q.kvs"
expect_ok "quantize in a script uses the session config" "$KVSTUDIO" --script "$TMP/q.kvs"
[ "$(grep -c '^  all ' "$TMP/out")" -eq 2 ] && pass "two reports" || fail "two reports"
expect_out "second uses iq4_nl" "keys iq4_nl at 4 bits"

# issue 17: `method q4_0` reports its width change; labels and exports carry the whole config
printf 'load %s\nmethod q4_0\nrun\nmethod turboquant_mse\nbits 3\nset outlier_channels=32\nrun\nexport csv %s\nexport json %s\n' \
  "$TRACE" "$TMP/runs.csv" "$TMP/runs.json" >"$TMP/m.kvs"
expect_ok "method q4_0 in a script" "$KVSTUDIO" --script "$TMP/m.kvs"
expect_out "width change reported" "^method llamacpp:q4_0: bits 3 -> 4 (llamacpp:q4_0 has a fixed width of 4 bits)"
expect_out "run line names metrics" "^run 1: llamacpp:q4_0 k4/v2  key bits 4.500 bits/coord .*q.k error .*attention error (keys) "
expect_out "label with outlier channels" "^run 2: turboquant_mse k3/v2 outlier_channels=32 "
head -1 "$TMP/runs.csv" | grep -q ',key_bits_per_coord,.*,qk_error,.*,attention_key_error,output_error,' \
  && pass "csv columns are metric keys" || fail "csv header: $(head -1 "$TMP/runs.csv")"
grep -q '"turboquant_mse k3/v2 outlier_channels=32"' "$TMP/runs.csv" && pass "csv label" || fail "csv label"
grep -q '"attention_key_error": 0\.' "$TMP/runs.json" && grep -q '"output_error": null' "$TMP/runs.json" \
  && pass "json: lab runs have attention error (keys), no output error" || fail "json metric keys"
grep -qi 'nan' "$TMP/runs.csv" "$TMP/runs.json" && fail "nan in exports" || pass "no nan in exports"
# issue 16: query_int8 is in the run's label; q4_0 keys ignore it and leave it out
printf 'load %s\nset query_int8=true\nrun\nmethod q4_0\nrun\n' "$TRACE" >"$TMP/i8.kvs"
expect_ok "query_int8 in a script" "$KVSTUDIO" --script "$TMP/i8.kvs"
expect_out "label says query_int8" "^run 1: turboquant_mse k3/v2 query_int8=true "
expect_out "q4_0 label leaves it out" "^run 2: llamacpp:q4_0 k4/v2  "
printf 'set method=fp16\nshow\n' >"$TMP/s.kvs"
expect_ok "set method=fp16 takes 16 bits" "$KVSTUDIO" --script "$TMP/s.kvs"
expect_out "set reports the width" "^set: bits 3 -> 16 (fp16 takes 16..16 bits)"
expect_fail "set conflicting width" "set: bits: llamacpp:q4_0 has a fixed width of 4 bits" "$KVSTUDIO" set method=q4_0 bits=3

# real sizes (issue 15): exact pairs by default here, a stated seeded sample
# above --pairs; kv heads and info's heads on the pool give the same output
# on 1 and 2 threads
expect_ok "default pairs are exact" "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4
expect_out "exact pairs line" 'q.k error over 787968 (query, key) pairs$'
expect_ok "pairs sampled above --pairs" "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4 --queries 0 --pairs 20000
expect_out "sampled pairs said" 'q.k error over [0-9]* sampled (query, key) pairs (seeded'
expect_ok "sampled pairs in json" "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4 --queries 0 --pairs 20000 --json
expect_out "ip_pairs_sampled" '"ip_pairs_sampled": true'
cp "$TMP/out" "$TMP/q1.json"
KVQ_THREADS=2 "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4 --queries 0 --pairs 20000 --json >"$TMP/q2.json" 2>&1
cmp -s "$TMP/q1.json" "$TMP/q2.json" && pass "sampled report same on 2 threads" || fail "sampled report differs on 2 threads"
KVQ_THREADS=1 "$KVSTUDIO" info "$TRACE" --json >"$TMP/i1.json" 2>&1
KVQ_THREADS=2 "$KVSTUDIO" info "$TRACE" --json >"$TMP/i2.json" 2>&1
cmp -s "$TMP/i1.json" "$TMP/i2.json" && grep -q '"d_eff"' "$TMP/i1.json" && pass "info same on 2 threads" || fail "info differs on 2 threads"
expect_fail "bad --pairs" "pairs" "$KVSTUDIO" quantize "$TRACE" --method q4_0 --bits 4 --pairs -1

expect_fail "unknown method" "unknown method 'nope'" "$KVSTUDIO" quantize "$TRACE" --method nope --bits 2
expect_fail "bits out of range" "bits: llamacpp:q8_0 has a fixed width of 8 bits" "$KVSTUDIO" quantize "$TRACE" --method q8_0 --bits 3
expect_fail "value bits out of range" "value_bits" "$KVSTUDIO" quantize "$TRACE" --method q8_0 --bits 8 --value-bits 12
expect_fail "needs calibration" "calibrat" "$KVSTUDIO" quantize "$TRACE" --method spectral --bits 3
expect_fail "bad layers" "layers" "$KVSTUDIO" quantize "$TRACE" --method q8_0 --bits 8 --layers 9
expect_fail "unknown option" "unknown option 'frob'" "$KVSTUDIO" quantize "$TRACE" --method q8_0 --frob 1
expect_fail "no trace" "no trace loaded" "$KVSTUDIO" quantize --method q8_0 --bits 8
finish

#!/usr/bin/env bash
# precompute / calibrate / save / load-artifacts: artifacts written and
# replaced atomically, same seed => same bytes, the match check against the
# loaded trace, artifacts used by quantize, and the errors.
# Speed: VecInfer runs on 2 layers, 512 tokens, 3 k-means iterations.
. "$(dirname "$0")/lib.sh"

P=("$KVSTUDIO" precompute --trace "$TRACE")
VI=(--method vecinfer --layers 2 --sequence-length 512 --max-iter 3)

expect_ok "precompute spectral" "${P[@]}" --method spectral --output "$TMP/sp"
expect_out "spectral summary" "^    5    1 "
expect_out "wrote" "precompute: wrote $TMP/sp"
[ -s "$TMP/sp/artifacts.safetensors" ] && [ -s "$TMP/sp/manifest.json" ] && pass "both files" || fail "both files"
grep -q '"method": "spectral"' "$TMP/sp/manifest.json" && grep -q '"head_dim": 128' "$TMP/sp/manifest.json" &&
  grep -q '"version": ' "$TMP/sp/manifest.json" && grep -q '"spectral.rotation.l5.h1"' "$TMP/sp/manifest.json" &&
  pass "manifest names method, shape, version, tensors" || fail "manifest content"
expect_ok "precompute replaces its own output" "${P[@]}" --method spectral --output "$TMP/sp" --quiet
ls "$TMP" | grep -q '\.tmp\.\|\.old\.' && fail "temp left behind" || pass "no temp left behind"

expect_ok "vecinfer seed 7 (1)" "${P[@]}" "${VI[@]}" --seed 7 --output "$TMP/v1"
expect_out "codebook usage" "32 subspaces x 256 centroids per layer = 2 bits/coord"
expect_ok "vecinfer seed 7 (2)" "${P[@]}" "${VI[@]}" --seed 7 --output "$TMP/v2"
expect_ok "vecinfer seed 8" "${P[@]}" "${VI[@]}" --seed 8 --output "$TMP/v3"
cmp -s "$TMP/v1/artifacts.safetensors" "$TMP/v2/artifacts.safetensors" &&
  cmp -s "$TMP/v1/manifest.json" "$TMP/v2/manifest.json" && pass "same seed, same bytes" || fail "same seed, same bytes"
cmp -s "$TMP/v1/artifacts.safetensors" "$TMP/v3/artifacts.safetensors" && fail "other seed, other bytes" ||
  pass "other seed, other bytes"

expect_ok "precompute ratequant" "${P[@]}" --method ratequant --num-samples 2 --target-bits 2.5 --output "$TMP/rq"
expect_out "allocation table" "^layer_5 "
expect_out "mean hits the target" "mean bits 2.5 (target 2.5)"
expect_ok "ratequant sensitivities from the model" "${P[@]}" --method ratequant --model sample_data/refmodel \
  --num-samples 1 --sequence-length 64 --target-bits 3 --output "$TMP/rqm"
expect_out "model named" "sensitivities from the model sample_data/refmodel"
expect_out "model allocation hits the target" "mean bits 3 (target 3)"
grep -q '"sensitivity_source": "model"' "$TMP/rqm/manifest.json" && grep -q '"model": "sample_data/refmodel"' \
  "$TMP/rqm/manifest.json" && pass "manifest records the model" || fail "manifest records the model"
grep -q '"sensitivity_source": "trace"' "$TMP/rq/manifest.json" && pass "manifest records the trace source" ||
  fail "manifest records the trace source"
expect_fail "model/trace shape mismatch" "layers 6 vs 2, head_dim 128 vs 8 (model vs trace)" "$KVSTUDIO" precompute \
  --method ratequant --trace tests/data/tr_valid.safetensors --model sample_data/refmodel --output "$TMP/x"
expect_fail "model for another method" "model applies to ratequant only" "${P[@]}" --method spectral \
  --model sample_data/refmodel --output "$TMP/x"
expect_ok "precompute rabitq" "${P[@]}" --method rabitq --layers 1 --output "$TMP/rb"
expect_out "rabitq tensors" "rabitq.centroids.l0.h1 *(16, 128)"

# the artifacts serve the methods
expect_ok "quantize spectral with artifacts" "$KVSTUDIO" quantize "$TRACE" --method spectral --bits 2 --artifacts "$TMP/sp"
expect_fail "vecinfer without artifacts" "precompute --method vecinfer" "$KVSTUDIO" quantize "$TRACE" --method vecinfer --bits 2

# session commands
printf 'load %s\nload-artifacts %s\n' "$TRACE" "$TMP/sp" >"$TMP/a.kvs"
expect_ok "load-artifacts" "$KVSTUDIO" --script "$TMP/a.kvs"
expect_out "loaded line" "loaded spectral artifacts from $TMP/sp"
printf 'load %s\nload-artifacts %s\n' "$TRACE" "$TMP/v1" >"$TMP/b.kvs"
expect_fail "mismatch named" "layers 2 vs 6" "$KVSTUDIO" --script "$TMP/b.kvs"
printf 'load %s\ncalibrate ratequant num_samples=1 target_bits=3\nsave artifacts %s\nload-artifacts %s\n' \
  "$TRACE" "$TMP/rq2" "$TMP/rq2" >"$TMP/c.kvs"
expect_ok "calibrate + save + load" "$KVSTUDIO" --script "$TMP/c.kvs"
expect_out "calibrate summary" "mean bits 3 (target 3)"
expect_out "saved" "saved ratequant artifacts to $TMP/rq2"
[ -s "$TMP/rq2/manifest.json" ] && pass "saved files" || fail "saved files"
printf 'save artifacts %s\n' "$TMP/none" >"$TMP/d.kvs"
expect_fail "save without artifacts" "no artifacts in the session" "$KVSTUDIO" --script "$TMP/d.kvs"

# an interrupted run leaves the old artifacts intact
# (killed at 0.5 s: commvq's EM with 100 iterations takes seconds even on an idle machine; the
# artifacts are written only at the end, so a kill this early always lands before the rename)
timeout --foreground -s KILL 0.5 "${P[@]}" --method commvq --max-iter 100 --output "$TMP/sp" >/dev/null 2>&1
expect_ok "old artifacts intact after kill" "$KVSTUDIO" --script "$TMP/a.kvs"
expect_out "still spectral" "loaded spectral artifacts"

# errors
mkdir -p "$TMP/mine" && echo notes >"$TMP/mine/notes.txt"
expect_fail "refuses a foreign directory" "refusing to replace" "${P[@]}" --method spectral --output "$TMP/mine"
[ -f "$TMP/mine/notes.txt" ] && pass "foreign file kept" || fail "foreign file kept"
expect_fail "missing output" "--output" "${P[@]}" --method spectral
expect_fail "unknown method" "calibrated methods: ratequant, vecinfer, spectral, rabitq, commvq" \
  "${P[@]}" --method q4_0 --output "$TMP/x"
expect_fail "unknown option" "unknown option 'bogus'" "${P[@]}" --method spectral --output "$TMP/x" --bogus 1
expect_fail "bad option value" "min_bits" "${P[@]}" --method ratequant --output "$TMP/x" --min-bits 0
expect_fail "bad bits for vecinfer" "not a whole number" "${P[@]}" --method vecinfer --target-bits 0.3 --output "$TMP/x"
expect_fail "missing trace" "nope.safetensors" "$KVSTUDIO" precompute --method spectral --trace nope.safetensors --output "$TMP/x"
expect_fail "load missing dir" "not an artifacts directory" "$KVSTUDIO" load-artifacts "$TMP/nothing"
finish

#!/usr/bin/env bash
# Commands and help agree (issue 17): option tables, batch replay, scripts
# that are not text, non-trace files, value_bits, compare's skipped cells
# and progress, typed show --json.
. "$(dirname "$0")/lib.sh"
SMALL=tests/data/tr_valid.safetensors

echo "-- options from one table"
expect_fail "ppl rejects --prompt" "ppl: unknown option 'prompt'" "$KVSTUDIO" ppl --model sample_data/refmodel --prompt hi
expect_fail "generate rejects --text" "generate: unknown option 'text'" "$KVSTUDIO" generate --model sample_data/refmodel --text x
expect_fail "capture rejects --max-tokens" "capture: unknown option 'max-tokens'" "$KVSTUDIO" capture --model m --max-tokens 3
for c in ppl generate capture; do
  expect_ok "$c --help" "$KVSTUDIO" $c --help
done
"$KVSTUDIO" ppl --help >"$TMP/out"; ! grep -q -- '--prompt\|--max-tokens\|--out ' "$TMP/out" && pass "ppl --help lists only ppl's options" || fail "ppl --help lists another command's options"
"$KVSTUDIO" generate --help >"$TMP/out"; ! grep -q -- '--text\|--output\|--json' "$TMP/out" && pass "generate --help lists only generate's options" || fail "generate --help lists another command's options"
expect_ok "quantize K.npy --values V.npy" "$KVSTUDIO" quantize tests/data/npy_keys.npy --values tests/data/npy_values.npy --method turboquant_mse --bits 2 --use-hadamard false
expect_out "npy trace with values" "values turboquant_mse at 2 bits"
expect_fail "benchmark without a trace names --trace" "benchmark takes --trace FILE" "$KVSTUDIO" benchmark --method q8_0 --bits 8
expect_fail "value-bits 5 refused" "value_bits: '5' is not one of 2, 3, 4, 8 or 16" "$KVSTUDIO" quantize "$SMALL" --value-bits 5
expect_fail "value-bits 7 refused" "is not one of 2, 3, 4, 8 or 16" "$KVSTUDIO" value-bits 7

echo "-- studio actions in batch"
printf 'load %s\nreplay\n' "$SMALL" >"$TMP/replay.kvs"
expect_ok "replay in a script" "$KVSTUDIO" --script "$TMP/replay.kvs"
expect_out "replay prints the observers' report" "^replay     turboquant_mse k3/v2 on $SMALL"
expect_out "replay report: attention" "^attention "
printf 'load %s\nstep\n' "$SMALL" >"$TMP/step.kvs"
expect_fail "step says why it needs the studio" "step.kvs:2: step: moves the studio's dashboard replay N tokens; in scripts use \`replay\`" "$KVSTUDIO" --script "$TMP/step.kvs"
expect_fail "view says why" "view: switches the studio's view" "$KVSTUDIO" view plots
expect_ok "step --help works in batch" "$KVSTUDIO" step --help
expect_out "step help says studio only" "studio only"

echo "-- scripts that are not text"
mkdir -p "$TMP/dir.kvs"
expect_fail "--script DIR" "dir.kvs: is a directory" "$KVSTUDIO" --script "$TMP/dir.kvs"
printf 'bits 2\nbits 4\0show\n' >"$TMP/nul.kvs"
expect_fail "NUL byte names file:line" "nul.kvs:2: byte 0x00 at column 7 is not text" "$KVSTUDIO" --script "$TMP/nul.kvs"
printf 'bits 2\nmethods\n\x7fELF\x02\x01\x01\n' >"$TMP/bin.kvs"
expect_fail "binary script names file:line" "bin.kvs:3: byte 0x7f at column 1 is not text" "$KVSTUDIO" --script "$TMP/bin.kvs"
[ "$(grep -c 'turboquant_mse' "$TMP/out")" -ge 1 ] && ! grep -q 'ELF' "$TMP/out" && pass "no raw bytes printed" || fail "binary script output"
printf 'bits 2\rshow\r' >"$TMP/cr.kvs"
expect_fail "bare CR names file:line" "cr.kvs:1: bare carriage return (CR) at column 7" "$KVSTUDIO" --script "$TMP/cr.kvs"
printf 'bits 2\r\nshow\r\n' >"$TMP/crlf.kvs"
expect_ok "CRLF script runs" "$KVSTUDIO" --script "$TMP/crlf.kvs"
expect_out "CRLF: second line ran" "bits  *2$"

echo "-- files that are not traces"
expect_fail "info README.md" "README.md: not a safetensors, npy or mlx_lm cache file" "$KVSTUDIO" info README.md
expect_fail "info on a directory" "is a directory" "$KVSTUDIO" info "$TMP/dir.kvs"

echo "-- show --json"
expect_ok "show --json" "$KVSTUDIO" show --json
expect_out "bits is a number" '"bits": 3,'
expect_out "use_hadamard is a bool" '"use_hadamard": true,'
expect_out "bit_allocation is a list" '"bit_allocation": \[\]'

echo "-- compare: skipped cells named, progress"
expect_ok "compare default grid" "$KVSTUDIO" compare --trace "$TRACE" --seq-len 64 --bits 2
for m in rabitq commvq vecinfer spectral ratequant vllm:fp8_e4m3_calc vllm:fp8_e5m2_calc; do
  expect_out "compare names skipped $m" "^$m .*skipped (bits 2): needs calibration artifacts"
done
expect_ok "compare --json" "$KVSTUDIO" compare --trace "$TRACE" --seq-len 64 --bits 2,3 --methods q8_0 --json
expect_ok "compare --json default" "$KVSTUDIO" compare --trace "$TRACE" --seq-len 32 --bits 2 --json
[ "$(grep -c '"skipped": "needs calibration artifacts' "$TMP/out")" -eq 7 ] && pass "json: one skipped row per cell" || fail "json skipped rows"
! grep -q '^compare: ' "$TMP/out" && pass "json: no progress lines in stdout" || fail "json: progress in stdout"
t0=$(date +%s)
expect_ok "compare with progress" "$KVSTUDIO" compare --trace "$TRACE" --methods qjl,turboquant_prod --bits 2,3
el=$(( $(date +%s) - t0 ))
if [ "$el" -ge 4 ]; then
  expect_out "progress with time left ($el s grid)" "^compare: .*% (cell [0-9] of 3, about [0-9]* s left)"
else
  echo "  note: the grid took $el s (< 4 s): progress lines are only printed after 2 s"
fi
finish

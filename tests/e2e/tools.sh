#!/usr/bin/env bash
# tools/*.py without their Python packages (issue 17): one line on stderr
# naming the package and a non-zero exit, never an ImportError traceback.
# A PYTHONPATH shim makes `import numpy` (torch, transformers, safetensors)
# fail whether or not the package is installed here.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "  FAIL python3 is not installed (run \`make deps\`)"; exit 1; }
mkdir -p "$TMP/shim"
for m in numpy torch transformers safetensors; do
  echo "raise ModuleNotFoundError(\"No module named '$m' (test shim)\", name='$m')" >"$TMP/shim/$m.py"
done
NOPKG=(env PYTHONPATH="$TMP/shim" PYTHONDONTWRITEBYTECODE=1 python3)

expect_fail "compare_traces without numpy" "^compare_traces: needs the Python package numpy (" \
  "${NOPKG[@]}" tools/compare_traces.py "$TRACE" "$TRACE"
grep -q Traceback "$TMP/err" && fail "compare_traces printed a traceback" || pass "no traceback"
expect_fail "capture_kv without torch, transformers, safetensors" \
  "^capture_kv: needs the Python packages torch, transformers, safetensors (pip install torch transformers safetensors)" \
  "${NOPKG[@]}" tools/capture_kv.py --model sample_data/refmodel --text sample_data/texts/textwrap-1k.py \
  --out "$TMP/cap.safetensors" --bytes
[ -e "$TMP/cap.safetensors" ] && fail "capture_kv left an output file" || pass "no output file"
expect_fail "make_trace without numpy" "^make_trace: needs the Python package numpy (" \
  "${NOPKG[@]}" tools/make_trace.py --out "$TMP/syn.safetensors"
[ -e "$TMP/syn.safetensors" ] && fail "make_trace left an output file" || pass "make_trace: no output file"
expect_ok "capture_kv --help needs no package" "${NOPKG[@]}" tools/capture_kv.py --help
expect_out "usage" "^usage: capture_kv.py"

# with numpy installed the tool itself still works
if python3 -c 'import numpy' 2>/dev/null; then
  expect_ok "compare_traces on one trace twice" python3 tools/compare_traces.py "$TRACE" "$TRACE"
  expect_out "equal" "^RESULT: equal within F16 rounding"
  # make_trace.py (issue 15): a kvtrace the engine reads, shape as asked, same bytes for one seed
  syn=(--layers 3 --heads 4 --kv-heads 2 --tokens 300 --head-dim 64 --queries 20 --seed 7)
  expect_ok "make_trace small" python3 tools/make_trace.py --out "$TMP/syn.safetensors" "${syn[@]}"
  expect_ok "info reads it" "$KVSTUDIO" info "$TMP/syn.safetensors"
  expect_out "shape" "^shape     3 layers, 4 heads, 2 kv heads, 300 tokens, head_dim 64, F16"
  expect_out "queries" "^queries   20$"
  expect_ok "make_trace again" python3 tools/make_trace.py --out "$TMP/syn2.safetensors" "${syn[@]}"
  cmp -s "$TMP/syn.safetensors" "$TMP/syn2.safetensors" && pass "same bytes for one seed" || fail "make_trace not deterministic"
  expect_ok "quantize on it" "$KVSTUDIO" quantize "$TMP/syn.safetensors" --method q4_0 --bits 4
  expect_out "every causal pair of its 20 queries" "q.k error over $(( (15+30+45+60+75+90+105+120+135+150+165+180+195+210+225+240+255+270+285+300) * 4 * 3 )) (query, key) pairs"
  expect_fail "make_trace bad heads" "is not a multiple of --kv-heads" python3 tools/make_trace.py --out "$TMP/bad.safetensors" --heads 5 --kv-heads 2
else
  echo "  (numpy not installed: compare_traces and make_trace themselves not run)"
fi
finish

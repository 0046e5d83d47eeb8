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
expect_ok "capture_kv --help needs no package" "${NOPKG[@]}" tools/capture_kv.py --help
expect_out "usage" "^usage: capture_kv.py"

# with numpy installed the tool itself still works
if python3 -c 'import numpy' 2>/dev/null; then
  expect_ok "compare_traces on one trace twice" python3 tools/compare_traces.py "$TRACE" "$TRACE"
  expect_out "equal" "^RESULT: equal within F16 rounding"
else
  echo "  (numpy not installed: compare_traces itself not run)"
fi
finish

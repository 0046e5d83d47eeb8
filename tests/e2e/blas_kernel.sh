#!/usr/bin/env bash
# blas_kernel.sh — trace-level results must not depend on which OpenBLAS kernel runs
# (OpenBLAS picks one by CPU; OPENBLAS_CORETYPE overrides). Dense rotations (the QR that
# makes them, the batches that apply them) used LAPACK/sgemm, whose kernels round
# differently: quantize figures moved in the 5th digit between Haswell and Prescott. The
# engine's own fixed-order loops now make them bit-identical; the JSON (6 significant
# digits) must be byte-equal under two kernels.
cd "$(dirname "$0")/../.."
. tests/e2e/lib.sh
echo "blas_kernel"
core() { OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=$1 "$KVSTUDIO" version 2>&1 >/dev/null | sed -n 's/^Core: //p'; }
if [ "$(core Prescott)" != Prescott ] || [ "$(core Haswell)" != Haswell ]; then
  echo "  skip: this OpenBLAS cannot switch kernels (OPENBLAS_CORETYPE=Prescott gives '$(core Prescott)')"
  finish
fi
for m in "turboquant_mse --bits 3" "turboquant_prod --bits 3" "turboquant_rvq --bits 2" "polarquant --bits 3"; do
  for ct in Prescott Haswell; do
    # shellcheck disable=SC2086
    OPENBLAS_CORETYPE=$ct "$KVSTUDIO" quantize "$TRACE" --method $m --use-hadamard false --json \
      >"$TMP/$ct.json" 2>"$TMP/err" || fail "quantize $m under $ct: $(head -c 300 "$TMP/err")"
  done
  if [ -s "$TMP/Prescott.json" ] && cmp -s "$TMP/Prescott.json" "$TMP/Haswell.json"; then
    pass "${m%% *} dense rotation: Prescott = Haswell"
  else
    fail "${m%% *} dense rotation: Prescott and Haswell differ: $(diff "$TMP/Prescott.json" "$TMP/Haswell.json" | head -4 | tr '\n' ' ')"
  fi
done
finish

#!/bin/bash
# tools/methods_table.sh [OUT_DIR] — raw JSON behind docs/methods_table.md (every method at
# 2, 3, 4 bits on both sample traces; calibrated methods use artifacts from the OTHER trace).
# Cached: delete OUT_DIR to start over. Then: python3 tools/methods_table.py OUT_DIR
#   tools/methods_table.sh --readme   fresh run in a temp dir, prints README.md's tables
#                                     (and rewrites docs/methods_table.md)
#   ONLY="K_code_q4_0_4 ..." ...      only those runs (no calibration unless listed)
cd "$(dirname "$0")/.."
README=0
if [ "${1:-}" = --readme ]; then README=1; D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
else D=${1:-/tmp/kvstudio-methods-table}; fi
mkdir -p "$D"
cp "${KVSTUDIO:-build/kvstudio}" $D/kvstudio   # freeze the binary while others rebuild
K=$D/kvstudio
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
declare -A OTHER=([code]=prose [prose]=code)
q() { # name trace args...
  local name=$1 tr=$2; shift 2
  want $name || return 0
  [ -s $D/$name.json ] && return
  timeout 600 $K quantize sample_data/traces/$tr-1k.safetensors "$@" --json >$D/$name.json 2>$D/$name.err || echo "FAIL $name: $(cat $D/$name.err)" >>$D/fails.txt
}
pc() { # method trace bits -> artifacts dir
  local d=$D/art_$1_$2_b$3
  [ -s $d/manifest.json ] || timeout 1200 $K precompute --method $1 --trace sample_data/traces/$2-1k.safetensors --output $d --target-bits $3 >$D/pc_$1_$2_$3.log 2>&1 || echo "FAIL precompute $1 $2 $3: $(tail -1 $D/pc_$1_$2_$3.log)" >>$D/fails.txt
  echo $d
}
for tr in code prose; do
  for mb in "fp16 16" "q8_0 8" "q4_0 4" "iq4_nl 4" "q4_0_hadamard 4" "kivi 2" "kivi 3" "kivi 4"; do set -- $mb; q K_${tr}_$1_$2 $tr --method $1 --bits $2 --value-bits 16; done
  for m in turboquant_mse turboquant_prod polarquant; do for b in 2 3 4; do q K_${tr}_${m}_$b $tr --method $m --bits $b --value-bits 16; done; done
  for b in 1 2; do q K_${tr}_turboquant_rvq_$b $tr --method turboquant_rvq --bits $b --value-bits 16; done
  q K_${tr}_qjl_1 $tr --method qjl --bits 1 --value-bits 16
  for b in 2 3 4; do for oc in 32 48 64; do q K_${tr}_turboquant_mse_oc${oc}_$b $tr --method turboquant_mse --bits $b --outlier-channels $oc --value-bits 16; done; done
  # values (keys fp16)
  for vb in 2 3 4; do q V_${tr}_turboquant_mse_$vb $tr --method fp16 --bits 16 --value-bits $vb; q V_${tr}_kivi_$vb $tr --method fp16 --bits 16 --value-method kivi --value-bits $vb; done
  q V_${tr}_q4_0_4 $tr --method fp16 --bits 16 --value-method q4_0 --value-bits 4
  q V_${tr}_iq4_nl_4 $tr --method fp16 --bits 16 --value-method iq4_nl --value-bits 4
  q V_${tr}_q8_0_8 $tr --method fp16 --bits 16 --value-method q8_0 --value-bits 8
done
# calibrated methods: artifacts from the other trace (out of sample)
for m in spectral rabitq ratequant vecinfer commvq; do
  for tr in code prose; do
    o=${OTHER[$tr]}
    for b in 2 3 4; do
      want K_${tr}_${m}_$b || continue
      d=$(pc $m $o $b)
      q K_${tr}_${m}_$b $tr --method $m --bits $b --value-bits 16 --artifacts $d
    done
  done
done
echo done >$D/DONE
if [ $README = 1 ]; then
  [ -s $D/fails.txt ] && { cat $D/fails.txt >&2; exit 1; }
  [ -z "${ONLY:-}" ] && python3 tools/methods_table.py $D   # docs/methods_table.md from the same runs
  python3 tools/methods_table_fmt.py $D --level 4 ${ONLY:+--rows-only}
fi

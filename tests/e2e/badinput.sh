#!/usr/bin/env bash
# The bad-input matrix (issue 9): every case must end with a non-zero exit
# and one clear line on stderr naming the culprit, never a crash. Inputs are
# the malformed corpus of tests/data/ plus small traces built here with bash
# (mk_st), so the script needs nothing but coreutils.
. "$(dirname "$0")/lib.sh"
D=tests/data
K=$KVSTUDIO

le64() { local n=$1 s="" i; for i in 0 1 2 3 4 5 6 7; do s="$s\\x$(printf %02x $(((n >> (8 * i)) & 255)))"; done; printf "$s"; }
# mk_st OUT 'NAME:DTYPE:D0,D1,..;...': a kvtrace safetensors whose tensors
# hold the byte 0x3c ('<'; F16 0x3c3c = 1.06) throughout.
mk_st() {
  local out=$1 spec=$2 h='{"__metadata__":{"format":"kvtrace","version":"1"}' off=0 t name dt shape n b d IFS=';'
  for t in $spec; do
    IFS=: read -r name dt shape <<<"$t"
    n=1; IFS=, ; for d in $shape; do n=$((n * d)); done; IFS=';'
    b=$((n * 2)); [ "$dt" = F32 ] && b=$((n * 4))
    h="$h,\"$name\":{\"dtype\":\"$dt\",\"shape\":[$shape],\"data_offsets\":[$off,$((off + b))]}"
    off=$((off + b))
  done
  h="$h}"
  while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
  { le64 ${#h}; printf '%s' "$h"; head -c $off /dev/zero | tr '\0' '<'; } >"$out"
}

echo "-- every malformed file of tests/data (info)"
for f in $D/st_*.safetensors $D/tr_*.safetensors $D/mlx_quantized.safetensors $D/npy_*.npy; do
  case $(basename "$f") in tr_valid.* | tr_escape_meta.* | tr_head_dim_[0-9]*.* | npy_keys.* | npy_values.* | npy_values_mismatch.*) continue ;; esac
  expect_fail "$(basename "$f")" "$(basename "$f"): " "$K" info "$f"
done
expect_fail "empty file" "file is 0 bytes" bash -c ": >'$TMP/zero.safetensors'; exec $K info '$TMP/zero.safetensors'"
expect_fail "directory as trace" "$TMP" "$K" info "$TMP"
expect_fail "missing trace" "nope.npy" "$K" info "$TMP/nope.npy"
expect_fail "quantize on a malformed trace" "st_hole.safetensors" "$K" quantize $D/st_hole.safetensors --method turboquant_mse --bits 3

echo "-- wrong shapes between keys, values and queries"
mk_st "$TMP/kv.safetensors" 'layers.0.keys:F16:2,8,8;layers.0.values:F16:2,7,8'
expect_fail "values tokens != keys tokens" "layers.0.values': n_tokens 7, expected 8" "$K" info "$TMP/kv.safetensors"
mk_st "$TMP/vd.safetensors" 'layers.0.keys:F16:2,8,8;layers.0.values:F16:2,8,16'
expect_fail "values head_dim != keys head_dim" "layers.0.values': head_dim 16, expected 8" "$K" info "$TMP/vd.safetensors"
mk_st "$TMP/qd.safetensors" 'layers.0.keys:F16:2,8,8;layers.0.queries:F16:4,8,4'
expect_fail "queries head_dim != keys head_dim" "layers.0.queries': head_dim 4, expected 8" "$K" info "$TMP/qd.safetensors"
mk_st "$TMP/qh.safetensors" 'layers.0.keys:F16:2,8,8;layers.0.queries:F16:3,8,8'
expect_fail "query heads not a multiple of kv heads" "n_heads 3 is not a multiple of n_kv_heads 2" "$K" info "$TMP/qh.safetensors"
expect_fail "layers disagree on head_dim" "head_dim 16, expected 8" "$K" info $D/tr_head_dim_mismatch.safetensors
printf 'load %s --values %s\n' $D/npy_keys.npy $D/npy_values_mismatch.npy >"$TMP/npyv.kvs"
expect_fail "npy values tokens != keys tokens" "npy_values_mismatch.npy" "$K" --script "$TMP/npyv.kvs"
mk_st "$TMP/rank.safetensors" 'layers.0.keys:F16:16,8'
expect_fail "keys of rank 2" "has 2 dims, expected" "$K" info "$TMP/rank.safetensors"

echo "-- NaN / Inf"
expect_fail "NaN in keys" "NaN at head 1, token 3, channel 5" "$K" info $D/tr_nan_keys.safetensors
expect_fail "Inf in values" "Inf at head 0, token 2, channel 7" "$K" info $D/tr_inf_values.safetensors
expect_fail "NaN in npy" "NaN at layer 1, head 0, token 2, channel 3" "$K" info $D/npy_nan.npy
mk_st "$TMP/nanq.safetensors" 'layers.0.keys:F16:2,8,8;layers.0.queries:F16:2,8,8'
printf '\x00\x7e' | dd of="$TMP/nanq.safetensors" bs=1 seek=$(($(stat -c %s "$TMP/nanq.safetensors") - 2)) conv=notrunc status=none
expect_fail "NaN in the last query" "layers.0.queries: NaN at head 1, query 7, channel 7" "$K" info "$TMP/nanq.safetensors"

echo "-- empty traces"
mk_st "$TMP/t0.safetensors" 'layers.0.keys:F16:2,0,8'
expect_fail "zero tokens" "n_tokens is 0, expected at least 1" "$K" info "$TMP/t0.safetensors"
mk_st "$TMP/h0.safetensors" 'layers.0.keys:F16:0,8,8'
expect_fail "zero kv heads" "n_kv_heads is 0" "$K" info "$TMP/h0.safetensors"
mk_st "$TMP/d0.safetensors" 'layers.0.keys:F16:2,8,0'
expect_fail "zero head_dim" "head_dim is 0" "$K" info "$TMP/d0.safetensors"
mk_st "$TMP/none.safetensors" ''
expect_fail "no tensors at all" "no tensor 'layers.0.keys'" "$K" info "$TMP/none.safetensors"

echo "-- methods and options"
mk_st "$TMP/hd12.safetensors" 'layers.0.keys:F16:2,8,12;layers.0.values:F16:2,8,12'
expect_fail "hadamard, head_dim 12" "use_hadamard needs head_dim a power of two, found 12" \
  "$K" quantize "$TMP/hd12.safetensors" --method turboquant_mse --bits 3 --use-hadamard
expect_fail "q4_0_hadamard, head_dim 12" "head_dim 12 is not a power of two" \
  "$K" quantize "$TMP/hd12.safetensors" --method q4_0_hadamard --bits 4
for b in 0 17; do
  expect_fail "quantize --bits $b" "bits: '$b'" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits $b
  expect_fail "--value-bits $b" "'$b'" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits 3 --value-bits $b
  expect_fail "set bits=$b" "bits: '$b'" "$K" set bits=$b
done
expect_fail "bits beyond a method's range" "bits: qjl has a fixed width of 1 bit (got 3" "$K" quantize $D/tr_valid.safetensors --method qjl --bits 3
expect_fail "query_int8 above 4 key bits" "query_int8: needs key bits <= 4 and outlier_channels 0 (found bits 5" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits 5 --query-int8 true
expect_fail "unknown method" "unknown method 'bogus' (known: " "$K" quantize $D/tr_valid.safetensors --method bogus --bits 3
expect_fail "unknown method (method)" "method: unknown method 'bogus'" "$K" method bogus
expect_fail "unknown value method" "value_method: unknown method 'bogus'" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits 3 --value-method bogus
expect_fail "unknown option" "unknown option 'frob'" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits 3 --frob 2
expect_fail "unknown config field" "set: unknown option 'frob' (known: method, bits" "$K" set frob=2
expect_fail "non-numeric bits" "'three'" "$K" quantize $D/tr_valid.safetensors --method turboquant_mse --bits three
expect_fail "unknown --dtype" "--dtype 'f8' unknown (expected bf16)" "$K" load $D/npy_keys.npy --dtype f8

echo "-- artifacts"
expect_ok "precompute on a 4-token trace" "$K" precompute --method rabitq --trace $D/tr_valid.safetensors --num-clusters 2 --output "$TMP/art"
expect_fail "artifacts from another trace" "quantize: rabitq artifacts do not match trace .*layers 2 vs 6, head_dim 8 vs 128" \
  "$K" quantize "$TRACE" --method rabitq --bits 3 --artifacts "$TMP/art"
printf 'load %s\nload-artifacts %s\n' "$TRACE" "$TMP/art" >"$TMP/la.kvs"
expect_fail "load-artifacts from another trace" "la.kvs:2: load-artifacts: rabitq artifacts do not match trace .*layers 2 vs 6, head_dim 8 vs 128" \
  "$K" --script "$TMP/la.kvs"
expect_fail "artifacts dir missing" "not an artifacts directory" "$K" load-artifacts "$TMP/noart"
cp -r "$TMP/art" "$TMP/art_bad"; printf '{"format": "kvstudio-artifacts", "method": 3}' >"$TMP/art_bad/manifest.json"
expect_fail "artifacts manifest malformed" "manifest.json: 'method' and 'version' must be strings" "$K" load-artifacts "$TMP/art_bad"
cp -r "$TMP/art" "$TMP/art_trunc"; head -c 100 "$TMP/art/artifacts.safetensors" >"$TMP/art_trunc/artifacts.safetensors"
expect_fail "artifacts tensors truncated" "art_trunc/artifacts.safetensors" "$K" load-artifacts "$TMP/art_trunc"
expect_fail "needs calibration" "rabitq.centroids.l0.h0' missing: run .kvstudio precompute" "$K" quantize $D/tr_valid.safetensors --method rabitq --bits 3

echo "-- model directories"
M=sample_data/refmodel
mkdir -p "$TMP/m"
for f in config.json model.safetensors.index.json model-00001-of-00003.safetensors model-00002-of-00003.safetensors; do
  ln -s "$PWD/$M/$f" "$TMP/m/$f"
done
TEXT=sample_data/texts/textwrap-1k.py
expect_fail "model dir with a missing shard" "shard 'model-00003-of-00003.safetensors' listed in model.safetensors.index.json is missing" \
  "$K" ppl --model "$TMP/m" --text "$TEXT"
cp -r "$TMP/m" "$TMP/m3"; head -c 100000 "$M/model-00003-of-00003.safetensors" >"$TMP/m3/model-00003-of-00003.safetensors"
expect_fail "model dir with a truncated shard" "model-00003-of-00003.safetensors: tensor '.*run past the end of the file" \
  "$K" ppl --model "$TMP/m3" --text "$TEXT"
mkdir -p "$TMP/m2"; echo '{"model_type": "llama",' >"$TMP/m2/config.json"
expect_fail "model config.json malformed" "m2/config.json" "$K" ppl --model "$TMP/m2" --text "$TEXT"
expect_fail "model dir without config.json" "no config.json" "$K" ppl --model "$TMP" --text "$TEXT"

echo "-- unwritable outputs"
exp_script() { printf 'load %s\nquantize --method turboquant_mse --bits 3\nexport json %s\n' $D/tr_valid.safetensors "$1" >"$TMP/exp.kvs"; }
mkdir -p "$TMP/ro"; chmod 555 "$TMP/ro"
# root ignores directory permissions: run those cases as nobody
AS=(); [ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod -R a+rX "$TMP"
if [ "$(id -u)" != 0 ] || command -v setpriv >/dev/null; then
  exp_script "$TMP/ro/runs.json"
  expect_fail "export into a read-only dir" "ro/runs.json" "${AS[@]}" "$K" --script "$TMP/exp.kvs"
  expect_fail "precompute into a read-only dir" "ro/art" "${AS[@]}" "$K" precompute --method rabitq \
    --trace $D/tr_valid.safetensors --num-clusters 2 --output "$TMP/ro/art"
  [ -z "$(ls "$TMP/ro")" ] && pass "read-only dir left empty" || fail "read-only dir holds $(ls "$TMP/ro")"
fi
# A full disk: RLIMIT_FSIZE 0 makes every write to a file fail (EFBIG); the
# error line still reaches the terminal through a pipe.
full() { bash -c 'trap "" XFSZ; (ulimit -f 0; exec "$@") 2>&1 >/dev/null | cat >&2; exit ${PIPESTATUS[0]}' full "$@"; }
exp_script "$TMP/full/runs.json"; mkdir -p "$TMP/full"
expect_fail "export onto a full disk" "full/runs.json" full "$K" --script "$TMP/exp.kvs"
expect_fail "precompute onto a full disk" "write failed" full "$K" precompute --method rabitq \
  --trace $D/tr_valid.safetensors --num-clusters 2 --output "$TMP/full/art"
[ -z "$(ls "$TMP/full")" ] && pass "full disk: no partial file left" || fail "full disk left $(ls "$TMP/full")"
# /dev/full itself: as root a private copy of the node, so a writer that
# renamed over it could not replace the real one.
DEVFULL=/dev/full
[ "$(id -u)" = 0 ] && mknod "$TMP/devfull" c 1 7 && DEVFULL=$TMP/devfull
exp_script "$DEVFULL"
expect_fail "export to /dev/full" "devfull\|/dev/full" "$K" --script "$TMP/exp.kvs"
[ -c "$DEVFULL" ] && pass "/dev/full still a device" || fail "/dev/full was replaced by a regular file"
exp_script "$TMP/nodir/runs.json"
expect_fail "export into a missing dir (stdin script)" "nodir/runs.json" bash -c "$K - <'$TMP/exp.kvs'"

echo "-- head_dim beyond what the kernels support (issue 17): loads, every computation refuses it"
for d in 300 512; do
  T=$D/tr_head_dim_$d.safetensors
  expect_ok "info, head_dim $d" "$K" info "$T"
  for m in spectral vecinfer ratequant rabitq commvq; do
    expect_fail "precompute $m, head_dim $d" "$m: .*tr_head_dim_$d.safetensors has head_dim $d, supported 1..256" \
      "$K" precompute --method $m --trace "$T" --output "$TMP/hd$d-$m"
  done
  expect_fail "quantize, head_dim $d" "head_dim $d out of range (expected 1..256)" "$K" quantize "$T" --method turboquant_mse --bits 3
  expect_fail "benchmark, head_dim $d" "head_dim $d" "$K" benchmark --trace "$T" --method turboquant_mse --bits 3
done
[ -z "$(ls "$TMP" | grep -E '^hd(300|512)-')" ] && pass "no artifacts left for an unsupported head_dim" || fail "left $(ls "$TMP" | grep '^hd')"

echo "-- crafted artifacts (issue 17): every tensor checked against its shape and range on load"
for c in "art_rq_short_sensitivity:ratequant:'ratequant.sensitivity' has shape \[1,4\], expected \[2, 4\]" \
         "art_rq_short_curve:ratequant:'ratequant.curve' has shape \[1,3\], expected \[2, 3\]" \
         "art_rq_empty_target:ratequant:'ratequant.target_bits' has shape \[0\], expected \[1\]" \
         "art_rq_bits_range:ratequant:'ratequant.bits': bits 100 at element 1" \
         "art_rabitq_huge:rabitq:'rabitq.centroids.l0.h0': centroid coordinate 1e+30 at element 0" \
         "art_spectral_short:spectral:'spectral.rotation.l0.h0' has shape \[8,4\], expected \[8,8\]"; do
  IFS=: read -r dir m pat <<<"$c"
  expect_fail "quantize --artifacts $dir" "$dir/artifacts.safetensors: tensor $pat" \
    "$K" quantize $D/tr_valid.safetensors --method $m --bits 3 --num-clusters 2 --artifacts $D/$dir
  printf 'load %s\nload-artifacts %s\n' $D/tr_valid.safetensors $D/$dir >"$TMP/la_$dir.kvs"
  expect_fail "load-artifacts $dir" "la_$dir.kvs:2: load-artifacts: .*$dir/artifacts.safetensors" "$K" --script "$TMP/la_$dir.kvs"
done

echo "-- only regular files are opened (issue 17): a FIFO fails at once, never blocks"
mkfifo "$TMP/fifo"
expect_fail "FIFO as a trace" "fifo: not a regular file (a fifo)" timeout 20 "$K" info "$TMP/fifo"
mkdir -p "$TMP/art_fifo_m" "$TMP/art_fifo_t"
cp "$TMP/art/artifacts.safetensors" "$TMP/art_fifo_m/"; mkfifo "$TMP/art_fifo_m/manifest.json"
cp "$TMP/art/manifest.json" "$TMP/art_fifo_t/"; mkfifo "$TMP/art_fifo_t/artifacts.safetensors"
expect_fail "FIFO as the manifest" "art_fifo_m/manifest.json: not a regular file (a fifo)" timeout 20 "$K" load-artifacts "$TMP/art_fifo_m"
expect_fail "FIFO as the tensors file" "art_fifo_t/artifacts.safetensors: not a regular file (a fifo)" \
  timeout 20 "$K" quantize $D/tr_valid.safetensors --method rabitq --bits 3 --num-clusters 2 --artifacts "$TMP/art_fifo_t"
mkdir -p "$TMP/mfifo"; mkfifo "$TMP/mfifo/config.json"
expect_fail "FIFO as config.json" "mfifo/config.json: not a regular file (a fifo)" timeout 20 "$K" ppl --model "$TMP/mfifo" --text "$TEXT"
expect_fail "FIFO as --text" "fifo: not a regular file (a fifo)" timeout 20 "$K" ppl --model $M --text "$TMP/fifo"
expect_fail "FIFO as --tokens" "fifo: not a regular file (a fifo)" timeout 20 "$K" ppl --model $M --tokens "$TMP/fifo"
expect_fail "ppl --text /dev/zero" "/dev/zero: not a regular file (a character device)" timeout 20 "$K" ppl --model $M --text /dev/zero
truncate -s 17M "$TMP/big.txt"
expect_fail "ppl --text larger than the bound" "big.txt: larger than 16777216 bytes" timeout 20 "$K" ppl --model $M --text "$TMP/big.txt"

echo "-- extreme model configs (issue 17): every field range-checked before a run"
mkcfg() {   # mkcfg NAME SED: the sample model with config.json edited
  mkdir -p "$TMP/$1"
  for f in model.safetensors.index.json model-00001-of-00003.safetensors model-00002-of-00003.safetensors model-00003-of-00003.safetensors; do
    ln -sf "$PWD/$M/$f" "$TMP/$1/$f"
  done
  sed "$2" $M/config.json >"$TMP/$1/config.json"
}
mkcfg eps 's/"rms_norm_eps": 1e-05/"rms_norm_eps": 1e300/'
expect_fail "huge rms_norm_eps" "eps/config.json: field 'rms_norm_eps' is not a number in (0, 0.01]" timeout 60 "$K" ppl --model "$TMP/eps" --text "$TEXT"
mkcfg theta 's/"rope_theta": 10000.0/"rope_theta": 1e-300/'
expect_fail "tiny rope_theta" "field 'rope_theta' = 1e-300 is out of range" timeout 60 "$K" ppl --model "$TMP/theta" --text "$TEXT"
mkcfg odd '/"head_dim"/d; s/"hidden_size": 512/"hidden_size": 516/'
expect_fail "no head_dim, odd hidden_size / heads" "field 'head_dim' = 129 is not supported (expected even" timeout 60 "$K" ppl --model "$TMP/odd" --text "$TEXT"
mkcfg pos 's/"max_position_embeddings": 2048/"max_position_embeddings": 4294967296/'
expect_fail "max_position_embeddings past int" "'max_position_embeddings' is not an integer in 1..16777216" timeout 60 "$K" ppl --model "$TMP/pos" --text "$TEXT"

echo "-- a symlinked --output (issue 17): written through the link, nothing lost or left behind"
expect_ok "precompute into a real dir" "$K" precompute --method rabitq --trace $D/tr_valid.safetensors --num-clusters 2 --output "$TMP/real_art"
ln -s "$TMP/real_art" "$TMP/link_art"
old=$(cksum <"$TMP/real_art/manifest.json")
expect_ok "precompute --output LINK" "$K" precompute --method rabitq --trace $D/tr_valid.safetensors --num-clusters 3 --output "$TMP/link_art"
[ -L "$TMP/link_art" ] && pass "the link is still a link" || fail "the link was replaced"
[ -f "$TMP/real_art/manifest.json" ] && [ -f "$TMP/real_art/artifacts.safetensors" ] && [ "$(cksum <"$TMP/real_art/manifest.json")" != "$old" ] \
  && grep -q '"num_clusters": "3"' "$TMP/real_art/manifest.json" && pass "the target holds the new artifacts" || fail "target: $(ls "$TMP/real_art")"
[ -z "$(ls "$TMP" | grep -E '\.(tmp|old)\.')" ] && pass "no temp entries left" || fail "left $(ls "$TMP" | grep -E '\.(tmp|old)\.')"
expect_ok "the link loads" "$K" quantize $D/tr_valid.safetensors --method rabitq --bits 3 --num-clusters 3 --artifacts "$TMP/link_art"
ln -s "$TMP/nowhere/x" "$TMP/dangling_art"
expect_fail "precompute --output DANGLING_LINK" "dangling_art: a symbolic link whose target cannot be resolved" \
  "$K" precompute --method rabitq --trace $D/tr_valid.safetensors --num-clusters 2 --output "$TMP/dangling_art"

echo "-- escape sequences from files never reach the terminal (issue 17)"
expect_ok "info on escaped metadata" "$K" info $D/tr_escape_meta.safetensors
if grep -q $'\x1b\|\x07' "$TMP/out" || grep -q $'\xc2\x9b' "$TMP/out"; then fail "info printed raw escapes"; else pass "info output holds no ESC/BEL/CSI"; fi
expect_out "the model line, sanitized" "model     ?]0;owned??\[2Jmodel"
expect_fail "escaped tensor name and dtype" "tensor 'a?\[31m': dtype 'F?\[2J' is unknown" "$K" info $D/st_escape_dtype.safetensors
grep -q $'\x1b' "$TMP/err" && fail "the error line holds ESC" || pass "the error line holds no ESC"

echo "-- figures that overflow are errors, not inf / nan with exit 0 (issue 17)"
expect_fail "quantize on values near 3e38" "q.k error is NaN: the queries and keys of .*tr_huge_values.safetensors are too large" \
  "$K" quantize $D/tr_huge_values.safetensors --method turboquant_mse --bits 3
expect_fail "quantize fp16 on values near 3e38" "keys: relative_mse is +Inf" "$K" quantize $D/tr_huge_values.safetensors --method fp16 --bits 16
expect_fail "precompute on values near 3e38" "tr_huge_values.safetensors" \
  "$K" precompute --method rabitq --trace $D/tr_huge_values.safetensors --num-clusters 2 --output "$TMP/huge_art"
[ ! -e "$TMP/huge_art" ] && pass "no artifacts from an overflowing calibration" || fail "huge_art written"

echo "-- environment"
expect_fail "KVQ_SIMD mistyped" "KVQ_SIMD=avx-2: expected 0, scalar, avx2 or avx512" env KVQ_SIMD=avx-2 "$K" info $D/tr_valid.safetensors
expect_fail "KVQ_THREADS not a count" "KVQ_THREADS=two: expected an integer 1..64" env KVQ_THREADS=two "$K" info $D/tr_valid.safetensors
expect_fail "KVQ_THREADS 0" "KVQ_THREADS=0: expected an integer 1..64" env KVQ_THREADS=0 "$K" info $D/tr_valid.safetensors

echo "-- scripts"
printf 'load %s\ninfo\n\n# comment\nfrobnicate --x 1\ninfo\n' $D/tr_valid.safetensors >"$TMP/unk.kvs"
expect_fail "unknown command at line 5" "unk.kvs:5: unknown command 'frobnicate'" "$K" --script "$TMP/unk.kvs"
printf 'bits 3\nset "method=turboquant_mse\n' >"$TMP/quote.kvs"
expect_fail "unterminated quote at line 2" "quote.kvs:2: unterminated \" quote" "$K" --script "$TMP/quote.kvs"
printf 'bits 3\nquantize --method turboquant_mse\n' >"$TMP/notrace.kvs"
expect_fail "quantize without a trace" "notrace.kvs:2: no trace loaded" "$K" --script "$TMP/notrace.kvs"
head -c 3000 /dev/urandom | tr -d '\n' >"$TMP/noise.kvs"
expect_fail "binary noise as a script" "noise.kvs:1: " "$K" --script "$TMP/noise.kvs"
finish

#!/usr/bin/env bash
# tools/tom_turbo_vectors.sh — tests/data/formats/tom_turbo.txt from the
# TurboQuant fork's own code: builds TheTom/llama-cpp-turboquant's ggml-base +
# ggml-cpu (CMake, static, -DGGML_NATIVE=ON as its default build) outside the
# tree, links tools/tom_turbo_driver.c with it, and runs the fork's CPU KV path
# (SET_ROWS -> turboN, to_float, GGML_OP_TURBO_WHT, vec_dot) on keys, values
# and queries of sample_data/traces/code-1k.safetensors plus padded and edge
# vectors. tests/test_tom_turbo.c holds kvstudio's tomturbo:* rows to them.
#
# usage: tools/tom_turbo_vectors.sh FORK [OUT]
#   FORK  a checkout of the fork, or a bare git directory of it (a snapshot);
#         its HEAD is what gets built and recorded
#   OUT   default tests/data/formats/tom_turbo.txt
# The build goes to ${KVQ_TOMTURBO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/tomturbo}
# and is reused for the same commit. Needs cmake, a C/C++ compiler, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
FORK=${1:?usage: tools/tom_turbo_vectors.sh FORK [OUT]}
OUT=${2:-tests/data/formats/tom_turbo.txt}
TRACE=sample_data/traces/code-1k.safetensors
CACHE=${KVQ_TOMTURBO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/tomturbo}
JOBS=${JOBS:-2}
say() { echo "tom_turbo_vectors: $*" >&2; }
die() { echo "tom_turbo_vectors: $*" >&2; exit 1; }
for tool in git cmake cc c++ python3 tar; do command -v "$tool" >/dev/null || die "'$tool' not found"; done

# 1. the source at the fork's HEAD (a bare snapshot is unpacked path by path:
# its model files are absent blobs, so one archive of everything would fail)
if [ -f "$FORK/ggml/src/ggml-turbo-quant.c" ]; then
  commit=$(git -C "$FORK" rev-parse HEAD)
  src=$FORK
else
  commit=$(git --git-dir="$FORK" rev-parse HEAD 2>/dev/null) || die "$FORK: neither a checkout nor a git directory of the fork"
  src=$CACHE/src-${commit:0:12}
  if [ ! -f "$src/ggml/src/ggml-turbo-quant.c" ]; then
    say "unpacking $commit into $src"
    tmp=$(mktemp -d "${src}.XXXXXX")
    for p in CMakeLists.txt cmake ggml src include common vendor licenses; do
      # (a snapshot lacking the model blobs makes git warn about them: kept in the log)
      git --git-dir="$FORK" archive HEAD "$p" 2>>"$tmp.log" | tar -x -C "$tmp" || die "git archive $p failed: see $tmp.log"
    done
    rm -f "$tmp.log"
    rm -rf "$src" && mv "$tmp" "$src"
  fi
fi
[ -f "$src/ggml/src/ggml-turbo-quant.c" ] || die "$src: no ggml/src/ggml-turbo-quant.c (not the TurboQuant fork?)"
say "fork commit $commit"

# 2. ggml-base + ggml-cpu of that commit (llama.cpp's own parts off)
cc_id=$( (c++ --version | head -1; cc --version | head -1) | cksum | cut -d' ' -f1)
gb=$CACHE/build-${commit:0:12}-$cc_id
libs="$gb/ggml/src/libggml-cpu.a $gb/ggml/src/libggml-base.a"
if ! ls $libs >/dev/null 2>&1; then
  say "building ggml-base + ggml-cpu into $gb (several minutes)"
  mkdir -p "$CACHE"
  cmake -S "$src" -B "$gb" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DGGML_OPENMP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
    > "$gb.configure.log" 2>&1 || die "cmake configure failed: see $gb.configure.log"
  cmake --build "$gb" -j"$JOBS" --target ggml-cpu > "$gb.build.log" 2>&1 || die "cmake build failed: see $gb.build.log"
fi
drv=$gb/tom_turbo_driver
cc -std=gnu11 -O2 -Wall -Wextra -Werror -I"$src/ggml/include" -o "$drv" tools/tom_turbo_driver.c $libs \
  -lstdc++ -lm -pthread

# 3. the inputs: f16 keys and values of the trace (exact in f32), each with the
# query of its first q head at the same token; then heads padded to 128 (64,
# 96, 192) and two groups (256); then edge cases.
inputs=$(mktemp)
trap 'rm -f "$inputs" "$OUT.tmp.$$"' EXIT
python3 - "$TRACE" >"$inputs" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
hdr = json.loads(f.read(n))
base = 8 + n
meta = hdr["__metadata__"]
D, KV, H = int(meta["head_dim"]), int(meta["n_kv_heads"]), int(meta["n_heads"])
def vec(name, head, tok):
    e = hdr[name]
    assert e["dtype"] == "F16"
    _, T, d = e["shape"]
    f.seek(base + e["data_offsets"][0] + 2 * ((head * T + tok) * d))
    return list(struct.unpack("<%de" % d, f.read(2 * d)))
def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]
def emit(x, q):
    for v in (x, q):
        print(len(v), " ".join("%08x" % struct.unpack("<I", struct.pack("<f", f32(t)))[0] for t in v))
for layer in (0, 5):
    for h in range(KV):
        for tok in (0, 1023):
            q = vec("layers.%d.queries" % layer, h * (H // KV), tok)
            for kind in ("keys", "values"):
                emit(vec("layers.%d.%s" % (layer, kind), h, tok), q)
k1, k2 = vec("layers.2.keys", 0, 300), vec("layers.3.keys", 1, 700)
v1, q1 = vec("layers.2.values", 1, 42), vec("layers.2.queries", 0, 300)
emit(k1[:64], q1[:64]); emit(v1[:64], q1[64:]); emit(k1[:96], q1[:96])
emit(k1 + k2[:64], q1 + q1[:64]); emit(k1 + k2, q1 + q1); emit(v1 + k2, q1[::-1] + q1)
emit([0.0] * D, q1)                          # zero norm: every index is the one of 0
emit([t * 1e-12 for t in k1], q1)            # norm below 1e-10
big = list(k1); big[7] = 40.0 * max(abs(t) for t in k1)
emit(big, q1)                                # one outlier channel
emit([0.75] * D, q1)                         # constant: all energy on one WHT coordinate
EOF

# 4. the vectors, with the commit in the header
{
  echo "# tomturbo:turbo2/3/4 test vectors (tests/test_tom_turbo.c), from tools/tom_turbo_vectors.sh"
  echo "# fork TheTom/llama-cpp-turboquant commit $commit"
  echo "# reference: the fork's ggml-base + ggml-cpu ($(cc --version | head -1)), CPU path: SET_ROWS, to_float, TURBO_WHT, vec_dot"
  echo "# line: type d | inputs (f32 hex) | record bytes (hex) | decoded, inverse-WHT'd (f32 hex) | query (f32 hex) | score (f32 hex)"
  "$drv" "$inputs"
} >"$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
say "wrote $OUT ($(grep -vc '^#' "$OUT") vectors)"

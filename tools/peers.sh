#!/usr/bin/env bash
# tools/peers.sh — `make peers`: kvstudio's llama.cpp KV formats against the
# real ggml, byte for byte (tests/peers/ggml_peer.c says what is compared).
#
# llama.cpp's source comes from the npm package node-llama-cpp@3.21.1, which
# ships llama/gitRelease.bundle, a git bundle of the llama.cpp release it
# builds on. Everything fetched or built from it stays outside the tree, in
# ${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/peers (KVQ_PEERS_CACHE overrides):
# the npm tarball, the clone and ggml's CMake build (ggml-base + ggml-cpu,
# static, -DGGML_NATIVE=ON), each reused when already there. build-peers/
# (git-ignored) gets the harness binary and links to that ggml build and its
# source (`make bench` builds bench/ggml_bench.c against them).
# usage: tools/peers.sh [BUILD_DIR]   (BUILD_DIR holds libkvq.a; default build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PKG=node-llama-cpp@3.21.1
CACHE=${KVQ_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/peers}
OUTDIR=build-peers
JOBS=${PEERS_JOBS:-2}
say() { echo "peers: $*"; }
die() { echo "peers: $*" >&2; exit 1; }

for tool in npm git cmake c++ tar; do
  command -v "$tool" >/dev/null || die "'$tool' not found (needed to fetch and build ggml; make deps installs cmake/g++, npm comes with nodejs)"
done
mkdir -p "$CACHE" "$OUTDIR"

# 1. the npm package (once)
tgz=$CACHE/node-llama-cpp-3.21.1.tgz
if [ ! -s "$tgz" ]; then
  say "npm pack $PKG into $CACHE"
  tmp=$(mktemp -d "$CACHE/pack.XXXXXX")
  (cd "$tmp" && npm pack --silent "$PKG" >/dev/null) || { rm -rf "$tmp"; die "npm pack $PKG failed"; }
  mv "$tmp"/node-llama-cpp-3.21.1.tgz "$tgz.tmp.$$" && mv "$tgz.tmp.$$" "$tgz"
  rm -rf "$tmp"
fi

# 2. the llama.cpp release inside it (once)
src=$CACHE/llama.cpp
if [ ! -f "$src/ggml/src/ggml-quants.c" ]; then
  say "cloning llama/gitRelease.bundle"
  tmp=$(mktemp -d "$CACHE/src.XXXXXX")
  tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle || die "$tgz: no llama/gitRelease.bundle"
  rm -rf "$src"
  git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$src" || die "git clone of the bundle failed"
  rm -rf "$tmp"
fi
info=$(tar -xzOf "$tgz" package/llama/llama.cpp.info.json 2>/dev/null | tr -d '\n ' || true)
commit=$(git -C "$src" rev-parse HEAD)
say "llama.cpp $commit, from $PKG ${info:-(no llama.cpp.info.json)}"

# 3. ggml's CPU library (once per commit and compiler)
cc_id=$( (c++ --version | head -1; cc --version | head -1) | cksum | cut -d' ' -f1)
gb=$CACHE/build-${commit:0:12}-$cc_id
libs="$gb/ggml/src/libggml-cpu.a $gb/ggml/src/libggml-base.a"
if ! ls $libs >/dev/null 2>&1; then
  say "building ggml-base + ggml-cpu into $gb (a few minutes)"
  # ggml/ alone does not configure as a standalone project in this release
  # (ggml.pc.in missing), so configure the top level with llama.cpp's own
  # parts switched off and build the two ggml targets only.
  cmake -S "$src" -B "$gb" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DGGML_OPENMP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF \
    > "$CACHE/cmake-configure.log" 2>&1 || die "cmake configure failed: see $CACHE/cmake-configure.log"
  cmake --build "$gb" -j"$JOBS" --target ggml-cpu > "$CACHE/cmake-build.log" 2>&1 \
    || die "cmake build failed: see $CACHE/cmake-build.log"
fi
ln -sfn "$gb" "$OUTDIR/ggml"
ln -sfn "$src" "$OUTDIR/llama.cpp"   # headers and commit for bench/ggml_bench.c

# 4. the harness: our code, linked with libkvq and ggml
[ -f "$BUILD/libkvq.a" ] || die "$BUILD/libkvq.a missing (run make all first)"
BLAS=$(pkg-config --libs lapacke openblas 2>/dev/null || echo -llapacke -lopenblas)
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -Iengine -Iengine/io -Iengine/cache -I"$src/ggml/include" \
  -o "$OUTDIR/ggml_peer" tests/peers/ggml_peer.c "$BUILD/libkvq.a" $libs \
  -lstdc++ $BLAS -ljansson -lm -pthread

# 5. compare on the sample traces, with kvstudio's SIMD kernels, then its scalar code
"$OUTDIR/ggml_peer" sample_data/traces/*.safetensors
say "again with kvstudio's scalar paths (KVQ_SIMD=0)"
KVQ_SIMD=0 "$OUTDIR/ggml_peer" sample_data/traces/*.safetensors

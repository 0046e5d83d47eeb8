#!/usr/bin/env bash
# models.sh — each architecture against transformers itself: tiny random-init
# checkpoints (tests/data/models/<name>/, made by make_refs.py) run through
# `kvstudio ppl --tokens` with the fp16 cache; per-token NLL must match
# transformers' fp32 eager forward (refs.json): mean within 0.005 bits/token,
# every token within 0.02 nats. Prints each model's mean diff and worst token.
source "$(dirname "$0")/lib.sh"
D=tests/data/models
command -v python3 >/dev/null || { fail "python3 missing (run make deps)"; finish; }
for dir in "$D"/*/; do
  name=$(basename "$dir")
  [ -f "$dir/config.json" ] || continue
  if ! "$KVSTUDIO" ppl --model "$dir" --tokens "$D/tokens.txt" --json --per-token >"$TMP/$name.json" 2>"$TMP/err"; then
    fail "$name: ppl failed: $(head -c 300 "$TMP/err")"
    continue
  fi
  if msg=$(python3 - "$D/refs.json" "$name" "$TMP/$name.json" <<'PY'
import json, math, sys
refs = json.load(open(sys.argv[1]))["models"]
name, got = sys.argv[2], json.load(open(sys.argv[3]))
if name not in refs:
    print(f"no reference for {name} in refs.json"); sys.exit(1)
ref = refs[name]
a, b = got["token_nll_nats"], ref["nll"]
if len(a) != len(b):
    print(f"{len(a)} token losses, reference has {len(b)}"); sys.exit(1)
if got["model_type"] != ref["model_type"]:
    print(f"model_type {got['model_type']}, reference {ref['model_type']}"); sys.exit(1)
mean_diff = got["bits_per_token"] - ref["mean_bits"]
worst = max(range(len(a)), key=lambda i: abs(a[i] - b[i]))
wd = abs(a[worst] - b[worst])
line = (f"{ref['model_type']:11s} mean {got['bits_per_token']:.4f} vs {ref['mean_bits']:.4f} bits/token "
        f"(diff {mean_diff:+.5f}), worst token {worst + 1}: {a[worst]:.4f} vs {b[worst]:.4f} nats (diff {wd:.4f})")
print(line)
sys.exit(0 if abs(mean_diff) <= 0.005 and wd <= 0.02 else 1)
PY
); then pass "$name: $msg"; else fail "$name: $msg"; fi
done
finish

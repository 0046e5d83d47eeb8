#!/usr/bin/env bash
# Batch CLI: info, --json, scripts, stdin, help, errors.
. "$(dirname "$0")/lib.sh"

expect_ok "info text" "$KVSTUDIO" info "$TRACE"
expect_out "info shape" "6 layers, 4 heads, 2 kv heads, 1024 tokens, head_dim 128"
expect_out "info per-head rows" "^    5    1  values"
expect_ok "info json" "$KVSTUDIO" info "$TRACE" --json
expect_out "json head_dim" '"head_dim": 128'
expect_out "json d_eff" '"d_eff":'
[ "$(grep -c '"kv_head":' "$TMP/out")" -eq 12 ] && pass "json 12 heads" || fail "json 12 heads"

printf 'load %s\ninfo\nquit\ninfo\n' "$TRACE" >"$TMP/s.kvs"
expect_ok "script" "$KVSTUDIO" --script "$TMP/s.kvs"
[ "$(grep -c '^trace ' "$TMP/out")" -eq 1 ] && pass "quit stops the script" || fail "quit stops the script"
expect_ok "stdin script" bash -c "printf 'load $TRACE\nshow\n' | $KVSTUDIO -"
expect_out "show lists config" "use_hadamard"
expect_ok "stdin without args" bash -c "echo methods | $KVSTUDIO"
expect_out "methods list" "turboquant_mse"

printf 'bits 3\nbits 99\nquit\n' >"$TMP/bad.kvs"
expect_fail "script error names file:line" "bad.kvs:2: bits" "$KVSTUDIO" --script "$TMP/bad.kvs"
printf 'load %s\nfrobnicate\n' "$TRACE" >"$TMP/unk.kvs"
expect_fail "unknown command at line N" "unk.kvs:2: unknown command 'frobnicate'" "$KVSTUDIO" --script "$TMP/unk.kvs"
expect_fail "missing script" "cannot open script" "$KVSTUDIO" --script "$TMP/nope.kvs"
expect_fail "missing trace" "nope.safetensors" "$KVSTUDIO" info "$TMP/nope.safetensors"
expect_fail "unknown subcommand" "unknown command" "$KVSTUDIO" frobnicate
expect_fail "unknown option" "unknown option 'bogus'" "$KVSTUDIO" info "$TRACE" --bogus
head -c 1000 "$TRACE" >"$TMP/trunc.safetensors"
expect_fail "truncated trace" "trunc.safetensors" "$KVSTUDIO" info "$TMP/trunc.safetensors"

expect_ok "--help" "$KVSTUDIO" --help
expect_out "--help lists commands" "quantize"
expect_ok "info --help" "$KVSTUDIO" info --help
expect_out "command help" "usage: info"
finish

#!/usr/bin/env bash
# Nothing lost (issue 9): kill -9 at random moments during `precompute`
# (artifact directory) and `export` (a JSON file) must leave the old output
# or the new one, byte for byte, never a mix or a partial file. Both outputs
# are deterministic, so "old" and "new" are reference copies made first.
# Delays are drawn (fixed seed) around the measured run time, where the
# write happens; the assertion holds for any delay, so the test is stable.
# When strace is installed, more rounds run with every write(2) delayed by
# 20 ms, which stretches the write phase over most of the run so the kills
# land inside it (the stale temp count shows how many did).
. "$(dirname "$0")/lib.sh"
K=$KVSTUDIO
RANDOM=9
N=${ATOMIC_ROUNDS:-6}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# /proc only (no procps on a bare CI machine): running and not a zombie
alive() { local st; st=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }
# wait up to MS milliseconds while PID runs
wait_ms() { local end=$(($(now_ms) + $2)); while alive "$1" && [ "$(now_ms)" -lt "$end" ]; do sleep 0.005; done; }
# killed_run MS CMD...: run CMD, kill -9 it after MS milliseconds unless done
killed_run() {
  local ms=$1; shift
  "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_ms $pid "$ms"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
}
# slow_run MS CMD...: the same with each write(2) of CMD delayed 20 ms (strace)
slow_run() {
  local ms=$1; shift
  strace -f -qq -o /dev/null -e trace=write -e inject=write:delay_enter=20000 "$@" >/dev/null 2>&1 &
  local sp=$!
  wait_ms $sp "$ms"
  local cp; cp=$(cat /proc/$sp/task/*/children 2>/dev/null)
  [ -n "$cp" ] && kill -9 $cp 2>/dev/null
  wait $sp 2>/dev/null
}
RUNNERS=(killed_run)
command -v strace >/dev/null && strace -qq -o /dev/null true 2>/dev/null && RUNNERS+=(slow_run)
same_dir() { cmp -s "$1/artifacts.safetensors" "$2/artifacts.safetensors" && cmp -s "$1/manifest.json" "$2/manifest.json"; }

echo "-- precompute"
PRE=(precompute --method rabitq --trace "$TRACE")
expect_ok "reference old artifacts" "$K" "${PRE[@]}" --seed 1 --output "$TMP/ref_old"
t0=$(now_ms)
expect_ok "reference new artifacts" "$K" "${PRE[@]}" --seed 2 --output "$TMP/ref_new"
T=$(($(now_ms) - t0))
same_dir "$TMP/ref_old" "$TMP/ref_new" && fail "the two seeds give different artifacts"
for run in "${RUNNERS[@]}"; do
  olds=0 news=0 bad=0
  t0=$(now_ms); $run 600000 "$K" "${PRE[@]}" --seed 2 --output "$TMP/art_t"; Tr=$(($(now_ms) - t0))
  for i in $(seq "$N"); do
    rm -rf "$TMP/art"; cp -r "$TMP/ref_old" "$TMP/art"
    $run $((Tr * (10 + RANDOM % 90) / 100)) "$K" "${PRE[@]}" --seed 2 --output "$TMP/art"
    if same_dir "$TMP/art" "$TMP/ref_old"; then olds=$((olds + 1))
    elif same_dir "$TMP/art" "$TMP/ref_new"; then news=$((news + 1))
    else bad=$((bad + 1)); echo "  round $i: $TMP/art is neither: $(ls -la "$TMP/art" 2>&1 | tr '\n' ' ')"; fi
  done
  stale=$(ls -d "$TMP"/art.tmp.* "$TMP"/art.old.* 2>/dev/null | wc -l)
  [ $bad -eq 0 ] && pass "precompute, $run x $N (run ${Tr} ms): $olds old, $news new, 0 partial ($stale killed mid-write)" \
    || fail "precompute: $bad of $N kills ($run) left a partial artifact directory"
  rm -rf "$TMP"/art.tmp.* "$TMP"/art.old.*
done

echo "-- export"
mkscript() { # mkscript FILE N_RUNS
  { echo "load $TRACE"; for b in $(seq 2 $((1 + $2))); do echo "quantize --method turboquant_mse --bits $b --tokens 256"; done
    echo "export json $TMP/e.json"; } >"$1"
}
mkscript "$TMP/old.kvs" 1
mkscript "$TMP/new.kvs" 2
expect_ok "reference old export" "$K" --script "$TMP/old.kvs"
cp "$TMP/e.json" "$TMP/e_old.json"
t0=$(now_ms)
expect_ok "reference new export" "$K" --script "$TMP/new.kvs"
T=$(($(now_ms) - t0))
cp "$TMP/e.json" "$TMP/e_new.json"
cmp -s "$TMP/e_old.json" "$TMP/e_new.json" && fail "old and new exports are equal"
for run in "${RUNNERS[@]}"; do
  olds=0 news=0 bad=0
  t0=$(now_ms); $run 600000 "$K" --script "$TMP/new.kvs"; Tr=$(($(now_ms) - t0))
  for i in $(seq "$N"); do
    cp "$TMP/e_old.json" "$TMP/e.json"
    $run $((Tr * (30 + RANDOM % 70) / 100)) "$K" --script "$TMP/new.kvs"
    if cmp -s "$TMP/e.json" "$TMP/e_old.json"; then olds=$((olds + 1))
    elif cmp -s "$TMP/e.json" "$TMP/e_new.json"; then news=$((news + 1))
    else bad=$((bad + 1)); echo "  round $i: e.json is neither ($(wc -c <"$TMP/e.json") bytes)"; fi
  done
  stale=$(ls "$TMP"/e.json.tmp.* 2>/dev/null | wc -l)
  [ $bad -eq 0 ] && pass "export, $run x $N (run ${Tr} ms): $olds old, $news new, 0 partial ($stale killed mid-write)" \
    || fail "export: $bad of $N kills ($run) left a partial file"
  rm -f "$TMP"/e.json.tmp.*
done
finish

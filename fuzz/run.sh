#!/usr/bin/env bash
# run.sh SECONDS NAME... — run each libFuzzer target in build-fuzz/fuzz/ for
# SECONDS. Seeds: the files tests/data/ holds for that reader plus
# fuzz/corpus/NAME/; new coverage goes to build-fuzz/corpus/NAME/ (kept
# between runs, never committed). A crash leaves build-fuzz/crashes/NAME-*;
# keep it under tests/data/regress/NAME/ so tests/test_regress.c replays it.
set -u
secs=$1; shift
B=build-fuzz
fails=0
for name in "$@"; do
  bin=$B/fuzz/$name
  work=$B/corpus/$name
  mkdir -p "$work" "$B/crashes"
  case $name in
    fuzz_safetensors) seeds="tests/data/*.safetensors" ;;
    fuzz_npy) seeds="tests/data/*.npy" ;;
    fuzz_trace) seeds="tests/data/*.safetensors tests/data/*.npy" ;;
    *) seeds="" ;;
  esac
  for f in $seeds fuzz/corpus/$name/* tests/data/regress/$name/*; do
    [ -f "$f" ] && cp -f "$f" "$work/seed-$(basename "$f")"
  done
  dict=()
  d=fuzz/json.dict   # every reader but the command language takes JSON headers
  [ $name = fuzz_commands ] && d=fuzz/fuzz_commands.dict
  [ -f "$d" ] && dict=(-dict="$d")
  echo "== $name ($secs s)"
  if "$bin" "$work" "${dict[@]}" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$B/crashes/$name-" -print_final_stats=1 >"$B/$name.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' "$B/$name.log" | tr '\n' ' '
    echo
  else
    fails=$((fails + 1))
    echo "  FAIL $name: see $B/$name.log"
    grep -E 'ERROR|SUMMARY|Test unit written|runtime error' "$B/$name.log" | head -8
  fi
done
[ $fails -eq 0 ] && echo "fuzz: all targets clean" || echo "fuzz: $fails target(s) failed"
exit $((fails > 0))

#!/usr/bin/env bash
# scale_check.sh — `make scale-check`: real-size synthetic traces (issue 15)
# and the wall time and peak anonymous memory of each command on them.
#
# Makes S1 (32 layers, 32 heads, 8 kv heads, 8192 tokens, 1.1 GB), S2 (same
# at 32768 tokens, 4.3 GB) and S3 (80 layers, 64 heads, 8 kv heads, 8192
# tokens, 3.0 GB) with tools/make_trace.py (256 queries per head) under
# SCALE_DIR, runs each command once and prints a markdown table. Peak
# RssAnon is sampled from /proc/PID/status every SCALE_SAMPLE_S seconds:
# mapped trace pages are file-backed and do not count, heap does
# (getrusage's maxrss would count both). Not part of `make test`.
#
# Environment: KVSTUDIO (default build/kvstudio), SCALE_DIR (default
# /var/tmp/kvstudio-scale), SCALE_TRACES (default "S1 S2 S3"; S0 is a tiny smoke-test shape), SCALE_CMDS
# (default "info quantize-tq3 quantize-q4_0 benchmark studio"; also precompute-spectral,
# precompute-ratequant, precompute-vecinfer), SCALE_TIMEOUT
# seconds per command (default 1800; a command past it is reported as not
# finished), SCALE_KEEP=1 keeps the traces, KVQ_THREADS (default nproc).
#
# `studio` opens the trace in the studio inside a private tmux server
# (120x40, as tests/tui/lib.sh drives it) and polls capture-pane every
# SCALE_SAMPLE_S: "first screen" is when the explorer's grid box is drawn,
# "screen filled" when no grid cell on screen waits ("...") any more (the
# grid computes the head columns on screen first), "explorer settled" when
# the status line says the key statistics of every (layer, kv head) are
# ready. The wall column shows all three.
set -u
KVSTUDIO=${KVSTUDIO:-build/kvstudio}
SCALE_DIR=${SCALE_DIR:-/var/tmp/kvstudio-scale}
SCALE_TRACES=${SCALE_TRACES:-S1 S2 S3}
SCALE_CMDS=${SCALE_CMDS:-info quantize-tq3 quantize-q4_0 benchmark studio}
SCALE_TIMEOUT=${SCALE_TIMEOUT:-1800}
SCALE_SAMPLE_S=${SCALE_SAMPLE_S:-0.05}
export KVQ_THREADS=${KVQ_THREADS:-$(nproc)}
here=$(cd "$(dirname "$0")" && pwd)
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

[ -x "$KVSTUDIO" ] || { echo "scale-check: $KVSTUDIO not found, expected a built kvstudio (make all)" >&2; exit 2; }
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "scale-check: no python3 with numpy, expected python3-numpy (make deps)" >&2; exit 2; }
mkdir -p "$SCALE_DIR" || exit 2

shape_of() {   # trace name -> make_trace.py arguments
    case $1 in
    S0) echo "--layers 2 --heads 4 --kv-heads 2 --tokens 512" ;;   # a smoke test of this script
    S1) echo "--layers 32 --heads 32 --kv-heads 8 --tokens 8192" ;;
    S2) echo "--layers 32 --heads 32 --kv-heads 8 --tokens 32768" ;;
    S3) echo "--layers 80 --heads 64 --kv-heads 8 --tokens 8192" ;;
    *) return 1 ;;
    esac
}

args_of() {    # command name -> kvstudio arguments before the trace
    case $1 in
    info) echo "info" ;;
    quantize-tq3) echo "quantize --method turboquant_mse --bits 3" ;;
    quantize-q4_0) echo "quantize --method q4_0 --bits 4" ;;
    benchmark) echo "benchmark --method turboquant_mse --bits 3 --value-bits 2 --trace" ;;
    precompute-spectral|precompute-ratequant|precompute-vecinfer)   # artifacts into the scratch dir
        echo "precompute --method ${1#precompute-} --output $SCALE_DIR/art-${1#precompute-} --quiet --trace" ;;
    *) return 1 ;;
    esac
}

# run_one LOG CMD... : runs CMD in the background and samples its RssAnon
# and CPU time (utime + stime of /proc/PID/stat, last sample before exit);
# sets WALL and CPU (s), PEAK_KB, RC (124 when killed at SCALE_TIMEOUT).
run_one() {
    local log=$1; shift
    local t0=$EPOCHREALTIME
    "$@" >"$log" 2>&1 &
    local pid=$! peak=0 k v u deadline st ticks=0
    deadline=$(( ${t0%.*} + SCALE_TIMEOUT ))
    RC=""
    while kill -0 "$pid" 2>/dev/null; do
        if read -r st 2>/dev/null </proc/$pid/stat; then
            st=${st##*) }   # fields after "pid (comm) "; utime, stime are 12th, 13th here
            read -r _ _ _ _ _ _ _ _ _ _ _ k v _ <<<"$st"
            [ -n "$v" ] && ticks=$(( k + v ))
        fi
        if [ -r /proc/$pid/status ]; then
            while read -r k v u; do
                [ "$k" = RssAnon: ] && { [ "$v" -gt "$peak" ] && peak=$v; break; }
            done </proc/$pid/status 2>/dev/null
        fi
        if [ "${EPOCHREALTIME%.*}" -ge "$deadline" ]; then kill "$pid" 2>/dev/null; RC=124; fi
        sleep "$SCALE_SAMPLE_S"
    done
    wait "$pid"; local rc=$?
    [ -n "$RC" ] || RC=$rc
    WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    CPU=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')
    PEAK_KB=$peak
}

# run_studio LOG TRACE: the studio on TRACE in tmux; sets FIRST, FILLED and
# SETTLED (s after launch, "-" when never), CPU, PEAK_KB, RC (124 past
# SCALE_TIMEOUT).
run_studio() {
    local log=$1 tr=$2 sock pid="" peak=0 k v u st ticks=0 scr t0 now
    command -v tmux >/dev/null 2>&1 || { RC=2; FIRST=-; SETTLED=-; CPU=0; PEAK_KB=0; echo "no tmux" >"$log"; return; }
    sock=$(mktemp -u "${TMPDIR:-/tmp}/kvs-scale-tmux.XXXXXX")
    local kv; kv=$(cd "$(dirname "$KVSTUDIO")" && pwd)/$(basename "$KVSTUDIO")
    local state; state=$(mktemp -d)
    FIRST=-; FILLED=-; SETTLED=-; RC=0
    t0=$EPOCHREALTIME
    tmux -S "$sock" -f /dev/null new-session -d -s scale -x 120 -y 40 \
        "exec env TERM=xterm-256color XDG_STATE_HOME='$state' KVQ_THREADS=$KVQ_THREADS '$kv' '$tr' 2>'$log'"
    pid=$(tmux -S "$sock" display-message -p -t scale '#{pane_pid}' 2>/dev/null)
    local deadline=$(( ${t0%.*} + SCALE_TIMEOUT ))
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
        if read -r st 2>/dev/null </proc/$pid/stat; then
            st=${st##*) }
            read -r _ _ _ _ _ _ _ _ _ _ _ k v _ <<<"$st"
            [ -n "$v" ] && ticks=$(( k + v ))
        fi
        if [ -r /proc/$pid/status ]; then
            while read -r k v u; do
                [ "$k" = RssAnon: ] && { [ "$v" -gt "$peak" ] && peak=$v; break; }
            done </proc/$pid/status 2>/dev/null
        fi
        scr=$(tmux -S "$sock" capture-pane -p -t scale 2>/dev/null)
        now=$EPOCHREALTIME
        if [ "$FIRST" = - ] && grep -qF "layers x kv heads" <<<"$scr"; then
            FIRST=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
        fi
        if [ "$FIRST" != - ] && [ "$FILLED" = - ] && ! grep -qF "   ..." <<<"$scr"; then
            FILLED=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
        fi
        if grep -qF "key statistics of" <<<"$scr" && grep -qF " ready (" <<<"$scr"; then
            SETTLED=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
            break
        fi
        grep -qE "(NaN|Inf) at head|cannot start" <<<"$scr" && { printf '%s\n' "$scr" >>"$log"; RC=1; break; }
        if [ "${now%.*}" -ge "$deadline" ]; then RC=124; break; fi
        sleep "$SCALE_SAMPLE_S"
    done
    [ -n "$scr" ] && printf '%s\n' "$scr" >>"$log"
    [ "$FILLED" = - ] && FILLED=$SETTLED
    tmux -S "$sock" kill-server >/dev/null 2>&1
    rm -rf "$state" "$sock"
    CPU=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')
    PEAK_KB=$peak
    [ "$SETTLED" = - ] && [ "$RC" = 0 ] && RC=1
}

rows=()
for tr in $SCALE_TRACES; do
    shape=$(shape_of "$tr") || { echo "scale-check: trace '$tr' unknown, expected S1, S2 or S3" >&2; exit 2; }
    f=$SCALE_DIR/$tr.safetensors
    if [ ! -s "$f" ]; then
        echo "== making $f ($shape)" >&2
        # shellcheck disable=SC2086
        "$PY" "$here/make_trace.py" --out "$f" $shape --queries "$(( ${SCALE_QUERIES:-256} ))" >&2 || exit 1
    fi
    gb=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.2f", b / 1e9 }')
    for c in $SCALE_CMDS; do
        log=$SCALE_DIR/$tr.$c.log
        load=$(cut -d' ' -f1 /proc/loadavg)
        status=ok
        if [ "$c" = studio ]; then
            echo "== $tr: kvstudio $f (studio in tmux)" >&2
            run_studio "$log" "$f"
            [ "$RC" = 124 ] && status="not settled in ${SCALE_TIMEOUT} s"
            [ "$RC" != 0 ] && [ "$RC" != 124 ] && status="failed (see $log)"
            what="studio: first screen / screen filled / explorer settled" times="$FIRST s / $FILLED s / $SETTLED s"
        else
            a=$(args_of "$c") || { echo "scale-check: command '$c' unknown" >&2; exit 2; }
            echo "== $tr: kvstudio $a $f" >&2
            # shellcheck disable=SC2086
            run_one "$log" "$KVSTUDIO" $a "$f"
            [ "$RC" = 124 ] && status="not finished in ${SCALE_TIMEOUT} s"
            [ "$RC" != 0 ] && [ "$RC" != 124 ] && status="failed (exit $RC, see $log)"
            what="\`$a\`" times="$WALL s"
        fi
        mb=$(awk -v k="$PEAK_KB" 'BEGIN { printf "%.0f", k / 1024 }')
        row="| $tr ($gb GB) | $what | $times | $CPU s | $mb MB | $load | $status |"
        echo "$row" >&2
        rows+=("$row")
    done
done

echo
echo "scale-check: KVQ_THREADS=$KVQ_THREADS, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| trace | command | wall | CPU (user + sys) | peak RssAnon | load avg (1 min, at start) | status |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
if [ "${SCALE_KEEP:-0}" != 1 ]; then
    for tr in $SCALE_TRACES; do rm -f "$SCALE_DIR/$tr.safetensors"; done
fi

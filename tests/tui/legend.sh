#!/usr/bin/env bash
# legend.sh — plots read without colour and export like the screen: every
# series has its marker in the legend (LANG=C and UTF-8 under NO_COLOR), a
# configuration keeps its colour across plots and SVG and no two share one,
# SVG ticks are round and an error axis never goes negative, `export svg`
# names the plot it wrote, and the footer follows the view's mode (the
# method picker and the prompt show their own keys).
S=kvstudio-legend
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
start() {   # start ENV...: the studio on the shared state (the runs come back)
    T kill-session -t "$S" 2>/dev/null
    T new-session -d -s "$S" -x 120 -y 40 -c "$PWD" \
        "env $* XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
    wait_for "layers x kv heads"
}
start NO_COLOR=1 TERM=xterm LANG=C LC_ALL=C

step "four runs, three configurations (q8_0: an attention error near 0)"
n=0
for spec in "kivi 2" "turboquant_mse 2" "turboquant_mse 3" "q8_0 8"; do
    set -- $spec
    keys : "method $1" Enter : "bits $2" Enter : run Enter
    n=$((n + 1)); wait_for "run $n: " 60
done

step "LANG=C, NO_COLOR: the legend shows each series' marker, the points carry it"
keys 4; wait_for "kivi v2"
wait_for "-*- kivi v2"
wait_for "-o- turboquant_mse v2"
wait_for "-x- llamacpp:q8_0 v2"
screen | grep -E '^\|.*\|' | cut -c1-80 | grep -q 'o' || fail "no 'o' point in the plot"

step "the footer follows the method picker"
keys 2; wait_for "run history"
for i in $(seq 30); do keys k; done
wait_for "Left/Right change value"
keys Enter; wait_for "key method"
wait_for "Esc back to the form"
screen | tail -2 | grep -q "Left/Right change value" && fail "the picker's footer shows the form's keys"
keys Escape; wait_for "Left/Right change value"
keys :; wait_for "Tab complete"                 # the prompt's keys while it is open
keys Escape; wait_for "Left/Right change value"

step "SVG: round ticks, no negative error axis, same colours as the compression bars"
keys : "export svg $TMP/rd.svg rd" Enter; wait_for "wrote the rate-distortion plot"
keys : "export svg $TMP/bars.svg compression" Enter; wait_for "wrote the compression plot"
keys 4 a; wait_for "vs attention error (keys)"
keys : "export svg $TMP/err.svg" Enter; wait_for "wrote the rate-distortion plot (rd) to"
# y tick labels: text-anchor end, left of the plot
ticks() { sed -n 's/.*text-anchor="end">\([-0-9.e+]*\)<\/text>/\1/p' "$1"; }
for f in rd err; do
    t=$(ticks "$TMP/$f.svg" | tr '\n' ' ')
    [ -n "$t" ] || fail "$f.svg: no y ticks"
    awk -v t="$t" 'function floor(x) { return int(x) - (x < int(x)) }
        function rnd(x) { return x < 0 ? int(x - 0.5) : int(x + 0.5) }
        BEGIN { n = split(t, v, " "); s = v[2] - v[1]; if (n < 3 || s <= 0) exit 1
        m = s / 10 ^ floor(log(s) / log(10) + 1e-9)   # mantissa of the step: 1, 2 or 5
        ok = (m > 0.99 && m < 1.01) || (m > 1.99 && m < 2.01) || (m > 4.99 && m < 5.01)
        for (i = 2; i <= n; i++) { d = v[i] - v[i-1]; if (d < s * 0.999 || d > s * 1.001) ok = 0 }
        for (i = 1; i <= n; i++) { q = v[i] / s; if (q - rnd(q) > 1e-6 || rnd(q) - q > 1e-6) ok = 0 }
        exit ok ? 0 : 1 }' || fail "$f.svg: ticks are not round multiples of 1, 2 or 5 x 10^k: $t"
done
ticks "$TMP/err.svg" | grep -q '^-' && fail "err.svg: negative ticks on an error axis: $(ticks "$TMP/err.svg" | tr '\n' ' ')"
stroke() { sed -n "s/.*<polyline fill=\"none\" stroke=\"\([^\"]*\)\".*/\1/p" "$1" | sed -n "${2}p"; }
fill_of() { grep -A1 ">$2</text>" "$1" | sed -n 's/.*<rect [^>]*fill="\([^"]*\)".*/\1/p' | head -1; }
kv=$(stroke "$TMP/rd.svg" 1) tq=$(stroke "$TMP/rd.svg" 2)
[ -n "$kv" ] && [ "$kv" != "$tq" ] || fail "two configurations share a colour in rd.svg ($kv, $tq)"
[ "$(fill_of "$TMP/bars.svg" "1 kivi k2/v2")" = "$kv" ] || fail "kivi's bar is not the colour of its curve ($kv)"
[ "$(fill_of "$TMP/bars.svg" "3 turboquant_mse k3/v2")" = "$tq" ] || fail "turboquant_mse's bar is not the colour of its curve ($tq)"

step "export svg from the explorer names the plot it writes"
keys 4 l; wait_for "of every run"
keys 1; wait_for "layers x kv heads"
keys : "export svg $TMP/x.svg" Enter; wait_for "wrote the compression plot (compression) to"

step "UTF-8, NO_COLOR: markers in the legend too"
start NO_COLOR=1 TERM=xterm LANG=C.UTF-8 LC_ALL=C.UTF-8
keys 4; wait_for "kivi v2"
wait_for "━*━ kivi v2"
wait_for "━o━ turboquant_mse v2"

step "256 colours: a configuration has one colour in every plot, and no two share one"
start TERM=xterm-256color LANG=C.UTF-8 LC_ALL=C.UTF-8
keys 4; wait_for "kivi v2"
sgr() { T capture-pane -e -p -t "$S" | sed -n "s/.*\x1b\[38;5;\([0-9]*\)m$1.*/\1/p" | head -1; }
lk=$(sgr "kivi v2") lt=$(sgr "turboquant_mse v2")
[ -n "$lk" ] && [ "$lk" != "$lt" ] || fail "legend colours: kivi $lk, turboquant_mse $lt"
keys l; wait_for "of every run"
bar() { T capture-pane -e -p -t "$S" | sed -n "s/.*$1 *\x1b\[38;5;\([0-9]*\)m.*/\1/p" | head -1; }
[ "$(bar "kivi k2\/v2")" = "$lk" ] || fail "kivi's bar ($(bar "kivi k2\/v2")) is not its curve's colour ($lk)"
[ "$(bar "turboquant_mse k2\/v2")" = "$lt" ] || fail "turboquant_mse's bar is not its curve's colour ($lt)"
keys q
echo "PASS: legends without colour, one colour per configuration, round SVG ticks, named exports, contextual footer"

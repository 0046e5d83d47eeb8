#!/usr/bin/env bash
# mouse.sh — the mouse (issue 12, item 14), at 80x24 with TERM=xterm, NO_COLOR
# and LANG=C: clicking a tab switches view, clicking a list row selects it
# (a second click on the selected lab field edits it), clicking a plot
# switch changes plot, the wheel scrolls help, the log overlay and, in a
# view without its own mouse handling (explorer), moves its list.
#
# The clicks are the terminal's own reports: xterm's terminfo (XM) makes
# ncurses ask for SGR 1006 reporting, so a press is ESC [ < 0 ; x ; y M and
# its release the same ending in m (1-based cell), wheel up/down button 64/65.
# send-keys -l writes them into the pane as a terminal would. A studio
# without mouse support reads them as keys (Esc, digits...) and fails here.
S=kvstudio-mouse
. "$(dirname "$0")/lib.sh"

mkdir -p "$TMP/state"
T new-session -d -s "$S" -x 80 -y 24 -c "$PWD" \
    "env TERM=xterm NO_COLOR=1 LANG=C LC_ALL=C XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' $TRACE 2>'$TMP/err'; sleep 600"
wait_for "layers x kv heads"

# at TEXT: "x y" (1-based) of the first cell of TEXT on the screen
at() {
    screen | awk -v t="$1" '{ i = index($0, t); if (i) { print i, NR; found = 1; exit } } END { exit !found }'
}
# click TEXT [DX]: press and release the left button DX cells into TEXT
click() {
    local p; p=$(at "$1") || fail "'$1' is not on the screen"
    set -- $p "${2:-0}"
    keys -l $'\e[<0;'"$(($1 + $3));$2M"$'\e[<0;'"$(($1 + $3));$2m"
}
# tab N: click tab N of the tab bar (at 80 columns only the current tab
# shows its name: "1 2 Lab 3 4 ...")
tab() {
    local x
    x=$(screen | head -1 | awk -v n="$1" '{ if (match($0, "(^| )" n "( |$)")) print RSTART + (substr($0, RSTART, 1) == " ") }')
    [ -n "$x" ] || fail "no tab $1 in the tab bar"
    keys -l $'\e[<0;'"$x;1M"$'\e[<0;'"$x;1m"
}
# wheel up|down TEXT: one notch of the wheel over TEXT
wheel() {
    local b=64; [ "$1" = down ] && b=65
    local p; p=$(at "$2") || fail "'$2' is not on the screen"
    set -- $p
    keys -l $'\e[<'"$b;$1;$2M"
}

step "clicking a tab switches view"
tab 2; wait_for "run history"
tab 5; wait_for "calibrators"
tab 1; wait_for "layers x kv heads"; wait_gone "calibrators"

step "the wheel over a view without its own mouse moves its list as Up/Down do"
wheel down "layers x kv heads"; wait_for "layer 1, kv head 0: keys"
wheel up "layers x kv heads"; wait_for "layer 0, kv head 0: keys"

step "clicking a list row selects it"
tab 5; wait_for "ratequant options"
click "| vecinfer " 3; wait_for "vecinfer options"; wait_gone "ratequant options"

step "clicking the selected lab field again edits it"
tab 2; wait_for "run history"
click " num_residuals " 2; sleep 0.3
screen | grep -qF ":set num_residuals=" && fail "the first click edited a field it had not selected"
click " num_residuals " 2; wait_for ":set num_residuals=2"
keys C-u Escape; wait_gone ":set num_residuals="

step "clicking a plot switch changes plot"
tab 4; wait_for "one curve per configuration"
click " bit allocation " 2; wait_for "per-layer key bit allocation"

step "the wheel scrolls help and the log overlay"
tab 6; wait_for "Keys everywhere"
before=$(screen | grep -oE ' [0-9]+-[0-9]+ of [0-9]+ ' | head -1 | sed 's/^ \([0-9]*\)-.*/\1/')
[ -n "$before" ] || fail "help does not scroll at 80x24"
wheel down "Keys everywhere"; wheel down "commands"; wheel down "commands"
wait_for " $((before + 3))-"
wheel up "commands"; wait_for " $((before + 2))-"
keys : help Enter; wait_for "output log"   # a page of output opens the log
top=$(screen | sed -n 4p)
wheel up "output log"; wheel up "output log"
deadline=$((SECONDS + 10))
while [ "$(screen | sed -n 4p)" = "$top" ]; do
    [ $SECONDS -ge $deadline ] && fail "the wheel did not scroll the log"
    sleep 0.05
done
keys Escape; wait_gone "End scroll; Esc"
keys q
echo "PASS: clicks switch views, select rows and plots; the wheel scrolls"

#!/usr/bin/env bash
# stress.sh — the studio under stress (issue 9): 200 random key presses and
# 20 random resizes (down to 12x5, up to 220x70) through tmux, fixed seed;
# the studio must stay up the whole time, then Escape + q must quit with
# status 0 (answering y when it asks because a job is still running).
S=kvstudio-stress
. "$(dirname "$0")/lib.sh"
alive() { [ ! -e "$TMP/rc" ] || fail "the studio exited (status $(cat "$TMP/rc")) $1"; }

mkdir -p "$TMP/state" "$TMP/cwd"
T new-session -d -s "$S" -x 120 -y 40 -c "$TMP/cwd" \
    "env TERM=xterm-256color XDG_STATE_HOME='$TMP/state' '$KVSTUDIO' '$PWD/$TRACE' 2>'$TMP/err'; echo \$? > '$TMP/rc'; sleep 600"
wait_for "layers x kv heads"

# Everything but q/F10 (the final q must be what quits). Letters, digits
# and punctuation drive views, lists, the : prompt and its history.
KEYS=(Up Down Left Right PageUp PageDown Home End Tab BTab Enter Escape Space BSpace
      F1 F2 F3 F4 F5 F6 1 2 3 4 5 6 7 8 9 0 '?' ':' L h j k l g G r s p n m c x y u
      a b d e f i o t v w z + - . , / '[' ']' '<' '>' R S P N M C)
RANDOM=${STRESS_SEED:-20261122}
resizes=0
for i in $(seq 200); do
    T send-keys -t "$S" "${KEYS[RANDOM % ${#KEYS[@]}]}"
    if [ $((i % 10)) -eq 0 ]; then
        T resize-window -t "$S" -x $((12 + RANDOM % 209)) -y $((5 + RANDOM % 66))
        resizes=$((resizes + 1))
    fi
    [ $((i % 5)) -eq 0 ] && sleep 0.05   # let it draw between bursts
    [ $((i % 25)) -eq 0 ] && alive "after $i keys"
done
[ $resizes -eq 20 ] || fail "made $resizes resizes, expected 20"
sleep 0.5
alive "after 200 keys and 20 resizes"
echo "  - 200 keys, 20 resizes: still running"

T resize-window -t "$S" -x 120 -y 40
for _ in 1 2 3; do T send-keys -t "$S" Escape; sleep 0.1; done
T send-keys -t "$S" q
deadline=$((SECONDS + 20))
until [ -e "$TMP/rc" ]; do
    if screen | grep -qF "quit anyway? y/n"; then T send-keys -t "$S" y; fi
    [ $SECONDS -ge $deadline ] && fail "q did not quit within 20 s"
    sleep 0.1
done
sleep 0.1
[ "$(cat "$TMP/rc")" = 0 ] || fail "exit status $(cat "$TMP/rc"), expected 0"
echo "  - q quits with status 0"
echo "  all passed"

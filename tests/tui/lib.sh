# lib.sh — shared driver for the studio tests (sourced): a private tmux server,
# polling waits with deadlines (never fixed sleeps), failure dumps. Set S first.
# A test that cannot start its terminal (no tmux, no usable ptys) fails at once
# with the reason rather than timing out on an empty screen.
set -u
KVSTUDIO=${KVSTUDIO:-./build/kvstudio}
TRACE=sample_data/traces/code-1k.safetensors
command -v tmux >/dev/null 2>&1 || { echo "FAIL: tmux is not installed (run \`make deps\`)"; exit 1; }
[ -x "$KVSTUDIO" ] || { echo "FAIL: $KVSTUDIO not built"; exit 1; }
KVSTUDIO=$(cd "$(dirname "$KVSTUDIO")" && pwd)/$(basename "$KVSTUDIO")

TMP=$(mktemp -d)
SOCK="$TMP/tmux.sock"
S=${S:-kvstudio-test}
T() { tmux -S "$SOCK" -f /dev/null "$@"; }
cleanup() { T kill-server >/dev/null 2>&1; rm -rf "$TMP"; }
trap cleanup EXIT
# tmux opens a pty per window: without one (no devpts on /dev/pts) new-session
# fails with "create window failed: fork failed: ...". The probe session stays
# (killing the last session would stop the server under the test's first call).
if ! T new-session -d -s kvs-probe 'sleep 3600' 2>"$TMP/probe"; then
    echo "FAIL: cannot start a terminal: tmux new-session: $(head -1 "$TMP/probe") (no usable pty? is devpts mounted on /dev/pts?)"
    exit 1
fi

screen() { T capture-pane -p -t "$S" 2>/dev/null; }
fail() {
    echo "FAIL: $*"
    echo "---- screen ----"
    screen
    [ -s "$TMP/err" ] && { echo "---- stderr ----"; head -c 2000 "$TMP/err"; }
    exit 1
}
# wait_for TEXT [SECONDS]: poll the pane until TEXT shows (fixed string)
wait_for() {
    local text=$1 deadline=$((SECONDS + ${2:-30}))
    until screen | grep -qF -- "$text"; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for '$text'"
        sleep 0.05
    done
}
wait_gone() {
    local text=$1 deadline=$((SECONDS + ${2:-30}))
    while screen | grep -qF -- "$text"; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for '$text' to go away"
        sleep 0.05
    done
}
wait_file() {
    local f=$1 deadline=$((SECONDS + ${2:-30}))
    until [ -s "$f" ]; do
        [ $SECONDS -ge $deadline ] && fail "timed out waiting for $f"
        sleep 0.05
    done
}
keys() { T send-keys -t "$S" "$@"; }
# child_pid PID: a child of PID, read from /proc (procps is not on a bare machine)
child_pid() {
    local f line fields
    for f in /proc/[0-9]*/stat; do
        read -r line <"$f" 2>/dev/null || continue
        read -r -a fields <<<"${line##*) }"   # after "pid (comm) ": state ppid ...
        [ "${fields[1]:-}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; return 0; }
    done
    return 1
}
step() { echo "  - $*"; }

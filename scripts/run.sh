#!/usr/bin/env bash
# Start the sidecar on its embedded SQLite store (its logs go to a file), show the demo against it,
# then leave the sidecar serving until Ctrl-C, which drains it and ends `make run` with status 0.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${TOLLGATE_PORT:-50551}"
LOG="${TOLLGATE_LOG:-tollgate-sidecar.log}"

if [[ -t 0 && -t 1 ]]; then
    # In a terminal, each command gets a process group of its own and the terminal in turn, so Ctrl-C
    # reaches only what runs in front (the demo, then the sidecar): make, in the group Ctrl-C would
    # otherwise reach too, would die of it and end with an error whatever this script returned.
    set -m
fi

"$BIN/tollgate" serve --port "$PORT" --db tollgate.db >>"$LOG" 2>&1 &
sidecar=$!

stop() {
    trap - INT TERM
    echo
    echo "stopping the sidecar (it finishes the calls in flight)..."
    kill -TERM "$sidecar" 2>/dev/null || true
    wait "$sidecar" 2>/dev/null || true
    exit 0
}
# Without a terminal, a Ctrl-C (SIGINT to the whole group) or a SIGTERM arrives here.
trap stop INT TERM

echo "sidecar starting on 127.0.0.1:$PORT (ledger: tollgate.db, logs: $LOG)"
status=0
"$BIN/tollgate" demo --target "127.0.0.1:$PORT" --calls "${DEMO_CALLS:-120}" ${DEMO_ARGS:-} || status=$?
if ((status == 130)); then
    stop  # Ctrl-C during the demo
elif ((status != 0)); then
    echo "the demo failed; the sidecar's log is $LOG" >&2
    kill -TERM "$sidecar" 2>/dev/null || true
    wait "$sidecar" 2>/dev/null || true
    exit 1
fi

cat <<MSG

The sidecar is still serving on 127.0.0.1:$PORT (ledger: tollgate.db, logs: $LOG). In another terminal:
  $BIN/tollgate budget --org demo --user intern       # the soft pool of the second beat
  $BIN/tollgate demo                                  # run the demo again
  $BIN/tollgate audit --db tollgate.db                # recompute every pool from its records
Press Ctrl-C to stop it.
MSG
if [[ $- == *m* ]]; then
    # The sidecar comes to the front: Ctrl-C reaches it alone, and it drains and exits on SIGINT.
    fg %1 >/dev/null || true
    echo
    echo "the sidecar has stopped (it finished the calls in flight)"
    exit 0
fi
# wait returns when a trapped signal arrives; the trap then stops the sidecar and exits 0.
wait "$sidecar"

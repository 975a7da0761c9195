#!/usr/bin/env bash
# Start the sidecar on its embedded SQLite store (its logs go to a file), show the demo against it,
# then leave the sidecar serving until Ctrl-C, which stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${TOLLGATE_PORT:-50551}"
LOG="${TOLLGATE_LOG:-tollgate-sidecar.log}"

"$BIN/tollgate" serve --port "$PORT" --db tollgate.db 2>>"$LOG" &
sidecar=$!

stop() {
    trap - INT TERM
    echo
    echo "stopping the sidecar (it finishes the calls in flight)..."
    kill -TERM "$sidecar" 2>/dev/null || true
    wait "$sidecar" 2>/dev/null || true
    exit 0
}
trap stop INT TERM

echo "sidecar starting on 127.0.0.1:$PORT (ledger: tollgate.db, logs: $LOG)"
if ! "$BIN/tollgate" demo --target "127.0.0.1:$PORT" --calls "${DEMO_CALLS:-120}"; then
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
# wait returns when a trapped signal arrives; the trap then stops the sidecar and exits 0.
wait "$sidecar"

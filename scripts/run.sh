#!/usr/bin/env bash
# Start the sidecar on its embedded SQLite store, run the demo workload against it,
# then leave the sidecar serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${TOLLGATE_PORT:-50551}"

"$BIN/tollgate" serve --port "$PORT" --db tollgate.db &
sidecar=$!
trap 'kill -TERM "$sidecar" 2>/dev/null; wait "$sidecar" 2>/dev/null || true' EXIT INT TERM

"$BIN/tollgate" demo --target "127.0.0.1:$PORT" --calls "${DEMO_CALLS:-400}"

cat <<MSG

The sidecar is still serving on 127.0.0.1:$PORT (ledger: tollgate.db). In another terminal:
  $BIN/tollgate budget --org demo --team platform     # the pools the demo spent from
  $BIN/tollgate demo                                  # run the workload again
  $BIN/tollgate audit --db tollgate.db                # recompute every pool from its records
Press Ctrl-C to stop it.
MSG
wait "$sidecar"

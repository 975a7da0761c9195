#!/usr/bin/env bash
# Build Jaeger v2 (a Go program the telemetry tests run) into the per-machine cache, once. `make test` starts this
# in the background before it sets up Python, so the build overlaps the installs; tests/support/jaeger.py takes the
# same lock and waits for it, or builds it itself when nothing started it. The version is the one go.mod pins.
set -euo pipefail
cd "$(dirname "$0")/../tests/support/jaeger"
command -v go >/dev/null 2>&1 || exit 0
version=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' go.mod)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tollgate-tests"
out="$cache/jaeger-$version"
mkdir -p "$cache"
exec 9>"$cache/jaeger-$version.lock"
flock 9
[[ -f "$out" ]] && exit 0
GO111MODULE=on GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
  go build -trimpath -o "$out.partial" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$out.partial" "$out"

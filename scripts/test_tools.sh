#!/usr/bin/env bash
# What `make test` needs besides Python and make: redis-server and redis-cli (the Redis tests start their own
# servers), Node.js 18 or later with npm (the Node.js client), Go 1.21 or later with gofmt (the Go client, its
# generated stubs, and the Jaeger the telemetry tests build), prometheus and promtool (the shipped alert rules are
# checked and evaluated against a scraped sidecar). Run by `make test` before anything else.
#
# What is missing is installed from Debian's packages when this runs as root on a system with apt-get; otherwise it
# stops at once and prints the command that installs it. Go is not installed here (Debian's is too old on some
# releases): it comes with the machine, on PATH or in /usr/local/go/bin.
set -euo pipefail

MIN_NODE=18
MIN_GO=21  # Go 1.21

major() { # the first number of a version string, or 0
  local digits
  digits=$(sed -E 's/^[^0-9]*([0-9]+).*/\1/' <<<"$1")
  [[ "$digits" =~ ^[0-9]+$ ]] && echo "$digits" || echo 0
}

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || packages+=(redis-tools)
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs)
elif (($(major "$(node --version)") < MIN_NODE)); then
  echo "make test: Node.js $MIN_NODE or later is needed; $(command -v node) is $(node --version)" >&2
  exit 1
fi
command -v npm >/dev/null 2>&1 || packages+=(npm)
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  packages+=(prometheus)
fi

go_problem=""
if ! command -v go >/dev/null 2>&1 || ! command -v gofmt >/dev/null 2>&1; then
  go_problem="go and gofmt are not on PATH"
else
  go_version=$(go env GOVERSION 2>/dev/null || true) # go1.26.8
  go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
  if ! [[ "$go_minor" =~ ^[0-9]+$ ]] || ((go_minor < MIN_GO)); then
    go_problem="$(command -v go) is ${go_version:-of an unknown version}"
  fi
fi
if [[ -n "$go_problem" ]]; then
  echo "make test: Go 1.$MIN_GO or later is needed for the Go client ($go_problem)." >&2
  echo "  Install it from the official archive (https://go.dev/dl/) into /usr/local/go, then run make test again:" >&2
  echo "  tar -C /usr/local -xzf go1.XX.linux-amd64.tar.gz" >&2
  exit 1
fi

if ((${#packages[@]} == 0)); then
  exit 0
fi
install="apt-get update && apt-get install -y ${packages[*]}"
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "make test: ${packages[*]} missing. Install them and run make test again:" >&2
  if command -v apt-get >/dev/null 2>&1; then
    echo "  sudo sh -c '$install'" >&2
  else
    echo "  (Debian's package names) $install" >&2
  fi
  exit 1
fi
echo "make test: installing ${packages[*]} from Debian's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
for tool in redis-server redis-cli node npm prometheus promtool; do
  command -v "$tool" >/dev/null 2>&1 || { echo "make test: $tool is still missing after: $install" >&2; exit 1; }
done

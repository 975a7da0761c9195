"""A real Jaeger (v2, a Go program) of the suite's own: built from the module proxy, run on loopback ports.

The binary is built once from ``tests/support/jaeger/go.mod`` (Jaeger's module at the
pinned version, with every dependency's checksum in ``go.sum``) into the user's cache, so
later runs start it in a second. It stores traces in memory, receives OTLP over gRPC and
answers Jaeger's query API and UI over HTTP.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .sidecar_process import free_port

MODULE = Path(__file__).resolve().parent / "jaeger"
PACKAGE_MODULE = "github.com/jaegertracing/jaeger"


def _pinned_version() -> str:
    """The version go.mod pins (a release of the v1 module, whose cmd/jaeger is Jaeger v2)."""
    for line in (MODULE / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == PACKAGE_MODULE:
            return fields[1]
    raise RuntimeError(f"{MODULE / 'go.mod'} does not require {PACKAGE_MODULE}")


VERSION = _pinned_version()
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore{ui}
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 50ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (str(Path.home() / ".cache") if Path.home().is_dir()
                                               else tempfile.gettempdir())
    return Path(base) / "tollgate-tests"


def binary() -> Path:
    """The Jaeger binary, built on first use (a few minutes: its modules come from the proxy).

    ``make test`` starts the build in the background before it sets up Python
    (``scripts/build_jaeger.sh``, same cache, same lock); a test that needs Jaeger sooner
    waits for that build on the lock.
    """
    out = _cache() / f"jaeger-{VERSION}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / f"jaeger-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():  # built by whoever held the lock before
            return out
        go = shutil.which("go")
        if go is None:
            raise RuntimeError("building Jaeger needs go on PATH (Go 1.21 or later)")
        partial = out.with_suffix(".partial")
        env = {**os.environ, "GO111MODULE": "on", "GOWORK": "off", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
        result = subprocess.run([go, "build", "-trimpath", "-o", str(partial), PACKAGE], cwd=MODULE, env=env,
                                capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"go build {PACKAGE} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        partial.replace(out)
    return out


class Jaeger:
    """One Jaeger process with in-memory storage; ``otlp_endpoint`` for exporters, ``ui`` for people."""

    def __init__(self, workdir: Path, *, ui_assets: Path | None = None) -> None:
        """``ui_assets``: a build of jaeger-ui to serve; a Jaeger built from its Go module has none of its own."""
        self.workdir = workdir
        self.ui_assets = ui_assets
        self.ports = {name: free_port() for name in ("otlp", "query", "query_grpc", "health")}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "jaeger.log"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp']}"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['query']}"

    def start(self) -> Jaeger:
        config = self.workdir / "jaeger.yaml"
        ui = f"\n    ui:\n      assets_path: {self.ui_assets.resolve()}" if self.ui_assets is not None else ""
        config.write_text(CONFIG.format(ui=ui, **self.ports))
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen([str(binary()), "--config", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jaeger exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                self.get("/api/services")
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"jaeger did not answer on {self.ui} within 60 s:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.ui + path, timeout=5) as response:
            return json.load(response)

    def trace(self, trace_id: str, *, spans: int, timeout: float = 20.0) -> dict[str, Any]:
        """The trace as Jaeger's query API gives it, once it holds at least ``spans`` spans."""
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                data = self.get(f"/api/traces/{trace_id}").get("data") or []
            except urllib.error.HTTPError as exc:  # 404 until the first span is stored
                if exc.code != 404:
                    raise
                data = []
            if data:
                found = data[0]
                if len(found["spans"]) >= spans:
                    return found
            time.sleep(0.1)
        raise AssertionError(f"Jaeger holds {len(found.get('spans', []))} spans of trace {trace_id}, "
                             f"expected {spans}:\n{json.dumps(found)[:2000]}")

    def __enter__(self) -> Jaeger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tags(span: dict[str, Any]) -> dict[str, Any]:
    """A span's tags (its attributes, and what Jaeger derives from its status and kind) by key."""
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


if __name__ == "__main__":
    print(binary())

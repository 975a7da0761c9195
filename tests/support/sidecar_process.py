"""Run a real sidecar process for a test: its own config file, port, ledger file and logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.catalog import suite_config_data

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The default config, changed by ``edit``, written to ``path``."""
    data = suite_config_data()
    # Many sidecars share a test machine: metrics only where a test asks for them.
    data["telemetry"] = {"metrics_port": 0}
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def redis_store(url: str) -> dict[str, Any]:
    """A ``store`` config section on Redis at ``url``, under a key prefix of its own."""
    return {"kind": "redis", "url": url, "timeout": "2s", "key_prefix": f"t{uuid.uuid4().hex[:10]}"}


class SidecarProcess:
    """``tollgate serve`` in a child process, on a free loopback port."""

    def __init__(self, tmp: Path, *, config: Path | None = None, db: Path | None = None,
                 unix_socket: Path | None = None, store: str | None = "sqlite",
                 env: dict[str, str] | None = None, credentials: grpc.ChannelCredentials | None = None) -> None:
        """``store``: ``sqlite`` (on ``db``), ``memory``, or ``None`` for what the config says."""
        self.extra_env = env or {}
        self.credentials = credentials
        """For a TLS listener: what the readiness probe connects with."""
        self.tmp = tmp
        self.config = config or write_config(tmp / "tollgate.yaml")
        self.db = db or tmp / "ledger.db"
        self.unix_socket = unix_socket
        self.store = store
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / f"sidecar-{self.port}.log"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> SidecarProcess:
        args = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(self.config),
                "--port", str(self.port)]
        if self.store == "sqlite":
            args += ["--db", str(self.db)]
        elif self.store == "memory":
            args += ["--store", "memory"]
        if self.unix_socket is not None:
            args += ["--unix-socket", str(self.unix_socket)]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"), **self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        channel = (grpc.secure_channel(self.target, self.credentials) if self.credentials is not None
                   else grpc.insecure_channel(self.target))
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"sidecar not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._log.close()

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def audit(config: Path, db: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``tollgate audit`` on a ledger file, or on the config's store, as an operator would run it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    where = ["--db", str(db)] if db is not None else []
    return subprocess.run(
        [sys.executable, "-m", "tollgate.cli", "audit", *where, "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )

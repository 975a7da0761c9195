"""A real ``redis-server`` of the test suite's own, on a free loopback port.

The machine may already run a Redis on 6379; the suite never uses it, so fault
tests can kill and restart their own server.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from tests.support.sidecar_process import free_port


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


@dataclass(frozen=True, slots=True)
class RedisTls:
    """PEM files for a TLS-only server: its certificate and key, and the CA clients must trust."""

    cert: Path
    key: Path
    ca: Path


class RedisServer:
    """One ``redis-server`` process without persistence, restartable on the same port.

    With ``tls`` it listens on TLS only (no plaintext port) and does not ask clients
    for certificates.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, args: tuple[str, ...] = (),
                 tls: RedisTls | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.args = args
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """With TLS: ``rediss://`` trusting the test CA."""
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.tls.ca.resolve()))}"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A client of this server (over TLS, trusting the test CA, when it has TLS)."""
        if self.tls is not None:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, ssl=True,
                               ssl_ca_certs=str(self.tls.ca))
        return redis.Redis(port=self.port, socket_timeout=timeout)

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no"]

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", *self._listen_args(), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with self.client(timeout=0.2) as client:
                    if client.ping():
                        return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

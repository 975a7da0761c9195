"""A real 3-master Redis Cluster of the test suite's own, on free loopback ports.

Three ``redis-server`` processes in cluster mode, joined by ``redis-cli --cluster
create`` with no replicas, so every slot has exactly one master and the ledger's
per-org hash tags spread the orgs over the three nodes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support.sidecar_process import free_port

_BUS_OFFSET = 10_000  # a cluster node also listens on port + 10000 for the cluster bus


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port(taken: set[int]) -> int:
    """A free port whose bus port is free too and still a valid port (redis-server refuses >55535)."""
    for _ in range(1000):
        port = free_port()
        bus = port + _BUS_OFFSET
        # free_port releases each port before the next pick, so picks can coincide.
        clashes = {port, bus} & {p + d for p in taken for d in (0, _BUS_OFFSET)}
        if bus <= 65535 and not clashes and _bindable(bus):
            return port
    raise RuntimeError("no free loopback port pair for a cluster node")


def redis_cluster_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


class RedisCluster3:
    """Three cluster-mode masters covering all 16384 slots; stopped on exit."""

    def __init__(self, workdir: Path, *, startup_timeout: float = 20.0) -> None:
        self.workdir = workdir
        self.ports: list[int] = []
        for _ in range(3):
            self.ports.append(_cluster_port(set(self.ports)))
        self.startup_timeout = startup_timeout
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A seed node; the cluster client discovers the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def node(self, port: int) -> redis.Redis:
        """A plain client on one node, for looking at what that node holds."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)

    def start(self) -> RedisCluster3:
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait(lambda p=port: self._ping(p), f"redis-server did not start on port {port}")
            create = subprocess.run(
                ["redis-cli", "--cluster", "create", *self.addresses, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, timeout=self.startup_timeout, check=False,
            )
            if create.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout.decode()}"
                                   f"{create.stderr.decode()}")
            for port in self.ports:
                self._wait(lambda p=port: self._state_ok(p), f"cluster_state never became ok on port {port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
             "--cluster-node-timeout", "2000", "--dir", str(node_dir), "--logfile", str(node_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))

    def _wait(self, ready: Callable[[], bool], message: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for port, proc in zip(self.ports, self.procs, strict=False):
                if proc.poll() is not None:
                    log = self.workdir / str(port) / "redis.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"the cluster redis-server on port {port} exited with {proc.returncode}:\n"
                                       f"{tail}")
            if ready():
                return
            time.sleep(0.05)
        raise TimeoutError(message)

    def _ping(self, port: int) -> bool:
        try:
            with self.node(port) as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    def _state_ok(self, port: int) -> bool:
        try:
            with self.node(port) as client:
                return client.execute_command("CLUSTER INFO").get("cluster_state") == "ok"
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> RedisCluster3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

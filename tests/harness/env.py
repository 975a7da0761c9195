"""The processes of one run: sidecars, the store under them, and the proxies in between.

Kinds:

- ``redis``: 3 sidecars on one ``redis-server`` with AOF (``appendfsync always``), each
  through its own ``FaultyProxy``.
- ``failopen``: the same, with ``store.fail_open_allowance`` set on every sidecar.
- ``cluster``: 3 sidecars on a 3-master Redis Cluster (AOF on every node), no proxy
  (a cluster client follows the nodes' own addresses).
- ``sqlite``: one sidecar on its embedded ledger file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness.proxy import FaultyProxy
from tests.harness.store import StoreView, read_redis, read_sqlite
from tests.harness.tenants import ALLOWANCE_USD, harness_config
from tests.support.redis_cluster import RedisCluster3
from tests.support.redis_server import RedisServer
from tests.support.sidecar_process import ROOT, SidecarProcess, write_config

__all__ = ["KINDS", "Environment", "HarnessSidecar"]

KINDS = ("redis", "sqlite", "failopen", "cluster")
STORE_TIMEOUT = "250ms"
AOF = ("--appendonly", "yes", "--appendfsync", "always")


class HarnessSidecar(SidecarProcess):
    """A sidecar that may be (re)started while its store is down: ready once it answers health at all."""

    def __init__(self, tmp: Path, index: int, *, config: Path, db: Path | None = None) -> None:
        super().__init__(tmp, config=config, db=db, store="sqlite" if db is not None else None)
        self.index = index
        self.stopped = False
        """SIGSTOPped by the nemesis."""
        self.restarts = 0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise TimeoutError(f"sidecar {self.index} not listening after {timeout}s:\n{self.logs()[-4000:]}")

    def serving(self) -> bool:
        if self.proc is None or self.proc.poll() is not None or self.stopped:
            return False
        with grpc.insecure_channel(self.target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped process cannot be waited for otherwise
        super().kill()

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGCONT)
        super().stop()


class Environment:
    """Start, fault, heal and read one run's processes."""

    def __init__(self, kind: str, workdir: Path, *, sidecars: int = 3) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown store kind {kind!r}: one of {', '.join(KINDS)}")
        self.kind = kind
        self.workdir = workdir
        self.n_sidecars = 1 if kind == "sqlite" else sidecars
        self.prefix = f"h{uuid.uuid4().hex[:8]}"
        self.redis: RedisServer | None = None
        self.cluster: RedisCluster3 | None = None
        self.proxies: list[FaultyProxy] = []
        self.sidecars: list[HarnessSidecar] = []
        self.db = workdir / "ledger.db"
        self.audit_config = workdir / "audit.yaml"
        self.redis_down = False
        """Killed by the nemesis and not yet restarted."""
        self.stopped_nodes: set[int] = set()

    @property
    def fail_open(self) -> bool:
        return self.kind == "failopen"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Environment:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.kind == "sqlite":
            config = write_config(self.workdir / "sidecar.yaml", harness_config({"kind": "sqlite"}))
            self.audit_config = config
            sidecar = HarnessSidecar(self.workdir / "s0", 0, config=config, db=self.db)
            sidecar.tmp.mkdir(exist_ok=True)
            self.sidecars.append(sidecar)
        elif self.kind == "cluster":
            self.cluster = _AofCluster(self.workdir / "cluster").start()
            store = {"kind": "redis", "url": self.cluster.url, "cluster": True, "timeout": STORE_TIMEOUT,
                     "key_prefix": self.prefix}
            config = write_config(self.workdir / "sidecar.yaml", harness_config(store))
            self.audit_config = config
            for i in range(self.n_sidecars):
                (self.workdir / f"s{i}").mkdir(exist_ok=True)
                self.sidecars.append(HarnessSidecar(self.workdir / f"s{i}", i, config=config))
        else:
            self.redis = RedisServer(self.workdir / "redis", args=AOF).start()
            direct = {"kind": "redis", "url": self.redis.url, "timeout": "5s", "key_prefix": self.prefix}
            write_config(self.audit_config, harness_config(direct))
            for i in range(self.n_sidecars):
                proxy = FaultyProxy(self.redis.port, name=f"proxy{i}").start()
                self.proxies.append(proxy)
                store = {"kind": "redis", "url": f"redis://127.0.0.1:{proxy.port}/0", "timeout": STORE_TIMEOUT,
                         "key_prefix": self.prefix}
                if self.fail_open:
                    store["fail_open_allowance"] = ALLOWANCE_USD
                tmp = self.workdir / f"s{i}"
                tmp.mkdir(exist_ok=True)
                config = write_config(tmp / "sidecar.yaml", harness_config(store))
                self.sidecars.append(HarnessSidecar(tmp, i, config=config))
        for sidecar in self.sidecars:
            sidecar.start(timeout=30)
        self.wait_serving(30)

    def stop(self) -> None:
        def stop_one(sidecar: HarnessSidecar) -> None:
            with contextlib.suppress(Exception):
                sidecar.stop()

        threads = [threading.Thread(target=stop_one, args=(s,)) for s in self.sidecars]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for proxy in self.proxies:
            proxy.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                if self.redis.proc is not None and self.redis.proc.poll() is None:
                    self.redis.proc.send_signal(signal.SIGCONT)
                self.redis.stop()
        if self.cluster is not None:
            for proc in self.cluster.procs:
                with contextlib.suppress(Exception):
                    proc.send_signal(signal.SIGCONT)
            self.cluster.stop()

    def wait_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.serving() for s in self.sidecars):
                return True
            time.sleep(0.1)
        return False

    # -- faults (called by the nemesis, from a worker thread) -----------------------------------

    def redis_signal(self, sig: signal.Signals) -> None:
        if self.redis is not None and self.redis.proc is not None and self.redis.proc.poll() is None:
            self.redis.proc.send_signal(sig)

    def redis_kill(self) -> None:
        if self.redis is not None and self.redis.proc is not None and self.redis.proc.poll() is None:
            self.redis.proc.send_signal(signal.SIGCONT)
            self.redis.kill()
            self.redis_down = True

    def redis_restart(self) -> None:
        if self.redis is not None and self.redis_down:
            self.redis.start()  # same port, same AOF directory
            self.redis_down = False

    def node_signal(self, index: int, sig: signal.Signals) -> None:
        if self.cluster is not None:
            proc = self.cluster.procs[index]
            if proc.poll() is None:
                proc.send_signal(sig)
            if sig == signal.SIGSTOP:
                self.stopped_nodes.add(index)
            elif sig == signal.SIGCONT:
                self.stopped_nodes.discard(index)

    def sidecar_kill(self, index: int) -> None:
        sidecar = self.sidecars[index]
        if sidecar.alive():
            sidecar.kill()
        sidecar.stopped = False

    def sidecar_restart(self, index: int) -> None:
        sidecar = self.sidecars[index]
        if not sidecar.alive():
            sidecar.start(timeout=30)
            sidecar.restarts += 1

    def sidecar_signal(self, index: int, sig: signal.Signals) -> None:
        sidecar = self.sidecars[index]
        sidecar.signal(sig)
        sidecar.stopped = sig == signal.SIGSTOP

    def heal(self) -> None:
        """Every fault undone: nothing stopped, nothing down, every proxy clear."""
        self.redis_signal(signal.SIGCONT)
        self.redis_restart()
        for index in list(self.stopped_nodes):
            self.node_signal(index, signal.SIGCONT)
        for proxy in self.proxies:
            proxy.heal()
        for i, sidecar in enumerate(self.sidecars):
            if sidecar.stopped:
                self.sidecar_signal(i, signal.SIGCONT)
            if not sidecar.alive():
                self.sidecar_restart(i)

    # -- reading --------------------------------------------------------------------------------

    def read(self) -> StoreView:
        if self.kind == "sqlite":
            return read_sqlite(self.db)
        if self.cluster is not None:
            return read_redis([("127.0.0.1", p) for p in self.cluster.ports], self.prefix)
        assert self.redis is not None
        return read_redis([("127.0.0.1", self.redis.port)], self.prefix)

    def audit(self) -> tuple[bool, str]:
        """``tollgate audit`` as an operator runs it: exit status 0 and ``OK``."""
        env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
        where = ["--db", str(self.db)] if self.kind == "sqlite" else []
        done = subprocess.run(
            [sys.executable, "-m", "tollgate.cli", "audit", *where, "--config", str(self.audit_config)],
            capture_output=True, text=True, env=env, timeout=120,
        )
        out = (done.stdout + done.stderr).strip()
        return done.returncode == 0 and out.splitlines()[-1:] == ["OK"], out

    def sidecar_logs(self) -> list[str]:
        return [s.logs() for s in self.sidecars]

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"1 sidecar on {self.db}"
        port = self.redis.port if self.redis else 0
        where = f"cluster {self.cluster.addresses}" if self.cluster else f"redis :{port}"
        extra = f", fail_open_allowance {ALLOWANCE_USD}" if self.fail_open else ""
        return f"{self.n_sidecars} sidecars on {where} (AOF, store.timeout {STORE_TIMEOUT}{extra})"


class _AofCluster(RedisCluster3):
    """The suite's 3-master cluster, each node writing an AOF."""

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *AOF,
             "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
             "--cluster-node-timeout", "5000", "--dir", str(node_dir), "--logfile", str(node_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))

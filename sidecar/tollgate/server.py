"""Process wiring: grpc.aio on uvloop, listeners, health, reflection, expiry sweeps, signals.

Shutdown on SIGTERM or SIGINT: health turns NOT_SERVING first (so probes and
load balancers stop sending), the server stops accepting and gives in-flight calls
the grace period to finish, then the store is closed and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

from .config import Config
from .core import Tollgate
from .errors import StoreUnavailable
from .ledger import BudgetStore, open_store
from .service import TollgateServicer
from .telemetry import Telemetry

__all__ = ["Sidecar", "run", "serve"]

log = logging.getLogger("tollgate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TollgateService"].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class Sidecar:
    """A running sidecar: the server, its domain and its store."""

    config: Config
    server: grpc.aio.Server
    gate: Tollgate
    store: BudgetStore
    health: health.HealthServicer
    telemetry: Telemetry
    addresses: list[str] = field(default_factory=list)
    _sweeper: asyncio.Task[None] | None = None
    _serving: bool | None = None

    async def sweep_once(self) -> None:
        """Expire due reservations; health follows whether the store answered."""
        try:
            expired = await self.store.expire_due()
        except StoreUnavailable as exc:
            await self._set_serving(False, str(exc))
            return
        except Exception:
            log.exception("expiry sweep failed; retrying next interval")
            return
        await self._set_serving(True, "")
        if expired:
            self.telemetry.expired(expired)
            log.info("expired %d reservations", expired)

    async def sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.sweep_once()

    async def _set_serving(self, serving: bool, why: str) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)
        if serving:
            log.info("budget store reachable: serving")
        else:
            log.error("budget store unreachable, failing closed: %s", why)

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, stop accepting, finish in-flight calls, close the store."""
        grace = self.config.server.grace_period_s if grace is None else grace
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.server.stop(grace)
        await self.store.close()
        self.telemetry.shutdown()


async def serve(config: Config, store: BudgetStore | None = None) -> Sidecar:
    """Start a sidecar for ``config`` and return once it is listening."""
    store = store if store is not None else open_store(config)
    gate = Tollgate(config, store)
    telemetry = Telemetry()
    server = grpc.aio.server(
        interceptors=[telemetry.interceptor()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_TollgateServiceServicer_to_server(TollgateServicer(gate, telemetry), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    sc = config.server
    addresses = []
    if sc.port or not sc.unix_socket:
        bound = server.add_insecure_port(f"{sc.host}:{sc.port}")
        if bound == 0:
            raise OSError(f"cannot listen on {sc.host}:{sc.port}")
        addresses.append(f"{sc.host}:{bound}")
    if sc.unix_socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sc.unix_socket)
        server.add_insecure_port(f"unix:{sc.unix_socket}")
        addresses.append(f"unix:{sc.unix_socket}")
    await server.start()
    if sc.unix_socket:
        # Only the pod's own user may connect: the socket is a wallet.
        os.chmod(sc.unix_socket, 0o600)
    if config.telemetry.metrics_port:
        try:
            telemetry.serve_metrics(config.telemetry.metrics_host, config.telemetry.metrics_port)
        except OSError as exc:
            # Metrics matter, but not more than budgets: keep serving and say why.
            log.error("cannot serve metrics on %s:%d: %s", config.telemetry.metrics_host,
                      config.telemetry.metrics_port, exc)
    sidecar = Sidecar(config, server, gate, store, health_servicer, telemetry, addresses)
    # Start even when the store is down (a crash loop helps no one): health says
    # NOT_SERVING until the store answers, and every money RPC fails closed meanwhile.
    await sidecar.sweep_once()
    sidecar._sweeper = asyncio.create_task(sidecar.sweep_forever(config.reservations.sweep_interval_ms / 1000))
    return sidecar


async def _main(config: Config) -> None:
    sidecar = await serve(config)
    log.info("tollgate listening on %s (store: %s)", ", ".join(sidecar.addresses), _store_label(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight calls for up to %.1fs", config.server.grace_period_s)
    await sidecar.stop()
    log.info("stopped")


def _store_label(config: Config) -> str:
    return config.store.kind if config.store.kind == "memory" else f"sqlite {config.store.path}"


def run(config: Config) -> None:
    """Run the sidecar on uvloop until SIGTERM or SIGINT."""
    import uvloop

    uvloop.run(_main(config))

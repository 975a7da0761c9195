"""Process wiring: grpc.aio on uvloop, listeners, health, reflection, expiry sweeps, signals.

Shutdown on SIGTERM or SIGINT: health turns NOT_SERVING first (so probes and
load balancers stop sending), the server stops accepting and gives in-flight calls
the grace period to finish, then the store is closed and the process exits 0.

With ``server.health_port`` set, a second server on ``server.health_host`` serves
only grpc.health.v1, from the same servicer: kubelet gRPC probes connect to the pod
IP, while the API stays on loopback. The ``liveness`` health service is SERVING
while the process runs, whatever the store says, so a liveness probe on it does not
restart a sidecar that is waiting for its store (``""`` follows the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tollgate_client.v1 import tollgate_pb2 as pb

from ..app import Tollgate
from ..app.admin import Admin
from ..app.stores import open_override_store, open_quality_store, open_store
from ..config import Config, TlsConfig
from ..errors import ConfigError, StoreUnavailable
from ..ledger import BudgetStore
from ..routing.check import routing_report
from ..telemetry import Telemetry
from .handlers import AdminServicer, TollgateServicer
from .interceptor import TelemetryInterceptor
from .parse import add_to_server

__all__ = ["Sidecar", "run", "serve"]

log = logging.getLogger("tollgate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TollgateService"].full_name
ADMIN_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AdminService"].full_name
LIVENESS_SERVICE = "liveness"
"""Health service name that is SERVING while the process runs, for liveness and startup probes."""


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
    health_server: grpc.aio.Server | None = None
    """The health-only listener (``server.health_port``), sharing ``health``."""
    health_address: str = ""
    servicer: TollgateServicer | None = None
    admin: AdminServicer | None = None
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
        with contextlib.suppress(StoreUnavailable):
            # Every sidecar's feedback, and the overrides any of them decided.
            await self.gate.quality.refresh()
            if self.admin is not None:
                await self.admin.admin.refresh()
        if self.gate.decision_log is not None:
            self.gate.decision_log.flush()

    def reload(self, load: Callable[[], Config]) -> bool:
        """Re-read the config (SIGHUP): validated in full before anything is swapped.

        An invalid file, or one that changes what needs a restart, leaves the running
        config in place and says why in the log.
        """
        try:
            config = load()
            changed = self.gate.reload(config)
        except ConfigError as exc:
            log.error("config reload refused, the running config stays: %s", exc)
            return False
        self.config = config
        log.info("config reloaded from %s; changed: %s", config.source, ", ".join(changed) or "nothing")
        return True

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
        if self.health_server is not None:
            # Open through the drain, so probes read NOT_SERVING rather than a refused connection.
            await self.health_server.stop(None)
        await self.store.close()
        if self.admin is not None:
            await self.admin.admin.store.close()
        if self.gate.decision_log is not None:
            self.gate.decision_log.close()
        self.telemetry.shutdown()


async def serve(config: Config, store: BudgetStore | None = None) -> Sidecar:
    """Start a sidecar for ``config`` and return once it is listening."""
    store = store if store is not None else open_store(config)
    gate = Tollgate(config, store, open_quality_store(config))
    telemetry = Telemetry(watched_pools=config.telemetry.watch_pools)
    telemetry.watch_quality(gate.quality)
    server = grpc.aio.server(
        interceptors=[TelemetryInterceptor(telemetry)],
        options=[
            ("grpc.max_receive_message_length", config.limits.max_message_bytes),
            ("grpc.max_send_message_length", config.limits.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = TollgateServicer(gate, telemetry)
    add_to_server(servicer, server, pb.DESCRIPTOR.services_by_name["TollgateService"])
    admin = Admin(gate, open_override_store(config))
    admin_servicer = AdminServicer(admin, telemetry)
    add_to_server(admin_servicer, server, pb.DESCRIPTOR.services_by_name["AdminService"])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    sc = config.server
    addresses = []
    if sc.port or not sc.unix_socket:
        address = f"{sc.host}:{sc.port}"
        bound = (server.add_secure_port(address, _server_credentials(sc.tls)) if sc.tls is not None
                 else server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"cannot listen on {sc.host}:{sc.port}")
        addresses.append(f"{sc.host}:{bound}")
    if sc.unix_socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sc.unix_socket)
        server.add_insecure_port(f"unix:{sc.unix_socket}")
        addresses.append(f"unix:{sc.unix_socket}")
    health_server, health_address = None, ""
    if sc.health_port:
        # Health only: no TollgateService, no reflection, on an address the kubelet can reach.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        if health_server.add_insecure_port(f"{sc.health_host}:{sc.health_port}") == 0:
            raise OSError(f"cannot listen for health checks on {sc.health_host}:{sc.health_port}")
        health_address = f"{sc.health_host}:{sc.health_port}"
    tc = config.telemetry
    if tc.metrics_port:
        # Before the API starts: a second sidecar on the host must not run without metrics unnoticed.
        try:
            telemetry.serve_metrics(tc.metrics_host, tc.metrics_port)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {tc.metrics_host}:{tc.metrics_port} ({exc.strerror or exc}); "
                          "choose another with --metrics-port or telemetry.metrics_port, or 0 to serve none") from exc
    await health_servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    if health_server is not None:
        await health_server.start()
    if sc.unix_socket:
        # Only the pod's own user may connect: the socket is a wallet.
        os.chmod(sc.unix_socket, 0o600)
    sidecar = Sidecar(config, server, gate, store, health_servicer, telemetry, addresses, health_server,
                      health_address, servicer, admin_servicer)
    # Start even when the store is down (a crash loop helps no one): health says
    # NOT_SERVING until the store answers, and every money RPC fails closed meanwhile.
    await sidecar.sweep_once()
    sidecar._sweeper = asyncio.create_task(sidecar.sweep_forever(config.reservations.sweep_interval_ms / 1000))
    return sidecar


def telemetry_destinations(config: Config, telemetry: Telemetry) -> str:
    """Where this sidecar's traces and metrics go, for the start-up log."""
    tc = config.telemetry
    metrics = f"metrics on http://{tc.metrics_host}:{tc.metrics_port}/metrics" if tc.metrics_port else "metrics off"
    if telemetry.tracing:
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
        traces = f"traces to {endpoint} over OTLP as service {telemetry.service_name!r}"
    else:
        traces = "traces off (set OTEL_EXPORTER_OTLP_ENDPOINT to export them)"
    return f"{metrics}; {traces}"


def _server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS for the API listener; with a client CA, clients must present a certificate it signed."""
    ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def _main(config: Config, load: Callable[[], Config] | None) -> None:
    sidecar = await serve(config)
    # What start-up loaded (code, config, catalog, classifier, encodings) lives as long as the
    # process: move it out of the cyclic collector's sight, so that a full collection walks
    # only what the calls since created rather than pausing a call for tens of milliseconds.
    gc.collect()
    gc.freeze()
    log.info("tollgate listening on %s (store: %s)", ", ".join(sidecar.addresses), _store_label(config))
    for note in config.catalog.deprecation_notes(datetime.now(UTC).date()):
        log.warning("%s", note)
    warnings, facts = routing_report(config, sidecar.gate.classifier)
    for line in warnings:
        log.warning("%s", line)
    for line in facts:
        log.info("%s", line)
    if sidecar.health_address:
        log.info("health checks (grpc.health.v1 only) on %s", sidecar.health_address)
    log.info("%s", telemetry_destinations(config, sidecar.telemetry))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if load is not None:
        loop.add_signal_handler(signal.SIGHUP, sidecar.reload, load)
    await stop.wait()
    log.info("stopping: draining in-flight calls for up to %.1fs", config.server.grace_period_s)
    await sidecar.stop()
    log.info("stopped")


def _store_label(config: Config) -> str:
    # Never the Redis URL: it may carry a password.
    return f"sqlite {config.store.path}" if config.store.kind == "sqlite" else config.store.kind


def run(config: Config, load: Callable[[], Config] | None = None) -> None:
    """Run the sidecar on uvloop until SIGTERM or SIGINT; on SIGHUP, reload the config through ``load``."""
    import uvloop

    uvloop.run(_main(config, load))

"""The health-only listener (``server.health_port``) that Kubernetes gRPC probes connect to.

The API listens on loopback; the kubelet probes the pod IP. A second server in the
same process serves grpc.health.v1 alone, from the same servicer, so SIGTERM's
NOT_SERVING shows there too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.sidecar_process import ROOT, SidecarProcess, free_port, write_config
from tollgate.cli import STORE_URL_ENV
from tollgate.cli._group import Args
from tollgate.cli._local import _load, serve
from tollgate.config import parse_config
from tollgate.errors import ConfigError
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(reply.status)


def _config(tmp_path: Path, health_port: int, **server: Any) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["server"].update(health_port=health_port, **server)
        # Routing is not under test here: keep these sidecars off the classifier model file.
        data["routing"]["classifier"] = "none"

    return write_config(tmp_path / "tollgate.yaml", edit)


def test_health_port_serves_only_health_and_reports_not_serving_on_sigterm(tmp_path: Path) -> None:
    health_port = free_port()
    # A short grace period keeps the drain window (during which a Watch holds the API server busy) brief.
    config = _config(tmp_path, health_port, grace_period="2s")
    sidecar = SidecarProcess(tmp_path, config=config).start()
    health_target = f"127.0.0.1:{health_port}"
    try:
        assert _check(health_target) == SERVING
        assert _check(health_target, "liveness") == SERVING
        assert _check(health_target, "tollgate.v1.TollgateService") == SERVING
        assert _check(sidecar.target, "liveness") == SERVING

        with grpc.insecure_channel(health_target) as channel:
            # The API is not served on the health port: only loopback callers can spend.
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.TollgateServiceStub(channel).GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")),
                                                               timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            # Nor is reflection.
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            with pytest.raises(grpc.RpcError) as no_reflection:
                list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=2))
            assert no_reflection.value.code() == grpc.StatusCode.UNIMPLEMENTED

        # The API port still answers, so the listener is in addition to it.
        with grpc.insecure_channel(sidecar.target) as channel:
            pb_grpc.TollgateServiceStub(channel).GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")),
                                                           timeout=2)

        # An open Watch on the API server is an in-flight call: SIGTERM's drain lasts the grace period,
        # and meanwhile the health port must say NOT_SERVING.
        api_channel = grpc.insecure_channel(sidecar.target)
        watch = health_pb2_grpc.HealthStub(api_channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == SERVING
        assert sidecar.proc is not None
        sidecar.proc.send_signal(signal.SIGTERM)
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while sidecar.proc.poll() is None and time.monotonic() < deadline:
            try:
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(_check(health_target)))
            except grpc.RpcError as exc:
                seen.append(exc.code().name)
            time.sleep(0.05)
        # The Watch on the API port saw the same servicer turn NOT_SERVING.
        try:
            assert next(watch).status == NOT_SERVING
        except grpc.RpcError as exc:  # or the drain ended the stream first
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        api_channel.close()
        code = sidecar.proc.wait(15)
    finally:
        sidecar.stop()
    assert code == 0, sidecar.logs()
    # Possibly SERVING until the signal handler runs; then NOT_SERVING through the drain; then closed.
    first_down = next(i for i, s in enumerate(seen) if s != "SERVING")
    assert "SERVING" not in seen[first_down:], seen
    assert "NOT_SERVING" in seen, seen
    assert set(seen[first_down:]) <= {"NOT_SERVING", "UNAVAILABLE", "CANCELLED"}, seen
    with pytest.raises(grpc.RpcError) as closed:
        _check(health_target)
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "health checks (grpc.health.v1 only) on 0.0.0.0:" in sidecar.logs()


def test_health_port_flag_and_liveness_while_the_store_is_down(tmp_path: Path) -> None:
    """``--health-port`` turns the listener on; ``liveness`` stays SERVING while ``""`` follows the store."""
    dead_redis = free_port()  # nothing listens there

    def edit(data: dict[str, Any]) -> None:
        data["store"].update(kind="redis", url=f"redis://127.0.0.1:{dead_redis}/0", timeout="100ms")
        data["routing"]["classifier"] = "none"

    config = write_config(tmp_path / "tollgate.yaml", edit)
    port, health_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    env.pop(STORE_URL_ENV, None)
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", str(port),
             "--health-port", str(health_port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )
        try:
            target = f"127.0.0.1:{health_port}"
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    liveness = _check(target, "liveness")
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            assert liveness == SERVING
            assert _check(target) == NOT_SERVING  # fails closed until the store answers: not ready
            assert _check(target, "tollgate.v1.TollgateService") == NOT_SERVING
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def _serve_args(*extra: str) -> Any:
    """The options ``tollgate serve`` would run with, parsed by the command itself."""
    with serve.make_context("serve", list(extra)) as ctx:
        return Args(**ctx.params)


def test_health_port_config_errors_name_the_key() -> None:
    base = yaml.safe_load((ROOT / "sidecar" / "tollgate" / "default.yaml").read_text())

    def parse(**server: Any) -> None:
        data = dict(base, server={**base["server"], **server})
        parse_config(yaml.safe_dump(data), source="t.yaml")

    parse(health_port=50552, health_host="0.0.0.0")
    cases = [
        ({"health_port": 50551}, "t.yaml: server.health_port: 50551 is server.port too"),
        ({"health_port": 9464}, "t.yaml: server.health_port: 9464 is telemetry.metrics_port too"),
        ({"health_port": 70000}, "t.yaml: server.health_port: 70000 is out of range: must be between 0 and 65535"),
        ({"health_port": "50552"}, "t.yaml: server.health_port: expected an integer, got '50552'"),
        ({"health_port": 50552, "health_host": " "}, "t.yaml: server.health_host: expected a listen address"),
        ({"health_hots": "0.0.0.0"}, "t.yaml: server.health_hots: unknown key"),
    ]
    for server, message in cases:
        with pytest.raises(ConfigError) as err:
            parse(**server)
        # The file and the key's line, then the key and the problem.
        assert re.sub(r"^t\.yaml:[0-9]+: ", "t.yaml: ", str(err.value)).startswith(message), str(err.value)
    assert parse_config(yaml.safe_dump(base)).server.health_port == 0  # off unless asked for


def test_serve_flags_and_store_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_URL_ENV, raising=False)
    config = _load(_serve_args("--health-port", "50552"))
    assert (config.server.health_port, config.server.health_host) == (50552, "0.0.0.0")
    with pytest.raises(ConfigError, match=r"--health-port: server.health_port: 70000 is out of range"):
        _load(_serve_args("--health-port", "70000"))
    with pytest.raises(ConfigError, match=r"server.health_port: 50551 is the API port too"):
        _load(_serve_args("--health-port", "50551"))
    with pytest.raises(ConfigError, match=r"server.health_port: 6000 is the API port too"):
        _load(_serve_args("--health-port", "6000", "--port", "6000"))

    monkeypatch.setenv(STORE_URL_ENV, "rediss://tollgate:s3cret@redis.internal:6379/0")
    assert _load(_serve_args()).store.url == "rediss://tollgate:s3cret@redis.internal:6379/0"
    monkeypatch.setenv(STORE_URL_ENV, "https://tollgate:s3cret@redis.internal")
    with pytest.raises(ConfigError) as err:
        _load(_serve_args())
    assert str(err.value) == f"{STORE_URL_ENV}: store.url: expected a redis://, rediss:// or unix:// URL"
    assert "s3cret" not in str(err.value)

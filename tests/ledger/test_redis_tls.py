"""The Redis store over TLS (``rediss://``), against real processes.

The suite's own ``redis-server`` listens on TLS only, with a certificate from a CA
made here. A sidecar whose ``store.url`` trusts that CA (``?ssl_ca_certs=``) spends
through it over gRPC, the spend is in Redis and ``tollgate audit`` balances. A
sidecar that speaks plaintext to the TLS port, or does not trust the CA, fails
closed (UNAVAILABLE, holding nothing), and a CA file that does not exist is
refused at start-up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.redis_server import RedisServer, RedisTls
from tests.support.sidecar_process import ROOT, SidecarProcess, audit, redis_store, write_config
from tollgate.cli import STORE_URL_ENV
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

pytestmark = pytest.mark.redis

C = grpc.StatusCode
HEALTH = health_pb2.HealthCheckResponse
SCOPE = pb.Scope(org_id="tls", team_id="ops", user_id="alice")
ROUTE = pb.RouteRequest(
    scope=SCOPE, signals=pb.TaskSignals(task_type="extract"), max_output_tokens=200, reserve=True,
    prompt=pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content="Extract the emails: a@b.example")])),
)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS-only redis-server; its ``url`` is ``rediss://`` trusting the CA made here."""
    tmp = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    files = RedisTls(cert=tmp / "redis.pem", key=tmp / "redis.key", ca=tmp / "ca.pem")
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    with RedisServer(tmp / "data", tls=files) as server:
        yield server


def tls_config(tmp: Path, url: str) -> tuple[Path, str]:
    """A config on Redis at ``url``; returns it and its key prefix."""
    store = redis_store(url)

    def edit(data: dict[str, Any]) -> None:
        data["store"] = store
        data["reservations"] = {"sweep_interval": "100ms"}

    return write_config(tmp / "tollgate.yaml", edit), str(store["key_prefix"])


class UnservingSidecar(SidecarProcess):
    """A sidecar expected to fail closed: ready once health answers at all, whatever it says."""

    status: int = HEALTH.UNKNOWN

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    # NOT_FOUND until the first sweep has set a status.
                    self.status = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
                    return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise TimeoutError(f"sidecar health never answered after {timeout}s:\n{self.logs()}")


async def test_sidecar_spends_over_tls_and_the_audit_balances(tmp_path: Path, tls_redis: RedisServer) -> None:
    config, prefix = tls_config(tmp_path, tls_redis.url)
    # start() waits for SERVING: the sidecar's first sweep reached Redis over TLS.
    with SidecarProcess(tmp_path, config=config, store=None) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            held = (await stub.Route(ROUTE, timeout=10)).reservation
            assert held.held_nanos > 0
            done = await stub.Commit(pb.CommitRequest(
                reservation_id=held.reservation_id, usage=pb.Usage(input_tokens=30, output_tokens=12)), timeout=10)
            assert 0 < done.charged_nanos < held.held_nanos
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=SCOPE), timeout=10)
    pools = {p.pool_id: p for p in budget.pools}
    assert set(pools) == {"org:tls", "team:tls/ops", "user:tls/alice"}
    assert all(p.spent_nanos == done.charged_nanos and p.held_nanos == 0 for p in pools.values())

    # The spend is in Redis, read back over TLS.
    with tls_redis.client() as client:
        record = client.hgetall(f"{prefix}:{{tls}}:r:{held.reservation_id}")
        org = client.hgetall(f"{prefix}:{{tls}}:p:org:tls")
    assert record[b"state"] == b"committed" and int(record[b"charged"]) == done.charged_nanos
    assert int(org[b"spent"]) == done.charged_nanos and int(org[b"held"]) == 0

    # The operator's audit, through the same rediss:// URL.
    result = audit(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 pools, 1 reservations checked" in result.stdout and result.stdout.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("scheme", "why"),
    [("redis", "plaintext to the TLS port"), ("rediss", "the test CA is not trusted")],
)
async def test_sidecar_that_cannot_speak_tls_fails_closed(tmp_path: Path, tls_redis: RedisServer, scheme: str,
                                                          why: str) -> None:
    config, prefix = tls_config(tmp_path, f"{scheme}://127.0.0.1:{tls_redis.port}/0")
    with UnservingSidecar(tmp_path, config=config, store=None) as sidecar:
        assert sidecar.status == HEALTH.NOT_SERVING, why
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as route:
                await stub.Route(ROUTE, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as budget:
                await stub.GetBudget(pb.GetBudgetRequest(scope=SCOPE), timeout=10)
    for err in (route.value, budget.value):
        assert err.code() == C.UNAVAILABLE, err.details()
        assert (err.details() or "").startswith("the Redis budget store did not answer"), err.details()
    logs = sidecar.logs()
    assert "budget store unreachable, failing closed" in logs, logs
    if scheme == "rediss":
        # The refusal says what is wrong with the certificate.
        assert "CERTIFICATE_VERIFY_FAILED" in (route.value.details() or ""), route.value.details()
        assert "CERTIFICATE_VERIFY_FAILED" in logs, logs
    # Nothing was held, nor written at all, under this sidecar's keys.
    with tls_redis.client() as client:
        assert list(client.scan_iter(match=f"{prefix}:*")) == []


@pytest.mark.parametrize("source", ["config", STORE_URL_ENV])
def test_missing_ca_file_is_refused_at_start(tmp_path: Path, tls_redis: RedisServer, source: str) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs={missing}"
    config, _ = tls_config(tmp_path, url if source == "config" else tls_redis.url)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    if source == STORE_URL_ENV:
        env[STORE_URL_ENV] = url
    result = subprocess.run(
        [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    # From the file, its line too.
    where = re.escape(str(config)) + ":[0-9]+" if source == "config" else STORE_URL_ENV
    assert re.search(f"config error: {where}: store.url: ssl_ca_certs: no such file: {re.escape(str(missing))}",
                     result.stderr), result.stderr

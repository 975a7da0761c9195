"""Many sidecars, one Redis: shared budgets under concurrency and faults, against real processes.

- 4 sidecar processes × 64 concurrent clients against one org pool admitting exactly N.
- A sidecar SIGKILLed with open holds: the survivors expire each hold exactly once.
- Redis killed mid-load: every RPC answers UNAVAILABLE within its bound; after the
  restart service resumes with no sidecar restart, and the lost data is reported.
- A Commit re-sent after a client-side timeout charges once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.catalog import suite_config
from tests.support.eventually import eventually_async
from tests.support.redis_server import RedisServer
from tests.support.sidecar_process import SidecarProcess, audit, write_config
from tollgate.money import apply_margin
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.redis, pytest.mark.slow]

C = grpc.StatusCode


def redis_config(tmp: Path, url: str, *, ttl: str = "5m", cap_nanos: int | None = None,
                 name: str = "tollgate.yaml", timeout: str = "2s") -> Path:
    """A Redis-backed config; the store timeout is generous unless a test measures the bound itself."""
    prefix = f"t{uuid.uuid4().hex[:10]}"

    def edit(data: dict[str, Any]) -> None:
        data["store"] = {"kind": "redis", "url": url, "timeout": timeout, "key_prefix": prefix}
        data["reservations"] = {"ttl": ttl, "sweep_interval": "100ms"}
        if cap_nanos is not None:
            data["budgets"]["templates"] = {
                "org": {"cap": f"{cap_nanos / 1e9:.9f}", "policy": "hard", "priority_reserve": 0.0}
            }

    return write_config(tmp / name, edit)


def sidecars(stack: ExitStack, tmp: Path, config: Path, n: int) -> list[SidecarProcess]:
    out = []
    for i in range(n):
        d = tmp / f"sidecar-{i}"
        d.mkdir()
        out.append(stack.enter_context(SidecarProcess(d, config=config, store=None)))
    return out


RESERVE = pb.ReserveRequest(scope=pb.Scope(org_id="shared"), model="gpt-4o", prompt=pb.Prompt(input_tokens=1_000),
                            max_output_tokens=100)


async def test_four_sidecars_admit_exactly_n(tmp_path: Path, redis_url: str) -> None:
    n = 150
    base = suite_config()
    price = base.catalog.models["gpt-4o"].price
    amount = apply_margin(price.cost(input_tokens=1_000, output_tokens=100), base.estimation.margin_bp)
    config = redis_config(tmp_path, redis_url, cap_nanos=n * amount + amount // 2)
    admitted: list[str] = []
    refused = 0

    async def client(stub: pb_grpc.TollgateServiceStub) -> None:
        nonlocal refused
        while True:
            try:
                r = await stub.Reserve(RESERVE, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == C.RESOURCE_EXHAUSTED, exc.details()
                refused += 1
                return
            admitted.append(r.reservation.reservation_id)

    with ExitStack() as stack:
        procs = sidecars(stack, tmp_path, config, 4)
        channels = [grpc.aio.insecure_channel(p.target) for p in procs]
        stubs = [pb_grpc.TollgateServiceStub(ch) for ch in channels]
        await asyncio.gather(*(client(stubs[i % 4]) for i in range(4 * 64)))
        assert len(admitted) == n and len(set(admitted)) == n
        assert refused == 4 * 64
        # Commit everything, spread over the sidecars, and the pool adds up to the nano-dollar.
        results = await asyncio.gather(*(
            stubs[i % 4].Commit(pb.CommitRequest(reservation_id=rid,
                                                 usage=pb.Usage(input_tokens=900, output_tokens=80)))
            for i, rid in enumerate(admitted)
        ))
        budget = await stubs[0].GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="shared")))
        (org,) = budget.pools
        assert org.held_nanos == 0 and org.spent_nanos == sum(r.charged_nanos for r in results)
        for ch in channels:
            await ch.close()
    result = audit(config)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_killed_sidecars_holds_expire_once_by_survivors(tmp_path: Path, redis_url: str) -> None:
    config = redis_config(tmp_path, redis_url, ttl="2s")
    scope = pb.Scope(org_id="crashy", user_id="u")
    with ExitStack() as stack:
        victim, *survivors = sidecars(stack, tmp_path, config, 3)
        async with grpc.aio.insecure_channel(victim.target) as ch:
            stub = pb_grpc.TollgateServiceStub(ch)
            opened = [
                (await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                      prompt=pb.Prompt(input_tokens=500)))).reservation
                for _ in range(40)
            ]
            done = opened[:10]
            for r in done:
                await stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id,
                                                   usage=pb.Usage(input_tokens=500, output_tokens=50)))
        victim.kill()
        async with grpc.aio.insecure_channel(survivors[0].target) as ch:
            stub = pb_grpc.TollgateServiceStub(ch)
            async def released() -> bool:
                budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
                return all(p.held_nanos == 0 for p in budget.pools)

            await eventually_async(released, "the orphaned holds to expire", timeout=15, every=0.1)
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
            for r in opened[10:]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id, usage=pb.Usage()))
                assert err.value.code() == C.FAILED_PRECONDITION and "expired" in (err.value.details() or "")
            org = next(p for p in budget.pools if p.pool_id == "org:crashy")
            committed = 0
            for r in done:  # replays of the victim's commits, answered by a survivor
                replay = await stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id, usage=pb.Usage(
                    input_tokens=500, output_tokens=50)))
                assert replay.replayed
                committed += replay.charged_nanos
            # Each expired hold was charged exactly once (the default expiry policy charges the hold).
            assert org.spent_nanos == committed + sum(r.held_nanos for r in opened[10:])
    result = audit(config)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test may kill and restart."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def test_redis_outage_fails_closed_fast_and_recovers(tmp_path: Path, own_redis: RedisServer) -> None:
    config = redis_config(tmp_path, own_redis.url, timeout="250ms")
    scope = pb.Scope(org_id="outage")
    with SidecarProcess(tmp_path, config=config, store=None) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.target) as ch:
            stub = pb_grpc.TollgateServiceStub(ch)
            r = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                     prompt=pb.Prompt(input_tokens=9)))
            # A Redis that hangs (here: stopped) is the worse fault: nothing refuses the connection.
            assert own_redis.proc is not None
            own_redis.proc.send_signal(signal.SIGSTOP)
            hung = []
            try:
                for _ in range(5):
                    t0 = time.monotonic()
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                             prompt=pb.Prompt(input_tokens=9)), timeout=10)
                    hung.append(time.monotonic() - t0)
                    assert err.value.code() == C.UNAVAILABLE, err.value.details()
            finally:
                own_redis.proc.send_signal(signal.SIGCONT)
            print(f"\nUNAVAILABLE while Redis hangs: max {max(hung) * 1000:.0f} ms per call (store timeout 250 ms)")
            assert max(hung) < 2.0
            own_redis.kill()
            durations = []
            for call in range(20):
                t0 = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    if call % 2:
                        await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                             prompt=pb.Prompt(input_tokens=9)), timeout=10)
                    else:
                        await stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id,
                                                           usage=pb.Usage(input_tokens=9)), timeout=10)
                durations.append(time.monotonic() - t0)
                assert err.value.code() == C.UNAVAILABLE, err.value.details()
                assert "Redis" in (err.value.details() or "")
            print(f"UNAVAILABLE while Redis is down: max {max(durations) * 1000:.0f} ms per call")
            assert max(durations) < 2.0  # bounded by the 250 ms store timeout, not a hang

            own_redis.start()  # same port, empty: the data is gone
            deadline = time.monotonic() + 10
            while True:
                try:
                    again = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                                 prompt=pb.Prompt(input_tokens=9)))
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == C.UNAVAILABLE and time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert again.reservation.held_nanos > 0
            for _ in range(50):  # the next sweep notices the new epoch
                if "Redis lost its data" in sidecar.logs():
                    break
                await asyncio.sleep(0.1)
            assert "Redis lost its data" in sidecar.logs()


async def test_commit_resent_after_timeout_charges_once(tmp_path: Path, redis_url: str) -> None:
    config = redis_config(tmp_path, redis_url)
    scope = pb.Scope(org_id="retry")
    with SidecarProcess(tmp_path, config=config, store=None) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.target) as ch:
            stub = pb_grpc.TollgateServiceStub(ch)
            charged = 0
            for _ in range(20):
                r = (await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o",
                                                          prompt=pb.Prompt(input_tokens=100)))).reservation
                commit = pb.CommitRequest(reservation_id=r.reservation_id,
                                          usage=pb.Usage(input_tokens=100, output_tokens=30))
                try:
                    # A deadline too short to see the answer: the commit may or may not have landed.
                    await stub.Commit(commit, timeout=0.0005)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == C.DEADLINE_EXCEEDED
                result = await stub.Commit(commit)
                charged += result.charged_nanos
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
            (org,) = budget.pools
            assert org.spent_nanos == charged and org.held_nanos == 0
    result = audit(config)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_starts_without_redis_and_serves_once_it_answers(tmp_path: Path) -> None:
    """No crash loop when Redis is down at start: NOT_SERVING, then SERVING once it answers."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    redis_server = RedisServer(tmp_path / "redis")  # not started yet
    config = redis_config(tmp_path, redis_server.url)
    sidecar = SidecarProcess(tmp_path, config=config, store=None)
    with pytest.raises(TimeoutError):
        sidecar.start(timeout=2.0)  # never SERVING while Redis is down...
    try:
        assert sidecar.proc is not None and sidecar.proc.poll() is None  # ...but running
        async with grpc.aio.insecure_channel(sidecar.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            # A loaded machine may still be starting the process: wait for an answer, not for a status.
            reply = await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.TollgateServiceStub(ch).Reserve(RESERVE)
            assert err.value.code() == C.UNAVAILABLE
            redis_server.start()
            for _ in range(100):
                reply = await health.Check(health_pb2.HealthCheckRequest())
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert (await pb_grpc.TollgateServiceStub(ch).Reserve(RESERVE)).reservation.held_nanos > 0
    finally:
        sidecar.stop()
        redis_server.stop()
